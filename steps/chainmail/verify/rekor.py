"""The Rekor SET of a legacy layer (``dev.sigstore.cosign/bundle``): checked, it gives the signing time.

A SET is believed only when it verifies with a Rekor key of the trusted root (chosen by ``logID``,
valid at that time) and the logged entry is about *this* signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import NoMatchingSignatureError, VerificationError
from chainmail.verify.trusted_root import TrustedRoot, load_trusted_root, within


def _canonical(doc: dict[str, Any]) -> bytes:
    """RFC 8785 for a flat object of ASCII strings and integers (what a Rekor SET covers)."""
    for key, value in doc.items():
        if not (isinstance(value, int | str) and not isinstance(value, bool)):
            raise VerificationError(f"Rekor bundle: '{key}' has an unexpected type")
        if isinstance(value, str) and not value.isascii():
            raise VerificationError(f"Rekor bundle: '{key}' is not ASCII")
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _same_cert(b64_pem: Any, cert_pem: str) -> bool:
    from cryptography import x509

    try:
        theirs = x509.load_pem_x509_certificate(base64.b64decode(str(b64_pem)))
        ours = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return False
    return theirs == ours


def rekor_signing_time(
    annotation: str | bytes | dict[str, Any],
    trusted_root: TrustedRoot | str | Path | None = None,
    *,
    payload: bytes | None = None,
    signature: bytes | None = None,
    cert_pem: str | None = None,
) -> datetime:
    """The ``integratedTime`` of cosign's ``dev.sigstore.cosign/bundle`` annotation, after checking it.

    The SET must verify with a Rekor key of the trusted root (chosen by ``logID``, valid at that
    time), and the logged entry must be about this signature: for ``hashedrekord`` the payload hash,
    signature and certificate; for ``dsse`` the payload hash, and a signature/verifier pair. Pass
    ``payload`` (the ``.sig`` blob, or the DSSE payload), ``signature`` and ``cert_pem`` to bind it.
    Raises :class:`NoMatchingSignatureError`.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    root = load_trusted_root(trusted_root)
    try:
        doc = annotation if isinstance(annotation, dict) else load_json(annotation)
        set_ = base64.b64decode(doc["SignedEntryTimestamp"])
        entry = doc["Payload"]
        signed = _canonical(
            {
                "body": entry["body"],
                "integratedTime": entry["integratedTime"],
                "logID": entry["logID"],
                "logIndex": entry["logIndex"],
            }
        )
        log_id = bytes.fromhex(entry["logID"])
        when = datetime.fromtimestamp(int(entry["integratedTime"]), UTC)
        body = load_json(base64.b64decode(entry["body"]))
    except (ValueError, KeyError, TypeError, VerificationError) as exc:
        raise NoMatchingSignatureError(f"Rekor bundle annotation is malformed ({exc})") from None
    logs = [t for t in root.tlogs if t.key_id == log_id and within(t.start, t.end, when)]
    if not logs:
        raise NoMatchingSignatureError(
            f"Rekor bundle: log {entry['logID'][:16]}… is not in {root.source} "
            f"(or its key was not valid at {when:%Y-%m-%dT%H:%M:%SZ})"
        )
    try:
        logs[0].public_key.verify(set_, signed, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, TypeError, AttributeError):
        raise NoMatchingSignatureError("Rekor bundle: the signed entry timestamp does not verify") from None
    _check_body(body, payload, signature, cert_pem)
    return when


def _check_body(body: Any, payload: bytes | None, signature: bytes | None, cert_pem: str | None) -> None:
    kind = body.get("kind") if isinstance(body, dict) else None
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise NoMatchingSignatureError("Rekor bundle: the logged entry has no spec")
    digest = hashlib.sha256(payload).hexdigest() if payload is not None else None
    try:
        if kind == "hashedrekord":
            if digest is not None and spec["data"]["hash"]["value"] != digest:
                raise NoMatchingSignatureError("Rekor bundle: the logged hash is not the payload's")
            if signature is not None and base64.b64decode(spec["signature"]["content"]) != signature:
                raise NoMatchingSignatureError("Rekor bundle: the logged signature is not this one")
            if cert_pem and not _same_cert(spec["signature"]["publicKey"]["content"], cert_pem):
                raise NoMatchingSignatureError("Rekor bundle: the logged certificate is not this one")
        elif kind == "dsse":
            if digest is not None and spec["payloadHash"]["value"] != digest:
                raise NoMatchingSignatureError("Rekor bundle: the logged payload hash is not the envelope's")
            pairs = [(base64.b64decode(s["signature"]), s["verifier"]) for s in spec.get("signatures") or []]
            if not any(
                (signature is None or sig == signature) and (not cert_pem or _same_cert(ver, cert_pem))
                for sig, ver in pairs
            ):
                raise NoMatchingSignatureError(
                    "Rekor bundle: no logged signature/certificate pair is this one"
                )
        else:
            raise NoMatchingSignatureError(f"Rekor bundle: entry kind {kind!r} is not supported here")
    except (KeyError, TypeError, ValueError) as exc:
        raise NoMatchingSignatureError(
            f"Rekor bundle: the logged {kind} entry is malformed ({exc})"
        ) from None
