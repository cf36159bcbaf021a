"""``azurekms://`` through azure-identity (managed identity) and Key Vault's REST API, against the strict
HTTPS double in ``azurekms_double.py`` (Microsoft ships no Key Vault emulator on PyPI or Debian).

Credentials come from azure-identity's DefaultAzureCredential, which picks App Service managed identity
from ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` (a loopback endpoint here, so nothing probes a real metadata
service)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kms_support import assert_clean_error, envelopes, free_port, loopback_tls_cert, sign_run

from clirun import cli

pytest.importorskip("azure.identity", reason="install chainmail[test]: azure-identity is a test extra")

from azurekms_double import KeyVault


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVault]:
    cert, key = loopback_tls_cert(tmp_path)
    with KeyVault(cert, key) as server:
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
                     "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME", "MSI_ENDPOINT", "MSI_SECRET",
                     "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", server.identity)
        monkeypatch.setenv("IDENTITY_HEADER", server.identity_secret)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "az"))  # no Azure CLI login from the host
        monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no az/azd/pwsh found by the later credentials
        yield server


def test_sign_run_then_verify(vault: KeyVault, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chainmail.signing.keys import public_key_pem, ssh_fingerprint

    vault.add_key("chains", versions=2)
    ref = f"azurekms://{vault.vault}/chains"
    code, _, err = sign_run(capsys, tmp_path, [], key=ref)
    assert code == 0, err
    latest = vault.keys["chains"]["versions"][-1][0]
    assert ("POST", f"/keys/chains/{latest}/sign") in vault.requests  # pinned to the version it read
    code, pem, err = cli(["keys", "public-key", ref], capsys)
    assert code == 0, err
    assert pem == public_key_pem(vault.private_key("chains").public_key())
    (envelope,) = envelopes(tmp_path / "store")
    assert envelope["signatures"][0]["keyid"] == ssh_fingerprint(pem)  # type: ignore[index]
    # DER, not Key Vault's raw r||s: what cosign stores and verifiers expect
    from chainmail._internal.encoding import b64decode

    assert b64decode(envelope["signatures"][0]["sig"])[0] == 0x30  # type: ignore[index]
    pub = tmp_path / "kms.pub"
    pub.write_text(pem)
    for key in (str(pub), ref):
        code, out, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", key, "-o", "json"],
                             capsys)
        assert code == 0, err
        assert json.loads(out)["verified"]


@pytest.mark.parametrize(("kty", "crv"), [("EC-HSM", "P-384"), ("EC", "P-521"), ("RSA", "")])
def test_other_key_types_and_a_pinned_version(kty: str, crv: str, vault: KeyVault, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    vault.add_key("k", kty=kty, crv=crv, versions=2)
    first = vault.keys["k"]["versions"][0][0]
    settings = ["artifacts.taskrun.signer=kms", "artifacts.oci.signer=kms",
                f"signers.kms.kmsref=azurekms://{vault.vault}/k/{first}"]
    code, _, err = sign_run(capsys, tmp_path, settings)
    assert code == 0, err
    assert ("POST", f"/keys/k/{first}/sign") in vault.requests
    code, _, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key",
                        f"azurekms://{vault.vault}/k/{first}"], capsys)
    assert code == 0, err


@pytest.mark.parametrize(("setup", "key", "message"), [
    (lambda v: v.add_key("wrap", ops=("wrapKey", "unwrapKey")), "wrap", "does not allow the 'sign' operation"),
    (lambda v: v.add_key("k1", crv="P-256K"), "k1", "unsupported key type EC P-256K"),
    (lambda v: None, "missing", "HTTP 404 KeyNotFound"),
])
def test_keys_that_cannot_sign_exit_5(setup: object, key: str, message: str, vault: KeyVault, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    setup(vault)  # type: ignore[operator]
    code, out, err = sign_run(capsys, tmp_path, [], key=f"azurekms://{vault.vault}/{key}")
    assert_clean_error(code, out, err, 5, *vault.tokens, vault.identity_secret)
    assert message in err


def test_denied_by_rbac_exits_6(vault: KeyVault, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault.add_key("chains")
    vault.denied.add("chains")
    code, out, err = sign_run(capsys, tmp_path, [], key=f"azurekms://{vault.vault}/chains")
    assert_clean_error(code, out, err, 6, *vault.tokens, vault.identity_secret)
    assert "HTTP 403 Forbidden" in err and "keys/sign/action" in err


def test_identity_refused_exits_6(vault: KeyVault, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    vault.add_key("chains")
    monkeypatch.setenv("IDENTITY_HEADER", "wrong-header-value")
    code, out, err = cli(["keys", "public-key", f"azurekms://{vault.vault}/chains"], capsys)
    assert_clean_error(code, out, err, 6, "wrong-header-value", vault.identity_secret)
    assert "getting an Azure token failed" in err


def test_vault_down_and_bad_references(vault: KeyVault, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["keys", "public-key", f"azurekms://127.0.0.1:{free_port()}/chains", "--set",
                          "chainmail.retry.deadline-seconds=1"], capsys)
    assert_clean_error(code, out, err, 6, *vault.tokens)
    assert "cannot reach Key Vault https://127.0.0.1:" in err
    for uri in ("azurekms://vault.example", "azurekms://vault.example/k/v/x", "azurekms:///k"):
        code, out, err = cli(["keys", "public-key", uri], capsys)
        assert_clean_error(code, out, err, 5)
        assert "is not an Azure Key Vault key reference" in err
