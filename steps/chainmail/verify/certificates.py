"""Keyless identity checks, as ``cosign verify --certificate-identity … --certificate-oidc-issuer …`` does.

Example::

    who = check_identity(cert_pem, chain_pem, identity="https://github.com/o/r/.github/workflows/w.yml@refs/heads/main",
                         issuer="https://token.actions.githubusercontent.com", trusted_root=load_trusted_root(),
                         signing_time=rekor_signing_time(bundle_annotation, root, payload=blob, signature=sig,
                                                         cert_pem=cert_pem))
    verify_signature(who.pem, sig, blob)              # the certificate's key signed the payload

Legacy ``.sig``/``.att`` layers (and Chains' ``cert-K``/``chain-K`` annotations) carry the leaf in
``dev.sigstore.cosign/certificate`` and intermediates in ``dev.sigstore.cosign/chain``.
:func:`check_identity` builds a path from the leaf to a Fulcio root of the trusted root (the chain
annotation only supplies untrusted intermediates), valid at the signing time, requires the
code-signing EKU, then matches the SAN identity and the Fulcio OIDC issuer extension (OID
1.3.6.1.4.1.57264.1.8, falling back to the deprecated .1.1). The signing time comes from a Rekor
SET (:mod:`chainmail.verify.rekor`) when the layer has ``dev.sigstore.cosign/bundle``; without one it is
*now*, as ``cosign verify --insecure-ignore-tlog`` does, so a 10-minute Fulcio certificate fails as
expired. The SCT embedded in the certificate is **not** checked on this path (cosign checks it
unless ``--insecure-ignore-sct``). Sigstore bundles go through :mod:`chainmail.verify.sigstore_bundle`.

Matching follows cosign: exact values compare equal; ``--certificate-identity-regexp`` and
``--certificate-oidc-issuer-regexp`` use an **unanchored search** (Go's ``regexp.MatchString``), so
anchor your patterns (``^…$``). Errors: :class:`NoCertificateError` (13) when a certificate is required
and the signature has none, :class:`NoMatchingSignatureError` (12) on any mismatch or invalid chain,
:class:`InputError` (4) for bad flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from chainmail.errors import InputError, NoCertificateError, NoMatchingSignatureError, VerificationError
from chainmail.verify.trusted_root import TrustedRoot, load_trusted_root

if TYPE_CHECKING:
    from cryptography import x509

#: Fulcio's OIDC issuer extensions: v2 (DER UTF8String) and the deprecated v1 (raw bytes).
ISSUER_OID_V2 = "1.3.6.1.4.1.57264.1.8"
ISSUER_OID_V1 = "1.3.6.1.4.1.57264.1.1"
#: Fulcio's OtherName SAN type (a username identity).
OTHERNAME_OID = "1.3.6.1.4.1.57264.1.7"


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
