"""A hostile HTTP server on 127.0.0.1: a registry (or API server) that lies, stalls, floods and loops.

Each route answers with a scripted *behaviour*: :func:`reply` (any status, body, headers),
:func:`trickle` (a body one byte at a time), :func:`flood` (a body of any size, declared or
chunked, generated on the fly so the server itself stays small), :func:`short` (a
``Content-Length`` that promises more than is sent) and :func:`redirect`. Every request is
recorded with its headers (:attr:`HostileServer.seen`), so a test can show that a second server
never received a credential.

Bounded: the server stops itself after ``max_lifetime`` seconds and at :meth:`HostileServer.close`;
slow behaviours stop when the server stops or the client goes away. Binds loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Behaviour = Callable[["_Handler"], None]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls

    def _dispatch(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        owner.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        if owner.basic and path.startswith("/v2/"):
            want = "Basic " + base64.b64encode(":".join(owner.basic).encode()).decode()
            if self.headers.get("Authorization") != want:
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                self.send(401, body, {"WWW-Authenticate": 'Basic realm="hostile"'})
                return
        behaviour = owner.find(self.command, self.path) or owner.find(self.command, path) or _not_found
        try:
            behaviour(self)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _dispatch  # noqa: N815

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *,
             length: int | None = None) -> None:
        """A complete answer (``length`` overrides the declared Content-Length)."""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    @property
    def stopping(self) -> bool:
        return self.server.owner.stopped.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileServer


class HostileServer:
    """Scripted routes on 127.0.0.1; unknown paths answer 404 like a registry."""

    def __init__(self, *, basic: tuple[str, str] | None = None, max_lifetime: float = 180.0) -> None:
        self.basic = basic
        self.seen: list[Seen] = []
        self.stopped = threading.Event()
        self._routes: list[tuple[str, str, bool, Behaviour]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        self._timer = threading.Timer(max_lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def on(self, path: str, behaviour: Behaviour, *, method: str = "*", prefix: bool = False) -> None:
        """Answer ``method`` on ``path`` (or every path starting with it) with ``behaviour``; last wins.

        A ``path`` with a query matches that exact query; one without matches any query."""
        self._routes.insert(0, (method, path, prefix, behaviour))

    def find(self, method: str, path: str) -> Behaviour | None:
        """The behaviour for ``path`` (routes with a ``?`` match the query too)."""
        for want, route, prefix, behaviour in self._routes:
            if want in ("*", method) and (path.startswith(route) if prefix else path == route):
                return behaviour
        return None

    def serve_image(self, repo: str) -> str:
        """A small image manifest at ``repo``; returns its digest."""
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                                     "digest": digest_of(b"{}")},
                          "layers": []}, separators=(",", ":")).encode()
        digest = digest_of(raw)
        self.on(f"/v2/{repo}/manifests/{digest}", manifest(raw))
        return digest

    def requests_to(self, fragment: str) -> list[Seen]:
        return [s for s in self.seen if fragment in s.path]

    def close(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()


# -- behaviours --------------------------------------------------------------------------------------

def reply(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    def run(h: _Handler) -> None:
        h.send(status, body, headers)
    return run


def manifest(raw: bytes, media_type: str = OCI_MANIFEST, digest: str | None = None) -> Behaviour:
    """A manifest answer with its Docker-Content-Digest (``digest`` to lie about it)."""
    return reply(200, raw, {"Content-Type": media_type, "Docker-Content-Digest": digest or digest_of(raw)})


def _not_found(h: _Handler) -> None:
    h.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not found"}]}',
           {"Content-Type": "application/json"})


def trickle(body: bytes, interval: float, headers: dict[str, str] | None = None) -> Behaviour:
    """Declare the whole body, then send one byte every ``interval`` seconds."""
    def run(h: _Handler) -> None:
        h.send_response(200)
        for k, v in (headers or {"Content-Type": OCI_MANIFEST}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.flush()
        for i in range(len(body)):
            if h.stopping:
                break
            h.wfile.write(body[i:i + 1])
            h.wfile.flush()
            time.sleep(interval)
        h.close_connection = True
    return run


def flood(size: int, *, declare: bool = True, headers: dict[str, str] | None = None) -> Behaviour:
    """``size`` bytes of JSON-ish filler, with a Content-Length (``declare``) or chunked."""
    block = b" " * 65536

    def run(h: _Handler) -> None:
        h.send_response(200)
        for k, v in (headers or {"Content-Type": OCI_MANIFEST}).items():
            h.send_header(k, v)
        h.send_header("Content-Length" if declare else "Transfer-Encoding", str(size) if declare else "chunked")
        h.end_headers()
        if h.command == "HEAD":
            return
        sent = 0
        while sent < size and not h.stopping:
            part = block[: min(len(block), size - sent)]
            h.wfile.write(part if declare else b"%x\r\n%s\r\n" % (len(part), part))
            sent += len(part)
        if not declare:
            h.wfile.write(b"0\r\n\r\n")
        h.close_connection = True
    return run


def short(body: bytes, declared: int, headers: dict[str, str] | None = None) -> Behaviour:
    """Declare ``declared`` bytes, send ``body``, and hang up."""
    def run(h: _Handler) -> None:
        h.send(200, body, headers or {"Content-Type": OCI_MANIFEST}, length=declared)
        h.close_connection = True
    return run


def slow_headers(interval: float) -> Behaviour:
    """A status line and then one header byte every ``interval`` seconds, never finishing the headers."""
    def run(h: _Handler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        h.wfile.flush()
        while not h.stopping:
            h.wfile.write(b"a")
            h.wfile.flush()
            time.sleep(interval)
        h.close_connection = True
    return run


def redirect(location: str, status: int = 307) -> Behaviour:
    return reply(status, b"", {"Location": location})


def nested(depth: int) -> bytes:
    """A JSON object nesting ``depth`` arrays under ``manifests`` (valid JSON, hostile depth)."""
    return b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":' + \
        b"[" * depth + b"]" * depth + b"}"
