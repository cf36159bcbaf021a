"""The ``file`` backend: everything in a directory, for demos and air-gapped use.

Layout (Chains' GCS object names, under a local directory)::

    <dir>/<taskrun|pipelinerun>-<namespace>-<name>/<shortKey>.payload     raw payload bytes
                                                  <shortKey>.signature   what cosign verify-blob(-attestation) takes:
                                                                         base64 DER, or the DSSE envelope JSON
                                                  <shortKey>.cert / .chain / .pub

Every path is checked before anything is written: a run name, namespace or short key that is
not a plain file name, or a symlink in the directory pointing elsewhere, is a
:class:`~chainmail.errors.StorageError` and nothing of the batch is written.
"""

from __future__ import annotations

from pathlib import Path

from chainmail._internal.encoding import b64encode, sha256_digest
from chainmail._internal.files import atomic_write, confined
from chainmail.models import SignedPayload, StoredRef
from chainmail.storage import Backend
from chainmail.store_session import file_store_dir, run_dir, run_dir_name

__all__ = ["FileBackend", "run_dir", "signature_file_bytes"]

SUFFIXES = (".payload", ".cert", ".chain", ".pub", ".signature")


def signature_file_bytes(signed: SignedPayload) -> bytes:
    """The ``.signature`` content: DSSE envelope JSON, or base64 of the raw signature."""
    return signed.signature if signed.payload.wrap else b64encode(signed.signature).encode()


class FileBackend(Backend):
    """Writes payloads, signatures and certificates as files."""

    NAME = "file"

    @property
    def root(self) -> Path:
        return file_store_dir(self.ctx)

    def _targets(self, item: SignedPayload) -> dict[str, Path]:
        art = item.payload.artifact
        owner_dir = run_dir_name(art.owner)
        return {suffix: confined(self.root, owner_dir, art.short_key + suffix) for suffix in SUFFIXES}

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        plans = [(item, self._targets(item)) for item in signed]  # every path checked before any write
        refs = []
        for item, paths in plans:
            sig = signature_file_bytes(item)
            atomic_write(paths[".payload"], item.payload.body)
            atomic_write(paths[".cert"], item.cert.encode())
            atomic_write(paths[".chain"], item.chain.encode())
            atomic_write(paths[".pub"], item.public_key.encode())
            atomic_write(paths[".signature"], sig)
            refs.append(StoredRef(self.NAME, item.payload.artifact.full_key, str(paths[".signature"]),
                                  sha256_digest(sig)))
        return refs
