"""Proposed Rekor entries: ``hashedrekord`` v0.0.1 (raw signatures) and ``dsse`` v0.0.1 (DSSE envelopes).

Example::

    hashedrekord(payload, signature, public_key_pem)    # cosign sign / Chains simplesigning
    dsse(envelope_bytes, [public_key_pem])               # cosign attest / Chains in-toto formats
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from chainmail.errors import InputError


def _b64_pem(pem: str) -> str:
    text = pem.strip()
    if not text.startswith("-----BEGIN"):
        raise InputError("a Rekor verifier must be a PEM public key or certificate")
    return base64.b64encode((text + "\n").encode()).decode()


def hashedrekord(payload: bytes, signature: bytes, verifier_pem: str) -> dict[str, Any]:
    """A ``hashedrekord`` entry: sha256 of ``payload``, the raw signature, the key or certificate PEM."""
    return hashedrekord_for_digest(hashlib.sha256(payload).hexdigest(), signature, verifier_pem)


def hashedrekord_for_digest(payload_sha256: str, signature: bytes, verifier_pem: str) -> dict[str, Any]:
    """:func:`hashedrekord` when only the payload's sha256 (hex, ``sha256:`` prefix allowed) is at hand."""
    digest = payload_sha256.removeprefix("sha256:").lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InputError(f"'{payload_sha256}' is not a sha256 digest")
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest}},
            "signature": {"content": base64.b64encode(signature).decode(),
                          "publicKey": {"content": _b64_pem(verifier_pem)}},
        },
    }


def dsse(envelope: bytes | str, verifier_pems: list[str]) -> dict[str, Any]:
    """A ``dsse`` entry: the envelope JSON as a string plus the keys or certificates that verify it."""
    text = envelope.decode() if isinstance(envelope, bytes) else envelope
    if not verifier_pems:
        raise InputError("a dsse entry needs at least one verifier (public key or certificate)")
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"proposedContent": {"envelope": text, "verifiers": [_b64_pem(p) for p in verifier_pems]}},
    }
