"""Keyless identity checks (chainmail.verify.certificates, trusted_root, rekor, sigstore_bundle) against a local test CA standing in for Fulcio.

The CA (a root and an intermediate, made here with cryptography) issues short-lived leaves in
Fulcio's profile: SAN URI/email/OtherName, code-signing EKU, and the OIDC issuer extensions
1.3.6.1.4.1.57264.1.8 (DER UTF8String) and .1.1 (raw). A trusted_root.json is built from it, with
a fake Rekor key so legacy layers can prove their signing time with a SET.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chainmail.errors import ConfigError, InputError, NoCertificateError, NoMatchingSignatureError
from chainmail.verify.certificates import (
    IdentityPolicy,
    certificate_identities,
    certificate_issuer,
    check_identity,
    verify_keyless_envelope,
    verify_keyless_signature,
)
from chainmail.verify.rekor import rekor_signing_time
from chainmail.verify.sigstore_bundle import verify_keyless_bundle
from chainmail.verify.trusted_root import TrustedRoot, load_trusted_root

WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
GITHUB = "https://token.actions.githubusercontent.com"
SIGNED_AT = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PAYLOAD = b'{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:' + \
    b"a" * 64 + b'"},"type":"cosign container image signature"},"optional":null}'


def der_utf8(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128
    return bytes([0x0C, len(data)]) + data


def der_octets(data: bytes) -> bytes:
    n = len(data)
    length = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return b"\x04" + length + data


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class CA:
    root: x509.Certificate
    root_key: Any
    intermediate: x509.Certificate
    intermediate_key: Any

    def leaf(self, *, uri: str | None = WORKFLOW, email: str | None = None, othername: str | None = None,
             issuer_v2: str | None = GITHUB, issuer_v1: str | None = None, start: datetime = SIGNED_AT - timedelta(minutes=1),
             minutes: int = 10, code_signing: bool = True, key: Any = None, serial: int | None = None,
             sct_list: bytes | None = None) -> tuple[x509.Certificate, Any]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        if uri:
            names.append(x509.UniformResourceIdentifier(uri))
        if email:
            names.append(x509.RFC822Name(email))
        if othername:
            names.append(x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7"), der_utf8(othername)))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(minutes=minutes))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                           False)
            .add_extension(x509.SubjectAlternativeName(names), True)
        )
        if code_signing:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        if issuer_v1 is not None:
            builder = builder.add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer_v1.encode()), False)
        if issuer_v2 is not None:
            builder = builder.add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), der_utf8(issuer_v2)), False)
        if sct_list is not None:  # embedded SCTs: an OCTET STRING holding the TLS-encoded list
            builder = builder.add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"), der_octets(sct_list)), False)
        return builder.sign(self.intermediate_key, hashes.SHA384()), key


def make_ca(name: str = "sigstore") -> CA:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chainmail.test"),
                           x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA384())
    )
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chainmail.test"),
                            x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-intermediate")])
    intermediate = (
        x509.CertificateBuilder().subject_name(inter_name).issuer_name(root_name)
        .public_key(inter_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=3000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA384())
    )
    return CA(root, root_key, intermediate, inter_key)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def trusted_root_doc(ca: CA, log_key: Any, *, ca_start: str = "2024-01-01T00:00:00Z", ca_end: str | None = None,
                     ct_key: Any = None) -> dict[str, Any]:
    valid: dict[str, str] = {"start": ca_start}
    if ca_end:
        valid["end"] = ca_end
    doc: dict[str, Any] = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": "https://rekor.chainmail.test", "hashAlgorithm": "SHA2_256",
                   "publicKey": {"rawBytes": b64(spki(log_key.public_key())), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                 "validFor": {"start": "2024-01-01T00:00:00Z"}},
                   "logId": {"keyId": b64(hashlib.sha256(spki(log_key.public_key())).digest())}}],
        "certificateAuthorities": [{
            "subject": {"organization": "chainmail.test", "commonName": "sigstore"},
            "uri": "https://fulcio.chainmail.test",
            "certChain": {"certificates": [{"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                                           for c in (ca.intermediate, ca.root)]},
            "validFor": valid}],
        "ctlogs": [],
        "timestampAuthorities": [],
    }
    if ct_key is not None:
        doc["ctlogs"] = [{"baseUrl": "https://ctfe.chainmail.test", "hashAlgorithm": "SHA2_256",
                          "publicKey": {"rawBytes": b64(spki(ct_key.public_key())),
                                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                        "validFor": {"start": "2024-01-01T00:00:00Z"}},
                          "logId": {"keyId": b64(hashlib.sha256(spki(ct_key.public_key())).digest())}}]
    return doc


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_ca()


@pytest.fixture(scope="module")
def log_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def root(ca: CA, log_key: Any) -> TrustedRoot:
    return TrustedRoot.from_json(json.dumps(trusted_root_doc(ca, log_key)), "test trusted root")


@pytest.fixture(scope="module")
def leaf(ca: CA) -> tuple[x509.Certificate, Any]:
    return ca.leaf()


def sign(key: Any, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


# -- accept -------------------------------------------------------------------------------------------

def test_right_identity_and_issuer_verify(root: TrustedRoot, leaf: tuple[x509.Certificate, Any], ca: CA) -> None:
    cert, key = leaf
    who = verify_keyless_signature(PAYLOAD, sign(key, PAYLOAD), pem(cert), pem(ca.intermediate),
                                   identity=WORKFLOW, issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)
    assert (who.identity, who.issuer) == (WORKFLOW, GITHUB)
    assert who.checked_at == SIGNED_AT and who.not_before < SIGNED_AT < who.not_after
    # the chain annotation is optional: the trusted root supplies the intermediate
    assert check_identity(pem(cert), "", identity=WORKFLOW, issuer=GITHUB, trusted_root=root,
                          signing_time=SIGNED_AT).identity == WORKFLOW


def test_email_and_othername_identities(root: TrustedRoot, ca: CA) -> None:
    cert, _ = ca.leaf(uri=None, email="dev@acme.example", issuer_v2="https://accounts.google.com")
    assert certificate_identities(cert) == ["dev@acme.example"]
    check_identity(pem(cert), identity="dev@acme.example", issuer="https://accounts.google.com", trusted_root=root,
                   signing_time=SIGNED_AT)
    cert, _ = ca.leaf(uri=None, othername="alice!example.com", issuer_v2="https://example.com")
    assert certificate_identities(cert) == ["alice!example.com"]
    check_identity(pem(cert), identity="alice!example.com", issuer="https://example.com", trusted_root=root,
                   signing_time=SIGNED_AT)


def test_regexps_search_like_cosign(root: TrustedRoot, leaf: tuple[x509.Certificate, Any]) -> None:
    cert = pem(leaf[0])
    kw: dict[str, Any] = {"trusted_root": root, "signing_time": SIGNED_AT}
    check_identity(cert, identity_regexp=r"^https://github\.com/acme/.*@refs/heads/main$", issuer=GITHUB, **kw)
    check_identity(cert, identity=WORKFLOW, issuer_regexp=r"^https://token\.actions\.githubusercontent\.com$", **kw)
    # Go's regexp.MatchString is an unanchored search: a fragment matches (anchor your patterns)
    check_identity(cert, identity_regexp="acme/app", issuer_regexp="githubusercontent", **kw)
    with pytest.raises(NoMatchingSignatureError, match="do not match"):
        check_identity(cert, identity_regexp=r"^https://github\.com/evil/", issuer=GITHUB, **kw)
    with pytest.raises(NoMatchingSignatureError, match="issuer"):
        check_identity(cert, identity=WORKFLOW, issuer_regexp=r"^https://accounts\.google\.com$", **kw)


def test_issuer_extension_v2_first_then_v1(root: TrustedRoot, ca: CA) -> None:
    only_v1, _ = ca.leaf(issuer_v2=None, issuer_v1=GITHUB)
    assert certificate_issuer(only_v1) == GITHUB
    check_identity(pem(only_v1), identity=WORKFLOW, issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)
    both, _ = ca.leaf(issuer_v2=GITHUB, issuer_v1="https://stale.example")
    assert certificate_issuer(both) == GITHUB
    none, _ = ca.leaf(issuer_v2=None)
    with pytest.raises(NoMatchingSignatureError, match="no Fulcio OIDC issuer"):
        check_identity(pem(none), identity=WORKFLOW, issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)


def test_dsse_envelope_with_a_certificate(root: TrustedRoot, leaf: tuple[x509.Certificate, Any]) -> None:
    from chainmail.signing.dsse import pae

    cert, key = leaf
    statement = b'{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x","predicate":{}}'
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": b64(statement),
                           "signatures": [{"keyid": "", "sig": b64(sign(key, pae("application/vnd.in-toto+json",
                                                                                  statement)))}]})
    payload_type, payload, who = verify_keyless_envelope(envelope, pem(cert), identity=WORKFLOW, issuer=GITHUB,
                                                          trusted_root=root, signing_time=SIGNED_AT)
    assert (payload_type, payload, who.identity) == ("application/vnd.in-toto+json", statement, WORKFLOW)
    with pytest.raises(NoMatchingSignatureError):
        verify_keyless_envelope(envelope.replace(b64(statement), b64(statement + b" ")), pem(cert), identity=WORKFLOW,
                                issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)


# -- reject -------------------------------------------------------------------------------------------

def test_wrong_identity_or_issuer(root: TrustedRoot, leaf: tuple[x509.Certificate, Any]) -> None:
    cert = pem(leaf[0])
    with pytest.raises(NoMatchingSignatureError, match="do not match") as info:
        check_identity(cert, identity=WORKFLOW.replace("acme", "evil"), issuer=GITHUB, trusted_root=root,
                       signing_time=SIGNED_AT)
    assert info.value.exit_code == 12
    with pytest.raises(NoMatchingSignatureError, match="issuer"):
        check_identity(cert, identity=WORKFLOW, issuer="https://accounts.google.com", trusted_root=root,
                       signing_time=SIGNED_AT)


def test_signature_by_another_key(root: TrustedRoot, leaf: tuple[x509.Certificate, Any]) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(NoMatchingSignatureError, match="certificate's key"):
        verify_keyless_signature(PAYLOAD, sign(other, PAYLOAD), pem(leaf[0]), identity=WORKFLOW, issuer=GITHUB,
                                 trusted_root=root, signing_time=SIGNED_AT)
    with pytest.raises(NoMatchingSignatureError):
        verify_keyless_signature(PAYLOAD + b" ", sign(leaf[1], PAYLOAD), pem(leaf[0]), identity=WORKFLOW,
                                 issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)


def test_expired_leaf_at_signing_time(root: TrustedRoot, leaf: tuple[x509.Certificate, Any]) -> None:
    cert = pem(leaf[0])
    for when in (SIGNED_AT + timedelta(minutes=30), SIGNED_AT - timedelta(minutes=5), None):  # None: now
        with pytest.raises(NoMatchingSignatureError, match="does not chain"):
            check_identity(cert, identity=WORKFLOW, issuer=GITHUB, trusted_root=root, signing_time=when)


def test_untrusted_root(root: TrustedRoot) -> None:
    rogue = make_ca("rogue")
    cert, _ = rogue.leaf()
    with pytest.raises(NoMatchingSignatureError, match="does not chain"):
        check_identity(pem(cert), pem(rogue.intermediate) + pem(rogue.root), identity=WORKFLOW, issuer=GITHUB,
                       trusted_root=root, signing_time=SIGNED_AT)
    # a self-signed leaf
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")])
    selfsigned = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                  .serial_number(1).not_valid_before(SIGNED_AT - timedelta(days=1))
                  .not_valid_after(SIGNED_AT + timedelta(days=1))
                  .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(WORKFLOW)]), False)
                  .sign(key, hashes.SHA256()))
    with pytest.raises(NoMatchingSignatureError):
        check_identity(pem(selfsigned), identity=WORKFLOW, issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)


def test_production_root_does_not_trust_the_test_ca(leaf: tuple[x509.Certificate, Any]) -> None:
    if load_trusted_root_or_skip() is None:
        return
    with pytest.raises(NoMatchingSignatureError, match="does not chain"):
        check_identity(pem(leaf[0]), identity=WORKFLOW, issuer=GITHUB, signing_time=SIGNED_AT)


def load_trusted_root_or_skip() -> TrustedRoot | None:
    try:
        return load_trusted_root("production")
    except ConfigError as exc:
        pytest.skip(str(exc))
    return None


def test_ca_validity_window(ca: CA, log_key: Any, leaf: tuple[x509.Certificate, Any]) -> None:
    retired = TrustedRoot.from_json(json.dumps(trusted_root_doc(ca, log_key, ca_end="2025-01-01T00:00:00Z")))
    with pytest.raises(NoMatchingSignatureError, match="no Fulcio root"):
        check_identity(pem(leaf[0]), identity=WORKFLOW, issuer=GITHUB, trusted_root=retired, signing_time=SIGNED_AT)


def test_code_signing_usage_required(root: TrustedRoot, ca: CA) -> None:
    cert, _ = ca.leaf(code_signing=False)
    with pytest.raises(NoMatchingSignatureError, match="code-signing"):
        check_identity(pem(cert), identity=WORKFLOW, issuer=GITHUB, trusted_root=root, signing_time=SIGNED_AT)


def test_missing_certificate(root: TrustedRoot) -> None:
    for cert in ("", "  \n"):
        with pytest.raises(NoCertificateError, match="no certificate") as info:
            check_identity(cert, "", identity=WORKFLOW, issuer=GITHUB, trusted_root=root)
        assert info.value.exit_code == 13 and "--key" in (info.value.hint or "")
    with pytest.raises(NoMatchingSignatureError, match="not a PEM certificate"):
        check_identity("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", identity=WORKFLOW,
                       issuer=GITHUB, trusted_root=root)


def test_flags() -> None:
    assert IdentityPolicy.from_flags() is None
    assert IdentityPolicy.from_flags(WORKFLOW, GITHUB) == IdentityPolicy(WORKFLOW, GITHUB)
    for kwargs in ({"identity": WORKFLOW}, {"issuer": GITHUB},
                   {"identity": WORKFLOW, "identity_regexp": "x", "issuer": GITHUB},
                   {"identity": WORKFLOW, "issuer": GITHUB, "issuer_regexp": "x"},
                   {"identity_regexp": "(", "issuer": GITHUB}):
        with pytest.raises(InputError):
            IdentityPolicy(**kwargs)


# -- Rekor SET: the signing time of a legacy layer -----------------------------------------------------

def rekor_annotation(log_key: Any, cert: x509.Certificate, payload: bytes, signature: bytes, *,
                     when: datetime = SIGNED_AT, kind: str = "hashedrekord") -> str:
    if kind == "hashedrekord":
        spec: dict[str, Any] = {"data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                                "signature": {"content": b64(signature),
                                              "publicKey": {"content": b64(pem(cert).encode())}}}
    else:
        spec = {"envelopeHash": {"algorithm": "sha256", "value": "00" * 32},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": b64(signature), "verifier": b64(pem(cert).encode())}]}
    body = b64(json.dumps({"apiVersion": "0.0.1", "kind": kind, "spec": spec}, sort_keys=True,
                          separators=(",", ":")).encode())
    entry = {"body": body, "integratedTime": int(when.timestamp()),
             "logID": hashlib.sha256(spki(log_key.public_key())).hexdigest(), "logIndex": 42}
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({"SignedEntryTimestamp": b64(sign(log_key, canonical)), "Payload": entry})


def test_rekor_set_gives_the_signing_time(root: TrustedRoot, log_key: Any, leaf: tuple[x509.Certificate, Any]) -> None:
    cert, key = leaf
    signature = sign(key, PAYLOAD)
    annotation = rekor_annotation(log_key, cert, PAYLOAD, signature)
    when = rekor_signing_time(annotation, root, payload=PAYLOAD, signature=signature, cert_pem=pem(cert))
    assert when == SIGNED_AT
    # end to end: a certificate long expired *now* verifies at the logged time
    who = verify_keyless_signature(PAYLOAD, signature, pem(cert), identity=WORKFLOW, issuer=GITHUB, trusted_root=root,
                                   signing_time=when)
    assert who.checked_at == SIGNED_AT
    dsse = rekor_annotation(log_key, cert, PAYLOAD, signature, kind="dsse")
    assert rekor_signing_time(dsse, root, payload=PAYLOAD, signature=signature, cert_pem=pem(cert)) == SIGNED_AT


def test_rekor_set_rejections(root: TrustedRoot, log_key: Any, leaf: tuple[x509.Certificate, Any], ca: CA) -> None:
    cert, key = leaf
    signature = sign(key, PAYLOAD)
    good = json.loads(rekor_annotation(log_key, cert, PAYLOAD, signature))
    later = json.loads(json.dumps(good))
    later["Payload"]["integratedTime"] += 3600
    with pytest.raises(NoMatchingSignatureError, match="does not verify") as caught:
        rekor_signing_time(later, root, payload=PAYLOAD, signature=signature, cert_pem=pem(cert))
    assert caught.value.exit_code == 26  # bad SET
    rogue_log = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(NoMatchingSignatureError, match="not in") as caught:
        rekor_signing_time(rekor_annotation(rogue_log, cert, PAYLOAD, signature), root, payload=PAYLOAD)
    assert caught.value.exit_code == 28  # unknown log
    with pytest.raises(NoMatchingSignatureError, match="hash") as caught:
        rekor_signing_time(good, root, payload=PAYLOAD + b" ", signature=signature, cert_pem=pem(cert))
    assert caught.value.exit_code == 25  # another signature's entry
    with pytest.raises(NoMatchingSignatureError, match="signature"):
        rekor_signing_time(good, root, payload=PAYLOAD, signature=sign(key, PAYLOAD + b"x"), cert_pem=pem(cert))
    other_cert, _ = ca.leaf()
    with pytest.raises(NoMatchingSignatureError, match="certificate"):
        rekor_signing_time(good, root, payload=PAYLOAD, signature=signature, cert_pem=pem(other_cert))
    with pytest.raises(NoMatchingSignatureError, match="malformed"):
        rekor_signing_time("{}", root)


# -- trusted roots -------------------------------------------------------------------------------------

def test_trusted_root_files(tmp_path: Path, ca: CA, log_key: Any) -> None:
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(trusted_root_doc(ca, log_key)))
    loaded = load_trusted_root(path)
    assert len(loaded.authorities) == 1 and len(loaded.tlogs) == 1 and loaded.source == str(path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**trusted_root_doc(ca, log_key), "mediaType": "application/json"}))
    with pytest.raises(ConfigError, match="mediaType"):
        load_trusted_root(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        load_trusted_root(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_trusted_root(tmp_path / "missing.json")


def test_embedded_production_and_staging_roots() -> None:
    pytest.importorskip("sigstore")
    for name in ("production", "staging"):
        loaded = load_trusted_root(name)
        assert loaded.authorities and loaded.tlogs
        assert any("fulcio" in ca.uri for ca in loaded.authorities)
    assert load_trusted_root() is load_trusted_root("production")


# -- Sigstore bundles (sigstore-python) -----------------------------------------------------------------

def test_bundle_without_certificate_is_no_certificate_error() -> None:
    key_bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                  "verificationMaterial": {"publicKey": {"hint": "x"}, "tlogEntries": []},
                  "dsseEnvelope": {"payload": b64(b"{}"), "payloadType": "application/vnd.in-toto+json",
                                   "signatures": [{"sig": b64(b"x"), "keyid": ""}]}}
    with pytest.raises(NoCertificateError) as info:
        verify_keyless_bundle(json.dumps(key_bundle), None, identity=WORKFLOW, issuer=GITHUB)
    assert info.value.exit_code == 13
    with pytest.raises(InputError):
        verify_keyless_bundle(json.dumps(key_bundle), None, identity=WORKFLOW)


def test_bundle_goes_through_sigstore_python_offline(root: TrustedRoot, leaf: tuple[x509.Certificate, Any],
                                                     tmp_path: Path, ca: CA, log_key: Any) -> None:
    """A certificate bundle is handed to sigstore-python's Verifier (offline): with no tlog entry it fails there.

    A real production keyless bundle is not available offline here, so the accept path of
    sigstore-python itself is not exercised by this test (the chain and identity checks are, above).
    """
    pytest.importorskip("sigstore")
    from chainmail.signing.dsse import pae

    cert, key = leaf
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "predicate": {},
                            "subject": [{"name": "r", "digest": {"sha256": "a" * 64}}]}).encode()
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
              "verificationMaterial": {"certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                                       "tlogEntries": []},
              "dsseEnvelope": {"payload": b64(statement), "payloadType": "application/vnd.in-toto+json",
                               "signatures": [{"sig": b64(sign(key, pae("application/vnd.in-toto+json", statement))),
                                               "keyid": ""}]}}
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(trusted_root_doc(ca, log_key)))
    for source in (path, "production", root):
        with pytest.raises(NoMatchingSignatureError, match="did not verify"):
            verify_keyless_bundle(json.dumps(bundle), "sha256:" + "a" * 64, identity=WORKFLOW, issuer=GITHUB,
                                  trusted_root=source)
    with pytest.raises(NoMatchingSignatureError, match="not JSON"):
        verify_keyless_bundle("{", identity=WORKFLOW, issuer=GITHUB)
    with pytest.raises(InputError, match="digest"):
        verify_keyless_bundle(json.dumps(bundle), "sha256:abc", identity=WORKFLOW, issuer=GITHUB, trusted_root=path)


# -- a complete keyless bundle from the local CA, verified by sigstore-python ----------------------------

def sct_list(log_id: bytes, when: datetime, signature: bytes) -> bytes:
    """RFC 6962 SignedCertificateTimestampList with one v1 SCT (sha256/ecdsa)."""
    signed = bytes([4, 3]) + len(signature).to_bytes(2, "big") + signature
    sct = b"\x00" + log_id + int(when.timestamp() * 1000).to_bytes(8, "big") + b"\x00\x00" + signed
    items = len(sct).to_bytes(2, "big") + sct
    return len(items).to_bytes(2, "big") + items


def keyless_bundle(ca: CA, log_key: Any, ct_key: Any, statement: bytes, *, uri: str = WORKFLOW) -> dict[str, Any]:
    """What Fulcio + Rekor v1 would give for a DSSE signature: a leaf with an embedded SCT, a dsse 0.0.1
    entry with inclusion promise, inclusion proof (a one-leaf tree) and a signed checkpoint."""
    from chainmail.signing.dsse import pae

    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    ct_id = hashlib.sha256(spki(ct_key.public_key())).digest()
    draft, _ = ca.leaf(uri=uri, key=key, serial=serial, sct_list=sct_list(ct_id, SIGNED_AT, b"\x00" * 70))
    issuer_key_id = hashlib.sha256(spki(ca.intermediate_key.public_key())).digest()
    tbs = draft.tbs_precertificate_bytes
    signed_data = (b"\x00\x00" + int(SIGNED_AT.timestamp() * 1000).to_bytes(8, "big") + b"\x00\x01"
                   + issuer_key_id + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00")
    cert, _ = ca.leaf(uri=uri, key=key, serial=serial,
                      sct_list=sct_list(ct_id, SIGNED_AT, sign(ct_key, signed_data)))
    assert cert.tbs_precertificate_bytes == tbs

    payload_type = "application/vnd.in-toto+json"
    sig = sign(key, pae(payload_type, statement))
    envelope = {"payload": b64(statement), "payloadType": payload_type, "signatures": [{"sig": b64(sig)}]}
    body = json.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256",
                         "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest()},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()},
        "signatures": [{"signature": b64(sig), "verifier": b64(pem(cert).encode())}]}},
        separators=(",", ":")).encode()
    log_id = hashlib.sha256(spki(log_key.public_key())).digest()
    when = int(SIGNED_AT.timestamp())
    root_hash = hashlib.sha256(b"\x00" + body).digest()  # a one-leaf tree: the root is the leaf hash
    note = f"rekor.chainmail.test - 1\n1\n{b64(root_hash)}\n"
    checkpoint = note + "\n" + f"\u2014 rekor.chainmail.test {b64(log_id[:4] + sign(log_key, note.encode()))}\n"
    promise = json.dumps({"body": b64(body), "integratedTime": when, "logID": log_id.hex(), "logIndex": 0},
                         sort_keys=True, separators=(",", ":")).encode()
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
            "tlogEntries": [{
                "logIndex": "0", "logId": {"keyId": b64(log_id)},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": str(when),
                "inclusionPromise": {"signedEntryTimestamp": b64(sign(log_key, promise))},
                "inclusionProof": {"logIndex": "0", "rootHash": b64(root_hash), "treeSize": "1", "hashes": [],
                                   "checkpoint": {"envelope": checkpoint}},
                "canonicalizedBody": b64(body)}]},
        "dsseEnvelope": envelope,
    }


def test_complete_keyless_bundle_through_sigstore_python(ca: CA, log_key: Any, tmp_path: Path) -> None:
    """The accept path of verify_keyless_bundle: sigstore-python's Verifier with a trusted root built here
    (Fulcio CA, Rekor and CT log keys of our own), then cosign's claim check on the statement."""
    pytest.importorskip("sigstore")
    ct_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(trusted_root_doc(ca, log_key, ct_key=ct_key)))
    digest = "sha256:" + "c" * 64
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
                            "subject": [{"name": "r", "digest": {"sha256": "c" * 64}}], "predicate": {}}).encode()
    bundle = keyless_bundle(ca, log_key, ct_key, statement)
    kw: dict[str, Any] = {"trusted_root": path}
    assert verify_keyless_bundle(json.dumps(bundle), digest, identity=WORKFLOW, issuer=GITHUB, **kw) == \
        ("application/vnd.in-toto+json", statement)
    assert verify_keyless_bundle(bundle, None, identity_regexp="^https://github[.]com/acme/",
                                 issuer_regexp="githubusercontent", **kw)[1] == statement
    with pytest.raises(NoMatchingSignatureError, match="SANs do not match|do not match"):
        verify_keyless_bundle(bundle, digest, identity=WORKFLOW.replace("acme", "evil"), issuer=GITHUB, **kw)
    with pytest.raises(NoMatchingSignatureError):
        verify_keyless_bundle(bundle, digest, identity=WORKFLOW, issuer="https://accounts.google.com", **kw)
    with pytest.raises(NoMatchingSignatureError, match="regexp|do not match"):
        verify_keyless_bundle(bundle, digest, identity_regexp="^https://gitlab", issuer=GITHUB, **kw)
    with pytest.raises(NoMatchingSignatureError, match="subject"):
        verify_keyless_bundle(bundle, "sha256:" + "d" * 64, identity=WORKFLOW, issuer=GITHUB, **kw)
    tampered = json.loads(json.dumps(bundle))
    tampered["dsseEnvelope"]["payload"] = b64(statement.replace(b"c" * 64, b"d" * 64))
    with pytest.raises(NoMatchingSignatureError):
        verify_keyless_bundle(tampered, None, identity=WORKFLOW, issuer=GITHUB, **kw)
    # the same bundle against the production root: our CA is not Fulcio
    with pytest.raises(NoMatchingSignatureError):
        verify_keyless_bundle(bundle, digest, identity=WORKFLOW, issuer=GITHUB, trusted_root="production")
