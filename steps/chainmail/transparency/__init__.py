"""Transparency log (Rekor v1; v2 in :mod:`chainmail.transparency.v2`): upload, fetch, search and verify entries.

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
from chainmail.transparency.v2 import RekorV2Entry
from chainmail.transparency.v2_client import RekorV2Client
from chainmail.transparency.verify import check_envelope_binding, check_signature_binding, verify_entry

if TYPE_CHECKING:
    from chainmail.context import Context

__all__ = [
    "TRANSPARENCY_ANNOTATION",
    "InclusionProof",
    "LogEntry",
    "LogKey",
    "RekorClient",
    "RekorV2Client",
    "RekorV2Entry",
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


def client_for(ctx: Context, *, url: str | None = None,
               trusted_root: Path | str | None = None) -> RekorClient | RekorV2Client:
    """A client for ``url`` (default chains-config ``transparency.url``) with the context's retry policy.

    A :class:`~chainmail.transparency.v2_client.RekorV2Client` when ``chainmail.transparency.rekor-version`` is 2.
    """
    from chainmail.transparency import v2

    url = url or ctx.config.get("transparency.url")
    keys = load_log_keys(trusted_root)
    if v2.rekor_version(ctx.config) == "2":
        v2.require_trusted_log(url, keys)
        return RekorV2Client(url, keys=keys, retry=ctx.retry)
    return RekorClient(url, keys=keys, retry=ctx.retry)


def log_signature(rekor: RekorClient | RekorV2Client, payload: bytes, signature: bytes,
                  verifier_pem: str) -> LogEntry | RekorV2Entry:
    """Log a raw signature over ``payload`` (hashedrekord) and return the verified entry that binds it."""
    if isinstance(rekor, RekorV2Client):
        from chainmail.transparency import v2

        v2_entry = rekor.upload(v2.hashedrekord_request(payload, signature, verifier_pem))
        v2.check_signature_binding(v2_entry, payload, signature, verifier_pem)
        return v2_entry
    entry = rekor.upload(kinds.hashedrekord(payload, signature, verifier_pem))
    check_signature_binding(entry, hashlib.sha256(payload).hexdigest(), signature, verifier_pem)
    return entry


def log_envelope(rekor: RekorClient | RekorV2Client, envelope: bytes, verifier_pem: str) -> LogEntry | RekorV2Entry:
    """Log a DSSE envelope (dsse) and return the verified entry that binds it."""
    if isinstance(rekor, RekorV2Client):
        from chainmail.transparency import v2

        v2_entry = rekor.upload(v2.dsse_request(envelope, [verifier_pem]))
        v2.check_envelope_binding(v2_entry, envelope, verifier_pem)
        return v2_entry
    entry = rekor.upload(kinds.dsse(envelope, [verifier_pem]))
    check_envelope_binding(entry, envelope, verifier_pem)
    return entry
