"""chainmail against the real ``docker-registry`` configured with ``auth: token`` and a JWT issuer of ours.

Logins: ``pusher`` may pull and push everywhere; ``reader`` may only pull; ``teamonly`` may pull and
push ``team/*`` only; anonymous may pull ``public/*``. The issuer (``token_issuer.py``) grants the intersection of what is asked and what is
allowed, as docker's auth server does, and logs every token request.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from regauth_support import STORE, docker_config, no_ambient_docker_config, run_file
from token_issuer import TokenIssuer

from chainmail._internal.http import request_counts, reset_request_counts
from chainmail._internal.regauth import TOKENS
from chainmail._internal.registry import Reference, RegistryClient
from chainmail.errors import RegistryAuthError, RegistryPushDeniedError
from clirun import cli
from doubles.registry import RegistryServer, push_test_image, start_registry, stop_registry

pytestmark = pytest.mark.registry

USERS = {"pusher": "push-pass-1", "reader": "read-pass-2", "teamonly": "team-pass-3"}


def rights(user: str | None, repository: str) -> set[str]:
    if user == "pusher":
        return {"pull", "push"}
    if user == "reader":
        return {"pull"}
    if user == "teamonly":
        return {"pull", "push"} if repository.startswith("team/") else set()
    return {"pull"} if repository.startswith("public/") else set()


class _AdminAuth:
    """``requests`` auth for the set-up helpers: a fresh admin token for the repository in the URL."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    def __call__(self, req: Any) -> Any:
        match = re.match(r"^/v2/(.+?)/(?:manifests|blobs|tags)/", urlsplit(req.url).path)
        if match:
            req.headers["Authorization"] = f"Bearer {self.issuer.admin_token([match.group(1)])}"
        return req


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    issuer = TokenIssuer(tmp_path_factory.mktemp("token-issuer"), USERS, rights)
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def token_registry(issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    import requests

    server = start_registry(tmp_path_factory.mktemp("token-registry"), issuer.registry_auth())
    session = requests.Session()
    session.trust_env = False
    session.auth = _AdminAuth(issuer)
    server._session = session
    yield server
    stop_registry(server)


@pytest.fixture(autouse=True)
def _fresh(issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ambient docker config, no tokens cached from an earlier test, an empty issuer log."""
    no_ambient_docker_config(monkeypatch, tmp_path)
    TOKENS.clear()
    issuer.reset()


def sign_and_store(tmp_path: Path, image: str, key: str, config: Path | None,
                   capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    login = ["--docker-config", str(config)] if config else []
    code, _out, err = cli(["run", "--from-file", str(run_file(tmp_path, image)), "--key", key,
                           "-w", str(tmp_path / "ws"), *login, *STORE], capsys)
    return code, err


def test_sign_store_and_verify_with_tokens(token_registry: RegistryServer, issuer: TokenIssuer, key: str,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(token_registry, "team/app", "token-run")
    config = docker_config(tmp_path / "pusher", token_registry.host, "pusher", USERS["pusher"])
    code, err = sign_and_store(tmp_path, image, key, config, capsys)
    assert code == 0, err
    fetched = [r for r in issuer.requests if r.status == 200]
    # one pull token (the image-exists check), one pull,push token (the pushes and the tag reads)
    assert len(fetched) <= 2, issuer.requests
    assert {s for r in fetched for s in r.scopes} == {"repository:team/app:pull", "repository:team/app:pull,push"}
    assert all(r.user == "pusher" and r.service == "chainmail-test-registry" for r in fetched)
    tag = image.split("@")[1].replace(":", "-")
    assert token_registry.get_manifest("team/app", f"{tag}.sig") is not None
    assert token_registry.get_manifest("team/app", f"{tag}.att") is not None

    # verify in the same process: the cached tokens serve it, no new token request
    code, out, err = cli(["verify", "image", image, "--insecure-ignore-tlog", "--key", str(Path(key, "cosign.pub")),
                          "--docker-config", str(config)], capsys)
    assert code == 0, err
    assert len([r for r in issuer.requests if r.status == 200]) == len(fetched)
    assert USERS["pusher"] not in err + out


def test_concurrent_requests_share_one_token(token_registry: RegistryServer, issuer: TokenIssuer,
                                             tmp_path: Path) -> None:
    image = push_test_image(token_registry, "team/threads", "threads")
    config = docker_config(tmp_path / "reader", token_registry.host, "reader", USERS["reader"])
    client = RegistryClient(docker_config=config)
    assert client.ping(token_registry.host) == "bearer"
    issuer.reset()
    barrier = threading.Barrier(8)
    results: list[object] = []

    def head() -> None:
        barrier.wait()
        results.append(client.head_manifest(image))

    threads = [threading.Thread(target=head) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is not None for r in results)
    assert len(issuer.requests) == 1, issuer.requests
    # a second client of the process (another login source, same login) reuses it too
    RegistryClient(docker_config=config).head_manifest(image)
    assert len(issuer.requests) == 1


def test_push_without_push_rights_is_refused_once_with_its_exit_code(
        token_registry: RegistryServer, issuer: TokenIssuer, key: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(token_registry, "team/readonly", "readonly")
    config = docker_config(tmp_path / "reader", token_registry.host, "reader", USERS["reader"])
    code, err = sign_and_store(tmp_path, image, key, config, capsys)
    assert code == RegistryPushDeniedError.exit_code == 34, err
    assert "refused the push to team/readonly" in err and USERS["reader"] not in err
    assert "Bearer" not in err and "eyJ" not in err  # no token in the message
    # the token was asked for pull,push, refused push on use, re-fetched once with the wider scope: not a loop
    asked = [r.scopes for r in issuer.requests if "repository:team/readonly:pull,push" in r.scopes]
    assert len(asked) == 2, issuer.requests


def test_client_refetches_once_on_insufficient_scope(token_registry: RegistryServer, issuer: TokenIssuer,
                                                     tmp_path: Path) -> None:
    """A push through the client with a pull-only login: one token, one re-fetch, then the typed error."""
    config = docker_config(tmp_path / "reader", token_registry.host, "reader", USERS["reader"])
    client = RegistryClient(docker_config=config)
    with pytest.raises(RegistryPushDeniedError) as info:
        client.push_blob(Reference.parse(f"{token_registry.host}/team/scoped"), b"blob that will not land")
    assert "insufficient_scope" in str(info.value)
    push_requests = [r for r in issuer.requests if any(s.endswith("pull,push") for s in r.scopes)]
    assert len(push_requests) == 2, issuer.requests


def test_wrong_password_exit_code(token_registry: RegistryServer, issuer: TokenIssuer, key: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(token_registry, "team/wrong", "wrong")
    config = docker_config(tmp_path / "wrong", token_registry.host, "pusher", "not-the-password")
    code, err = sign_and_store(tmp_path, image, key, config, capsys)
    assert code == RegistryAuthError.exit_code == 17, err
    assert "refused a token" in err and "not-the-password" not in err
    assert [r.status for r in issuer.requests] == [401]


def test_anonymous_pull(token_registry: RegistryServer, issuer: TokenIssuer, key: str, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(token_registry, "public/app", "anonymous")
    config = docker_config(tmp_path / "pusher", token_registry.host, "pusher", USERS["pusher"])
    code, err = sign_and_store(tmp_path, image, key, config, capsys)
    assert code == 0, err
    TOKENS.clear()
    issuer.reset()
    code, _out, err = cli(["verify", "image", image, "--insecure-ignore-tlog", "--key", str(Path(key, "cosign.pub"))], capsys)
    assert code == 0, err
    assert issuer.requests and all(r.user is None for r in issuer.requests)
    # anonymous on a repository it may not read: a clean auth error (no login to blame)
    private = push_test_image(token_registry, "team/private", "anonymous-denied")
    code, _out, err = cli(["verify", "image", private, "--insecure-ignore-tlog", "--key", str(Path(key, "cosign.pub"))], capsys)
    assert code == RegistryAuthError.exit_code, err
    assert "no credentials for" in err


def test_cross_repository_mount(token_registry: RegistryServer, issuer: TokenIssuer, tmp_path: Path) -> None:
    config = docker_config(tmp_path / "pusher", token_registry.host, "pusher", USERS["pusher"])
    client = RegistryClient(docker_config=config)
    host = token_registry.host
    data = b"a layer shared by two repositories " + tmp_path.name.encode()
    desc = client.push_blob(Reference.parse(f"{host}/team/source"), data)
    issuer.reset()
    reset_request_counts()
    again = client.push_blob(Reference.parse(f"{host}/team/target"), data)
    assert again == desc
    # the token for the target also reads the source: the mount's scope
    assert sorted(issuer.requests[0].scopes) == ["repository:team/source:pull", "repository:team/target:pull,push"]
    sent = request_counts()[host]
    assert sent.get("PUT", 0) == 0 and sent["POST"] >= 1, sent  # mounted: no upload
    assert token_registry.get_blob("team/target", desc["digest"]) == data


def test_mount_from_a_repository_the_login_cannot_read_falls_back_to_upload(
        token_registry: RegistryServer, issuer: TokenIssuer, tmp_path: Path) -> None:
    host = token_registry.host
    data = b"a layer in a vault " + tmp_path.name.encode()
    pusher = RegistryClient(docker_config=docker_config(tmp_path / "p", host, "pusher", USERS["pusher"]))
    pusher.push_blob(Reference.parse(f"{host}/vault/secret"), data)  # the process now knows it is in vault/secret
    limited = RegistryClient(docker_config=docker_config(tmp_path / "t", host, "teamonly", USERS["teamonly"]))
    issuer.reset()
    reset_request_counts()
    desc = limited.push_blob(Reference.parse(f"{host}/team/copy"), data)
    assert ["repository:team/copy:pull,push", "repository:vault/secret:pull"] in [sorted(r.scopes)
                                                                                 for r in issuer.requests]
    assert request_counts()[host].get("PUT") == 1  # uploaded, not mounted
    assert token_registry.get_blob("team/copy", desc["digest"]) == data


@pytest.mark.parametrize("field_name", ["access_token", "both"])
def test_oauth2_style_token_answers(token_registry: RegistryServer, issuer: TokenIssuer, tmp_path: Path,
                                    field_name: str) -> None:
    image = push_test_image(token_registry, "team/oauth", f"oauth-{field_name}")
    client = RegistryClient(docker_config=docker_config(tmp_path / "r", token_registry.host, "reader",
                                                        USERS["reader"]))
    issuer.field_name = field_name
    try:
        assert client.head_manifest(image) is not None
    finally:
        issuer.field_name = "token"
    assert [r.status for r in issuer.requests] == [200]
