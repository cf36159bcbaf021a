"""RegistryClient without the real registry: references, docker config, and the Bearer token flow."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from chainmail._internal.http import RetryPolicy
from chainmail._internal.registry import (
    DOCKER_HUB,
    MAX_MANIFEST_BYTES,
    MAX_REFERRER_PAGES,
    OCI_INDEX,
    OCI_MANIFEST,
    Reference,
    RegistryClient,
    is_local,
    normalize_host,
    parse_docker_config,
    sha256_of,
)
from chainmail.errors import ConfigError, InputError, RegistryAuthError, RegistryUnreachableError, StorageError
from doubles.hostile import HostileServer, flood, manifest, nested, redirect, reply, short, trickle

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


# -- hostile registries: limits, paging, digests and where credentials go --------------------------------

def _hostile_client(tmp_path: Path, server: HostileServer, *, deadline: float = 2.0, **kwargs: object,
                    ) -> RegistryClient:
    path = _config(tmp_path, server.host, "robot", "hunter2-registry-password")
    policy = RetryPolicy(deadline=deadline, attempt_limit=deadline, initial_backoff=0.05, max_backoff=0.1)
    return RegistryClient(docker_config=path, retry=policy, **kwargs)  # type: ignore[arg-type]


def _index(*digests: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": 1, "artifactType": "x/y"} for d in digests]}).encode()


@pytest.fixture
def evil() -> Iterator[HostileServer]:
    server = HostileServer(basic=("robot", "hunter2-registry-password"), max_lifetime=60)
    yield server
    server.close()


def test_referrers_follow_same_host_pages(evil: HostileServer, tmp_path: Path) -> None:
    base = f"/v2/demo/referrers/{DIGEST}"
    evil.on(base, reply(200, _index("sha256:" + "01" * 32), {"Link": f'<{base}?last=1>; rel="next"'}))
    evil.on(f"{base}?last=1", reply(200, _index("sha256:" + "02" * 32)))
    found = _hostile_client(tmp_path, evil).referrers(f"{evil.host}/demo", DIGEST)
    assert [d["digest"][-2:] for d in found or []] == ["01", "02"]


def test_referrers_paging_loop_is_refused(evil: HostileServer, tmp_path: Path) -> None:
    base = f"/v2/demo/referrers/{DIGEST}"
    evil.on(base, reply(200, _index(), {"Link": f'<{base}>; rel="next"'}))
    with pytest.raises(StorageError, match="paging loop"):
        _hostile_client(tmp_path, evil).referrers(f"{evil.host}/demo", DIGEST)
    assert len(evil.requests_to(base)) == 2  # the first page (a 401 challenge, then with Basic auth)


def test_referrers_endless_pages_stop_at_the_cap(evil: HostileServer, tmp_path: Path) -> None:
    base = f"/v2/demo/referrers/{DIGEST}"
    counter = iter(range(10**6))

    def endless(h: object) -> None:
        reply(200, _index(), {"Link": f'<{base}?page={next(counter)}>; rel="next"'})(h)  # type: ignore[arg-type]

    evil.on(base, endless)
    with pytest.raises(StorageError, match=f"more than {MAX_REFERRER_PAGES} pages"):
        _hostile_client(tmp_path, evil).referrers(f"{evil.host}/demo", DIGEST)


def test_referrers_link_to_another_host_is_not_followed(evil: HostileServer, tmp_path: Path) -> None:
    other = HostileServer(max_lifetime=60)
    try:
        evil.on(f"/v2/demo/referrers/{DIGEST}", reply(200, _index(), {
            "Link": f'<{other.url}/v2/demo/referrers/{DIGEST}?n=2>; rel="next"'}))
        with pytest.raises(StorageError, match="points to another host"):
            _hostile_client(tmp_path, evil).referrers(f"{evil.host}/demo", DIGEST)
        assert other.seen == []
    finally:
        other.close()


def test_deeply_nested_referrers_and_manifests_are_storage_errors(evil: HostileServer, tmp_path: Path) -> None:
    evil.on(f"/v2/demo/referrers/{DIGEST}", reply(200, nested(100_000)))
    evil.on("/v2/demo/manifests/deep", manifest(nested(100_000)))
    client = _hostile_client(tmp_path, evil)
    with pytest.raises(StorageError, match="nested deeper than 128"):
        client.referrers(f"{evil.host}/demo", DIGEST)
    with pytest.raises(StorageError, match="nested deeper than 128"):
        client.get_manifest(f"{evil.host}/demo:deep")


def test_oversized_manifest_and_blob_are_refused(evil: HostileServer, tmp_path: Path) -> None:
    evil.on("/v2/demo/manifests/big", flood(MAX_MANIFEST_BYTES + 1, declare=False))
    blob = b"x" * 5000
    evil.on(f"/v2/demo/blobs/{sha256_of(blob)}", reply(200, blob))
    client = _hostile_client(tmp_path, evil, max_blob_bytes=4096)
    with pytest.raises(StorageError, match="larger than the 4 MiB limit"):
        client.get_manifest(f"{evil.host}/demo:big")
    with pytest.raises(StorageError, match="declares 5000 bytes, over the 4096 bytes limit"):
        client.get_blob(f"{evil.host}/demo", sha256_of(blob))
    assert _hostile_client(tmp_path, evil).get_blob(f"{evil.host}/demo", sha256_of(blob)) == blob


def test_blob_digests_are_checked_for_every_algorithm(evil: HostileServer, tmp_path: Path) -> None:
    blob = b"payload"
    sha512 = "sha512:" + hashlib.sha512(blob).hexdigest()
    evil.on(f"/v2/demo/blobs/{sha512}", reply(200, blob))
    evil.on(f"/v2/demo/blobs/{DIGEST}", reply(200, blob))
    client = _hostile_client(tmp_path, evil)
    assert client.get_blob(f"{evil.host}/demo", sha512) == blob
    with pytest.raises(StorageError, match="does not match its digest"):
        client.get_blob(f"{evil.host}/demo", DIGEST)
    with pytest.raises(StorageError, match="unsupported algorithm 'md5'"):
        client.get_blob(f"{evil.host}/demo", "md5:" + "0" * 32)
    with pytest.raises(StorageError, match="invalid blob digest"):
        client.get_blob(f"{evil.host}/demo", "sha256:../../etc")


def test_503_forever_is_unreachable_at_the_deadline(evil: HostileServer, tmp_path: Path) -> None:
    evil.on("/v2/", reply(503), prefix=True)
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError, match="HTTP 503 at the retry deadline"):
        _hostile_client(tmp_path, evil, deadline=1.0).get_manifest(f"{evil.host}/demo:v1")
    assert time.monotonic() - started < 3


def test_blob_redirect_to_storage_gets_no_credentials(evil: HostileServer, tmp_path: Path) -> None:
    storage = HostileServer(max_lifetime=60)
    try:
        blob = b"signature payload"
        storage.on("/bucket/blob", reply(200, blob))
        evil.on(f"/v2/demo/blobs/{sha256_of(blob)}", redirect(f"{storage.url}/bucket/blob?X-Amz-Signature=s"))
        assert _hostile_client(tmp_path, evil).get_blob(f"{evil.host}/demo", sha256_of(blob)) == blob
        assert [s.authorization for s in storage.seen] == [""]
        assert evil.requests_to("/blobs/")[-1].authorization.startswith("Basic ")
    finally:
        storage.close()


def test_upload_location_on_another_host_gets_no_credentials(evil: HostileServer, tmp_path: Path) -> None:
    other = HostileServer(max_lifetime=60)
    try:
        evil.on("/v2/demo/blobs/uploads/", reply(202, b"", {"Location": f"{other.url}/upload/1"}), method="POST")
        other.on("/upload/1", reply(201), method="PUT")
        _hostile_client(tmp_path, evil).push_blob(f"{evil.host}/demo", b"layer")
        assert [(s.method, s.authorization) for s in other.seen] == [("PUT", "")]
    finally:
        other.close()


def test_token_realm_over_http_on_another_host_gets_no_login(evil: HostileServer, tmp_path: Path) -> None:
    realm = HostileServer(max_lifetime=60)
    try:
        port = realm.host.rsplit(":", 1)[1]
        bearer = HostileServer(max_lifetime=60)
        bearer.on("/v2/", reply(401, b"", {"WWW-Authenticate": f'Bearer realm="http://localhost:{port}/token"'}),
                  prefix=True)
        client = _hostile_client(tmp_path, bearer)
        with pytest.raises(RegistryAuthError, match="plain http on another host") as info:
            client.get_manifest(f"{bearer.host}/demo:v1")
        assert "hunter2" not in info.value.diagnostics()
        assert realm.seen == []
        bearer.close()
    finally:
        realm.close()


def test_interactive_context_uses_the_short_deadline() -> None:
    from chainmail.config import Config
    from chainmail.context import INTERACTIVE_DEADLINE, Context

    ctx = Context()
    assert ctx.retry.deadline == 300
    client = ctx.registry
    ctx.make_interactive()
    assert ctx.retry.deadline == INTERACTIVE_DEADLINE == 30 and client.retry.deadline == 30
    assert client.max_blob_bytes == 16 * 1024 * 1024
    explicit = Context(config=Config.from_mapping({"chainmail.retry.deadline-seconds": "7",
                                                   "chainmail.registry.max-blob-bytes": "2048"}))
    assert explicit.make_interactive().retry.deadline == 7
    assert explicit.registry.max_blob_bytes == 2048
    with pytest.raises(ConfigError, match="max-blob-bytes"):
        _ = Context(config=Config.from_mapping({"chainmail.registry.max-blob-bytes": "5"})).registry


def test_head_with_junk_headers_falls_back_to_get(evil: HostileServer, tmp_path: Path) -> None:
    raw = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    evil.on("/v2/demo/manifests/v1", short(b"", len(raw), {"Docker-Content-Digest": "sha256:../../x",
                                                           "Content-Type": OCI_MANIFEST}), method="HEAD")
    evil.on("/v2/demo/manifests/v1", manifest(raw), method="GET")
    assert _hostile_client(tmp_path, evil).head_manifest(f"{evil.host}/demo:v1") == (
        sha256_of(raw), OCI_MANIFEST, len(raw))


# -- hostile token endpoints ---------------------------------------------------------------------------

def _bearer_server(realm_path: str = "/token") -> HostileServer:
    server = HostileServer(max_lifetime=60)
    server.on("/v2/", reply(401, b"", {"WWW-Authenticate": f'Bearer realm="{server.url}{realm_path}",service="s"'}),
              prefix=True)
    return server


def _with_bearer(server: HostileServer, behaviour: Any) -> Any:
    """``behaviour`` for a request with a Bearer token, the server's challenge for one without."""
    challenge = reply(401, b"", {"WWW-Authenticate": f'Bearer realm="{server.url}/token",service="s"'})

    def run(h: Any) -> None:
        (behaviour if h.headers.get("Authorization", "").startswith("Bearer ") else challenge)(h)

    return run


