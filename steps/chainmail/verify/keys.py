"""Public keys: load the ``--key`` sources and say which key (if any) verifies a signature or DSSE envelope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainmail._internal.encoding import load_json
from chainmail.errors import Error, InputError, NoMatchingSignatureError, VerificationError

if TYPE_CHECKING:
    from chainmail.context import Context

#: ``(pem, key_id)``: a public key and its SSH SHA256 fingerprint (Chains' keyid format; "" when unknown).
Key = tuple[str, str]


def load_keys(public_keys: list[str], ctx: Context) -> list[Key]:
    """``(pem, key_id)`` per key; non-PEM entries go through ``chainmail.signing.load_public_key``."""
    from chainmail.signing import load_public_key
    from chainmail.signing.keys import ssh_fingerprint

    if not public_keys:
        raise InputError("no public key given: pass --key (a cosign.pub, a key directory or k8s://NS/SECRET)")
    out = []
    for key in public_keys:
        pem = key if key.lstrip().startswith("-----BEGIN") else load_public_key(key, ctx)
        try:
            key_id = ssh_fingerprint(pem)
        except Error:
            key_id = ""
        out.append((pem, key_id))
    return out


def verify_raw(keys: list[Key], signature: bytes, data: bytes) -> str | None:
    """The key id of the key that verifies ``signature`` over ``data``, or None."""
    from chainmail.signing import verify_signature

    for pem, key_id in keys:
        try:
            verify_signature(pem, signature, data)
        except VerificationError:
            continue
        return key_id or "unknown"
    return None


def verify_dsse(keys: list[Key], envelope: bytes) -> tuple[str, bytes, str]:
    """``(payload_type, payload, key_id)`` from a DSSE envelope; raises :class:`VerificationError`."""
    from chainmail.signing.dsse import verify_envelope

    try:
        load_json(envelope)  # depth-bounded first: a hostile envelope is malformed, never a RecursionError
    except ValueError as exc:
        raise VerificationError(f"DSSE envelope is not usable JSON ({exc})") from None
    last: VerificationError | None = None
    for pem, key_id in keys:
        try:
            payload_type, payload = verify_envelope(envelope, [pem])
        except NoMatchingSignatureError as exc:
            last = exc
            continue
        return payload_type, payload, key_id or "unknown"
    raise last or NoMatchingSignatureError("DSSE envelope did not verify")
