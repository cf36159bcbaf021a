"""``awskms://`` against moto's KMS in server mode (``moto[server]``), over HTTPS on a loopback port.

moto runs through ``moto_kms_server.py``, which restores real KMS's ``MessageType=DIGEST`` behaviour
(moto ignores it; see that file). The endpoint is HTTPS with a test CA given as ``AWS_CA_BUNDLE``,
because an ``awskms://HOST:PORT/…`` endpoint is HTTPS, as in cosign.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kms_support import assert_clean_error, envelopes, free_port, loopback_tls_cert, sign_run, start_server

from clirun import cli

boto3 = pytest.importorskip("boto3", reason="install chainmail[test]: boto3 is a test extra")
pytest.importorskip("moto.server", reason="install chainmail[test]: moto[server] is a test extra")

SECRET = "kms-test-secret-value-7f3a"
SERVER = Path(__file__).with_name("moto_kms_server.py")


@pytest.fixture(scope="module")
def moto_kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(``127.0.0.1:PORT``, CA bundle) of a moto KMS server with TLS, for this module only."""
    directory = tmp_path_factory.mktemp("moto-kms")
    cert, key = loopback_tls_cert(directory)
    port = free_port()
    argv = [sys.executable, str(SERVER), "-H", "127.0.0.1", "-p", str(port), "-c", str(cert), "-k", str(key)]
    for _ in start_server(argv, port, directory / "moto.log"):
        yield f"127.0.0.1:{port}", cert


@pytest.fixture
def kms(moto_kms: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """(endpoint, boto3 KMS client) with AWS_* set for moto and nothing else from the host leaking in."""
    endpoint, ca = moto_kms
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_DEFAULT_REGION",
                 "AWS_SESSION_TOKEN", "AWS_TLS_INSECURE_SKIP_VERIFY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAKMSTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.client("kms", endpoint_url=f"https://{endpoint}", region_name="us-east-1", verify=str(ca))
    return endpoint, client


def _key(client: Any, spec: str = "ECC_NIST_P256", usage: str = "SIGN_VERIFY") -> dict[str, Any]:
    return client.create_key(KeyUsage=usage, KeySpec=spec)["KeyMetadata"]


def _service_pem(client: Any, key_id: str) -> tuple[str, bytes]:
    """The key's public key as the service hands it out (DER), and as PEM."""
    der = client.get_public_key(KeyId=key_id)["PublicKey"]
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n", der


def test_sign_run_then_verify_with_the_kms_public_key(kms: tuple[str, Any], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from chainmail.signing.dsse import pae
    from chainmail.signing.keys import key_hint, ssh_fingerprint

    endpoint, client = kms
    meta = _key(client)
    ref = f"awskms://{endpoint}/{meta['KeyId']}"
    code, out, err = sign_run(capsys, tmp_path, [], key=ref)
    assert code == 0, err
    assert "stored in file" in out

    code, pem, err = cli(["keys", "public-key", ref], capsys)
    assert code == 0, err
    service_pem, der = _service_pem(client, meta["KeyId"])
    assert pem == service_pem
    pub = tmp_path / "kms.pub"
    pub.write_text(pem)

    # The DSSE keyid is Chains' (SSH SHA256 fingerprint); cosign's bundle hint for the key is sha256(SPKI DER).
    (env,) = envelopes(tmp_path / "store")
    assert env["signatures"][0]["keyid"] == ssh_fingerprint(service_pem)  # type: ignore[index]
    assert key_hint(pem) == base64.b64encode(hashlib.sha256(der).digest()).decode()
    # The signature is plain ECDSA-SHA256 over the PAE, checked here without chainmail's verifier.
    payload = base64.b64decode(env["payload"])  # type: ignore[arg-type]
    sig = base64.b64decode(env["signatures"][0]["sig"])  # type: ignore[index]
    load_der_public_key(der).verify(sig, pae(str(env["payloadType"]), payload), ec.ECDSA(SHA256()))  # type: ignore[union-attr,call-arg]

    for key in (str(pub), ref):
        code, out, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", key,
                              "-o", "json"], capsys)
        assert code == 0, err
        assert json.loads(out)["verified"], out


