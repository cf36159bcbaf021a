"""Keyless identity checks, as ``cosign verify --certificate-identity … --certificate-oidc-issuer …`` does.

Example::

    root = load_trusted_root("production")            # or "staging", or a trusted_root.json path
    who = check_identity(cert_pem, chain_pem, identity="https://github.com/o/r/.github/workflows/w.yml@refs/heads/main",
                         issuer="https://token.actions.githubusercontent.com", trusted_root=root,
                         signing_time=rekor_signing_time(bundle_annotation, root, payload=blob, signature=sig,
                                                         cert_pem=cert_pem))
    verify_signature(who.pem, sig, blob)              # the certificate's key signed the payload

    payload_type, payload = verify_keyless_bundle(bundle_json, "sha256:…", identity=…, issuer=…)

Two paths:

- **Legacy ``.sig``/``.att`` layers** (and Chains' ``cert-K``/``chain-K`` annotations) carry the leaf in
  ``dev.sigstore.cosign/certificate`` and intermediates in ``dev.sigstore.cosign/chain``.
  :func:`check_identity` builds a path from the leaf to a Fulcio root of the trusted root (the chain
  annotation only supplies untrusted intermediates), valid at the signing time, requires the
  code-signing EKU, then matches the SAN identity and the Fulcio OIDC issuer extension (OID
  1.3.6.1.4.1.57264.1.8, falling back to the deprecated .1.1). The signing time comes from a Rekor
  SET (:func:`rekor_signing_time`) when the layer has ``dev.sigstore.cosign/bundle``; without one it is
  *now*, as ``cosign verify --insecure-ignore-tlog`` does, so a 10-minute Fulcio certificate fails as
  expired. The SCT embedded in the certificate is **not** checked on this path (cosign checks it
  unless ``--insecure-ignore-sct``).
- **Sigstore bundles with a certificate**: :func:`verify_keyless_bundle` hands the bundle to
  sigstore-python's ``Verifier`` (offline trusted root; SCT, tlog inclusion and signing time included),
  imported lazily (it costs about 0.5 s), with a policy object applying :class:`IdentityPolicy`.

Matching follows cosign: exact values compare equal; ``--certificate-identity-regexp`` and
``--certificate-oidc-issuer-regexp`` use an **unanchored search** (Go's ``regexp.MatchString``), so
anchor your patterns (``^…$``). Errors: :class:`NoCertificateError` (13) when a certificate is required
and the signature has none, :class:`NoMatchingSignatureError` (12) on any mismatch or invalid chain,
:class:`InputError` (4) for bad flags, :class:`ConfigError` (3) for an unusable trusted root.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from chainmail.errors import (
    ConfigError,
    InputError,
    NoCertificateError,
    NoMatchingSignatureError,
    VerificationError,
)

if TYPE_CHECKING:
    from cryptography import x509

#: Fulcio's OIDC issuer extensions: v2 (DER UTF8String) and the deprecated v1 (raw bytes).
ISSUER_OID_V2 = "1.3.6.1.4.1.57264.1.8"
ISSUER_OID_V1 = "1.3.6.1.4.1.57264.1.1"
#: Fulcio's OtherName SAN type (a username identity).
OTHERNAME_OID = "1.3.6.1.4.1.57264.1.7"
TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
#: The TUF repositories whose trusted_root.json sigstore-python embeds (``sigstore/_store/<url-quoted>``).
_EMBEDDED = {
    "production": "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    "staging": "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}


# -- the policy ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityPolicy:
    """cosign's ``--certificate-identity[-regexp]`` and ``--certificate-oidc-issuer[-regexp]``."""

    identity: str | None = None
    issuer: str | None = None
    identity_regexp: str | None = None
    issuer_regexp: str | None = None
    _patterns: tuple[re.Pattern[str] | None, re.Pattern[str] | None] = field(
        default=(None, None), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.identity and self.identity_regexp:
            raise InputError(
                "--certificate-identity and --certificate-identity-regexp are mutually exclusive"
            )
        if self.issuer and self.issuer_regexp:
            raise InputError(
                "--certificate-oidc-issuer and --certificate-oidc-issuer-regexp are mutually exclusive"
            )
        if not (self.identity or self.identity_regexp):
            raise InputError(
                "keyless verification needs --certificate-identity or --certificate-identity-regexp"
            )
        if not (self.issuer or self.issuer_regexp):
            raise InputError(
                "keyless verification needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp"
            )
        object.__setattr__(
            self,
            "_patterns",
            (
                _compile(self.identity_regexp, "--certificate-identity-regexp"),
                _compile(self.issuer_regexp, "--certificate-oidc-issuer-regexp"),
            ),
        )

    @classmethod
    def from_flags(
        cls,
        identity: str | None = None,
        issuer: str | None = None,
        identity_regexp: str | None = None,
        issuer_regexp: str | None = None,
    ) -> IdentityPolicy | None:
        """The policy the four flags ask for, or None when none of them is given (key-based verification)."""
        if not any((identity, issuer, identity_regexp, issuer_regexp)):
            return None
        return cls(identity or None, issuer or None, identity_regexp or None, issuer_regexp or None)

    def describe(self) -> str:
        who = (
            f"identity {self.identity!r}" if self.identity else f"identity matching /{self.identity_regexp}/"
        )
        by = f"issuer {self.issuer!r}" if self.issuer else f"issuer matching /{self.issuer_regexp}/"
        return f"{who} from {by}"

    def check(self, cert: x509.Certificate) -> tuple[str, str]:
        """``(identity, issuer)`` of ``cert`` when they match; raises :class:`NoMatchingSignatureError`."""
        issuer = certificate_issuer(cert)
        if issuer is None:
            raise NoMatchingSignatureError(
                f"certificate has no Fulcio OIDC issuer extension ({ISSUER_OID_V2} or {ISSUER_OID_V1})"
            )
        id_re, issuer_re = self._patterns
        if not _matches(issuer, self.issuer, issuer_re):
            want = repr(self.issuer) if self.issuer else f"/{self.issuer_regexp}/"
            raise NoMatchingSignatureError(f"certificate issuer {issuer!r} does not match {want}")
        names = certificate_identities(cert)
        for name in names:
            if _matches(name, self.identity, id_re):
                return name, issuer
        want = repr(self.identity) if self.identity else f"/{self.identity_regexp}/"
        raise NoMatchingSignatureError(f"certificate identities {names} do not match {want}")


def _matches(value: str, exact: str | None, pattern: re.Pattern[str] | None) -> bool:
    """cosign's rule: an exact value compares equal; a regexp is an unanchored search (Go MatchString)."""
    if exact:
        return value == exact
    return pattern is not None and pattern.search(value) is not None


def _compile(pattern: str | None, flag: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InputError(f"{flag} '{pattern}' is not a valid regular expression ({exc})") from None


def _der_utf8(value: bytes) -> str | None:
    """The text of a DER UTF8String (tag 0x0C), or None."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if len(value) != offset + length:
        return None
    try:
        return value[offset:].decode()
    except UnicodeDecodeError:
        return None


def _extension_bytes(cert: x509.Certificate, oid: str) -> bytes | None:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The Fulcio OIDC issuer: extension .1.8 (DER UTF8String), else the deprecated .1.1 (raw text)."""
    v2 = _extension_bytes(cert, ISSUER_OID_V2)
    if v2 is not None:
        text = _der_utf8(v2)
        if text is not None:
            return text
    v1 = _extension_bytes(cert, ISSUER_OID_V1)
    if v1 is not None:
        try:
            return v1.decode()
        except UnicodeDecodeError:
            return None
    return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """Every SAN value cosign matches: emails, URIs, DNS names, IP addresses and Fulcio OtherNames."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = [
        *san.get_values_for_type(x509.RFC822Name),
        *san.get_values_for_type(x509.UniformResourceIdentifier),
        *san.get_values_for_type(x509.DNSName),
    ]
    out += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == OTHERNAME_OID:
            text = _der_utf8(other.value)
            if text is not None:
                out.append(text)
    return out


# -- the trusted root -------------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _within(start: datetime | None, end: datetime | None, at: datetime) -> bool:
    return (start is None or start <= at) and (end is None or at <= end)


@dataclass(frozen=True)
class CertificateAuthority:
    """One Fulcio CA of a trusted root: its chain (intermediates…root) and validity window."""

    certs: tuple[Any, ...]
    start: datetime | None
    end: datetime | None
    uri: str = ""

    def valid_at(self, at: datetime) -> bool:
        return _within(self.start, self.end, at)


@dataclass(frozen=True)
class TransparencyLog:
    """One Rekor instance of a trusted root: ``keyId`` (sha256 of the SPKI), key and validity window."""

    key_id: bytes
    public_key: Any
    start: datetime | None
    end: datetime | None
    base_url: str = ""


@dataclass(frozen=True)
class TrustedRoot:
    """The parts of a Sigstore ``trusted_root.json`` (v0.1) the legacy keyless path needs."""

    source: str
    authorities: tuple[CertificateAuthority, ...]
    tlogs: tuple[TransparencyLog, ...]
    raw: bytes = field(repr=False, default=b"")

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "trusted root") -> TrustedRoot:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        raw = data.encode() if isinstance(data, str) else data
        try:
            doc = json.loads(raw)
            if doc.get("mediaType") != TRUSTED_ROOT_TYPE:
                raise ConfigError(
                    f"{source}: mediaType is {doc.get('mediaType')!r}, not {TRUSTED_ROOT_TYPE!r}"
                )
            authorities = []
            for ca in doc.get("certificateAuthorities") or []:
                certs = tuple(
                    x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                    for c in (ca.get("certChain") or {}).get("certificates") or []
                )
                valid = ca.get("validFor") or {}
                if certs:
                    authorities.append(
                        CertificateAuthority(
                            certs,
                            _time(valid.get("start")),
                            _time(valid.get("end")),
                            str(ca.get("uri") or ""),
                        )
                    )
            tlogs = []
            for log in doc.get("tlogs") or []:
                key = log.get("publicKey") or {}
                if not key.get("rawBytes"):
                    continue
                valid = key.get("validFor") or {}
                tlogs.append(
                    TransparencyLog(
                        base64.b64decode(log["logId"]["keyId"]),
                        load_der_public_key(base64.b64decode(key["rawBytes"])),
                        _time(valid.get("start")),
                        _time(valid.get("end")),
                        str(log.get("baseUrl") or ""),
                    )
                )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"{source}: not a usable Sigstore trusted root ({type(exc).__name__}: {exc})"
            ) from None
        if not authorities:
            raise ConfigError(f"{source}: the trusted root has no certificate authorities (Fulcio)")
        return cls(source, tuple(authorities), tuple(tlogs), raw)

    def fulcio_pool(self, at: datetime) -> tuple[list[Any], list[Any]]:
        """``(roots, intermediates)`` of the Fulcio CAs valid at ``at``."""
        roots: list[Any] = []
        intermediates: list[Any] = []
        for ca in self.authorities:
            if not ca.valid_at(at):
                continue
            for cert in ca.certs:
                (roots if cert.subject == cert.issuer else intermediates).append(cert)
        return roots, intermediates


def embedded_trusted_root_path(instance: str = "production") -> Path | None:
    """sigstore-python's embedded ``trusted_root.json`` for ``production``/``staging`` (None: absent)."""
    spec = importlib.util.find_spec("sigstore")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "_store" / _EMBEDDED[instance] / "trusted_root.json"
    return path if path.is_file() else None


@lru_cache(maxsize=8)
def _load_cached(source: str) -> TrustedRoot:
    if source in _EMBEDDED:
        path = embedded_trusted_root_path(source)
        if path is None:
            raise ConfigError(
                f"no {source} trusted root available offline",
                hint="pass --trusted-root FILE (a Sigstore trusted_root.json), or install "
                "chainmail[sigstore], which embeds the production and staging roots",
            )
    else:
        path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"trusted root {path}: cannot read it ({exc.strerror or exc})") from None
    return TrustedRoot.from_json(data, str(path) if source not in _EMBEDDED else f"{source} trusted root")


def load_trusted_root(source: TrustedRoot | str | Path | None = None) -> TrustedRoot:
    """``None``/``"production"``, ``"staging"``, a ``trusted_root.json`` path, or an already loaded root."""
    if isinstance(source, TrustedRoot):
        return source
    return _load_cached(str(source) if source is not None else "production")


# -- certificate checks (legacy layers and annotations) ---------------------------------------------------


@dataclass(frozen=True)
class KeylessIdentity:
    """A certificate that chained to the trusted root and matched the policy."""

    #: The leaf certificate PEM; usable as a "public key" by ``chainmail.signing.verify_signature``.
    pem: str
    identity: str
    issuer: str
    not_before: datetime
    not_after: datetime
    #: The time the chain was checked at (signing time from the tlog, else now).
    checked_at: datetime


def _pem_certs(text: str, what: str) -> list[Any]:
    from cryptography import x509

    if not text or not text.strip():
        return []
    try:
        return list(x509.load_pem_x509_certificates(text.encode()))
    except ValueError:
        raise NoMatchingSignatureError(f"{what} is not a PEM certificate") from None


def _chain_verifier(roots: list[Any], at: datetime) -> Any:
    from cryptography.x509.verification import PolicyBuilder, Store

    builder = PolicyBuilder().store(Store(roots)).time(at)
    try:  # cryptography >= 45: Fulcio leaves carry code-signing, not client-auth; allow any EKU here
        from cryptography.x509 import ExtendedKeyUsage
        from cryptography.x509.verification import Criticality, ExtensionPolicy

        builder = builder.extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca().may_be_present(
                ExtendedKeyUsage, Criticality.NON_CRITICAL, None
            ),
            ee_policy=ExtensionPolicy.webpki_defaults_ee().may_be_present(
                ExtendedKeyUsage, Criticality.NON_CRITICAL, None
            ),
        )
    except ImportError:  # pragma: no cover - older cryptography
        pass
    return builder.build_client_verifier()


