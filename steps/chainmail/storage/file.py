"""The ``file`` backend: everything in a directory, for demos and air-gapped use.

Layout (Chains' GCS object names, under a local directory)::

    <dir>/<taskrun|pipelinerun>-<namespace>-<name>/<shortKey>.payload     raw payload bytes
                                                  <shortKey>.signature   what cosign verify-blob(-attestation) takes:
                                                                         base64 DER, or the DSSE envelope JSON
                                                  <shortKey>.cert / .chain / .pub
"""

from __future__ import annotations

from pathlib import Path

from chainmail._internal.encoding import b64encode, sha256_digest
from chainmail._internal.files import atomic_write
from chainmail.models import RunRef, SignedPayload, StoredRef
from chainmail.storage import Backend


def run_dir(root: Path, run: RunRef) -> Path:
    """The directory holding one run's signed payloads."""
    return root / f"{run.kind.lower()}-{run.namespace or 'default'}-{run.name}"


def signature_file_bytes(signed: SignedPayload) -> bytes:
    """The ``.signature`` content: DSSE envelope JSON, or base64 of the raw signature."""
    return signed.signature if signed.payload.wrap else b64encode(signed.signature).encode()


class FileBackend(Backend):
    """Writes payloads, signatures and certificates as files."""

    NAME = "file"

    @property
    def root(self) -> Path:
        return self.ctx.file_store or Path(self.ctx.config.get("chainmail.storage.file.directory"))

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        refs = []
        for item in signed:
            art = item.payload.artifact
            base = run_dir(self.root, art.owner) / art.short_key
            sig = signature_file_bytes(item)
            atomic_write(base.with_suffix(".payload"), item.payload.body)
            atomic_write(base.with_suffix(".cert"), item.cert.encode())
            atomic_write(base.with_suffix(".chain"), item.chain.encode())
            atomic_write(base.with_suffix(".pub"), item.public_key.encode())
            atomic_write(base.with_suffix(".signature"), sig)
            refs.append(StoredRef(self.NAME, art.full_key, str(base.with_suffix(".signature")), sha256_digest(sig)))
        return refs
