"""RegistryClient without the real registry: references, docker config, and the Bearer token flow."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from chainmail._internal.http import RetryPolicy
from chainmail._internal.registry import (
    DOCKER_HUB,
    Reference,
    RegistryClient,
    is_local,
    normalize_host,
    parse_docker_config,
)
from chainmail.errors import ConfigError, InputError, RegistryAuthError, StorageError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "want"), [
    ("alpine", (DOCKER_HUB, "library/alpine", "", "")),
    ("alpine:3.20", (DOCKER_HUB, "library/alpine", "3.20", "")),
    ("docker.io/foo/bar:1", (DOCKER_HUB, "foo/bar", "1", "")),
    ("registry-1.docker.io/library/x", (DOCKER_HUB, "library/x", "", "")),
    ("foo/bar", (DOCKER_HUB, "foo/bar", "", "")),
    ("127.0.0.1:5000/demo/app@" + DIGEST, ("127.0.0.1:5000", "demo/app", "", DIGEST)),
    ("localhost:5000/x:tag", ("localhost:5000", "x", "tag", "")),
    ("localhost/x", ("localhost", "x", "", "")),
    ("ghcr.io/a/b/c:v1@" + DIGEST, ("ghcr.io", "a/b/c", "v1", DIGEST)),
    ("reg.example:443/ns/img_name-x.y:1.0-rc_1", ("reg.example:443", "ns/img_name-x.y", "1.0-rc_1", "")),
])
def test_reference_parse(text: str, want: tuple[str, str, str, str]) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == want
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize("text", [
    "", "ghcr.io/UPPER/case", "ghcr.io/a//b", "ghcr.io/a/b@sha256:abc", "ghcr.io/a/b@sha256:" + "AB" * 32,
    "ghcr.io/a/b:-bad", "ghcr.io/a/b:" + "t" * 129, "ghcr.io/", "https://ghcr.io/a/b",
])
def test_reference_parse_rejects(text: str) -> None:
    with pytest.raises(InputError):
        Reference.parse(text)


def test_reference_helpers() -> None:
    ref = Reference.parse("ghcr.io/a/b:v1")
    assert ref.identifier == "v1"
    assert ref.with_digest(DIGEST).identifier == DIGEST
    assert str(ref.with_digest(DIGEST)) == f"ghcr.io/a/b@{DIGEST}"
    assert Reference.parse("ghcr.io/a/b").identifier == "latest"
    assert ref.name == "ghcr.io/a/b"


def test_hosts_and_schemes() -> None:
    assert normalize_host("https://index.docker.io/v1/") == DOCKER_HUB
    assert normalize_host("http://reg.example:5000/path") == "reg.example:5000"
    assert all(is_local(h) for h in ("localhost", "localhost:5000", "127.0.0.1:5000", "127.0.0.2", "[::1]:80"))
    assert not any(is_local(h) for h in ("ghcr.io", "10.0.0.1:5000", "localhost.example.com"))
    client = RegistryClient()
    assert client.scheme("127.0.0.1:5000") == "http"
    assert client.scheme("ghcr.io") == "https"
    assert RegistryClient(insecure=True).scheme("reg.internal:5000") == "http"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_docker_config_shapes() -> None:
    creds, _ = parse_docker_config({"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hub:pw:with:colons")},
        "ghcr.io": {"username": "u", "password": "p"},
        "quay.io": {"identitytoken": "refresh"},
        "empty.example": {},
    }}, "test")
    assert creds[DOCKER_HUB].username == "hub" and creds[DOCKER_HUB].password == "pw:with:colons"
    assert (creds["ghcr.io"].username, creds["ghcr.io"].password) == ("u", "p")
    assert creds["quay.io"].identity_token == "refresh"
    assert "empty.example" not in creds
    assert "pw" not in repr(creds[DOCKER_HUB])
    legacy, _ = parse_docker_config({"reg.example": {"auth": _b64("a:b")}}, "legacy .dockercfg")
    assert legacy["reg.example"].password == "b"
    with pytest.raises(ConfigError):
        parse_docker_config({"auths": {"x": {"auth": "%%%"}}}, "bad")


def test_docker_config_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / ".dockerconfigjson").write_text(json.dumps({"auths": {"reg.example": {"auth": _b64("a:b")}}}))
    assert RegistryClient(docker_config=secret_dir).credentials("reg.example").username == "a"
    file_path = tmp_path / "cfg.json"
    file_path.write_text(json.dumps({"auths": {"localhost:5000": {"auth": _b64("c:d")}}}))
    client = RegistryClient(docker_config=file_path)
    assert client.credentials("127.0.0.1:5000").username == "c"  # localhost ↔ 127.0.0.1
    assert client.credentials("other.example") is None
    client.add_credentials("other.example", "sa", "pull-secret")
    client.add_credentials("localhost:5000", "sa", "ignored")
    assert client.credentials("other.example").username == "sa"
    assert client.credentials("localhost:5000").username == "c"  # explicit config wins
    with pytest.raises(ConfigError):
        RegistryClient(docker_config=tmp_path / "missing.json").credentials("x")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError):
        RegistryClient(docker_config=tmp_path / "broken.json").credentials("x")
    home = tmp_path / "home"
    (home / "dockercfg").mkdir(parents=True)
    (home / "dockercfg" / "config.json").write_text(json.dumps({"auths": {"env.example": {"auth": _b64("e:f")}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "dockercfg"))
    assert RegistryClient().credentials("env.example").username == "e"


# -- a tiny token-auth registry ------------------------------------------------------------------------

class _TokenRegistry:
    """Distribution's token flow: /v2/ answers 401 Bearer; /token hands out scoped tokens for Basic creds."""

    def __init__(self) -> None:
        self.token_requests: list[dict[str, list[str]]] = []
        self.requests: list[tuple[str, str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                url = urlparse(self.path)
                auth = self.headers.get("Authorization", "")
                outer.requests.append((self.command, url.path, auth))
                if url.path == "/token":
                    query = parse_qs(url.query)
                    outer.token_requests.append(query)
                    if auth != "Basic " + _b64("robot:pw"):
                        self._send(401)
                        return
                    body = json.dumps({"token": "tok:" + query["scope"][0], "expires_in": 300}).encode()
                    self._send(200, body, {"Content-Type": "application/json"})
                    return
                repo = url.path[len("/v2/"):].rsplit("/manifests/", 1)[0]
                needed = f"repository:{repo}:pull"
                if auth not in (f"Bearer tok:{needed}", f"Bearer tok:{needed},push"):
                    challenge = (f'Bearer realm="http://{outer.host}/token",service="test-registry",'
                                 f'scope="{needed}"')
                    self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                               {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
                    return
                body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
                digest = "sha256:" + __import__("hashlib").sha256(body).hexdigest()
                self._send(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                       "Docker-Content-Digest": digest})

            do_GET = do_HEAD = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_registry() -> Iterator[_TokenRegistry]:
    reg = _TokenRegistry()
    yield reg
    reg.close()


def _config(tmp_path: Path, host: str, user: str, password: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {host: {"auth": _b64(f"{user}:{password}")}}}))
    return path


