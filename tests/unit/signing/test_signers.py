"""Loading signers by URI (files, directories, Secrets), chains-config selection, and the sign step."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from chainmail._internal import cosign_key
from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ConfigError, Error, KeyMaterialError, VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE, Artifact, Payload, RunRef
from chainmail.signing import (
    SIGNER_FOR_URI_SCHEME,
    Signer,
    dsse,
    load_public_key,
    load_signer,
    sign_payloads,
    signer_for,
    verify_signature,
)
from chainmail.signing._file import FileSigner, K8sSigner
from chainmail.signing.keys import ssh_fingerprint
from conftest import FIXTURE_KEYS, FakeKube


def _pkcs8_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pub(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _one_line_without(exc: Error, *secrets: str) -> str:
    text = str(exc)
    assert "\n" not in text
    for secret in secrets:
        assert secret not in exc.diagnostics()
    return text


# --- the registry and URI forms -------------------------------------------------------------------------------


def test_registry() -> None:
    assert set(SIGNER_FOR_URI_SCHEME) == {"file", "k8s", "awskms", "hashivault", "gcpkms", "azurekms",
                                         "fulcio"}
    assert (SIGNER_FOR_URI_SCHEME["file"], SIGNER_FOR_URI_SCHEME["k8s"]) == (FileSigner, K8sSigner)
    assert all(issubclass(cls, Signer) and cls.SCHEME == scheme for scheme, cls in SIGNER_FOR_URI_SCHEME.items())


@pytest.mark.parametrize("name", FIXTURE_KEYS)
def test_fixture_dirs_load_their_public_key(keys_dir: Path, name: str, ctx: Context) -> None:
    d = keys_dir / name
    signer = load_signer(str(d), ctx)
    assert isinstance(signer, FileSigner)
    assert signer.public_key_pem == (d / "cosign.pub").read_text()
    assert signer.uri == f"file://{d}"
    assert signer.cert == "" and signer.chain == ""
    assert signer.key_id == ssh_fingerprint((d / "cosign.pub").read_text())
    sig = signer.sign(b"data")
    verify_signature(signer.public_key_pem, sig, b"data")
    assert load_public_key(str(d), ctx) == (d / "cosign.pub").read_text()


def test_uri_spellings_share_one_cached_signer(keys_dir: Path, ctx: Context, monkeypatch) -> None:
    d = keys_dir / "ecdsa-p256-password"
    calls = []
    real = cosign_key.try_decrypt_key
    monkeypatch.setattr(cosign_key, "try_decrypt_key", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = load_signer(str(d), ctx)
    for _ in range(100):
        assert load_signer(f"file://{d}", ctx) is first
        assert load_signer(f"file:{d}/", ctx) is first
    assert len(calls) == 1
    assert [k for k in ctx.cache if k.startswith("signer:")] == [f"signer:file://{d}"]


def test_key_file_uses_sibling_password(keys_dir: Path, ctx: Context) -> None:
    d = keys_dir / "legacy-cosign-label"
    signer = load_signer(str(d / "cosign.key"), ctx)
    assert signer.public_key_pem == (d / "cosign.pub").read_text()
    assert signer.uri == f"file://{d}/cosign.key"


def test_relative_path(keys_dir: Path, ctx: Context, monkeypatch) -> None:
    monkeypatch.chdir(keys_dir)
    signer = load_signer("ecdsa-p256-empty-password", ctx)
    assert signer.uri == f"file://{keys_dir}/ecdsa-p256-empty-password"


# --- passwords ---------------------------------------------------------------------------------------------------


def _copy_key(keys_dir: Path, name: str, dest: Path, *, password: bytes | None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(keys_dir / name / "cosign.key", dest / "cosign.key")
    if password is not None:
        (dest / "cosign.password").write_bytes(password)
    return dest


def test_password_from_env_when_no_password_file(keys_dir: Path, tmp_path: Path, ctx: Context, monkeypatch) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=None)
    monkeypatch.setenv("COSIGN_PASSWORD", "s3cret")
    assert load_signer(str(d), ctx).public_key_pem == (keys_dir / "ecdsa-p256-password" / "cosign.pub").read_text()


def test_password_file_wins_over_env(keys_dir: Path, tmp_path: Path, ctx: Context, monkeypatch) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=b"s3cret")
    monkeypatch.setenv("COSIGN_PASSWORD", "wrong")
    load_signer(str(d), ctx)


def test_empty_password_without_file_or_env(keys_dir: Path, tmp_path: Path, ctx: Context) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-empty-password", tmp_path / "k", password=None)
    load_signer(str(d), ctx)


def test_protected_key_without_any_password(keys_dir: Path, tmp_path: Path, ctx: Context) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=None)
    with pytest.raises(KeyMaterialError) as info:
        load_signer(str(d), ctx)
    assert "password protected and no password was given" in _one_line_without(info.value, "s3cret")
    assert "COSIGN_PASSWORD" in (info.value.hint or "")


def test_password_file_trailing_newline_is_forgiven(keys_dir: Path, tmp_path: Path, ctx: Context) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=b"s3cret\n")
    load_signer(str(d), ctx)


def test_wrong_password(keys_dir: Path, tmp_path: Path, ctx: Context) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=b"hunter2")
    with pytest.raises(KeyMaterialError) as info:
        load_signer(str(d), ctx)
    text = _one_line_without(info.value, "hunter2", "s3cret")
    assert text.startswith(f"wrong password for cosign key {d}/cosign.key")
    assert info.value.exit_code == 5
    assert not any(k.startswith("signer:") for k in ctx.cache)


def test_wrong_password_from_env(keys_dir: Path, tmp_path: Path, ctx: Context, monkeypatch) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=None)
    monkeypatch.setenv("COSIGN_PASSWORD", "hunter2")
    with pytest.raises(KeyMaterialError, match=r"wrong password .*COSIGN_PASSWORD") as info:
        load_signer(str(d), ctx)
    _one_line_without(info.value, "hunter2")


# --- x509.pem and key types ----------------------------------------------------------------------------------------


def test_x509_pem_wins_over_cosign_key(keys_dir: Path, tmp_path: Path, ctx: Context) -> None:
    d = _copy_key(keys_dir, "ecdsa-p256-password", tmp_path / "k", password=b"s3cret")
    key = ec.generate_private_key(ec.SECP256R1())
    (d / "x509.pem").write_bytes(_pkcs8_pem(key))
    shutil.copy(keys_dir / "ecdsa-p256-password" / "cosign.pub", d / "cosign.pub")
    signer = load_signer(str(d), ctx)
    assert signer.public_key_pem == _pub(key)
    assert load_public_key(str(d), ctx) == _pub(key)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_x509_pem_ecdsa_signs_sha256_like_chains(tmp_path: Path, ctx: Context, curve) -> None:
    key = ec.generate_private_key(curve)
    (tmp_path / "x509.pem").write_bytes(_pkcs8_pem(key))
    signer = load_signer(str(tmp_path), ctx)
    sig = signer.sign(b"payload")
    key.public_key().verify(sig, b"payload", ec.ECDSA(hashes.SHA256()))
    verify_signature(signer.public_key_pem, sig, b"payload")


def test_x509_pem_ed25519_signs_and_verifies(tmp_path: Path, ctx: Context) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "x509.pem").write_bytes(_pkcs8_pem(key))
    signer = load_signer(str(tmp_path), ctx)
    sig = signer.sign(b"payload")
    assert len(sig) == 64
    key.public_key().verify(sig, b"payload")
    verify_signature(signer.public_key_pem, sig, b"payload")
    assert signer.key_id.startswith("SHA256:")
    with pytest.raises(VerificationError):
        verify_signature(signer.public_key_pem, sig, b"payload!")
    env = dsse.envelope(INTOTO_PAYLOAD_TYPE, b"{}", signer)
    assert dsse.verify_envelope(env, [signer.public_key_pem]) == (INTOTO_PAYLOAD_TYPE, b"{}")


def test_x509_pem_rsa_is_rejected(tmp_path: Path, ctx: Context) -> None:
    (tmp_path / "x509.pem").write_bytes(_pkcs8_pem(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(KeyMaterialError, match="RSA keys are not supported in x509.pem") as info:
        load_signer(str(tmp_path), ctx)
    _one_line_without(info.value)


def test_x509_pem_sec1_is_rejected(tmp_path: Path, ctx: Context) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "x509.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    with pytest.raises(KeyMaterialError, match="SEC1") as info:
        load_signer(str(tmp_path), ctx)
    assert "openssl pkcs8" in (info.value.hint or "")


def test_x509_pem_encrypted_pkcs8_is_rejected(tmp_path: Path, ctx: Context) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "x509.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(KeyMaterialError, match="ENCRYPTED PRIVATE KEY"):
        load_signer(str(tmp_path), ctx)


def _cosign_dir(tmp_path: Path, key, password: bytes = b"pw") -> Path:
    (tmp_path / "cosign.key").write_bytes(cosign_key.encrypt_key(key, password))
    (tmp_path / "cosign.password").write_bytes(password)
    return tmp_path


@pytest.mark.parametrize(("curve", "digest"), [(ec.SECP384R1(), hashes.SHA384()), (ec.SECP521R1(), hashes.SHA512())])
def test_cosign_key_other_curves_use_cosign_digests(tmp_path: Path, ctx: Context, curve, digest) -> None:
    key = ec.generate_private_key(curve)
    signer = load_signer(str(_cosign_dir(tmp_path, key)), ctx)
    sig = signer.sign(b"m")
    key.public_key().verify(sig, b"m", ec.ECDSA(digest))
    verify_signature(signer.public_key_pem, sig, b"m")


def test_cosign_key_rsa_uses_pkcs1v15_sha256(tmp_path: Path, ctx: Context) -> None:
    key = rsa.generate_private_key(65537, 2048)
    signer = load_signer(str(_cosign_dir(tmp_path, key)), ctx)
    sig = signer.sign(b"m")
    key.public_key().verify(sig, b"m", padding.PKCS1v15(), hashes.SHA256())
    verify_signature(signer.public_key_pem, sig, b"m")


def test_cosign_key_ed25519_uses_ed25519ph(tmp_path: Path, ctx: Context) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signer = load_signer(str(_cosign_dir(tmp_path, key)), ctx)
    sig = signer.sign(b"m")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(sig, b"m")  # not pure Ed25519
    verify_signature(signer.public_key_pem, sig, b"m")


def test_ed25519ph_matches_rfc8032_vector() -> None:
    from chainmail.signing._signer import _sign_ed25519ph

    # RFC 8032 section 7.3, test "abc".
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"))
    assert _sign_ed25519ph(key, b"abc").hex() == (
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
        "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")


# --- missing things and unsupported schemes ------------------------------------------------------------------------


def test_empty_directory(tmp_path: Path, ctx: Context) -> None:
    with pytest.raises(KeyMaterialError) as info:
        load_signer(str(tmp_path), ctx)
    assert str(info.value) == f"no valid private key found in {tmp_path}, looked for: x509.pem, cosign.key"


def test_missing_path(tmp_path: Path, ctx: Context) -> None:
    with pytest.raises(KeyMaterialError, match="does not exist"):
        load_signer(str(tmp_path / "nope"), ctx)


def test_public_key_file_is_not_a_signing_key(keys_dir: Path, ctx: Context) -> None:
    with pytest.raises(KeyMaterialError, match="public key, not a private key"):
        load_signer(str(keys_dir / "legacy-cosign-label" / "cosign.pub"), ctx)


@pytest.mark.parametrize("scheme", ["gcpkms", "awskms", "azurekms", "hashivault"])
def test_bad_kms_references_are_key_errors(scheme: str, ctx: Context) -> None:
    with pytest.raises(KeyMaterialError) as info:
        load_signer(f"{scheme}://projects/p/locations/l/keyRings/r/cryptoKeys/k?token=t0ps3cret", ctx)
    assert "key reference" in _one_line_without(info.value, "t0ps3cret")
    with pytest.raises(KeyMaterialError, match="key reference"):
        load_public_key(f"{scheme}://", ctx)


def test_unknown_scheme(ctx: Context) -> None:
    with pytest.raises(ConfigError, match=r"unknown signing key scheme 'ftp://'; supported: awskms://, azurekms://, file://, fulcio://, gcpkms://"):
        load_signer("ftp://host/key", ctx)


# --- Kubernetes Secrets -------------------------------------------------------------------------------------------


def _secret_from(d: Path, *names: str) -> dict[str, bytes]:
    return {n: (d / n).read_bytes() for n in names}


def test_k8s_secret(keys_dir: Path, ctx: Context, fake_kube: FakeKube) -> None:
    d = keys_dir / "ecdsa-p256-password"
    fake_kube.secrets[("tekton-chains", "signing-secrets")] = _secret_from(d, "cosign.key", "cosign.password",
                                                                           "cosign.pub")
    signer = load_signer("k8s://tekton-chains/signing-secrets", ctx)
    assert isinstance(signer, K8sSigner)
    assert signer.uri == "k8s://tekton-chains/signing-secrets"
    assert signer.public_key_pem == (d / "cosign.pub").read_text()
    assert load_signer("k8s://tekton-chains/signing-secrets/", ctx) is signer
    assert fake_kube.reads == 1
    assert load_public_key("k8s://tekton-chains/signing-secrets", ctx) == (d / "cosign.pub").read_text()


def test_k8s_secret_password_from_env(keys_dir: Path, ctx: Context, fake_kube: FakeKube, monkeypatch) -> None:
    d = keys_dir / "legacy-cosign-label"
    fake_kube.secrets[("ns", "s")] = _secret_from(d, "cosign.key")
    monkeypatch.setenv("COSIGN_PASSWORD", "p")
    assert load_signer("k8s://ns/s", ctx).public_key_pem == (d / "cosign.pub").read_text()
    # Without cosign.pub in the Secret the public key is derived from the private key.
    assert load_public_key("k8s://ns/s", ctx) == (d / "cosign.pub").read_text()


def test_k8s_secret_x509(ctx: Context, fake_kube: FakeKube) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    fake_kube.secrets[("ns", "s")] = {"x509.pem": _pkcs8_pem(key)}
    assert load_signer("k8s://ns/s", ctx).public_key_pem == _pub(key)


def test_k8s_secret_wrong_password(keys_dir: Path, ctx: Context, fake_kube: FakeKube) -> None:
    d = keys_dir / "ecdsa-p256-password"
    fake_kube.secrets[("ns", "s")] = {**_secret_from(d, "cosign.key"), "cosign.password": b"letmein"}
    with pytest.raises(KeyMaterialError) as info:
        load_signer("k8s://ns/s", ctx)
    assert _one_line_without(info.value, "letmein").startswith(
        "wrong password for cosign key k8s://ns/s key 'cosign.key'")


def test_k8s_missing_secret(ctx: Context) -> None:
    with pytest.raises(KeyMaterialError) as info:
        load_signer("k8s://ns/missing", ctx)
    assert str(info.value) == "signing secret k8s://ns/missing not found"


def test_k8s_secret_without_keys(ctx: Context, fake_kube: FakeKube) -> None:
    fake_kube.secrets[("ns", "s")] = {"other": b"x"}
    with pytest.raises(KeyMaterialError, match=r"no valid private key found in k8s://ns/s, looked for: x509.pem"):
        load_signer("k8s://ns/s", ctx)


@pytest.mark.parametrize("uri", ["k8s://ns", "k8s://", "k8s://ns/a/b"])
def test_k8s_bad_uri(uri: str, ctx: Context) -> None:
    with pytest.raises(Error, match="expected k8s://NAMESPACE/SECRET"):
        load_signer(uri, ctx)


# --- public keys ---------------------------------------------------------------------------------------------------


def test_load_public_key_sources(keys_dir: Path, tmp_path: Path, ctx: Context) -> None:
    d = keys_dir / "ecdsa-p256-empty-password"
    pub = (d / "cosign.pub").read_text()
    assert load_public_key(str(d / "cosign.pub"), ctx) == pub
    assert load_public_key(pub, ctx) == pub
    assert load_public_key(str(d / "cosign.key"), ctx) == pub
    only_key = _copy_key(keys_dir, "ecdsa-p256-empty-password", tmp_path / "k", password=b"")
    assert load_public_key(str(only_key), ctx) == pub
    with pytest.raises(KeyMaterialError):
        load_public_key(str(tmp_path / "missing.pub"), ctx)
    with pytest.raises(KeyMaterialError, match="no public key found"):
        load_public_key(str(tmp_path / "k" / ".."), ctx)


# --- chains-config selection ---------------------------------------------------------------------------------------


def test_signer_for_none(ctx: Context) -> None:
    ctx.config = Config.from_mapping({"artifacts.oci.signer": "none"})
    assert signer_for("oci", ctx) is None


def test_signer_for_default_dir(keys_dir: Path, ctx: Context, monkeypatch) -> None:
    monkeypatch.setenv("CHAINMAIL_SIGNING_SECRETS", str(keys_dir / "ecdsa-p256-password"))
    signer = signer_for("taskrun", ctx)
    assert signer is not None and signer.uri == f"file://{keys_dir}/ecdsa-p256-password"
    assert signer_for("pipelinerun", ctx) is signer


def test_signer_for_default_dir_missing(tmp_path: Path, ctx: Context, monkeypatch) -> None:
    monkeypatch.setenv("CHAINMAIL_SIGNING_SECRETS", str(tmp_path))
    with pytest.raises(KeyMaterialError, match="no valid private key found in"):
        signer_for("taskrun", ctx)


def test_signer_for_key_wins(keys_dir: Path, ctx: Context) -> None:
    """--key beats the kms signer setting; for x509 with fulcio.enabled, Chains' order makes keyless win."""
    from chainmail.signing._fulcio import FulcioSigner

    ctx.key = str(keys_dir / "legacy-cosign-label")
    ctx.config = Config.from_mapping({"signers.x509.fulcio.enabled": "true", "artifacts.oci.signer": "kms"})
    assert isinstance(signer_for("taskrun", ctx), FulcioSigner)
    assert signer_for("oci", ctx).uri.endswith("legacy-cosign-label")  # type: ignore[union-attr]