def test_kmsref_from_chains_config_and_every_key_form(kms: tuple[str, Any], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, client = kms
    meta = _key(client)
    client.create_alias(AliasName="alias/chains-signer", TargetKeyId=meta["KeyId"])
    alias_arn = meta["Arn"].split(":key/")[0] + ":alias/chains-signer"
    expected, _ = _service_pem(client, meta["KeyId"])
    for key in (meta["KeyId"], meta["Arn"], "alias/chains-signer", alias_arn):
        code, pem, err = cli(["keys", "public-key", f"awskms://{endpoint}/{key}"], capsys)
        assert (code, pem) == (0, expected), err

    settings = ["artifacts.taskrun.signer=kms", "artifacts.oci.signer=kms",
                f"signers.kms.kmsref=awskms://{endpoint}/alias/chains-signer"]
    code, _, err = sign_run(capsys, tmp_path, settings)
    assert code == 0, err
    pub = tmp_path / "kms.pub"
    pub.write_text(expected)
    code, _, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", str(pub)], capsys)
    assert code == 0, err


@pytest.mark.parametrize("spec", ["ECC_NIST_P384", "ECC_NIST_P521", "RSA_2048"])
def test_other_signing_key_specs_sign_and_verify(spec: str, kms: tuple[str, Any], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, client = kms
    ref = f"awskms://{endpoint}/{_key(client, spec)['KeyId']}"
    code, _, err = sign_run(capsys, tmp_path, [], key=ref)
    assert code == 0, err
    code, _, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", ref], capsys)
    assert code == 0, err


@pytest.mark.parametrize(("spec", "usage", "message"), [
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY"),
    ("RSA_2048", "ENCRYPT_DECRYPT", "key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY"),
    ("ECC_SECG_P256K1", "SIGN_VERIFY", "unsupported key spec ECC_SECG_P256K1"),
])
def test_keys_that_cannot_sign_exit_5(spec: str, usage: str, message: str, kms: tuple[str, Any],
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, client = kms
    ref = f"awskms://{endpoint}/{_key(client, spec, usage)['KeyId']}"
    code, out, err = sign_run(capsys, tmp_path, [], key=ref)
    assert_clean_error(code, out, err, 5, SECRET)
    assert message in err
    assert not list((tmp_path / "store").rglob("*.signature"))


def test_unknown_key_exits_5(kms: tuple[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key that does not exist is a bad key reference (KMS NotFoundException): exit 5, not 6."""
    endpoint, _ = kms
    code, out, err = sign_run(capsys, tmp_path, [], key=f"awskms://{endpoint}/alias/no-such-key")
    assert_clean_error(code, out, err, 5, SECRET)
    assert "NotFoundException" in err and "alias/no-such-key" in err


def test_endpoint_down_exits_6_after_retries(kms: tuple[str, Any], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"awskms://127.0.0.1:{free_port()}/alias/anything"
    code, out, err = cli(["keys", "public-key", ref], capsys)
    assert_clean_error(code, out, err, 6, SECRET)
    assert "cannot reach AWS KMS after retries" in err


def test_missing_credentials_and_region_are_config_errors(kms: tuple[str, Any], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, client = kms
    ref = f"awskms://{endpoint}/{_key(client)['KeyId']}"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_REGION")
    code, out, err = cli(["keys", "public-key", ref], capsys)
    assert_clean_error(code, out, err, 3, SECRET)
    assert "no AWS region" in err
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = cli(["keys", "public-key", ref], capsys)
    assert_clean_error(code, out, err, 3, SECRET)
    assert "no AWS credentials found" in err


def test_untrusted_tls_certificate_exits_6(kms: tuple[str, Any], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, client = kms
    ref = f"awskms://{endpoint}/{_key(client)['KeyId']}"
    monkeypatch.delenv("AWS_CA_BUNDLE")
    code, out, err = cli(["keys", "public-key", ref], capsys)
    assert_clean_error(code, out, err, 6, SECRET)
    assert "TLS failed" in err


def test_denied_by_iam_policy_exits_6(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A second moto server that enforces IAM after the 4 setup calls: the signer may GetPublicKey, not Sign."""
    cert, key = loopback_tls_cert(tmp_path)
    port = free_port()
    argv = [sys.executable, str(SERVER), "-H", "127.0.0.1", "-p", str(port), "-c", str(cert), "-k", str(key)]
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "4")  # read by the moto server process at start
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for _ in start_server(argv, port, tmp_path / "moto.log"):
        url = f"https://127.0.0.1:{port}"
        admin = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "AKIAADMIN",
                 "aws_secret_access_key": "admin"}
        meta = boto3.client("kms", **admin).create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="chains")
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": ["kms:GetPublicKey"], "Resource": "*"}]}
        iam.put_user_policy(UserName="chains", PolicyName="public-key-only", PolicyDocument=json.dumps(policy))
        access = iam.create_access_key(UserName="chains")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", access["SecretAccessKey"])
        code, out, err = sign_run(capsys, tmp_path, [], key=f"awskms://127.0.0.1:{port}/{meta['KeyId']}")
        assert_clean_error(code, out, err, 6, access["SecretAccessKey"])
        assert "signing with awskms://" in err and "AccessDenied" in err and "kms:Sign" in err


def test_cosigns_insecure_switch_skips_tls_verification(kms: tuple[str, Any], capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``AWS_TLS_INSECURE_SKIP_VERIFY=1`` is cosign's switch for test endpoints; chainmail honours it the same way."""
    endpoint, client = kms
    key_id = _key(client)["KeyId"]
    monkeypatch.delenv("AWS_CA_BUNDLE")
    monkeypatch.setenv("AWS_TLS_INSECURE_SKIP_VERIFY", "1")
    code, pem, err = cli(["keys", "public-key", f"awskms://{endpoint}/{key_id}"], capsys)
    assert code == 0, err
    assert pem == _service_pem(client, key_id)[0]
