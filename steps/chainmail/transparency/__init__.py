"""Transparency log (Rekor v1): upload signatures and envelopes, fetch, search and verify entries.

Example::

    rekor = client_for(ctx, trusted_root=None)             # transparency.url, production log keys
    entry = log_signature(rekor, payload, signature, signer.public_key_pem)   # hashedrekord
    entry = log_envelope(rekor, envelope_bytes, signer.public_key_pem)        # dsse
    entry.cosign_bundle()                                   # dev.sigstore.cosign/bundle annotation
    transparency_annotation(rekor.url, entry)               # chains.tekton.dev/transparency value

Chains logs simplesigning payloads as ``hashedrekord`` v0.0.1 and in-toto envelopes as ``dsse``
v0.0.1. Every entry that comes back is verified before it is returned: the SET against the trusted
log key, the RFC 6962 inclusion proof and its signed checkpoint when present, the UUID, and that it
logs exactly the signature that was sent. Failures are :class:`~chainmail.errors.TransparencyError`
(exit 7).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from chainmail.transparency import kinds
from chainmail.transparency.client import RekorClient
from chainmail.transparency.entry import TRANSPARENCY_ANNOTATION, InclusionProof, LogEntry, transparency_annotation
from chainmail.transparency.trust import LogKey, load_log_keys
from chainmail.transparency.verify import check_envelope_binding, check_signature_binding, verify_entry

if TYPE_CHECKING:
    from chainmail.context import Context

__all__ = [
    "TRANSPARENCY_ANNOTATION",
    "InclusionProof",
    "LogEntry",
    "LogKey",
    "RekorClient",
    "check_envelope_binding",
    "check_signature_binding",
    "client_for",
    "kinds",
    "load_log_keys",
    "log_envelope",
    "log_signature",
    "transparency_annotation",
    "verify_entry",
]


def client_for(ctx: Context, *, url: str | None = None, trusted_root: Path | str | None = None) -> RekorClient:
    """A client for ``url`` (default chains-config ``transparency.url``) with the context's retry policy."""
    return RekorClient(url or ctx.config.get("transparency.url"), keys=load_log_keys(trusted_root), retry=ctx.retry)


def log_signature(rekor: RekorClient, payload: bytes, signature: bytes, verifier_pem: str) -> LogEntry:
    """Log a raw signature over ``payload`` (hashedrekord) and return the verified entry that binds it."""
    entry = rekor.upload(kinds.hashedrekord(payload, signature, verifier_pem))
    check_signature_binding(entry, hashlib.sha256(payload).hexdigest(), signature, verifier_pem)
    return entry


def log_envelope(rekor: RekorClient, envelope: bytes, verifier_pem: str) -> LogEntry:
    """Log a DSSE envelope (dsse) and return the verified entry that binds it."""
    entry = rekor.upload(kinds.dsse(envelope, [verifier_pem]))
    check_envelope_binding(entry, envelope, verifier_pem)
    return entry
