"""The direct path of :mod:`chainmail._internal.http` puts the same request on the wire as ``Session.request``.

Each case is sent twice to a recording server, once through :func:`request` (which takes the direct
path for plain inputs) and once through a bare ``requests.Session``, and the two requests are compared:
method, target, headers and body. Inputs the direct path does not handle take ``Session.request``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from chainmail._internal import http
from chainmail._internal.http import RetryPolicy, TransientError, request


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []
    extra: dict[str, str] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append({"method": self.command, "target": self.path, "body": body,
                                "headers": sorted((k.lower(), v) for k, v in self.headers.items())})
        self.send_response(200)
        for k, v in type(self).extra.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_cookies() -> Iterator[None]:
    """The thread's session starts and ends without cookies (a cookie sends later requests the long way)."""
    http.session().cookies.clear()
    yield
    http.session().cookies.clear()


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("R", (_Recorder,), {"seen": [], "extra": {}})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


def _both(url: str, handler: type[_Recorder], method: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What :func:`request` sent, and what a plain ``requests.Session`` sent for the same call."""
    ours = request(method, url, policy=RetryPolicy(deadline=5), **kwargs)
    assert ours.status_code == 200
    reference = requests.Session()
    reference.trust_env = False
    with reference:
        assert reference.request(method, url, timeout=(5, 30), **kwargs).status_code == 200
    first, second = handler.seen[-2:]
    return first, second


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v2/ns/app/manifests/sha256-abc.sig", {"headers": {"Accept": "application/vnd.oci.image.manifest.v1+json"}}),
    ("HEAD", "/v2/ns/app/manifests/v1", {}),
    ("GET", "/list?", {"params": {"limit": "1"}}),
    ("GET", "/list?", {}),
    ("GET", "/apis/tekton.dev/v1/taskruns?limit=500", {"params": {"continue": "a b/c", "labelSelector": "x=y"}}),
    ("GET", "/token", {"params": [("scope", "repository:a:pull"), ("scope", "repository:b:push")],
                       "auth": ("user", "p:ss")}),
    ("GET", "/multi", {"params": {"scope": ["repository:a:pull", "repository:b:pull"], "skip": None, "n": 3}}),
    ("GET", "/latin", {"auth": ("us\u00e9r", "p\u00e4ss"), "params": [("q", "\u00fc")]}),
    ("PUT", "/v2/ns/app/blobs/uploads/0f?_state=AbC-_%3D%3D&digest=sha256%3A00",
     {"data": b"\x00layer", "headers": {"Content-Type": "application/octet-stream"}}),
    ("PATCH", "/apis/tekton.dev/v1/namespaces/ns/taskruns/build-1",
     {"data": b'{"metadata":{}}', "headers": {"content-type": "application/merge-patch+json",
                                              "authorization": "Bearer t0ken"}}),
    ("POST", "/api/v1/log/entries", {"json": {"kind": "hashedrekord", "n": [1, 2.5, None]}}),
    ("POST", "/v2/ns/app/blobs/uploads/", {}),
    ("PUT", "/empty", {"data": b""}),
    ("GET", "/empty", {"data": b""}),
    ("POST", "/both", {"data": b"raw", "json": {"ignored": True}}),
    ("POST", "/json-with-empty-data", {"data": b"", "json": {"a": 1}}),
    ("DELETE", "/v2/ns/app/manifests/sha256:00", {"headers": {"Accept-Encoding": None, "User-Agent": "chainmail/1"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES, ids=[f"{m} {p[:30]}" for m, p, _ in CASES])
def test_direct_path_sends_what_requests_sends(recorder: tuple[str, type[_Recorder]], method: str, path: str,
                                               kwargs: dict[str, Any]) -> None:
    url, handler = recorder
    ours, theirs = _both(url + path, handler, method, **kwargs)
    assert ours == theirs


def test_plain_inputs_take_the_direct_path(recorder: tuple[str, type[_Recorder]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = recorder

    def no_session_request(*args: object, **kwargs: object) -> None:
        raise AssertionError("Session.request used for a plain request")

    monkeypatch.setattr(requests.Session, "request", no_session_request)
    resp = request("PUT", f"{url}/v2/a/b/manifests/v1", data=b"{}", headers={"Content-Type": "x/y"})
    assert (resp.status_code, resp.json(), resp.encoding) == (200, {}, "utf-8")
    assert resp.request.method == "PUT" and resp.url == f"{url}/v2/a/b/manifests/v1"


@pytest.mark.parametrize("kwargs", [{"data": [("grant_type", "refresh_token")]}, {"data": "text"},
                                    {"files": {"f": b"x"}}, {"auth": requests.auth.HTTPDigestAuth("u", "p")}])
def test_other_inputs_take_session_request(recorder: tuple[str, type[_Recorder]], kwargs: dict[str, Any]) -> None:
    url, handler = recorder
    assert http._direct(http.session(), "POST", f"{url}/x", {"timeout": (5, 30), **kwargs}) is None
    ours, theirs = _both(f"{url}/x", handler, "POST", **kwargs)
    if "files" not in kwargs:  # multipart boundaries are random
        assert ours == theirs


@pytest.mark.parametrize("path", ["/a b", "/caf\u00e9", "/x#frag", "/%zz"])
def test_urls_that_need_encoding_take_session_request(recorder: tuple[str, type[_Recorder]], path: str) -> None:
    url, handler = recorder
    assert http._direct(http.session(), "GET", url + path, {"timeout": (5, 30)}) is None
    ours, theirs = _both(url + path, handler, "GET")
    assert ours == theirs


def test_header_injection_is_refused_like_requests(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    with pytest.raises(requests.exceptions.InvalidHeader):
        request("GET", f"{url}/x", headers={"Authorization": "Bearer a\r\nX-Evil: 1"})
    assert handler.seen == []


def test_cookies_are_kept_as_a_session_keeps_them(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    handler.extra = {"Set-Cookie": "sticky=node-2; Path=/"}
    first = request("GET", f"{url}/one")
    assert first.cookies.get("sticky") == "node-2"
    handler.extra = {}
    request("GET", f"{url}/two")
    assert ("cookie", "sticky=node-2") in handler.seen[-1]["headers"]


def test_connection_refused_is_a_requests_connection_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(requests.ConnectionError):
        http._direct(http.session(), "GET", f"http://127.0.0.1:{port}/", {"timeout": (1, 1)})
    with pytest.raises(TransientError):
        request("GET", f"http://127.0.0.1:{port}/", policy=RetryPolicy(deadline=0.2, initial_backoff=0.05))
