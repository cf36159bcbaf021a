"""DSSE envelopes, as Tekton Chains (go-securesystemslib) writes them and cosign reads them.

Example::

    env = envelope("application/vnd.in-toto+json", statement_bytes, signer)
    payload_type, payload = verify_envelope(env, [public_key_pem])
    # check payload_type before trusting payload

Envelopes are compact JSON in the order ``payloadType, payload, signatures`` with
``keyid`` = the signer's SSH fingerprint (Chains' choice). Verification ignores
``keyid`` (as ``cosign verify-attestation`` does): one signature that verifies with one
of the keys is enough.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import b64decode, b64encode, compact_json, load_json
from chainmail.errors import InputError, NoMatchingSignatureError, VerificationError

if TYPE_CHECKING:
    from chainmail.signing._signer import Signer


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes that are actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope(payload_type: str, payload: bytes, signer: Signer) -> bytes:
    """Sign ``payload`` and return the envelope JSON bytes (one signature)."""
    sig = signer.sign(pae(payload_type, payload))
    return compact_json({
        "payloadType": payload_type,
        "payload": b64encode(payload),
        "signatures": [{"keyid": signer.key_id, "sig": b64encode(sig)}],
    })


def is_envelope(data: bytes) -> bool:
    """Whether ``data`` is meant as a DSSE envelope (a JSON object) rather than a raw signature.

    A raw signature's first byte is ``{`` about once in 256 (RSA especially), so the first byte alone
    does not tell.
    """
    from chainmail._internal.encoding import JSONLimitError

    if data.lstrip()[:1] != b"{":
        return False
    try:
        return isinstance(load_json(data), dict)
    except JSONLimitError:
        return True  # JSON, if hostile: refused as a malformed envelope, with the reason
    except ValueError:
        return False


def _decode(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"DSSE envelope: '{where}' must be a base64 string")
    try:
        return b64decode(value)
    except ValueError:
        raise InputError(f"DSSE envelope: '{where}' is not valid base64") from None


def parse(envelope_bytes: bytes | str) -> dict[str, Any]:
    """Decode an envelope (std or URL-safe base64) into plain values.

    Returns ``{"payloadType": str, "payload": bytes, "signatures": [{"keyid": str, "sig": bytes}]}``.
    Raises :class:`InputError` when it is not a DSSE envelope.
    """
    try:
        doc = load_json(envelope_bytes)
    except (ValueError, UnicodeDecodeError):
        raise InputError("DSSE envelope: not valid JSON") from None
    if not isinstance(doc, dict):
        raise InputError("DSSE envelope: expected a JSON object")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str):
        raise InputError("DSSE envelope: missing 'payloadType'")
    payload = _decode(doc.get("payload"), "payload")
    raw_sigs = doc.get("signatures")
    if not isinstance(raw_sigs, list):
        raise InputError("DSSE envelope: 'signatures' must be a list")
    signatures = []
    for i, item in enumerate(raw_sigs):
        if not isinstance(item, dict):
            raise InputError(f"DSSE envelope: signatures[{i}] must be an object")
        keyid = item.get("keyid", "")
        signatures.append({
            "keyid": keyid if isinstance(keyid, str) else "",
            "sig": _decode(item.get("sig"), f"signatures[{i}].sig"),
        })
    return {"payloadType": payload_type, "payload": payload, "signatures": signatures}


def verify_envelope(envelope_bytes: bytes | str, public_keys: list[str]) -> tuple[str, bytes]:
    """Return ``(payload_type, payload)`` when some signature verifies with some key.

    ``keyid`` is ignored. Raises :class:`VerificationError` for a malformed envelope and
    :class:`NoMatchingSignatureError` when nothing verifies. Callers must check the
    payload type before trusting the payload.
    """
    from chainmail.signing.keys import verify_signature

    try:
        doc = parse(envelope_bytes)
    except InputError as exc:
        raise VerificationError(str(exc)) from None
    if not doc["signatures"]:
        raise NoMatchingSignatureError("DSSE envelope has no signatures")
    if not public_keys:
        raise NoMatchingSignatureError("no public key given to verify the DSSE envelope with")
    message = pae(doc["payloadType"], doc["payload"])
    for sig in doc["signatures"]:
        for key in public_keys:
            try:
                verify_signature(key, sig["sig"], message)
            except VerificationError:
                continue
            return doc["payloadType"], doc["payload"]
    n = len(doc["signatures"])
    raise NoMatchingSignatureError(
        f"none of the {n} DSSE signature(s) verifies with the {len(public_keys)} given public key(s)"
    )
