"""Retries: transient failures are retried with backoff until the deadline; others return at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chainmail._internal.http import RetryPolicy, TransientError, request


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
