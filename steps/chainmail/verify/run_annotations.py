"""Chains' ``tekton`` storage: ``chains.tekton.dev/payload-<key>``, ``signature-<key>`` (and ``cert-<key>``)
annotations on the run, base64 encoded. ``<key>`` is ``taskrun-<uid>``, ``pipelinerun-<uid>`` or an
image's 12-hex ShortKey.
"""

from __future__ import annotations

from typing import Any

from chainmail._internal.encoding import b64decode
from chainmail.errors import VerificationError
from chainmail.verify.keys import Key
from chainmail.verify.model import Verified
from chainmail.verify.stored import verify_stored

PREFIX = "chains.tekton.dev/"
SIGNATURE_PREFIX = PREFIX + "signature-"
SIGNED = PREFIX + "signed"
PROVISIONAL_SIGNED = "chainmail.dev/provisional-signed"
FAILURE_REASON = "chainmail.dev/failure-reason"


def signature_keys(annotations: dict[str, Any]) -> list[str]:
    """The ``<key>`` of every ``signature-<key>`` annotation, sorted."""
    return sorted(k[len(SIGNATURE_PREFIX):] for k in annotations if k.startswith(SIGNATURE_PREFIX))


def decode(value: object, key: str) -> bytes:
    """An annotation's base64 value."""
    if not isinstance(value, str):
        raise VerificationError(f"annotation {key} is not a string")
    try:
        return b64decode(value)
    except ValueError:
        raise VerificationError(f"annotation {key} is not base64") from None


def verify_annotation(annotations: dict[str, Any], short_key: str, keys: list[Key], ref: str) -> Verified:
    """``signature-<short_key>`` over ``payload-<short_key>``; raises :class:`VerificationError`."""
    key = SIGNATURE_PREFIX + short_key
    payload_key = f"{PREFIX}payload-{short_key}"
    if payload_key not in annotations:
        raise VerificationError(f"no {payload_key} annotation next to the signature")
    signature = decode(annotations[key], key)
    payload = decode(annotations[payload_key], payload_key)
    cert_raw = annotations.get(f"{PREFIX}cert-{short_key}") or ""
    cert = decode(cert_raw, "cert").decode(errors="replace") if cert_raw else ""
    return verify_stored(keys, payload, signature, ref, "annotations", key, cert)