def check_identity(
    cert_pem: str,
    chain_pem: str = "",
    *,
    identity: str | None = None,
    issuer: str | None = None,
    identity_regexp: str | None = None,
    issuer_regexp: str | None = None,
    trusted_root: TrustedRoot | str | Path | None = None,
    signing_time: datetime | None = None,
) -> KeylessIdentity:
    """Check a signing certificate as ``cosign verify --certificate-identity … --certificate-oidc-issuer …``.

    The leaf must chain to a Fulcio root of ``trusted_root`` (``chain_pem`` only adds untrusted
    intermediates), be valid at ``signing_time`` (default: now), carry the code-signing EKU, and match
    the identity and issuer. Raises :class:`NoCertificateError` when ``cert_pem`` is empty,
    :class:`NoMatchingSignatureError` otherwise. The caller still verifies the signature with
    :attr:`KeylessIdentity.pem`.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    policy = IdentityPolicy(identity, issuer, identity_regexp, issuer_regexp)
    leaves = _pem_certs(cert_pem, "the signing certificate")
    if not leaves:
        raise NoCertificateError(
            f"the signature has no certificate, but {policy.describe()} was asked for",
            hint="this signature was made with a key: verify it with --key instead of --certificate-identity",
        )
    leaf = leaves[0]
    root = load_trusted_root(trusted_root)
    at = (signing_time or datetime.now(UTC)).astimezone(UTC)
    roots, intermediates = root.fulcio_pool(at)
    if not roots:
        raise NoMatchingSignatureError(f"no Fulcio root in {root.source} is valid at {at:%Y-%m-%dT%H:%M:%SZ}")
    untrusted = intermediates + leaves[1:] + _pem_certs(chain_pem, "the certificate chain")
    try:
        _chain_verifier(roots, at).verify(leaf, untrusted)
    except Exception as exc:
        raise NoMatchingSignatureError(
            f"signing certificate does not chain to a trusted Fulcio root at {at:%Y-%m-%dT%H:%M:%SZ} "
            f"({root.source}): {exc}"
        ) from None
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        raise NoMatchingSignatureError("signing certificate lacks the code-signing extended key usage")
    name, who = policy.check(leaf)
    return KeylessIdentity(
        leaf.public_bytes(Encoding.PEM).decode(),
        name,
        who,
        leaf.not_valid_before_utc,
        leaf.not_valid_after_utc,
        at,
    )


class IdentityChecks(TypedDict, total=False):
    """The keywords of :func:`check_identity`, which :func:`verify_keyless_signature` and
    :func:`verify_keyless_envelope` pass on to it: the policy, the trusted root and the signing time."""

    identity: str | None
    issuer: str | None
    identity_regexp: str | None
    issuer_regexp: str | None
    trusted_root: TrustedRoot | str | Path | None
    signing_time: datetime | None


def verify_keyless_signature(
    payload: bytes,
    signature: bytes,
    cert_pem: str,
    chain_pem: str = "",
    **checks: Unpack[IdentityChecks],
) -> KeylessIdentity:
    """A legacy ``.sig`` layer: :func:`check_identity`, then the signature over ``payload`` (cert's key).

    ``checks``: the keywords of :func:`check_identity` (:class:`IdentityChecks`)."""
    from chainmail.signing import verify_signature

    who = check_identity(cert_pem, chain_pem, **checks)
    try:
        verify_signature(who.pem, signature, payload)
    except VerificationError:
        raise NoMatchingSignatureError(
            "signature does not verify with the signing certificate's key"
        ) from None
    return who


def verify_keyless_envelope(
    envelope: bytes | str,
    cert_pem: str,
    chain_pem: str = "",
    **checks: Unpack[IdentityChecks],
) -> tuple[str, bytes, KeylessIdentity]:
    """A legacy ``.att`` layer: :func:`check_identity`, then the DSSE envelope with the cert's key.

    ``checks``: the keywords of :func:`check_identity` (:class:`IdentityChecks`)."""
    from chainmail.signing.dsse import verify_envelope

    who = check_identity(cert_pem, chain_pem, **checks)
    payload_type, payload = verify_envelope(envelope, [who.pem])
    return payload_type, payload, who


# -- Rekor SET: the signing time of a legacy layer ---------------------------------------------------------


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
        doc = annotation if isinstance(annotation, dict) else json.loads(annotation)
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
        body = json.loads(base64.b64decode(entry["body"]))
    except (ValueError, KeyError, TypeError, VerificationError) as exc:
        raise NoMatchingSignatureError(f"Rekor bundle annotation is malformed ({exc})") from None
    logs = [t for t in root.tlogs if t.key_id == log_id and _within(t.start, t.end, when)]
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


# -- Sigstore bundles with a certificate (sigstore-python) -------------------------------------------------


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
        doc = bundle_json if isinstance(bundle_json, dict) else json.loads(bundle_json)
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
        bundle = Bundle.from_json(json.dumps(doc))
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
        from chainmail.models import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE
        from chainmail.verify import check_simplesigning, check_statement

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
