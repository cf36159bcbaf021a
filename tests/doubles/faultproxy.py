"""A fault-injecting HTTP proxy on 127.0.0.1, and the harness the fault tests share.

:class:`FaultProxy` sits between chainmail and an upstream HTTP server on loopback (the real
``docker-registry`` or the Kubernetes API double). It works at the HTTP *request* level: it
reads one request from a keep-alive client connection, decides that request's fate with a
seeded RNG, forwards it upstream on its own keep-alive connection and relays the response.
So "20 % faults" means 20 % of *requests*, however many of them share a connection.

Faults (each request gets at most one):

``drop``
    close the client connection without an answer (FIN); the request never reaches upstream.
``reset``
    reset the client connection (``SO_LINGER 0`` → RST); the request never reaches upstream.
``lost``
    forward the request, let upstream apply it, then reset the client connection instead of
    relaying the answer -- the client cannot tell whether its write happened (the hard case
    for exactly-once).
``delay``
    wait a random time in ``delay_range`` before forwarding (the request still succeeds).
``500`` / ``502`` / ``503`` / ``429``
    answer with that status without forwarding; ``429`` carries ``Retry-After``.

:meth:`FaultProxy.outage` switches on a **full outage**: every new connection and every
request on an open one is reset (``outage_mode="reset"``, default: attempts stay countable),
or the listening socket is closed so connections are refused (``outage_mode="refuse"``). With
``cut_in_flight`` (the default) requests already forwarded lose their answers too, as in a real
outage; without it the outage starts cleanly between requests. :meth:`FaultProxy.outage_for`
ends it on a timer; :meth:`FaultProxy.arm_outage` starts one the moment a matching request has
reached upstream, so that request's answer is lost for certain.

Counters (:meth:`FaultProxy.stats`): requests read, forwarded and answered, faults by kind
(``outage-cut`` for the answer an armed outage threw away), connections and outage rejections;
``retried-faults`` is how many requests a correct client had to send again.
:attr:`FaultProxy.events` keeps the last faults (for a ``lost`` write, its body too, so a test
can tell which write was repeated). Scripted faults: :meth:`FaultProxy.add_rule`.

Bounded: the accept loop polls a stop flag, client connections time out when idle, upstream
calls have a timeout, and the proxy stops itself after ``max_lifetime`` seconds and at fixture
teardown. Only loopback upstreams are accepted.

The harness part: :func:`push_image` (a small unique image pushed byte-exact),
:func:`sig_layers` (the layers of an image's ``.sig``/``.att`` tag, read straight from the
registry), :func:`kubeconfig_via` (a kubeconfig for the API double that goes through a proxy)
and :func:`run_chainmail` (the CLI in a subprocess, with the number of retries chainmail's
``RetryPolicy`` made, counted from its ``retrying …`` debug records).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

#: Every fault kind, in the order a mix lists them.
STATUS_KINDS = ("500", "502", "503", "429")
KINDS = ("drop", "reset", "lost", "delay", *STATUS_KINDS)
#: Faults after which a client must send the request again (all but ``delay``).
RETRIED_KINDS = (frozenset(KINDS) - {"delay"}) | {"outage-cut"}
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            429: "Too Many Requests"}
MAX_LINE = 65536
MAX_HEADERS = 200
MAX_BODY = 64 * 1024 * 1024


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_upstream(upstream: str | tuple[str, int]) -> tuple[str, int]:
    """``"127.0.0.1:5000"``, ``"http://127.0.0.1:5000"`` or a tuple → (host, port); loopback only."""
    if isinstance(upstream, tuple):
        host, port = upstream
    else:
        text = upstream if "://" in upstream else f"http://{upstream}"
        parts = urlsplit(text)
        if parts.scheme != "http":
            raise ValueError(f"upstream {upstream!r}: only plain http is proxied")
        host, port = parts.hostname or "", parts.port or 80
    if not _loopback(host):
        raise ValueError(f"upstream {upstream!r} is not a loopback address; the fault proxy only serves tests")
    return host, int(port)


@dataclass
class Request:
    """One request as read from a client."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or self.target

    @property
    def wants_close(self) -> bool:
        conn = (self.header("Connection") or "").lower()
        return "close" in conn or (self.version == "HTTP/1.0" and "keep-alive" not in conn)


