"""RFC 6962 Merkle inclusion proofs and the signed checkpoints (signed notes) Rekor attaches to them."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from chainmail.errors import TransparencyError


def leaf_hash(body: bytes) -> bytes:
    """RFC 6962 leaf hash of a log entry body: ``sha256(0x00 || body)`` (Rekor's entry UUID)."""
    return hashlib.sha256(b"\x00" + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_proof(index: int, size: int, leaf: bytes, hashes: list[bytes]) -> bytes:
    """The tree root an audit path leads to (RFC 9162 §2.1.3.2); :class:`TransparencyError` if malformed."""
    if not 0 <= index < size:
        raise TransparencyError(f"inclusion proof: leaf index {index} is outside a tree of size {size}")
    fn, sn, root = index, size - 1, leaf
    for sibling in hashes:
        if sn == 0:
            raise TransparencyError("inclusion proof: more hashes than the tree is deep")
        if fn & 1 or fn == sn:
            root = _node(sibling, root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            root = _node(root, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise TransparencyError("inclusion proof: fewer hashes than the tree is deep")
    return root


@dataclass(frozen=True)
class Checkpoint:
    """The body of a signed tree head: who (origin), how big, which root."""

    origin: str
    size: int
    root_hash: bytes


def verify_checkpoint(note: str, public_key: Any, log_id: bytes) -> Checkpoint:
    """Check a signed note against the log key (signature line hint = first 4 bytes of the log id).

    Raises :class:`TransparencyError` when no signature line verifies or the note is malformed.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise TransparencyError("checkpoint: no signature block")
    text += "\n"
    lines = text.split("\n")
    try:
        checkpoint = Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True))
    except (IndexError, ValueError):
        raise TransparencyError("checkpoint: expected origin, tree size and root hash lines") from None
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            continue
        try:
            blob = base64.b64decode(line.rsplit(" ", 1)[1], validate=True)
        except (IndexError, ValueError):
            continue
        if blob[:4] != log_id[:4]:
            continue
        try:
            if isinstance(public_key, ed25519.Ed25519PublicKey):
                public_key.verify(blob[4:], text.encode())
            else:
                public_key.verify(blob[4:], text.encode(), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, TypeError, ValueError):
            continue
        return checkpoint
    raise TransparencyError("checkpoint: no signature from the log's key verifies")
