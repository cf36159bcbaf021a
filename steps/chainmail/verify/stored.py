"""A stored ``(payload, signature)`` pair, as Chains' ``tekton`` backend (run annotations) and the ``file``
backend write it: the signature is a DSSE envelope (attestations) or a raw signature over the payload.

The stored payload must be exactly the payload the envelope signs.
"""

from __future__ import annotations

from chainmail.errors import NoMatchingSignatureError, VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE
from chainmail.signing.dsse import is_envelope
from chainmail.verify.claims import check_simplesigning, check_statement
from chainmail.verify.keys import Key, verify_dsse, verify_raw
from chainmail.verify.model import Verified


def verify_stored(keys: list[Key], payload: bytes, signature: bytes, ref: str, layout: str, location: str,
                  cert: str) -> Verified:
    """One stored pair: a DSSE envelope or a raw DER signature. Raises :class:`VerificationError`."""
    if is_envelope(signature):
        payload_type, inner, key_id = verify_dsse(keys, signature)
        if inner != payload:
            raise VerificationError("the stored payload differs from the signed envelope's payload")
        statement = check_statement(payload_type, inner, None, None) if payload_type == INTOTO_PAYLOAD_TYPE \
            else None
        return Verified(ref, layout, payload_type, inner, statement, key_id, cert, location, signature=signature)
    key_id = verify_raw(keys, signature, payload)
    if key_id is None:
        raise NoMatchingSignatureError("signature does not verify with the given key(s)")
    try:
        doc = check_simplesigning(payload, None)
    except VerificationError:
        return Verified(ref, layout, "application/octet-stream", payload, None, key_id, cert, location,
                        signature=signature)
    critical = doc["critical"]
    identity = critical.get("identity")
    image = identity.get("docker-reference", "") if isinstance(identity, dict) else ""
    image_doc = critical.get("image")
    digest = image_doc.get("docker-manifest-digest", "") if isinstance(image_doc, dict) else ""
    return Verified(f"{image}@{digest}" if image else ref, layout, SIMPLESIGNING_PAYLOAD_TYPE, payload, None,
                    key_id, cert, location, signature=signature)

