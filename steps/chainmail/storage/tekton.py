"""The ``tekton`` backend: Chains' annotations on the run that owns each artifact.

For an artifact with short key ``K`` (``taskrun-<uid>``, ``pipelinerun-<uid>`` or the first
12 hex digits of an image digest) the run gets, all standard base64::

    chains.tekton.dev/payload-K    the payload body
    chains.tekton.dev/signature-K  the DSSE envelope JSON (in-toto) or the raw DER signature
    chains.tekton.dev/cert-K       PEM certificate, or "" (always written, as Chains does)
    chains.tekton.dev/chain-K      PEM chain, or ""

Nothing is written here: the values are queued on the :class:`~chainmail.store_session.StoreSession`
and :func:`chainmail.annotations.flush` writes them with ``signed`` in one patch per run. Before
queueing, the size each run's annotations would reach is checked against Kubernetes' limit
(tektoncd/chains#1076): over it, nothing is queued and :class:`AnnotationsTooLargeError` is raised,
so the failure patch that marks the run stays small.
"""

from __future__ import annotations

from typing import Any

from chainmail import annotations as ann
from chainmail._internal.encoding import b64encode, sha256_digest
from chainmail.errors import AnnotationsTooLargeError
from chainmail.models import RunRef, SignedPayload, StoredRef
from chainmail.storage import Backend

#: Kubernetes caps the total size of an object's annotations: the sum of len(key) + len(value)
#: (k8s.io/apimachinery ValidateAnnotationsSize, TotalAnnotationSizeLimitB).
MAX_ANNOTATION_BYTES = 256 * 1024
#: Room kept for the state patch written with the payloads (signed, retries, failure reason, …).
STATE_RESERVE = 1024


def annotations_size(annotations: dict[str, str]) -> int:
    """Size as the API server counts it: the sum of the keys' and values' lengths in bytes."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


class TektonBackend(Backend):
    """Stores signatures as annotations on the run (Chains' default storage)."""

    NAME = "tekton"

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        refs: list[StoredRef] = []
        queued: dict[RunRef, dict[str, str]] = {}
        for item in signed:
            art = item.payload.artifact
            short = art.short_key
            sig_key = ann.signature_key(short)
            queued.setdefault(art.owner, {}).update({
                ann.payload_key(short): b64encode(item.payload.body),
                sig_key: b64encode(item.signature),
                ann.cert_key(short): b64encode(item.cert.encode()) if item.cert else "",
                ann.chain_key(short): b64encode(item.chain.encode()) if item.chain else "",
            })
            owner = art.owner
            refs.append(StoredRef(self.NAME, art.full_key, f"{owner.namespace}/{owner.name}:{sig_key}",
                                  sha256_digest(item.signature)))
        self._check_size(queued)
        for owner, values in queued.items():
            self.session.annotate(owner, values)
        return refs

    def _existing(self, ref: RunRef) -> dict[str, str]:
        """The annotations ``ref`` has as read (the run itself or one of the snapshot's TaskRuns)."""
        snap = self.session.snapshot
        if ref == snap.ref:
            return ann.annotations_of(snap.run)
        for obj in snap.task_runs:
            md: Any = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(md, dict) and (md.get("uid") == ref.uid or (
                    md.get("name") == ref.name and md.get("namespace") == ref.namespace)):
                return ann.annotations_of(obj)
        return {}

    def _check_size(self, queued: dict[RunRef, dict[str, str]]) -> None:
        """Raise before anything is queued when a run's annotations would not fit (tektoncd/chains#1076)."""
        for ref, values in queued.items():
            merged = {**self._existing(ref), **self.session.annotations.get(ref, {}), **values}
            size = annotations_size(merged) + (STATE_RESERVE if ref == self.session.snapshot.ref else 0)
            if size > MAX_ANNOTATION_BYTES:
                raise AnnotationsTooLargeError(
                    f"tekton storage: the annotations of {ref.kind} {ref.namespace}/{ref.name} would total "
                    f"{size} bytes ({size / 1024:.0f} KiB, {annotations_size(values)} bytes of them signatures and "
                    f"payloads); Kubernetes allows {MAX_ANNOTATION_BYTES} bytes (256 KiB); nothing was stored in "
                    f"annotations: set artifacts.{ref.kind.lower()}.storage to oci or file (or gcs)",
                    hint="store this artifact kind elsewhere: set artifacts.taskrun.storage / "
                         "artifacts.pipelinerun.storage to oci or file (or gcs; a future "
                         "chainmail.storage.tekton.mode: refs will keep only references in annotations)",
                )
