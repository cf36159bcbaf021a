"""Retries: transient failures are retried with backoff until the deadline; others return at once.

And the limits: body size, wall-clock time per attempt, redirects and where credentials may go."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chainmail._internal.http import BadResponseError, RetryPolicy, TransientError, request, same_origin
from doubles.hostile import HostileServer, flood, redirect, reply, short, slow_headers, trickle


class _Script(BaseHTTPRequestHandler):
    replies: list[tuple[int, dict[str, str]]] = []
    hits = 0

    def do_GET(self) -> None:
        cls = type(self)
        status, headers = cls.replies[min(cls.hits, len(cls.replies) - 1)]
        cls.hits += 1
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Script]]]:
    handler = type("H", (_Script,), {"replies": [], "hits": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", handler
    srv.shutdown()


def test_5xx_then_success(server: tuple[str, type[_Script]]) -> None:
    url, handler = server
    handler.replies = [(503, {}), (502, {}), (200, {})]
    policy = RetryPolicy(deadline=10, initial_backoff=0.01)
    assert request("GET", url, policy=policy).status_code == 200
    assert handler.hits == 3
    assert policy.retries == 2


def test_429_honours_retry_after(server: tuple[str, type[_Script]]) -> None:
    url, handler = server
    handler.replies = [(429, {"Retry-After": "0"}), (200, {})]
    assert request("GET", url, policy=RetryPolicy(deadline=5)).status_code == 200
    assert handler.hits == 2


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_permanent_failures_are_not_retried(server: tuple[str, type[_Script]], status: int) -> None:
    url, handler = server
    handler.replies = [(status, {})]
    assert request("GET", url, policy=RetryPolicy(deadline=5, initial_backoff=0.01)).status_code == status
    assert handler.hits == 1


def test_deadline_returns_last_transient_response(server: tuple[str, type[_Script]]) -> None:
    url, handler = server
    handler.replies = [(503, {})]
    resp = request("GET", url, policy=RetryPolicy(deadline=0.3, initial_backoff=0.05, max_backoff=0.05))
    assert resp.status_code == 503
    assert handler.hits >= 2


def test_connection_refused_until_deadline() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(TransientError, match="ConnectionError"):
        request("GET", f"http://127.0.0.1:{port}/", policy=RetryPolicy(deadline=0.3, initial_backoff=0.05))


def test_backoff_is_bounded() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=2.0)
    assert all(0 <= policy.backoff(n) <= 2.0 for n in range(20))


# -- limits a hostile server cannot break ------------------------------------------------------------

def _fast(deadline: float = 1.0) -> RetryPolicy:
    """A policy whose attempts and deadline are short enough for unit tests."""
    return RetryPolicy(deadline=deadline, attempt_limit=deadline, initial_backoff=0.05, max_backoff=0.1)


@pytest.fixture
def evil() -> Iterator[HostileServer]:
    server = HostileServer(max_lifetime=60)
    yield server
    server.close()


def test_declared_length_over_the_cap_is_refused_before_reading(evil: HostileServer) -> None:
    evil.on("/big", flood(1 << 30))
    started = time.monotonic()
    with pytest.raises(BadResponseError, match="declares 1024 MiB, over the 1 MiB limit"):
        request("GET", f"{evil.url}/big", policy=_fast(), max_bytes=1 << 20)
    assert time.monotonic() - started < 2


def test_streamed_body_stops_at_the_cap(evil: HostileServer) -> None:
    evil.on("/big", flood(1 << 30, declare=False))
    with pytest.raises(BadResponseError, match="larger than the 1 MiB limit"):
        request("GET", f"{evil.url}/big", policy=_fast(), max_bytes=1 << 20)


def test_body_at_the_cap_is_read_whole(evil: HostileServer) -> None:
    evil.on("/ok", flood(1 << 20, declare=False))
    assert len(request("GET", f"{evil.url}/ok", policy=_fast(), max_bytes=1 << 20).content) == 1 << 20


def test_gzip_bomb_is_capped_after_decoding(evil: HostileServer) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))
    evil.on("/bomb", reply(200, bomb, {"Content-Encoding": "gzip"}))
    with pytest.raises(BadResponseError, match="larger than"):
        request("GET", f"{evil.url}/bomb", policy=_fast(), max_bytes=1 << 20)


def test_head_is_not_capped_by_its_content_length(evil: HostileServer) -> None:
    evil.on("/big", flood(1 << 30))
    resp = request("HEAD", f"{evil.url}/big", policy=_fast(), max_bytes=1 << 20)
    assert resp.status_code == 200 and resp.headers["Content-Length"] == str(1 << 30)


def test_trickling_body_ends_at_the_deadline(evil: HostileServer) -> None:
    evil.on("/slow", trickle(b"x" * 1000, 0.2))
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out|too slow"):
        request("GET", f"{evil.url}/slow", policy=_fast(1.0))
    assert time.monotonic() - started < 3


def test_trickling_headers_end_at_the_deadline(evil: HostileServer) -> None:
    evil.on("/slow", slow_headers(0.2))
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        request("GET", f"{evil.url}/slow", policy=_fast(1.0))
    assert time.monotonic() - started < 3


def test_truncated_body_is_retried_then_transient(evil: HostileServer) -> None:
    evil.on("/cut", short(b"{}", 5000))
    with pytest.raises(TransientError, match="body cut short"):
        request("GET", f"{evil.url}/cut", policy=_fast(0.5))
    assert len(evil.requests_to("/cut")) >= 2


def test_same_origin_redirect_keeps_credentials(evil: HostileServer) -> None:
    evil.on("/a", redirect("/b"))
    evil.on("/b", reply(200, b"ok"))
    resp = request("GET", f"{evil.url}/a", policy=_fast(), headers={"Authorization": "Bearer t"})
    assert resp.content == b"ok"
    assert evil.requests_to("/b")[0].authorization == "Bearer t"


def test_cross_origin_redirect_drops_every_credential(evil: HostileServer) -> None:
    other = HostileServer(max_lifetime=60)
    try:
        other.on("/blob", reply(200, b"data"))
        evil.on("/a", redirect(f"{other.url}/blob?sig=1"))
        resp = request("GET", f"{evil.url}/a", policy=_fast(), params={"n": "1"},
                       headers={"Authorization": "Bearer attacker-token-value", "Accept": "x/y"})
        assert resp.content == b"data"
        resp = request("GET", f"{evil.url}/a", policy=_fast(), auth=("robot", "hunter2-registry-password"))
        assert resp.content == b"data"
        seen = other.requests_to("/blob")
        assert len(seen) == 2 and all(not s.authorization for s in seen)
        assert seen[0].path == "/blob?sig=1" and seen[0].headers["accept"] == "x/y"
    finally:
        other.close()


def test_redirect_to_another_port_is_another_origin(evil: HostileServer) -> None:
    assert same_origin("http://h:80/a", "http://h/b") and not same_origin("http://h:81/a", "http://h/a")
    assert not same_origin("https://h/a", "http://h/a")


def test_redirect_loops_and_chains_are_bounded(evil: HostileServer) -> None:
    evil.on("/loop", redirect("/loop"))
    with pytest.raises(BadResponseError, match="more than 5 redirects"):
        request("GET", f"{evil.url}/loop", policy=_fast())
    evil.on("/ftp", redirect("ftp://127.0.0.1/x"))
    with pytest.raises(BadResponseError, match="non-HTTP"):
        request("GET", f"{evil.url}/ftp", policy=_fast())


def test_writes_do_not_follow_redirects(evil: HostileServer) -> None:
    evil.on("/put", redirect("/elsewhere"))
    assert request("PUT", f"{evil.url}/put", policy=_fast(), data=b"x").status_code == 307
    assert not evil.requests_to("/elsewhere")


def test_error_messages_leave_out_the_query(evil: HostileServer) -> None:
    evil.on("/cut", short(b"", 10))
    with pytest.raises(TransientError) as info:
        request("GET", f"{evil.url}/cut?X-Amz-Signature=secretsig", policy=_fast(0.2))
    assert "secretsig" not in str(info.value) and "/cut" in str(info.value)


class _KeepAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as registries and the API server speak: one connection serves many requests."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, int]] = []

    def _answer(self, status: int, body: bytes, length: int | None = None) -> None:
        type(self).seen.append((self.command, self.client_address[1]))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(401 if self.path == "/private" else 200, b"", length=1234)

    def do_GET(self) -> None:
        if self.path == "/empty":
            self.send_response(204)
            type(self).seen.append((self.command, self.client_address[1]))
            self.end_headers()
            return
        self._answer(200, b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("first", [("HEAD", "/"), ("HEAD", "/private"), ("GET", "/empty")],
                         ids=["head-200", "head-401", "get-204"])
def test_a_bodiless_answer_leaves_its_connection_fit_for_the_next_request(first: tuple[str, str]) -> None:
    """A pooled connection reused after a HEAD or a 204 must carry the next request on the first try."""
    handler = type("K", (_KeepAlive,), {"seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    policy = RetryPolicy(deadline=5, initial_backoff=0.01)
    held = []  # callers keep the answer (to read its headers) while they send the next request
    try:
        for _ in range(3):
            held.append(request(first[0], base + first[1], policy=policy))
            held.append(request("GET", base + "/", policy=policy))
            assert held[-1].status_code == 200
    finally:
        srv.shutdown()
    assert policy.retries == 0
    assert [m for m, _ in handler.seen] == [first[0], "GET"] * 3
    assert len({port for _, port in handler.seen}) == 1  # one keep-alive connection throughout