def test_bearer_token_flow_and_cache(token_registry: _TokenRegistry, tmp_path: Path) -> None:
    client = RegistryClient(docker_config=_config(tmp_path, token_registry.host, "robot", "pw"),
                            retry=RetryPolicy(deadline=2))
    raw, media_type, digest = client.get_manifest(f"{token_registry.host}/team/app:v1")
    assert media_type == "application/vnd.oci.image.manifest.v1+json" and digest.startswith("sha256:")
    assert token_registry.token_requests[0]["scope"] == ["repository:team/app:pull"]
    assert token_registry.token_requests[0]["service"] == ["test-registry"]
    # cached per repository + scope: a second call needs no token and no 401
    before = len(token_registry.requests)
    assert client.head_manifest(f"{token_registry.host}/team/app:v1") is not None
    assert len(token_registry.token_requests) == 1
    assert len(token_registry.requests) == before + 1
    # another repository: the challenge is known, so the token is fetched before the request
    client.head_manifest(f"{token_registry.host}/team/other:v1")
    assert token_registry.token_requests[1]["scope"] == ["repository:team/other:pull"]
    assert [r for r in token_registry.requests[before + 1:] if r[0] == "HEAD"][0][2].startswith("Bearer ")


def test_bearer_wrong_credentials(token_registry: _TokenRegistry, tmp_path: Path) -> None:
    client = RegistryClient(docker_config=_config(tmp_path, token_registry.host, "robot", "WRONG"),
                            retry=RetryPolicy(deadline=2))
    with pytest.raises(RegistryAuthError) as info:
        client.head_manifest(f"{token_registry.host}/team/app:v1")
    assert token_registry.host in str(info.value) and "team/app" in str(info.value)
    assert "WRONG" not in info.value.diagnostics()


def test_anonymous_token_refused(token_registry: _TokenRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 ) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # empty: no credentials at all
    client = RegistryClient(retry=RetryPolicy(deadline=2))
    with pytest.raises(RegistryAuthError) as info:
        client.get_manifest(f"{token_registry.host}/team/app:v1")
    assert "no credentials" in info.value.diagnostics()


def test_manifest_digest_mismatch_is_rejected(token_registry: _TokenRegistry, tmp_path: Path) -> None:
    client = RegistryClient(docker_config=_config(tmp_path, token_registry.host, "robot", "pw"),
                            retry=RetryPolicy(deadline=2))
    with pytest.raises(StorageError, match="does not match"):
        client.get_manifest(f"{token_registry.host}/team/app@sha256:" + "00" * 32)
