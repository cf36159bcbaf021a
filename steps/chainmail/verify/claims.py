"""Payload checks, after a signature verified: cosign's simple-signing and in-toto statement claims.

Every document is parsed with :func:`~chainmail._internal.encoding.load_json` (depth-bounded): a
payload nested too deep is a :class:`VerificationError` like any other malformed payload.
"""

from __future__ import annotations

from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE
from chainmail.verify.model import COSIGN_SIGNATURE_TYPE


class PredicateMismatchError(VerificationError):
    """A verified statement with another predicate type (filtered out, as cosign's ``--type`` does)."""


def parse_object(data: bytes | str, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; anything else (bad JSON, too deep, not an object) is a VerificationError."""
    try:
        doc = load_json(data)
    except ValueError as exc:
        raise VerificationError(f"{what} is not usable JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise VerificationError(f"{what} is not a JSON object")
    return doc


def check_simplesigning(payload: bytes, image_digest: str | None) -> dict[str, Any]:
    """cosign's claim checks on a simple-signing payload; returns it parsed."""
    doc = parse_object(payload, "simple-signing payload")
    critical = doc.get("critical")
    if not isinstance(critical, dict):
        raise VerificationError("simple-signing payload has no 'critical' section")
    if critical.get("type") != COSIGN_SIGNATURE_TYPE:
        raise VerificationError(f"simple-signing critical.type is '{critical.get('type')}', "
                                f"not '{COSIGN_SIGNATURE_TYPE}'")
    image = critical.get("image")
    signed = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if image_digest is not None and signed != image_digest:
        raise VerificationError(f"signature is for {signed}, not for image {image_digest}")
    return doc


def signed_image_digest(payload: bytes) -> str:
    """The ``docker-manifest-digest`` a simple-signing payload names ("" when it names none)."""
    critical = parse_object(payload, "payload").get("critical")
    image = critical.get("image") if isinstance(critical, dict) else None
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    return digest if isinstance(digest, str) else ""


def check_statement(payload_type: str, payload: bytes, image_digest: str | None,
                    predicate_type: str | None) -> dict[str, Any]:
    """cosign's attestation checks: in-toto payload type, a subject with the image digest, predicate type."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise VerificationError(f"invalid payloadType {payload_type} (expected {INTOTO_PAYLOAD_TYPE})")
    statement = parse_object(payload, "in-toto statement")
    if image_digest is not None:
        algo, _, want = image_digest.partition(":")
        subjects = statement.get("subject")
        subjects = subjects if isinstance(subjects, list) else []
        if not any(isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get(algo) == want
                   for s in subjects):
            raise VerificationError(f"no subject of the statement has digest {image_digest}")
    if predicate_type is not None and statement.get("predicateType") != predicate_type:
        raise PredicateMismatchError(str(statement.get("predicateType")))
    return statement