@dataclass
class FaultEvent:
    """One injected fault (or outage rejection)."""

    at: float
    kind: str
    method: str
    path: str
    #: The request body, kept for ``lost`` writes only (so tests can tell which write repeated).
    body: bytes = b""

    def json_body(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class _Rule:
    kind: str
    method: str | None
    path_contains: str | None
    remaining: int | None  # None: for ever

    def matches(self, req: Request) -> bool:
        return (self.method is None or self.method == req.method) and (
            self.path_contains is None or self.path_contains in req.target)


class _ClosedError(Exception):
    """The client went away (EOF, timeout or a malformed request)."""


def _read_line(rfile: Any) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _ClosedError("line too long")
    return line


def read_request(rfile: Any) -> Request | None:
    """Read one HTTP/1.x request (Content-Length or chunked body); None at a clean EOF."""
    line = _read_line(rfile)
    while line in (b"\r\n", b"\n"):
        line = _read_line(rfile)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    except ValueError:
        raise _ClosedError(f"bad request line {line[:80]!r}") from None
    headers: list[tuple[str, str]] = []
    while True:
        raw = _read_line(rfile)
        if raw in (b"\r\n", b"\n", b""):
            break
        if len(headers) >= MAX_HEADERS:
            raise _ClosedError("too many headers")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _ClosedError("bad header line")
        headers.append((name.strip(), value.strip()))
    req = Request(method, target, version, headers, b"")
    if "chunked" in (req.header("Transfer-Encoding") or "").lower():
        chunks = []
        total = 0
        while True:
            size_line = _read_line(rfile)
            try:
                size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                raise _ClosedError("bad chunk size") from None
            if size == 0:
                while _read_line(rfile) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > MAX_BODY:
                raise _ClosedError("body too large")
            chunks.append(rfile.read(size))
            _read_line(rfile)
        req.body = b"".join(chunks)
        req.headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
    else:
        length = int(req.header("Content-Length") or 0)
        if length > MAX_BODY:
            raise _ClosedError("body too large")
        req.body = rfile.read(length) if length else b""
        if len(req.body) != length:
            raise _ClosedError("truncated body")
    return req


def _reset(sock: socket.socket, rfile: Any = None) -> None:
    """Abort the connection with an RST (SO_LINGER 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if rfile is not None:
        with contextlib.suppress(OSError):
            rfile.close()
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket, rfile: Any = None) -> None:
    """Close the connection politely (FIN)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    if rfile is not None:
        with contextlib.suppress(OSError):
            rfile.close()
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """See the module docstring. Build with :func:`fault_proxy_factory` in tests."""

    def __init__(self, upstream: str | tuple[str, int], *, rate: float = 0.0,
                 kinds: Sequence[str] | Mapping[str, float] = KINDS, seed: int = 0,
                 delay_range: tuple[float, float] = (0.05, 0.3), retry_after: str = "1",
                 outage_mode: str = "reset", eligible: Callable[[str, str], bool] | None = None,
                 max_lifetime: float = 900.0, idle_timeout: float = 60.0, upstream_timeout: float = 30.0,
                 max_connections: int = 256, name: str = "") -> None:
        self.upstream = parse_upstream(upstream)
        self.name = name or f"proxy->{self.upstream[0]}:{self.upstream[1]}"
        self.delay_range = delay_range
        self.retry_after = retry_after
        if outage_mode not in ("reset", "refuse"):
            raise ValueError("outage_mode must be 'reset' or 'refuse'")
        self.outage_mode = outage_mode
        #: Only requests for which ``eligible(method, path)`` is true get random faults.
        self.eligible = eligible
        self.max_lifetime = max_lifetime
        self.idle_timeout = idle_timeout
        self.upstream_timeout = upstream_timeout
        self.max_connections = max_connections
        #: Called as ``fn(method, path, status)`` after each relayed answer (from the serving thread).
        self.on_response: list[Callable[[str, str, int], None]] = []
        self.events: deque[FaultEvent] = deque(maxlen=20000)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._rules: list[_Rule] = []
        self._mix: list[tuple[str, float]] = []
        self.configure(rate, kinds)
        self._outage = threading.Event()
        self._cut_in_flight = True
        self._outage_timer: threading.Timer | None = None
        self._armed: tuple[float, str | None, str | None] | None = None
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port = 0
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._clients: set[socket.socket] = set()
        self._upstreams: set[http.client.HTTPConnection] = set()
        self._started = 0.0
        self.outage_started = threading.Event()

    # -------------------------------------------------------------- configuration

    def configure(self, rate: float, kinds: Sequence[str] | Mapping[str, float] = KINDS) -> None:
        """Fault ``rate`` of eligible requests, spread over ``kinds`` (evenly, or by the given weights)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        weights = dict(kinds) if isinstance(kinds, Mapping) else dict.fromkeys(kinds, 1.0)
        unknown = set(weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        total = sum(weights.values())
        mix = [(k, rate * w / total) for k, w in weights.items() if w > 0] if total and rate else []
        with self._lock:
            self._mix = mix

    def add_rule(self, kind: str, *, method: str | None = None, path_contains: str | None = None,
                 times: int | None = 1) -> None:
        """Fault the next ``times`` matching requests (None: every one) with ``kind``, before any random fault."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._rules.append(_Rule(kind, method, path_contains, times))

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    # -------------------------------------------------------------- lifecycle

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: what clients connect to (e.g. the registry part of an image reference)."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> FaultProxy:
        self._listener = self._listen(0)
        self._port = self._listener.getsockname()[1]
        self._started = time.monotonic()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._accept_thread.start()
        return self

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.settimeout(0.1)
        return sock

    def stop(self) -> None:
        """Stop accepting, cut every connection, and wait (bounded) for the serving threads."""
        self._stopping.set()
        if self._outage_timer is not None:
            self._outage_timer.cancel()
        with self._lock:
            clients, self._clients = set(self._clients), set()
            upstreams, self._upstreams = set(self._upstreams), set()
            threads = set(self._threads)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for conn in upstreams:
            with contextlib.suppress(Exception):
                conn.close()
        deadline = time.monotonic() + 5.0
        for thread in [self._accept_thread, *threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- outage

    @property
    def in_outage(self) -> bool:
        return self._outage.is_set()

    def outage(self, on: bool = True, *, cut_in_flight: bool = True) -> None:
        """Switch the full outage on or off (``cut_in_flight``: also lose answers to requests already sent)."""
        if on == self._outage.is_set():
            return
        with self._lock:
            self._counts["outages" if on else "outages-ended"] += 1
            self._counts[f"outage-{'start' if on else 'end'}-at-ms"] = int((time.monotonic() - self._started) * 1000)
        if on:
            self._cut_in_flight = cut_in_flight
            self._outage.set()
            with self._lock:
                clients = set(self._clients)
            for sock in clients if cut_in_flight else ():  # open connections die too, as in an outage
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if self.outage_mode == "refuse":
                listener, self._listener = self._listener, None
                if listener is not None:
                    with contextlib.suppress(OSError):
                        listener.close()
        else:
            if self.outage_mode == "refuse" and self._listener is None and not self._stopping.is_set():
                deadline = time.monotonic() + 5.0
                while True:
                    try:
                        self._listener = self._listen(self._port)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            self._outage.clear()

    def outage_for(self, seconds: float, *, cut_in_flight: bool = True) -> threading.Timer:
        """Start a full outage now and end it after ``seconds`` (returns the timer)."""
        self.outage(True, cut_in_flight=cut_in_flight)
        timer = threading.Timer(seconds, self.outage, args=(False,))
        timer.daemon = True
        self._outage_timer = timer
        timer.start()
        return timer

    def arm_outage(self, seconds: float, *, method: str | None = None, path_contains: str | None = None) -> None:
        """Start an ``outage_for(seconds)`` as soon as a matching request has been applied upstream.

        That request's answer is lost (the client cannot know its write landed), and so is every
        other answer still in flight. :attr:`outage_started` tells when it fired.
        """
        with self._lock:
            self._armed = (seconds, method, path_contains)
        self.outage_started = threading.Event()

    def _fire(self, req: Request) -> None:
        with self._lock:
            armed = self._armed
            if armed is None or not ((armed[1] is None or armed[1] == req.method) and
                                     (armed[2] is None or armed[2] in req.target)):
                return
            self._armed = None
        self._record("outage-cut", req)
        self.outage_for(armed[0])
        self.outage_started.set()

    # -------------------------------------------------------------- counters

    def stats(self) -> dict[str, Any]:
        """Counts so far: requests, forwarded, answered, faults by kind, outage rejections, connections."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            faults = dict(self._faults)
        for key in ("requests", "forwarded", "answered", "connections", "outage-rejected", "upstream-errors"):
            out.setdefault(key, 0)
        out["faults"] = dict(sorted(faults.items()))
        out["faults-total"] = sum(v for k, v in faults.items())
        out["retried-faults"] = sum(v for k, v in faults.items() if k in RETRIED_KINDS)
        return out

    @property
    def faults_injected(self) -> int:
        with self._lock:
            return sum(self._faults.values())

    def fault_events(self, kind: str | None = None) -> list[FaultEvent]:
        with self._lock:
            return [e for e in self.events if kind is None or e.kind == kind]

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _record(self, kind: str, req: Request | None) -> None:
        keep = kind == "lost" and req is not None and req.method in ("PATCH", "PUT", "POST") \
            and len(req.body) <= 256 * 1024
        event = FaultEvent(time.monotonic() - self._started, kind, req.method if req else "",
                           req.target if req else "", req.body if keep and req else b"")
        with self._lock:
            self._faults[kind] += 1
            self.events.append(event)

    # -------------------------------------------------------------- serving

    def _expired(self) -> bool:
        return time.monotonic() - self._started > self.max_lifetime

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            if self._expired():
                threading.Thread(target=self.stop, name=f"{self.name}-expire", daemon=True).start()
                return
            listener = self._listener
            if listener is None:  # refusing during an outage
                self._stopping.wait(0.05)
                continue
            try:
                sock, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed for an outage or a stop, or out of descriptors: look again shortly
                if not (self._stopping.is_set() or self._listener is not listener):
                    self._count("accept-errors")
                    self._stopping.wait(0.05)
                continue
            self._count("connections")
            with self._lock:
                crowded = len(self._clients) >= self.max_connections
            if self._outage.is_set() or crowded:
                self._count("outage-rejected" if not crowded else "crowded-rejected")
                _reset(sock)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve_client, args=(sock,), name=f"{self.name}-conn",
                                      daemon=True)
            with self._lock:
                self._clients.add(sock)
                self._threads.add(thread)
            thread.start()

    def _decide(self, req: Request) -> str | None:
        with self._lock:
            for rule in self._rules:
                if (rule.remaining is None or rule.remaining > 0) and rule.matches(req):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.kind
            if not self._mix or (self.eligible is not None and not self.eligible(req.method, req.path)):
                return None
            draw = self._rng.random()
        for kind, share in self._mix:
            if draw < share:
                return kind
            draw -= share
        return None

    def _serve_client(self, sock: socket.socket) -> None:
        sock.settimeout(self.idle_timeout)
        rfile = sock.makefile("rb")
        upstream: http.client.HTTPConnection | None = None
        polite = True
        try:
            while not self._stopping.is_set():
                try:
                    req = read_request(rfile)
                except (_ClosedError, OSError, ValueError):
                    return
                if req is None:
                    return
                self._count("requests")
                if self._outage.is_set():
                    self._count("outage-rejected")
                    polite = False
                    return
                kind = self._decide(req)
                if kind == "drop":
                    self._record(kind, req)
                    return
                if kind == "reset":
                    self._record(kind, req)
                    polite = False
                    return
                if kind in STATUS_KINDS:
                    self._record(kind, req)
                    self._send_status(sock, int(kind), req)
                    if req.wants_close:
                        return
                    continue
                if kind == "delay":
                    self._record(kind, req)
                    with self._lock:
                        pause = self._rng.uniform(*self.delay_range)
                    if self._stopping.wait(pause):
                        return
                if upstream is None:
                    upstream = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout)
                    with self._lock:
                        self._upstreams.add(upstream)
                try:
                    status, reason, headers, body, upstream_closes = self._forward(upstream, req)
                except (OSError, http.client.HTTPException):
                    self._count("upstream-errors")
                    polite = False  # mirror a dead upstream: the client sees its connection reset
                    return
                self._count("forwarded")
                if self._armed is not None:
                    self._fire(req)
                if self._outage.is_set() and self._cut_in_flight:
                    self._count("outage-rejected")
                    polite = False
                    return
                if kind == "lost":
                    self._record(kind, req)
                    polite = False
                    return
                try:
                    self._send(sock, status, reason, headers, body, req)
                except OSError:
                    return
                self._count("answered")
                for hook in list(self.on_response):
                    with contextlib.suppress(Exception):
                        hook(req.method, req.path, status)
                if upstream_closes:
                    upstream.close()
                if req.wants_close:
                    return
        finally:
            with self._lock:
                self._clients.discard(sock)
                self._threads.discard(threading.current_thread())
                if upstream is not None:
                    self._upstreams.discard(upstream)
            if upstream is not None:
                with contextlib.suppress(Exception):
                    upstream.close()
            if polite:
                _close(sock, rfile)
            else:
                _reset(sock, rfile)

    def _forward(self, conn: http.client.HTTPConnection,
                 req: Request) -> tuple[int, str, list[tuple[str, str]], bytes, bool]:
        conn.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for key, value in req.headers:
            if key.lower() in _HOP_BY_HOP or key.lower() == "content-length":
                continue
            conn.putheader(key, value)
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(req.body)))
        conn.endheaders(req.body or None)
        resp = conn.getresponse()
        body = resp.read()
        headers = resp.getheaders()
        return resp.status, resp.reason, headers, body, bool(resp.will_close)

    def _send(self, sock: socket.socket, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
              req: Request) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"]
        keep_length = req.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        for key, value in headers:
            low = key.lower()
            if low in _HOP_BY_HOP or (low == "content-length" and not keep_length):
                continue
            lines.append(f"{key}: {value}")
        if not keep_length:
            lines.append(f"Content-Length: {len(body)}")
        if req.wants_close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock.sendall(head + (b"" if req.method == "HEAD" else body))

    def _send_status(self, sock: socket.socket, status: int, req: Request) -> None:
        if req.path.startswith("/v2/"):  # the registry's error shape
            doc: dict[str, Any] = {"errors": [{"code": "UNAVAILABLE" if status != 429 else "TOOMANYREQUESTS",
                                               "message": f"injected fault (HTTP {status})"}]}
        else:  # the Kubernetes API's Status
            doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": f"injected fault (HTTP {status})",
                   "reason": "TooManyRequests" if status == 429 else "InternalError", "code": status}
        body = json.dumps(doc).encode()
        headers = [("Content-Type", "application/json")]
        if status == 429:
            headers.append(("Retry-After", self.retry_after))
        with contextlib.suppress(OSError):
            self._send(sock, status, _REASONS.get(status, "Error"), headers, body, req)


# ------------------------------------------------------------------ fixture


@pytest.fixture
def fault_proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """``make(upstream, **options)`` → a started :class:`FaultProxy`; every one is stopped at teardown."""
    made: list[FaultProxy] = []

    def make(upstream: str | tuple[str, int], **options: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **options).start()
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            proxy.stop()


# ------------------------------------------------------------------ harness helpers


def push_image(registry: Any, repo: str, seed: str) -> str:
    """Push a tiny image whose manifest is unique to ``seed`` (blobs shared); returns its digest."""
    layer = b"chainmail fault-test layer\n"
    layer_digest = registry.push_blob(repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}},
                        separators=(",", ":")).encode()
    config_digest = registry.push_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer),
                    "digest": layer_digest}],
        "annotations": {"dev.chainmail.test/seed": seed},
    }, separators=(",", ":")).encode()
    return registry.push_raw(repo, seed.replace("/", "-")[:120], manifest)


def sig_layers(registry: Any, repo: str, image_digest: str, suffix: str) -> list[dict[str, Any]]:
    """The layers of ``repo:sha256-<hex>.<suffix>``, read from the registry itself ([] when the tag is absent)."""
    algo, _, hexpart = image_digest.partition(":")
    raw = registry.get_manifest(repo, f"{algo}-{hexpart}.{suffix}")
    if raw is None:
        return []
    return list(json.loads(raw).get("layers") or [])


def kubeconfig_via(api: Any, tmp_path: Path, server: str, *, name: str = "kubeconfig-proxied") -> Path:
    """A kubeconfig for the API double whose server is ``server`` (a proxy's URL)."""
    import yaml

    path = api.kubeconfig(tmp_path, name=name)
    doc = yaml.safe_load(path.read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


#: Runs the chainmail CLI and, at exit, writes the retries chainmail's RetryPolicy made (one
#: ``retrying …`` debug record each, see chainmail._internal.http.request) to $FAULTPROXY_RETRY_FILE.
_BOOT = r"""
import atexit, collections, json, logging, os, sys
counts = collections.Counter()
class _Count(logging.Handler):
    def emit(self, record):
        if str(record.msg).startswith("retrying"):
            problem = str(record.args[0]) if record.args else ""
            host = problem.split("://", 1)[1].split("/", 1)[0] if "://" in problem else "?"
            what = problem.rsplit(": ", 1)[-1]
            counts["total"] += 1
            counts["host " + host] += 1
            counts[what] += 1
log = logging.getLogger("chainmail.http")
log.setLevel(logging.DEBUG)
log.addHandler(_Count())
log.propagate = False
def _write():
    path = os.environ.get("FAULTPROXY_RETRY_FILE")
    if path:
        with open(path, "w") as fh:
            json.dump(counts, fh)
atexit.register(_write)
from chainmail._cli import main
sys.argv[0] = "chainmail"
try:
    main(sys.argv[1:])
finally:
    _write()
"""

#: Environment variables that would point chainmail at something other than the test's doubles.
_SCRUB = ("KUBECONFIG", "DOCKER_CONFIG", "CHAINMAIL_KEY", "CHAINMAIL_CONFIG", "CHAINMAIL_CONFIGMAP",
          "CHAINMAIL_RESULTS_DIR", "CHAINMAIL_CRASH_AT", "COSIGN_PASSWORD", "HTTP_PROXY", "HTTPS_PROXY",
          "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "KUBERNETES_SERVICE_HOST")


@dataclass
class ChainmailResult:
    """What a chainmail subprocess did."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    #: Retries by chainmail's RetryPolicy: "total", "host <h:p>", and by problem ("HTTP 503", "ConnectionError").
    retries: Counter[str] = field(default_factory=Counter)

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"chainmail {' '.join(self.args)} → {self.returncode} in {self.seconds:.1f}s\n"
                f"stdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}")


def chainmail_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def start_chainmail(args: Sequence[str], tmp_path: Path, *, env: Mapping[str, str] | None = None,
                    tag: str = "") -> tuple[subprocess.Popen[str], Path]:
    """Start ``chainmail <args>`` in a subprocess (with retry counting); returns (process, retry file)."""
    tag = tag or f"{os.getpid()}-{time.monotonic_ns()}"
    retry_file = tmp_path / f"retries-{tag}.json"
    full_env = chainmail_env({**(env or {}), "FAULTPROXY_RETRY_FILE": str(retry_file)})
    proc = subprocess.Popen([sys.executable, "-c", _BOOT, *args], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    return proc, retry_file


def finish_chainmail(proc: subprocess.Popen[str], retry_file: Path, args: Sequence[str], started: float,
                     timeout: float) -> ChainmailResult:
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"chainmail {' '.join(args)} did not finish within {timeout:.0f}s\n"
                             f"stdout: {out[-3000:]}\nstderr: {err[-3000:]}") from None
    retries: Counter[str] = Counter()
    if retry_file.exists():
        with contextlib.suppress(ValueError, OSError):
            retries = Counter(json.loads(retry_file.read_text()))
    return ChainmailResult(list(args), proc.returncode, out, err, time.monotonic() - started, retries)


def run_chainmail(args: Sequence[str], tmp_path: Path, *, env: Mapping[str, str] | None = None,
                  timeout: float = 300.0) -> ChainmailResult:
    """Run ``chainmail <args>`` to completion (killed and failed after ``timeout``)."""
    started = time.monotonic()
    proc, retry_file = start_chainmail(args, tmp_path, env=env)
    return finish_chainmail(proc, retry_file, args, started, timeout)


# ------------------------------------------------------------------ a fleet of runs with real images

SIGNED = "chains.tekton.dev/signed"
CLAIM = "chainmail.dev/claim"
FAILURE_REASON = "chainmail.dev/failure-reason"
#: Storage and format of the fault tests: attestations as annotations and ``.att``, image signatures as ``.sig``.
FLEET_SETTINGS = {
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "tekton,oci",
    "artifacts.oci.storage": "oci",
}


@dataclass(frozen=True)
class FleetRun:
    """One completed TaskRun whose IMAGE_URL/IMAGE_DIGEST name an image pushed to the real registry."""

    namespace: str
    name: str
    repo: str
    digest: str
    uid: str
    #: The registry holding the image when it is not the fleet's own.
    registry: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return ("taskruns", self.namespace, self.name)

    @property
    def path(self) -> str:
        return f"/apis/tekton.dev/v1/namespaces/{self.namespace}/taskruns/{self.name}"


class Fleet:
    """Completed TaskRuns in the API double with images in the registry, and the checks the fault tests share.

    ``image_host`` is what the runs' IMAGE_URL names (a registry proxy's host, so chainmail's
    registry traffic goes through it); ``api_server`` is the kubeconfig's server (an API proxy's
    URL). The checks read the registry and the double directly, never through a proxy.
    """

    def __init__(self, api: Any, registry: Any, tmp_path: Path, *, image_host: str | None = None,
                 api_server: str | None = None, prefix: str = "fleet") -> None:
        self.api = api
        self.registry = registry
        self.tmp_path = tmp_path
        self.image_host = image_host or registry.host
        self.prefix = f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        self.runs: list[FleetRun] = []
        self.kubeconfig = (kubeconfig_via(api, tmp_path, api_server) if api_server
                           else api.kubeconfig(tmp_path, name="kubeconfig-direct"))
        docker = tmp_path / "docker-empty"
        docker.mkdir(exist_ok=True)
        (docker / "config.json").write_text('{"auths": {}}')
        self.docker_config = docker
        self._namespaces: set[str] = set()

    def add(self, count: int, *, name: str = "build", namespaces: int = 4, repos: int = 10,
            image_host: str | None = None, registry: Any = None, start: int | None = None) -> list[FleetRun]:
        """Push ``count`` images and add one completed TaskRun per image; returns the new runs.

        ``registry``/``image_host``: put these images in another registry (reached at ``image_host``).
        """
        from doubles.kube import completed_taskrun

        first = len(self.runs) if start is None else start
        made = []
        for i in range(first, first + count):
            ns = f"team-{i % namespaces}"
            repo = f"{self.prefix}/app-{i % repos}"
            run_name = f"{name}-{i:04d}"
            digest = push_image(registry or self.registry, repo, f"{self.prefix}/{run_name}")
            if ns not in self._namespaces:
                self.api.add({"kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}})
                self._namespaces.add(ns)
            obj = self.api.add(completed_taskrun(run_name, ns, image=f"{image_host or self.image_host}/{repo}",
                                                 digest=digest))
            made.append(FleetRun(ns, run_name, repo, digest, obj["metadata"]["uid"], registry))
        self.runs.extend(made)
        return made

    # -------------------------------------------------------------- commands

    def common_args(self, key: str, *, sets: Mapping[str, str] | None = None) -> list[str]:
        out = ["--key", key, "--kubeconfig", str(self.kubeconfig), "--docker-config", str(self.docker_config)]
        for k, v in {**FLEET_SETTINGS, **(sets or {})}.items():
            out += ["--set", f"{k}={v}"]
        return out

    def sweep_args(self, key: str, *extra: str, concurrency: int = 4,
                   sets: Mapping[str, str] | None = None) -> list[str]:
        return ["sweep", "--all-namespaces", "--concurrency", str(concurrency), "--output", "json",
                *self.common_args(key, sets=sets), *extra]

    def run_args(self, run: FleetRun, key: str, *extra: str, sets: Mapping[str, str] | None = None) -> list[str]:
        return ["run", "--taskrun", run.name, "--namespace", run.namespace, "--output", "json",
                *self.common_args(key, sets=sets), *extra]

    # -------------------------------------------------------------- reading the outcome

    def annotations(self, run: FleetRun) -> dict[str, str]:
        return self.api.annotations(*run.key)

    def layers(self, run: FleetRun, suffix: str) -> list[dict[str, Any]]:
        return sig_layers(run.registry or self.registry, run.repo, run.digest, suffix)

    def patches(self, run: FleetRun, state: str = "true") -> list[Any]:
        """Successful PATCHes of ``run`` that set ``chains.tekton.dev/signed`` to ``state``."""
        out = []
        for r in self.api.writes("taskruns"):
            notes = ((r.body or {}).get("metadata") or {}).get("annotations") or {} if isinstance(r.body, dict) else {}
            if r.key == run.key and notes.get(SIGNED) == state:
                out.append(r)
        return out

    def problems(self, runs: Sequence[FleetRun] | None = None, *, api_proxy: Any = None,
                 count_patches: bool = True, oci_tags: bool = True) -> list[str]:
        """Everything wrong with the signature sets of ``runs`` (default: all); [] when each is signed once.

        Signed once means: ``signed: "true"``, no claim and no failure reason left; the attestation
        and image signature annotations present; exactly one ``.sig`` and one ``.att`` layer in the
        registry; the ``.att`` layer is byte-for-byte the envelope in the run's annotation; no PATCH
        ever set ``signed: failed``; and exactly one successful PATCH set ``signed: "true"`` -- plus
        one per time ``api_proxy`` threw away the answer to such a PATCH (the client had to send it
        again and cannot know it had landed). ``oci_tags=False`` skips the registry checks (for
        ``storage.oci.encoding-format: sigstore-bundle``, which writes referrers, not tags).
        """
        import base64

        lost: Counter[str] = Counter()
        if api_proxy is not None:
            for event in api_proxy.fault_events("lost"):
                doc = event.json_body()
                notes = ((doc or {}).get("metadata") or {}).get("annotations") or {} if isinstance(doc, dict) else {}
                if event.method == "PATCH" and notes.get(SIGNED) == "true":
                    lost[urlsplit(event.path).path] += 1
        out: list[str] = []
        for run in self.runs if runs is None else runs:
            where = f"{run.namespace}/{run.name}"
            notes = self.annotations(run)
            if notes.get(SIGNED) != "true":
                out.append(f"{where}: signed={notes.get(SIGNED)!r} reason={notes.get(FAILURE_REASON)!r}")
                continue
            for key in (CLAIM, FAILURE_REASON):
                if key in notes:
                    out.append(f"{where}: {key} left behind: {notes[key]!r}")
            sig_key = f"chains.tekton.dev/signature-taskrun-{run.uid}"
            for key in (f"chains.tekton.dev/payload-taskrun-{run.uid}", sig_key):
                if not notes.get(key):
                    out.append(f"{where}: annotation {key} missing")
            sig, att = (self.layers(run, "sig"), self.layers(run, "att")) if oci_tags else ([], [])
            if oci_tags and (len(sig) != 1 or len(att) != 1):
                out.append(f"{where}: {len(sig)} .sig layer(s) and {len(att)} .att layer(s), expected 1 and 1")
            if att and notes.get(sig_key):
                envelope = base64.b64decode(notes[sig_key])
                blobs = [(run.registry or self.registry).get_blob(run.repo, layer["digest"]) for layer in att]
                if envelope not in blobs:
                    out.append(f"{where}: the .att layer(s) do not hold the envelope in the run's annotation")
            if self.patches(run, "failed"):
                out.append(f"{where}: was marked failed {len(self.patches(run, 'failed'))} time(s) on the way")
            if count_patches:
                want = 1 + lost[run.path]
                got = len(self.patches(run))
                if got != want:
                    out.append(f"{where}: {got} successful PATCH(es) set signed=true, expected {want} "
                               f"({lost[run.path]} answer(s) lost by the proxy)")
        return out
