"""C2SP signed notes and checkpoints (``c2sp.org/signed-note``, ``c2sp.org/tlog-checkpoint``), as Rekor v2 signs them.

Example::

    checkpoint, key = verify_signed_checkpoint(note, keys)   # keys: the trusted root's logs
    checkpoint.origin, checkpoint.size, checkpoint.root_hash

A signature line is ``— <key name> base64(key ID || signature)``. The key ID (signed-note spec):

- Ed25519 (type ``0x01``): ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``;
- ECDSA (type ``0x02``): ``SHA-256(SubjectPublicKeyInfo DER)[:4]`` (the spec's exception for ECDSA).

A trusted log's key name is its ``baseUrl`` without the scheme (Rekor v2 names its key after its
host, e.g. ``log2025-1.rekor.sigstore.dev``). Lines from unknown keys are ignored; a line whose name
and key ID match a trusted key must verify, and at least one must (else :class:`TransparencyError`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chainmail.errors import TransparencyError
from chainmail.transparency.errors import UntrustedLogError
from chainmail.transparency.trust import LogKey

#: Most signature lines read from one note (the spec asks verifiers to accept at least 16).
MAX_SIGNATURES = 32
_ED25519, _ECDSA = b"\x01", b"\x02"


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose signature verified: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def key_name(base_url: str) -> str:
    """The signed-note key name of a log: its ``baseUrl`` without scheme or trailing slash."""
    parts = urlsplit(base_url)
    name = (parts.netloc + parts.path) if parts.scheme else base_url
    return name.rstrip("/")


def note_key_id(name: str, public_key: Any) -> bytes:
    """The 4-byte signed-note key ID of ``public_key`` under ``name`` (Ed25519 or ECDSA)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw).digest()[:4]
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).digest()[:4]
    raise TransparencyError(f"checkpoint: log key type {type(public_key).__name__} is not supported "
                            "(Ed25519 or ECDSA)")


def parse_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text (with final newline) and ``(name, key ID, signature)`` lines."""
    if not note.endswith("\n") or "\n\n" not in note:
        raise TransparencyError("checkpoint: not a signed note (text, blank line, signature lines)")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise TransparencyError("checkpoint: control characters in the signed note")
    text, _, block = note.rpartition("\n\n")
    text += "\n"
    lines = block.splitlines()
    if not lines or len(lines) > MAX_SIGNATURES:
        raise TransparencyError(f"checkpoint: expected 1 to {MAX_SIGNATURES} signature lines, found {len(lines)}")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or not parts[1]:
            raise TransparencyError("checkpoint: malformed signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise TransparencyError("checkpoint: a signature line is not base64") from None
        if len(blob) < 5:
            raise TransparencyError("checkpoint: a signature line is too short")
        signatures.append((parts[1], blob[:4], blob[4:]))
    return text, signatures


def parse_checkpoint(text: str) -> SignedCheckpoint:
    """The origin, size and root hash lines of a checkpoint's note text (not yet trusted)."""
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or not lines[0]:
        raise TransparencyError("checkpoint: expected origin, tree size and root hash lines")
    if not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise TransparencyError("checkpoint: the tree size is not a decimal number")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        root = b""
    if len(root) != 32:
        raise TransparencyError("checkpoint: the root hash is not 32 base64-encoded bytes")
    return SignedCheckpoint(lines[0], int(lines[1]), root, tuple(lines[3:]))


def _verifies(public_key: Any, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signed_checkpoint(note: str, keys: list[LogKey]) -> tuple[SignedCheckpoint, LogKey]:
    """Check ``note`` against the trusted logs; returns the checkpoint and the log key that signed it."""
    text, signatures = parse_note(note)
    checkpoint = parse_checkpoint(text)
    for name, key_id, signature in signatures:
        for key in keys:
            if not key.base_url or key_name(key.base_url) != name:
                continue
            try:
                expected = note_key_id(name, key.public_key)
            except TransparencyError:
                continue
            if expected != key_id:
                continue
            if not _verifies(key.public_key, signature, text.encode()):
                raise TransparencyError(f"checkpoint: the signature by {name} does not verify with the "
                                        "trusted log key")
            if checkpoint.origin != name:
                raise TransparencyError(f"checkpoint: origin '{checkpoint.origin[:80]}' is not the log's "
                                        f"key name '{name}'")
            return checkpoint, key
    names = ", ".join(sorted({n for n, _, _ in signatures}))[:200]
    raise UntrustedLogError(f"checkpoint: signed by no trusted log key (signers: {names}); check "
                            "chainmail.transparency.trusted-root")
