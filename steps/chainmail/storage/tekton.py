"""The ``tekton`` backend: Chains' annotations on the run that owns each artifact.

For an artifact with short key ``K`` (``taskrun-<uid>``, ``pipelinerun-<uid>`` or the first
12 hex digits of an image digest) the run gets, all standard base64::

    chains.tekton.dev/payload-K    the payload body
    chains.tekton.dev/signature-K  the DSSE envelope JSON (in-toto) or the raw DER signature
    chains.tekton.dev/cert-K       PEM certificate, or "" (always written, as Chains does)
    chains.tekton.dev/chain-K      PEM chain, or ""

Nothing is written here: the values are queued on the :class:`~chainmail.store_session.StoreSession`
and :func:`chainmail.annotations.flush` writes them with ``signed`` in one patch per run.
"""

from __future__ import annotations

from chainmail import annotations as ann
from chainmail._internal.encoding import b64encode, sha256_digest
from chainmail.errors import StorageError
from chainmail.models import SignedPayload, StoredRef
from chainmail.storage import Backend

#: Kubernetes caps the total size of an object's annotations (keys + values).
MAX_ANNOTATION_BYTES = 256 * 1024


class TektonBackend(Backend):
    """Stores signatures as annotations on the run (Chains' default storage)."""

    NAME = "tekton"

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        refs: list[StoredRef] = []
        for item in signed:
            art = item.payload.artifact
            short = art.short_key
            sig_key = ann.signature_key(short)
            self.session.annotate(art.owner, {
                ann.payload_key(short): b64encode(item.payload.body),
                sig_key: b64encode(item.signature),
                ann.cert_key(short): b64encode(item.cert.encode()) if item.cert else "",
                ann.chain_key(short): b64encode(item.chain.encode()) if item.chain else "",
            })
            owner = art.owner
            refs.append(StoredRef(self.NAME, art.full_key, f"{owner.namespace}/{owner.name}:{sig_key}",
                                  sha256_digest(item.signature)))
        self._check_size()
        return refs

    def _check_size(self) -> None:
        """Fail early, with a useful message, when the annotations would not fit (tektoncd/chains#1076)."""
        snap = self.session.snapshot
        for ref, pending in self.session.annotations.items():
            existing = ann.annotations_of(snap.run) if ref == snap.ref else {}
            merged = {**existing, **pending}
            size = sum(len(k.encode()) + len(v.encode()) for k, v in merged.items())
            if size > MAX_ANNOTATION_BYTES:
                raise StorageError(
                    f"tekton storage: the annotations of {ref.kind} {ref.namespace}/{ref.name} would be "
                    f"{size} bytes; Kubernetes allows {MAX_ANNOTATION_BYTES}",
                    hint="store large payloads elsewhere: set artifacts.taskrun.storage / "
                         "artifacts.pipelinerun.storage to oci or file",
                )
