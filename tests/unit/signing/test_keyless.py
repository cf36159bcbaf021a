"""Keyless signer selection and the OIDC token: providers, freshness, audience, identities (no network)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ConfigError, IdentityTokenInvalidError, IdentityTokenMissingError
from chainmail.signing import keyless_selected, signer_for
from chainmail.signing._fulcio import FulcioSigner, fulcio_trusted_root
from chainmail.signing._oidc import TOKEN_ENV, expected_identities, identity_token


def jwt(**claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "https://k8s.example", "sub": "system:serviceaccount:ns:sa", "aud": "sigstore", "exp": now + 600,
            **claims}
    part = base64.urlsafe_b64encode(json.dumps({k: v for k, v in body.items() if v is not None}).encode())
    return "eyJhbGciOiJSUzI1NiJ9." + part.decode().rstrip("=") + ".c2ln"


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv("CHAINMAIL_OIDC_TOKEN_FILE", str(tmp_path / "default-token"))


def config(values: dict[str, str]) -> Config:
    return Config.from_mapping(values)


# -- providers ------------------------------------------------------------------------------------------

def test_custom_token_file_wins_over_the_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, jwt(sub="from-env"))
    path = tmp_path / "custom"
    path.write_text(jwt(sub="from-file") + "\n")
    token = identity_token(config({"signers.x509.identity.token.file": str(path),
                                   "signers.x509.fulcio.provider": "envvar"}))
    assert token.claims["sub"] == "from-file" and token.source == str(path)


def test_unset_provider_tries_envvar_then_the_projected_file(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(IdentityTokenMissingError, match=r"SIGSTORE_ID_TOKEN is unset and .*default-token"):
        identity_token(config({}))
    (tmp_path / "default-token").write_text(jwt(sub="projected"))
    assert identity_token(config({})).claims["sub"] == "projected"
    monkeypatch.setenv(TOKEN_ENV, jwt(sub="env"))
    token = identity_token(config({}))
    assert token.claims["sub"] == "env" and token.source == "$SIGSTORE_ID_TOKEN"


def test_named_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(IdentityTokenMissingError, match="provider is envvar, but \\$SIGSTORE_ID_TOKEN is empty"):
        identity_token(config({"signers.x509.fulcio.provider": "envvar"}))
    monkeypatch.setenv(TOKEN_ENV, jwt(sub="env"))
    with pytest.raises(IdentityTokenMissingError, match="default-token: cannot read it"):
        identity_token(config({"signers.x509.fulcio.provider": "filesystem"}))  # the env token is not used


@pytest.mark.parametrize("provider", ["github-actions", "google-workload-identity", "spiffe", "buildkite-agent",
                                      "google-impersonate", "nonsense"])
def test_other_providers_are_refused_when_the_signer_is_selected(provider: str) -> None:
    ctx = Context(config=config({"signers.x509.fulcio.enabled": "true", "signers.x509.fulcio.provider": provider}))
    with pytest.raises(ConfigError, match=f"'{provider}' is not supported; chainmail reads the token from "
                                          "filesystem or envvar"):
        signer_for("taskrun", ctx)


# -- freshness and audience -----------------------------------------------------------------------------

def _token(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "t"
    path.write_text(text)
    return identity_token(config({"signers.x509.identity.token.file": str(path)}))


def test_fresh_token_for_sigstore_passes(tmp_path: Path) -> None:
    _token(tmp_path, jwt()).check_fresh()
    _token(tmp_path, jwt(aud=["kubernetes", "sigstore"])).check_fresh()


@pytest.mark.parametrize(("claims", "words"), [
    ({"exp": int(time.time()) - 3600}, r"expired (60|6[1-9]|[7-9]\d)m ago"),
    ({"exp": None}, "no 'exp'"),
    ({"nbf": int(time.time()) + 3600}, "not valid before"),
    ({"aud": "https://kubernetes.default.svc"}, "audience 'https://kubernetes.default.svc'; Fulcio needs 'sigstore'"),
    ({"aud": None}, "audience none"),
])
def test_stale_or_misaddressed_tokens(tmp_path: Path, claims: dict[str, Any], words: str) -> None:
    token = _token(tmp_path, jwt(**claims))
    with pytest.raises(IdentityTokenInvalidError, match=words) as info:
        token.check_fresh()
    assert token.text not in str(info.value) and info.value.exit_code == 31


def test_garbage_tokens_are_invalid_not_missing(tmp_path: Path) -> None:
    with pytest.raises(IdentityTokenInvalidError, match="is not a JWT"):
        _token(tmp_path, "not-a-jwt")
    with pytest.raises(IdentityTokenInvalidError, match="not ASCII"):
        (tmp_path / "t").write_bytes(b"\xff\xfe")
        identity_token(config({"signers.x509.identity.token.file": str(tmp_path / "t")}))


def test_expected_identities() -> None:
    assert expected_identities({"sub": "system:serviceaccount:a:b",
                                "kubernetes.io": {"namespace": "a", "serviceaccount": {"name": "b"}}}) == {
        "system:serviceaccount:a:b", "https://kubernetes.io/namespaces/a/serviceaccounts/b"}
    assert expected_identities({"sub": "1", "email": "me@example.com"}) == {"1", "me@example.com"}


# -- selection ------------------------------------------------------------------------------------------

def test_keyless_selection_follows_chains_x509_order(tmp_path: Path) -> None:
    on = {"signers.x509.fulcio.enabled": "true"}
    assert keyless_selected("taskrun", Context(config=config(on)))
    assert keyless_selected("taskrun", Context(config=config(on), key=str(tmp_path)))  # a key dir: Fulcio first
    assert keyless_selected("taskrun", Context(config=config(on), key="k8s://ns/signing-secrets"))
    assert not keyless_selected("taskrun", Context(config=config(on), key="awskms:///alias/k"))  # explicit KMS
    assert not keyless_selected("oci", Context(config=config({**on, "artifacts.oci.signer": "kms"})))
    assert not keyless_selected("oci", Context(config=config({**on, "artifacts.oci.signer": "none"})))
    assert not keyless_selected("taskrun", Context(config=config({})))
    assert keyless_selected("taskrun", Context(config=config({}), key="fulcio://"))  # no config needed


def test_one_lazy_signer_per_session() -> None:
    ctx = Context(config=config({"signers.x509.fulcio.enabled": "true"}))
    session: dict[str, Any] = {}
    first = signer_for("taskrun", ctx, session=session)
    assert isinstance(first, FulcioSigner) and signer_for("oci", ctx, session=session) is first
    assert signer_for("taskrun", ctx) is not first  # no session: never cached across runs
    with pytest.raises(ConfigError, match="keyless URIs take no address"):
        signer_for("taskrun", Context(config=config({}), key="fulcio://fulcio.example.com"))


def test_trusted_root_for_the_issued_chain() -> None:
    assert fulcio_trusted_root(config({})) == "production"
    assert fulcio_trusted_root(config({"chainmail.transparency.trusted-root": "/r.json"})) == "/r.json"
    with pytest.raises(ConfigError, match="no TUF client"):
        fulcio_trusted_root(config({"signers.x509.tuf.mirror.url": "https://tuf.example.com"}))


def test_keyless_without_transparency_is_refused_before_the_token_is_read() -> None:
    from chainmail.models import Artifact, Payload, RunRef
    from chainmail.signing import sign_payloads

    owner = RunRef("TaskRun", "ns", "r", "u")
    payload = Payload(Artifact("taskrun", "taskrun-u", "taskrun-u", "ns/r", owner), "slsa/v1",
                      "application/vnd.in-toto+json", b"{}", True)
    ctx = Context(config=config({"signers.x509.fulcio.enabled": "true",
                                 "signers.x509.identity.token.file": "/nonexistent"}))
    with pytest.raises(ConfigError, match=r"keyless signing \(taskrun\) needs a transparency log entry"):
        sign_payloads([payload], ctx)
    manual = Context(config=config({"signers.x509.fulcio.enabled": "true", "transparency.enabled": "manual",
                                    "signers.x509.identity.token.file": "/nonexistent"}))
    with pytest.raises(ConfigError, match="not annotated chains.tekton.dev/transparency-upload"):
        sign_payloads([payload], manual, upload=False)


# -- what Fulcio returns is checked before it is used ---------------------------------------------------

def test_issued_chain_must_name_the_tokens_issuer_and_be_code_signing(tmp_path: Path) -> None:
    from chainmail.errors import SigningError
    from chainmail.signing._fulcio import _check_chain
    from doubles.fulcio import GITHUB, LocalFulcio, pem

    ca = LocalFulcio.create()
    root = str(ca.write_trusted_root(tmp_path / "trusted_root.json"))
    good, _ = ca.leaf()
    _check_chain("http://fulcio", pem(good), ca.chain_pem(), GITHUB, root)
    with pytest.raises(SigningError, match="issuer .* does not match 'https://k8s.example'"):
        _check_chain("http://fulcio", pem(good), ca.chain_pem(), "https://k8s.example", root)
    no_eku, _ = ca.leaf(code_signing=False)
    with pytest.raises(SigningError, match="code-signing"):
        _check_chain("http://fulcio", pem(no_eku), ca.chain_pem(), GITHUB, root)
    rogue, _ = LocalFulcio.create(name="rogue").leaf()
    with pytest.raises(SigningError, match="does not chain to a trusted Fulcio root"):
        _check_chain("http://fulcio", pem(rogue), ca.chain_pem(), GITHUB, root)


def test_hostile_token_files_and_claims(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    with pytest.raises(IdentityTokenInvalidError, match="not a regular file"):
        identity_token(config({"signers.x509.identity.token.file": str(fifo)}))
    with pytest.raises(IdentityTokenInvalidError, match="not valid before an impossible time"):
        _token(tmp_path, jwt(nbf=1e300)).check_fresh()
