"""``gcpkms://`` through google-auth and Cloud KMS's REST API, against the strict double in ``gcpkms_double.py``
(Google ships no Cloud KMS emulator on PyPI or Debian). google-auth does its real service-account flow: a
signed JWT assertion exchanged at the token URI of the credentials file for a bearer token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kms_support import assert_clean_error, envelopes, free_port, sign_run

from clirun import cli

pytest.importorskip("google.auth", reason="install chainmail[test]: google-auth is a test extra")

from gcpkms_double import CloudKMS


@pytest.fixture
def kms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudKMS]:
    with CloudKMS() as server:
        creds = tmp_path / "sa.json"
        creds.write_text(server.service_account_json())
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
        monkeypatch.setenv("CHAINMAIL_GCPKMS_ENDPOINT", server.url)
        monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")  # never ask a metadata server
        monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
        yield server


def test_sign_run_then_verify(kms: CloudKMS, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chainmail.signing.keys import ssh_fingerprint

    name = kms.add_key("chains", "EC_SIGN_P256_SHA256", versions=("ENABLED", "ENABLED", "DISABLED"))
    ref = f"gcpkms://{name}"
    code, _, err = sign_run(capsys, tmp_path, [], key=ref)
    assert code == 0, err
    assert ("POST", f"/v1/{name}/cryptoKeyVersions/2:asymmetricSign") in kms.requests  # highest ENABLED version
    code, pem, err = cli(["keys", "public-key", ref], capsys)
    assert code == 0, err
    expected = kms.keys[name]["versions"]["2"]["key"].public_key()
    from chainmail.signing.keys import public_key_pem

    assert pem == public_key_pem(expected)
    (envelope,) = envelopes(tmp_path / "store")
    assert envelope["signatures"][0]["keyid"] == ssh_fingerprint(pem)  # type: ignore[index]
    pub = tmp_path / "kms.pub"
    pub.write_text(pem)
    for key in (str(pub), ref):
        code, out, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", key, "-o", "json"],
                             capsys)
        assert code == 0, err
        assert json.loads(out)["verified"]


@pytest.mark.parametrize("algorithm", ["EC_SIGN_P384_SHA384", "RSA_SIGN_PKCS1_2048_SHA256"])
def test_pinned_version_and_other_algorithms(algorithm: str, kms: CloudKMS, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    name = kms.add_key("k", algorithm, versions=("ENABLED", "ENABLED"))
    settings = ["artifacts.taskrun.signer=kms", "artifacts.oci.signer=kms", f"signers.kms.kmsref=gcpkms://{name}/versions/1"]
    code, _, err = sign_run(capsys, tmp_path, settings)
    assert code == 0, err
    assert ("POST", f"/v1/{name}/cryptoKeyVersions/1:asymmetricSign") in kms.requests
    code, _, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", f"gcpkms://{name}/versions/1"],
                       capsys)
    assert code == 0, err


@pytest.mark.parametrize(("setup", "message"), [
    (lambda k: k.add_key("enc", "EC_SIGN_P256_SHA256", purpose="ENCRYPT_DECRYPT"), "not ASYMMETRIC_SIGN"),
    (lambda k: k.add_key("pss", "RSA_SIGN_PSS_2048_SHA256"), "unsupported key algorithm RSA_SIGN_PSS_2048_SHA256"),
    (lambda k: k.add_key("off", "EC_SIGN_P256_SHA256", versions=("DISABLED",)), "the key has no ENABLED version"),
    (lambda k: "projects/proj/locations/global/keyRings/ring/cryptoKeys/missing", "HTTP 404 NOT_FOUND"),
])
def test_keys_that_cannot_sign_exit_5(setup: object, message: str, kms: CloudKMS, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    name = setup(kms)  # type: ignore[operator]
    code, out, err = sign_run(capsys, tmp_path, [], key=f"gcpkms://{name}")
    assert_clean_error(code, out, err, 5, *kms.tokens)
    assert message in err


def test_permission_denied_exits_6(kms: CloudKMS, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = kms.add_key("chains", "EC_SIGN_P256_SHA256")
    kms.denied.add(f"{name}/cryptoKeyVersions/1")
    code, out, err = sign_run(capsys, tmp_path, [], key=f"gcpkms://{name}")
    assert_clean_error(code, out, err, 6, *kms.tokens)
    assert "HTTP 403 PERMISSION_DENIED" in err and "useToSign" in err


def test_credentials_problems(kms: CloudKMS, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    name = kms.add_key("chains", "EC_SIGN_P256_SHA256")
    doc = json.loads(kms.service_account_json())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    doc["private_key"] = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(doc))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(wrong))
    code, out, err = cli(["keys", "public-key", f"gcpkms://{name}"], capsys)
    assert_clean_error(code, out, err, 6, "PRIVATE KEY")
    assert "getting a Google access token failed" in err and "Invalid JWT Signature" in err

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code, out, err = cli(["keys", "public-key", f"gcpkms://{name}"], capsys)
    assert_clean_error(code, out, err, 3)
    assert "no Google Cloud credentials found" in err


def test_endpoint_down_exits_6(kms: CloudKMS, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    name = kms.add_key("chains", "EC_SIGN_P256_SHA256")
    monkeypatch.setenv("CHAINMAIL_GCPKMS_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    code, out, err = cli(["keys", "public-key", f"gcpkms://{name}", "--set", "chainmail.retry.deadline-seconds=1"],
                         capsys)
    assert_clean_error(code, out, err, 6, *kms.tokens)
    assert "cannot reach Cloud KMS" in err


@pytest.mark.parametrize("uri", ["gcpkms://projects/p", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/x",
                                 "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/versions/"])
def test_bad_references_exit_5(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["keys", "public-key", uri], capsys)
    assert_clean_error(code, out, err, 5)
    assert "is not a Google Cloud KMS key reference" in err