def test_signer_for_fulcio_is_keyless_and_lazy(ctx: Context) -> None:
    """Selecting the keyless signer reads no token and asks no Fulcio (the token here does not exist)."""
    from chainmail.signing._fulcio import FulcioSigner

    ctx.config = Config.from_mapping({"signers.x509.fulcio.enabled": "true",
                                      "signers.x509.identity.token.file": "/nonexistent/token"})
    signer = signer_for("taskrun", ctx)
    assert isinstance(signer, FulcioSigner) and signer.uri == "fulcio:https://fulcio.sigstore.dev"


def test_signer_for_kms(ctx: Context) -> None:
    ctx.config = Config.from_mapping({"artifacts.taskrun.signer": "kms"})
    with pytest.raises(ConfigError, match="signers.kms.kmsref is empty"):
        signer_for("taskrun", ctx)
    ctx.config = ctx.config.with_values(**{"signers.kms.kmsref": "gcpkms://projects/p/keys/k"})
    with pytest.raises(KeyMaterialError, match=r"'gcpkms://projects/p/keys/k' is not a Google Cloud KMS key reference"):
        signer_for("taskrun", ctx)


# --- the sign step ---------------------------------------------------------------------------------------------------


def _payload(kind: str, wrap: bool, body: bytes) -> Payload:
    owner = RunRef("TaskRun", "demo", "build", "uid-1")
    artifact = Artifact(kind, f"{kind}-uid-1", kind, "demo/build", owner)  # type: ignore[arg-type]
    ptype = INTOTO_PAYLOAD_TYPE if wrap else SIMPLESIGNING_PAYLOAD_TYPE
    return Payload(artifact, "slsa/v1" if wrap else "simplesigning", ptype, body, wrap)


