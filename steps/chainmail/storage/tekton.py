"""The ``tekton`` backend: Chains' annotations on the run that owns each artifact.

For an artifact with short key ``K`` (``taskrun-<uid>``, ``pipelinerun-<uid>`` or the first
12 hex digits of an image digest) the run gets, all standard base64::

    chains.tekton.dev/payload-K    the payload body
    chains.tekton.dev/signature-K  the DSSE envelope JSON (in-toto) or the raw DER signature
    chains.tekton.dev/cert-K       PEM certificate, or "" (always written, as Chains does)
    chains.tekton.dev/chain-K      PEM chain, or ""

With ``chainmail.storage.tekton.mode: refs`` (tektoncd/chains#1076; not in Chains) the run gets instead,
for each artifact, only ``chainmail.dev/payload-digest-K`` and ``signature-digest-K`` (``sha256:<hex>``) and
``chainmail.dev/stored-K``: a JSON list of ``{"backend", "location"}`` naming where the other backends of
``artifacts.<kind>.storage`` put the payload and signature (:mod:`chainmail.verify.refs` reads them back).
This backend then runs after the others; an artifact none of :data:`REF_HOLDERS` stored is refused.

Nothing is written here: the values are queued on the :class:`~chainmail.store_session.StoreSession`
and :func:`chainmail.annotations.flush` writes them with ``signed`` in one patch per run. Before
queueing, the size each run's annotations would reach is checked against Kubernetes' limit
(tektoncd/chains#1076): over it, nothing is queued and :class:`AnnotationsTooLargeError` is raised,
so the failure patch that marks the run stays small.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chainmail import annotations as ann
from chainmail._internal.encoding import b64encode, sha256_digest
from chainmail.config import Kind
from chainmail.context import Context
from chainmail.errors import AnnotationsTooLargeError, ConfigError, StorageError
from chainmail.models import RunRef, SignedPayload, StoredRef
from chainmail.storage import Backend
from chainmail.store_session import file_store_dir

#: Kubernetes caps the total size of an object's annotations: the sum of len(key) + len(value)
#: (k8s.io/apimachinery ValidateAnnotationsSize, TotalAnnotationSizeLimitB).
MAX_ANNOTATION_BYTES = 256 * 1024
#: Room kept for the state patch written with the payloads (signed, retries, failure reason, …).
STATE_RESERVE = 1024
MODE_KEY = "chainmail.storage.tekton.mode"
#: Backends a refs-mode reference may point to: ``chainmail verify run`` reads the payload back from them
#: (and ``docdb`` on ``dynamodb://``, keyed by ``Name``).
REF_HOLDERS = ("oci", "gcs", "file")
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def refs_mode(ctx: Context) -> bool:
    """``chainmail.storage.tekton.mode: refs``."""
    return ctx.config.get(MODE_KEY) == "refs"


def ref_holders(ctx: Context, kind: Kind) -> list[str]:
    """The backends of ``artifacts.<kind>.storage`` a refs-mode reference can point to."""
    names = ctx.config.storage(kind)
    bundle = ctx.config.get("storage.oci.encoding-format") == "sigstore-bundle"
    dynamodb = ctx.config.get("storage.docdb.url").strip().startswith("dynamodb://")
    return [n for n in names if (n in REF_HOLDERS and not (n == "oci" and bundle)) or (n == "docdb" and dynamodb)]


def annotations_size(annotations: dict[str, str]) -> int:
    """Size as the API server counts it: the sum of the keys' and values' lengths in bytes."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def check_refs(ctx: Context, kinds: set[Kind]) -> None:
    """Refs mode needs, for each kind stored in ``tekton`` now, another backend the reference can point to."""
    if not refs_mode(ctx):
        return
    for kind in sorted(kinds):
        if not ref_holders(ctx, kind):
            names = ",".join(ctx.config.storage(kind))
            raise ConfigError(
                f"{MODE_KEY}: refs keeps only references in the run's annotations, but "
                f"artifacts.{kind}.storage ({names}) names no backend that holds the payload",
                hint=f"add oci, gcs or file to artifacts.{kind}.storage (oci with storage.oci.encoding-format "
                     f"dsse; docdb only on dynamodb://), or set {MODE_KEY}: full",
            )


class TektonBackend(Backend):
    """Stores signatures as annotations on the run (Chains' default storage)."""

    NAME = "tekton"

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        if refs_mode(self.ctx):
            return self._store_refs(signed)
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

    def _store_refs(self, signed: list[SignedPayload]) -> list[StoredRef]:
        """Refs mode: digests and the other backends' locations (they ran first: see ``store_all``)."""
        refs: list[StoredRef] = []
        queued: dict[RunRef, dict[str, str]] = {}
        for item in signed:
            art = item.payload.artifact
            stored = [self._pointer(r) for r in self.stored_so_far if r.artifact == art.full_key
                      and r.backend != self.NAME]
            if not any(p["backend"] in ref_holders(self.ctx, art.kind) for p in stored):
                raise StorageError(
                    f"tekton storage ({MODE_KEY}: refs): no other backend of artifacts.{art.kind}.storage "
                    f"stored {art.short_key}, so there is nothing to point to; nothing was stored in annotations",
                    hint="oci keeps a run attestation only next to the images it names: add gcs or file to "
                         f"artifacts.{art.kind}.storage, or set {MODE_KEY}: full")
            short = art.short_key
            queued.setdefault(art.owner, {}).update({
                ann.payload_digest_key(short): sha256_digest(item.payload.body),
                ann.signature_digest_key(short): sha256_digest(item.signature),
                ann.stored_key(short): json.dumps(stored, separators=(",", ":")),
            })
            owner = art.owner
            refs.append(StoredRef(self.NAME, art.full_key, f"{owner.namespace}/{owner.name}:{ann.stored_key(short)}",
                                  sha256_digest(item.signature)))
        self._check_size(queued)
        for owner, values in queued.items():
            self.session.annotate(owner, values)
        return refs

    def _pointer(self, ref: StoredRef) -> dict[str, str]:
        """Where ``ref`` is, as recorded: a ``file`` path relative to the file store, no URL credentials."""
        location = ref.location
        if ref.backend == "file":
            try:
                location = Path(location).resolve().relative_to(file_store_dir(self.ctx).resolve()).as_posix()
            except ValueError:
                pass
        return {"backend": ref.backend, "location": _USERINFO.sub(r"\1", location)}

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
                         "artifacts.pipelinerun.storage to oci or file (or gcs), or add one of them and set "
                         f"{MODE_KEY}: refs to keep only digests and references in annotations",
                )
