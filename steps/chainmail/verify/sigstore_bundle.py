"""Keyless Sigstore bundles, verified by sigstore-python (offline trusted root; SCT, tlog and time included).

Example::

    payload_type, payload = verify_keyless_bundle(bundle_json, "sha256:…", identity=…, issuer=…)

sigstore-python is imported lazily (it costs about 0.5 s); without it a keyless bundle is a
:class:`ConfigError` (3).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import ConfigError, InputError, NoCertificateError, NoMatchingSignatureError, VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE
from chainmail.verify.certificates import IdentityPolicy
from chainmail.verify.claims import check_simplesigning, check_statement
from chainmail.verify.trusted_root import TrustedRoot


class _SigstorePolicy:
    """A sigstore-python ``VerificationPolicy`` applying :class:`IdentityPolicy` (regexps, .1.1 fallback)."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self.policy = policy

    def verify(self, cert: Any) -> None:
        from sigstore.errors import VerificationError as SigstoreVerificationError

        try:
            self.policy.check(cert)
        except NoMatchingSignatureError as exc:
            raise SigstoreVerificationError(str(exc)) from None


def _sigstore_verifier(trusted_root: TrustedRoot | str | Path | None) -> Any:
    try:
        from sigstore.models import TrustedRoot as SigstoreTrustedRoot
        from sigstore.verify import Verifier
    except ImportError:
        raise ConfigError(
            "verifying keyless Sigstore bundles needs sigstore-python",
            hint="pip install 'chainmail[sigstore]'",
        ) from None
    try:
        if trusted_root is None or trusted_root == "production":
            return Verifier.production(offline=True)
        if trusted_root == "staging":
            return Verifier.staging(offline=True)
        if isinstance(trusted_root, TrustedRoot):
            if Path(trusted_root.source).is_file():
                return Verifier(trusted_root=SigstoreTrustedRoot.from_file(trusted_root.source))
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                tmp.write(trusted_root.raw)
                tmp.flush()
                return Verifier(trusted_root=SigstoreTrustedRoot.from_file(tmp.name))
        return Verifier(trusted_root=SigstoreTrustedRoot.from_file(str(trusted_root)))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot load the trusted root {trusted_root or 'production'} for sigstore-python "
            f"({type(exc).__name__}: {exc})"
        ) from None


def bundle_certificate_pem(bundle: dict[str, Any]) -> str:
    """The signing certificate of a v0.1–v0.3 bundle as PEM, or "" for a key-based bundle."""
    material = bundle.get("verificationMaterial") if isinstance(bundle, dict) else None
    if not isinstance(material, dict):
        return ""
    raw = (
        (material.get("certificate") or {}).get("rawBytes")
        if isinstance(material.get("certificate"), dict)
        else None
    )
    if not raw:
        chain = material.get("x509CertificateChain")
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        raw = (
            certs[0].get("rawBytes")
            if isinstance(certs, list) and certs and isinstance(certs[0], dict)
            else None
        )
    if not isinstance(raw, str) or not raw:
        return ""
    body = base64.b64encode(base64.b64decode(raw)).decode()
    return (
        "-----BEGIN CERTIFICATE-----\n"
        + "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        + "\n-----END CERTIFICATE-----\n"
    )


def with_proto_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the tlog fields that protobuf's JSON mapping leaves out when they hold their default.

    The bundle is protobuf JSON: an entry or inclusion proof at ``logIndex`` 0 and a proof with no
    ``hashes`` (a one-leaf tree) are written without those members — sigstore-js does so — while
    sigstore-python requires them. Absent means the default, so they are filled in ("0", []); nothing
    present is changed and the proof is still checked in full.
    """
    material = doc.get("verificationMaterial")
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    if not isinstance(entries, list):
        return doc
    out = copy.deepcopy(doc)
    for entry in out["verificationMaterial"]["tlogEntries"]:
        if not isinstance(entry, dict):
            continue
        entry.setdefault("logIndex", "0")
        proof = entry.get("inclusionProof")
        if isinstance(proof, dict):
            proof.setdefault("logIndex", "0")
            proof.setdefault("hashes", [])
    return out


def verify_keyless_bundle(
    bundle_json: bytes | str | dict[str, Any],
    artifact_digest: str | None = None,
    *,
    identity: str | None = None,
    issuer: str | None = None,
    identity_regexp: str | None = None,
    issuer_regexp: str | None = None,
    trusted_root: TrustedRoot | str | Path | None = None,
) -> tuple[str, bytes]:
    """Verify a keyless Sigstore bundle with sigstore-python; returns ``(payload_type, payload)``.

    DSSE bundles: ``Verifier.verify_dsse`` (chain, SCT, tlog, time, identity), then, when
    ``artifact_digest`` (``sha256:<hex>``) is given, cosign's claim check (an in-toto subject, or the
    simple-signing ``docker-manifest-digest``, must name it). Message-signature bundles need
    ``artifact_digest`` and return ``("", b"")``. ``trusted_root``: None/"production", "staging", a
    path or a :class:`TrustedRoot` (all offline). Raises :class:`NoCertificateError` for a key-based
    bundle, :class:`NoMatchingSignatureError` when anything does not verify.
    """
    policy = IdentityPolicy(identity, issuer, identity_regexp, issuer_regexp)
    try:
        doc = bundle_json if isinstance(bundle_json, dict) else load_json(bundle_json)
    except (ValueError, UnicodeDecodeError):
        raise NoMatchingSignatureError("Sigstore bundle is not JSON") from None
    if not isinstance(doc, dict):
        raise NoMatchingSignatureError("Sigstore bundle is not a JSON object")
    if not bundle_certificate_pem(doc):
        raise NoCertificateError(
            f"the Sigstore bundle has no certificate (it was signed with a key), but {policy.describe()} was "
            "asked for",
            hint="verify it with --key instead of --certificate-identity",
        )
    if artifact_digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", artifact_digest):
        raise InputError(f"artifact digest '{artifact_digest}': expected sha256:<64 hex>")
    verifier = _sigstore_verifier(trusted_root)
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle

    # Not sigstore's Identity policy: its OIDCIssuer reads only the deprecated .1.1 extension, so a
    # certificate with just .1.8 would fail there and pass the legacy path. One matcher for both paths.
    sigstore_policy = _SigstorePolicy(policy)
    try:
        bundle = Bundle.from_json(json.dumps(with_proto_defaults(doc)))
        if "dsseEnvelope" in doc:
            payload_type, payload = verifier.verify_dsse(bundle, sigstore_policy)
        else:
            if artifact_digest is None:
                raise InputError("a message-signature bundle can only be verified against an artifact digest")
            from sigstore.hashes import Hashed
            from sigstore_models.common.v1 import HashAlgorithm

            verifier.verify_artifact(
                Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(artifact_digest.split(":")[1])),
                bundle,
                sigstore_policy,
            )
            return "", b""
    except InputError:
        raise
    except (SigstoreError, ValueError) as exc:
        raise NoMatchingSignatureError(f"keyless Sigstore bundle did not verify: {exc}") from None
    if artifact_digest is not None:
        try:
            if payload_type == SIMPLESIGNING_PAYLOAD_TYPE:
                check_simplesigning(payload, artifact_digest)
            elif payload_type == INTOTO_PAYLOAD_TYPE:
                check_statement(payload_type, payload, artifact_digest, None)
            else:
                raise VerificationError(f"unexpected payloadType {payload_type}")
        except VerificationError as exc:
            raise NoMatchingSignatureError(str(exc)) from None
    return payload_type, payload
