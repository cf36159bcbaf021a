"""store trusts only the operator's key; passwords that are not text are key errors, never crashes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import KeyMaterialError, WorkspaceError
from chainmail.models import Artifact, Payload, RunRef, SignedPayload
from chainmail.signing import configured_public_key, load_signer, sign_payloads
from chainmail.signing._signer import KeySigner
from chainmail.storage import check_signatures

OWNER = RunRef("TaskRun", "ci", "build", "u-1")
RUN_ART = Artifact("taskrun", "tekton.dev-v1-TaskRun-u-1", "taskrun-u-1", "ci/build", OWNER)
IMG = "r.example/app@sha256:" + "a" * 64
IMG_ART = Artifact("oci", IMG, "a" * 12, IMG, OWNER)
PAYLOADS = [
    Payload(RUN_ART, "slsa/v1", "application/vnd.in-toto+json", b'{"_type":"x"}', True),
    Payload(IMG_ART, "simplesigning", "application/vnd.dev.cosign.simplesigning.v1+json", b'{"critical":{}}', False),
]


@pytest.fixture
def operator(keys_dir: Path) -> Context:
    return Context(key=str(keys_dir / "ecdsa-p256-password"))


def _attacker_signed(payloads: list[Payload]) -> list[SignedPayload]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from chainmail.signing import dsse

    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()), "sha256", "file:///evil")
    return [SignedPayload(p, dsse.envelope(p.payload_type, p.body, signer) if p.wrap else signer.sign(p.body),
                          signer.key_id, signer.public_key_pem, signer.uri) for p in payloads]


def _keys(ctx: Context) -> dict[str, str | None]:
    return {kind: configured_public_key(kind, ctx) for kind in ("taskrun", "oci")}  # type: ignore[misc]


def test_genuine_signatures_pass_with_the_operator_key(operator: Context) -> None:
    check_signatures(sign_payloads(PAYLOADS, operator), _keys(operator))


def test_a_valid_signature_by_another_key_is_refused(operator: Context) -> None:
    forged = _attacker_signed(PAYLOADS)
    check_signatures(forged)  # self-consistent: it verifies with the key it names...
    with pytest.raises(WorkspaceError, match="not the configured signing key"):
        check_signatures(forged, _keys(operator))  # ...but not with the operator's


def test_naming_the_operator_key_does_not_help(operator: Context) -> None:
    real = sign_payloads(PAYLOADS, operator)[0]
    forged = _attacker_signed(PAYLOADS)[0]
    claimed = SignedPayload(forged.payload, forged.signature, real.key_id, real.public_key, real.signer)
    with pytest.raises(WorkspaceError, match="does not verify"):
        check_signatures([claimed], _keys(operator))


def test_a_certificate_the_key_does_not_make_is_refused(operator: Context) -> None:
    item = sign_payloads(PAYLOADS, operator)[1]
    with_cert = SignedPayload(item.payload, item.signature, item.key_id, item.public_key, item.signer,
                              cert="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(WorkspaceError, match="certificate"):
        check_signatures([with_cert], _keys(operator))


def test_an_envelope_with_a_second_signature_is_refused(operator: Context) -> None:
    import json

    item = sign_payloads(PAYLOADS, operator)[0]
    env = json.loads(item.signature)
    env["signatures"].append(dict(env["signatures"][0], keyid="evil"))
    doubled = SignedPayload(item.payload, json.dumps(env).encode(), item.key_id, item.public_key, item.signer)
    with pytest.raises(WorkspaceError, match="exactly one signature"):
        check_signatures([doubled], _keys(operator))


def test_an_envelope_keyid_naming_another_key_is_refused(operator: Context) -> None:
    import json

    item = sign_payloads(PAYLOADS, operator)[0]
    env = json.loads(item.signature)
    env["signatures"][0]["keyid"] = "SHA256:someone-else"  # keyid is outside the signed bytes
    relabelled = SignedPayload(item.payload, json.dumps(env).encode(), item.key_id, item.public_key, item.signer)
    with pytest.raises(WorkspaceError, match="keyid"):
        check_signatures([relabelled], _keys(operator))


def test_a_kind_whose_signer_is_none_has_no_key(operator: Context) -> None:
    operator.config = Config.from_mapping({"artifacts.oci.signer": "none"})
    keys = _keys(operator)
    assert keys["oci"] is None
    item = sign_payloads(PAYLOADS, Context(key=operator.key))[1]
    with pytest.raises(WorkspaceError, match="signs nothing"):
        check_signatures([item], keys)


def test_configured_key_follows_signing_secrets(keys_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINMAIL_SIGNING_SECRETS", str(keys_dir / "ecdsa-p256-password"))
    expected = (keys_dir / "ecdsa-p256-password" / "cosign.pub").read_text()
    from chainmail.signing.keys import public_key_pem

    assert configured_public_key("taskrun", Context()) == public_key_pem(expected)


def test_configured_key_from_a_secret(keys_dir: Path, fake_kube: Any) -> None:
    src = keys_dir / "ecdsa-p256-password"
    fake_kube.secrets[("tekton-chains", "signing-secrets")] = {"cosign.pub": (src / "cosign.pub").read_bytes()}
    kube = fake_kube
    ctx = Context(key="k8s://tekton-chains/signing-secrets")
    ctx.kube = kube
    assert "PUBLIC KEY" in str(configured_public_key("oci", ctx))
    configured_public_key("oci", ctx)
    assert kube.reads == 1  # cached


def test_keyless_store_checks_certificates_not_a_key(tmp_path: Path) -> None:
    from chainmail.signing.keyless_trust import KeylessTrust

    ctx = Context(config=Config.from_mapping({"signers.x509.fulcio.enabled": "true",
                                              "signers.x509.identity.token.file": str(tmp_path / "none")}))
    trust = configured_public_key("taskrun", ctx)
    assert isinstance(trust, KeylessTrust) and trust.trusted_root == "production" and not trust.identities


# -- passwords that are not UTF-8 text -------------------------------------------------------------


def _key_only(keys_dir: Path, tmp_path: Path) -> Path:
    shutil.copy(keys_dir / "ecdsa-p256-password" / "cosign.key", tmp_path / "cosign.key")
    return tmp_path


def test_non_utf8_cosign_password_is_a_key_error(keys_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "s3cret\udcff")  # the bytes s3cret\xff, as os.environ holds them
    with pytest.raises(KeyMaterialError, match="COSIGN_PASSWORD is not valid UTF-8") as info:
        load_signer(str(_key_only(keys_dir, tmp_path)), Context())
    assert "s3cret" not in str(info.value)


def test_non_utf8_password_file_is_a_key_error(keys_dir: Path, tmp_path: Path) -> None:
    key_dir = _key_only(keys_dir, tmp_path)
    (key_dir / "cosign.password").write_bytes(b"s3cret\xff")
    with pytest.raises(KeyMaterialError, match="cosign.password is not valid UTF-8") as info:
        load_signer(str(key_dir), Context())
    assert "s3cret" not in str(info.value)


def test_utf8_password_from_env_still_works(keys_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "s3cret")
    assert load_signer(str(_key_only(keys_dir, tmp_path)), Context()).key_id.startswith("SHA256:")


def test_a_deeply_nested_envelope_is_refused_not_a_crash(operator: Context) -> None:
    item = sign_payloads(PAYLOADS, operator)[0]
    nested = b'{"payloadType":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    hostile = SignedPayload(item.payload, nested, item.key_id, item.public_key, item.signer)
    with pytest.raises(WorkspaceError, match="does not verify"):
        check_signatures([hostile], _keys(operator))
