"""The Rekor SET of a keyless legacy layer (``dev.sigstore.cosign/bundle``): checked, it gives the signing time.

A SET is believed only when the entry verifies with a Rekor key of the trusted root (chosen by
``logID``, valid at that time; :func:`chainmail.verify.tlog.verify_logged`) and the logged entry is
about *this* signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chainmail.errors import TlogEntryInvalidError, TlogMismatchError, TlogUnknownLogError
from chainmail.verify.trusted_root import TrustedRoot, load_trusted_root


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

    The entry must verify with a Rekor key of the trusted root (its SET; exit 28 for an unknown log,
    26 for a bad SET or a malformed annotation), and be about this signature: for ``hashedrekord`` the
    payload hash, signature and certificate; for ``dsse`` the payload hash, and a signature/verifier
    pair. Pass ``payload`` (the ``.sig`` blob, or the DSSE payload), ``signature`` and ``cert_pem`` to
    bind it (exit 25 when it does not). Every error is a :class:`NoMatchingSignatureError`.
    """
    from chainmail.transparency.trust import LogKey
    from chainmail.verify.tlog import entry_from_cosign_bundle, verify_logged

    root = load_trusted_root(trusted_root)
    entry = entry_from_cosign_bundle(json.dumps(annotation) if isinstance(annotation, dict) else annotation)
    keys = [LogKey(t.key_id, t.public_key, t.start, t.end, t.base_url) for t in root.tlogs]
    when = datetime.fromtimestamp(entry.integrated_time, UTC)
    try:
        verify_logged(entry, keys)
    except TlogUnknownLogError:
        raise TlogUnknownLogError(f"Rekor bundle: log {entry.log_id[:16]}… is not in {root.source} "
                                  f"(or its key was not valid at {when:%Y-%m-%dT%H:%M:%SZ})") from None
    _check_body(entry.body_json, payload, signature, cert_pem)
    return when


def _check_body(body: dict[str, Any], payload: bytes | None, signature: bytes | None, cert_pem: str | None) -> None:
    kind, spec = body.get("kind"), body["spec"]
    digest = hashlib.sha256(payload).hexdigest() if payload is not None else None
    try:
        if kind == "hashedrekord":
            if digest is not None and spec["data"]["hash"]["value"] != digest:
                raise TlogMismatchError("Rekor bundle: the logged hash is not the payload's")
            if signature is not None and base64.b64decode(spec["signature"]["content"]) != signature:
                raise TlogMismatchError("Rekor bundle: the logged signature is not this one")
            if cert_pem and not _same_cert(spec["signature"]["publicKey"]["content"], cert_pem):
                raise TlogMismatchError("Rekor bundle: the logged certificate is not this one")
        elif kind == "dsse":
            if digest is not None and spec["payloadHash"]["value"] != digest:
                raise TlogMismatchError("Rekor bundle: the logged payload hash is not the envelope's")
            pairs = [(base64.b64decode(s["signature"]), s["verifier"]) for s in spec.get("signatures") or []]
            if not any((signature is None or sig == signature) and (not cert_pem or _same_cert(ver, cert_pem))
                       for sig, ver in pairs):
                raise TlogMismatchError("Rekor bundle: no logged signature/certificate pair is this one")
        else:
            raise TlogMismatchError(f"Rekor bundle: entry kind {kind!r} is not supported here")
    except (KeyError, TypeError, ValueError) as exc:
        raise TlogEntryInvalidError(f"Rekor bundle: the logged {kind} entry is malformed ({exc})") from None