@pytest.mark.parametrize(("behaviour", "words"), [
    (flood(8 * 1024 * 1024), "limit"),
    (flood(8 * 1024 * 1024, declare=False), "limit"),
    (reply(200, b"[" * 200_000), "JSON"),
    (reply(200, b'{"token": "a b\\r\\nX-Evil: 1"}'), "malformed token"),
    (reply(200, b'{"expires_in": 60}'), "no 'token'"),
    (reply(500, b"oops"), "unavailable"),
])
def test_hostile_token_answers_are_clean_errors(tmp_path: Path, behaviour: object, words: str) -> None:
    from chainmail._internal.regauth import TOKENS

    TOKENS.clear()
    server = _bearer_server()
    try:
        server.on("/token", behaviour)  # type: ignore[arg-type]
        client = _hostile_client(tmp_path, server, deadline=1.0)
        with pytest.raises(StorageError) as info:
            client.get_manifest(f"{server.host}/demo:v1")
        assert words in str(info.value)
        assert "hunter2" not in info.value.diagnostics() and "X-Evil" not in info.value.diagnostics()
    finally:
        server.close()


def test_token_never_reaches_logs_or_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Anything logged or raised while a token is in use names neither it nor the password."""
    import logging

    from chainmail._internal.regauth import TOKENS

    TOKENS.clear()
    server = _bearer_server()
    secret_token = "SECRETTOKEN-" + "x" * 40
    try:
        server.on("/token", reply(200, json.dumps({"access_token": secret_token, "expires_in": 300}).encode()))
        server.on("/v2/demo/manifests/v1", _with_bearer(server, reply(403, b'{"errors": [{"code": "DENIED"}]}')))
        client = _hostile_client(tmp_path, server)
        with caplog.at_level(logging.DEBUG), pytest.raises(RegistryAuthError) as info:
            client.get_manifest(f"{server.host}/demo:v1")
        assert secret_token not in info.value.diagnostics() and secret_token not in caplog.text
        assert "hunter2" not in caplog.text
        assert [s.authorization for s in server.requests_to("/manifests/")][-1] == f"Bearer {secret_token}"
        token_asks = server.requests_to("/token")
        assert token_asks and token_asks[0].authorization.startswith("Basic ")
    finally:
        server.close()


def test_token_endpoint_redirect_to_another_host_gets_no_login(tmp_path: Path) -> None:
    from chainmail._internal.regauth import TOKENS

    TOKENS.clear()
    server = _bearer_server()
    other = HostileServer(max_lifetime=60)
    try:
        other.on("/elsewhere", reply(200, b'{"token": "tok"}'))
        server.on("/token", redirect(f"{other.url}/elsewhere"))
        server.on("/v2/demo/manifests/v1", _with_bearer(server, reply(404)))
        client = _hostile_client(tmp_path, server)
        assert client.get_manifest(f"{server.host}/demo:v1") is None
        assert [s.authorization for s in other.seen] == [""]
    finally:
        other.close()
        server.close()


def test_basic_403_on_push_is_push_denied_but_401_is_bad_login(evil: HostileServer, tmp_path: Path) -> None:
    from chainmail.errors import RegistryPushDeniedError

    evil.on("/v2/demo/manifests/v1", reply(403, b'{"errors": [{"code": "DENIED"}]}'), method="PUT")
    client = _hostile_client(tmp_path, evil)
    with pytest.raises(RegistryPushDeniedError) as info:
        client.put_manifest(f"{evil.host}/demo", "v1", b"{}", OCI_MANIFEST)
    assert info.value.exit_code == 34 and "hunter2" not in info.value.diagnostics()
    (tmp_path / "w").mkdir()
    wrong = RegistryClient(docker_config=_config(tmp_path / "w", evil.host, "robot", "not-it"))
    with pytest.raises(RegistryAuthError) as bad:
        wrong.put_manifest(f"{evil.host}/demo", "v1", b"{}", OCI_MANIFEST)
    assert type(bad.value) is RegistryAuthError and "not-it" not in bad.value.diagnostics()


def test_insufficient_scope_on_a_read_is_an_auth_error_and_only_our_repository_widens(tmp_path: Path) -> None:
    from chainmail._internal.regauth import TOKENS

    TOKENS.clear()
    server = _bearer_server()
    try:
        server.on("/token", reply(200, b'{"token": "pull-only", "expires_in": 300}'))
        challenge = (f'Bearer realm="{server.url}/token",service="s",error="insufficient_scope",'
                     'scope="repository:demo:pull repository:elsewhere:pull,push"')
        server.on("/v2/demo/manifests/v1", _with_bearer(server, reply(401, b"", {"WWW-Authenticate": challenge})))
        client = _hostile_client(tmp_path, server)
        with pytest.raises(RegistryAuthError) as info:
            client.get_manifest(f"{server.host}/demo:v1")
        assert info.value.exit_code == 17
        asked = [parse_qs(urlparse(s.path).query).get("scope") for s in server.requests_to("/token")]
        assert asked == [["repository:demo:pull"], ["repository:demo:pull"]]  # one re-fetch, nothing elsewhere
    finally:
        server.close()


def test_anonymous_registry_never_reads_the_docker_config(evil: HostileServer, tmp_path: Path) -> None:
    """Credentials are looked up only once a registry asks for them: a missing config is no error until then."""
    anonymous = HostileServer(max_lifetime=60)
    try:
        client = RegistryClient(docker_config=tmp_path / "missing")
        assert client.get_manifest(f"{anonymous.host}/demo:v1") is None
        with pytest.raises(ConfigError):
            client.get_manifest(f"{evil.host}/demo:v1")
    finally:
        anonymous.close()


def test_a_registry_that_changed_scheme_is_followed_once(evil: HostileServer, tmp_path: Path) -> None:
    """The process remembered Bearer for this host; the registry now wants Basic: one more try, with the login."""
    from chainmail._internal import registry as registry_mod
    from chainmail._internal.regauth import TOKENS, Challenge

    TOKENS.clear()
    evil.on("/token", reply(200, b'{"token": "old-scheme-token"}'))
    with registry_mod._CHALLENGES_LOCK:
        registry_mod._CHALLENGES[evil.host] = Challenge("bearer", {"realm": f"{evil.url}/token"})
    client = _hostile_client(tmp_path, evil)
    assert client.get_manifest(f"{evil.host}/demo:v1") is None  # 404 once authenticated
    sent = [s.authorization.split(" ")[0] for s in evil.requests_to("/manifests/")]
    assert sent == ["Bearer", "Basic"]


def test_a_trickling_token_endpoint_cannot_hold_us(tmp_path: Path) -> None:
    from chainmail._internal.regauth import TOKENS

    TOKENS.clear()
    server = _bearer_server()
    try:
        server.on("/token", trickle(b'{"token": "' + b"t" * 200 + b'"}', 0.05))
        client = _hostile_client(tmp_path, server, deadline=1.0)
        started = time.monotonic()
        with pytest.raises(RegistryUnreachableError):
            client.get_manifest(f"{server.host}/demo:v1")
        assert time.monotonic() - started < 15
    finally:
        server.close()