def test_sign_payloads(keys_dir: Path, ctx: Context) -> None:
    d = keys_dir / "ecdsa-p256-password"
    ctx.key = str(d)
    pub = (d / "cosign.pub").read_text()
    statement = b'{"_type":"https://in-toto.io/Statement/v0.1"}'
    simple = b'{"critical":{},"optional":null}'
    signed = sign_payloads([_payload("taskrun", True, statement), _payload("oci", False, simple)], ctx)
    assert len(signed) == 2
    env, raw = signed
    doc = json.loads(env.signature)
    assert list(doc) == ["payloadType", "payload", "signatures"]
    assert doc["payloadType"] == INTOTO_PAYLOAD_TYPE
    assert base64.b64decode(doc["payload"]) == statement
    assert doc["signatures"][0]["keyid"] == env.key_id == "SHA256:yHmPkfSLBAYYd1fCfqLVYNH+Bo0NtuhBak9kXqPO7Po"
    assert dsse.verify_envelope(env.signature, [pub]) == (INTOTO_PAYLOAD_TYPE, statement)
    verify_signature(pub, raw.signature, simple)
    for s in signed:
        assert s.public_key == pub
        assert s.signer == f"file://{d}"
        assert s.cert == "" and s.chain == ""
    assert type(raw.signature) is bytes and raw.signature[0] == 0x30  # DER


def test_sign_payloads_skips_kinds_with_signer_none(keys_dir: Path, ctx: Context) -> None:
    ctx.key = str(keys_dir / "ecdsa-p256-empty-password")
    ctx.config = Config.from_mapping({"artifacts.oci.signer": "none"})
    signed = sign_payloads([_payload("oci", False, b"{}"), _payload("taskrun", True, b"{}")], ctx)
    assert [s.payload.artifact.kind for s in signed] == ["taskrun"]
