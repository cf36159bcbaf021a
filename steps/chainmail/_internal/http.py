"""One HTTP session per process, with retries that outlast short outages and limits a hostile server cannot break.

Every network call (Kubernetes API, registry, Rekor, Fulcio, KMS) goes through
:func:`request`. Transient failures -- connection refused/reset, timeouts, truncated bodies, 429
(honouring ``Retry-After``) and 5xx -- are retried with exponential backoff and full jitter until the
policy's deadline (TLS certificate errors are not retried); anything else is returned to the caller
at once, who maps 401/403/404 to a typed error. ``requests`` is imported lazily: it costs ~0.1 s.

Bounds on what a server can make us do:

* **time** -- each attempt (connect, headers, body, redirects) ends at a wall-clock limit: a
  watchdog shuts the socket down, so a server trickling one byte at a time cannot hold a call
  past ``min(attempt_limit, time left before the deadline)``;
* **size** -- bodies are read streamed and stop at ``max_bytes`` (a declared ``Content-Length``
  over it is refused before reading): :class:`BadResponseError`;
* **redirects** -- followed for GET/HEAD only, at most :data:`MAX_REDIRECTS` hops, and the
  ``Authorization`` header and ``auth`` credentials go only to the origin (scheme, host, port) of
  the first URL: a redirect to blob storage on another host never gets the registry's login.

Every request put on the wire (each retry and redirect hop too) is counted by method and host:
:func:`request_counts` (for ``sweep -o json`` reports and benchmarks). Requests with plain inputs skip
``Session.request`` and go to the thread session's connection pool directly (see "the direct path").
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from chainmail._internal import tls

if TYPE_CHECKING:
    import requests

log = logging.getLogger("chainmail.http")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Default body cap (bytes) when the caller names none.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: Redirect hops followed for one GET/HEAD.
MAX_REDIRECTS = 5
#: Even the last attempt before the deadline gets this long (seconds).
MIN_ATTEMPT = 5.0
_CHUNK = 64 * 1024
_NO_BODY = frozenset({204, 304})


@dataclass
class RetryPolicy:
    """How long to keep trying a transient failure."""

    #: Give up this many seconds after the first attempt (also bounds a slow body).
    deadline: float = 300.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    #: Per-attempt (connect, read) socket timeout in seconds.
    timeout: tuple[float, float] = (5.0, 30.0)
    #: Longest one attempt may take, headers and body included, however the server paces its bytes.
    attempt_limit: float = 120.0
    #: Counts retries made through this policy (for reports and benchmarks).
    retries: int = field(default=0, compare=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given attempt (0-based)."""
        cap = min(self.max_backoff, self.initial_backoff * (2**attempt))
        return random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography


class TransientError(Exception):
    """The last transient failure, raised once the deadline has passed."""

    def __init__(self, message: str, response: requests.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class BadResponseError(Exception):
    """A response broke a limit (too large, too many redirects, an unusable redirect); not retried."""


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, default ports filled in: what credentials are bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """True when both URLs have the same scheme, host and port."""
    return origin(a) == origin(b)


# -- request counts -------------------------------------------------------------------------------

_counts: Counter[tuple[str, str]] = Counter()
_counts_lock = threading.Lock()


def _count(method: str, url: str) -> None:
    """Count one request sent to ``url``'s host (``host:port`` as written in the URL)."""
    key = (method, urlsplit(url).netloc.rpartition("@")[2].lower())
    with _counts_lock:
        _counts[key] += 1


def request_counts() -> dict[str, dict[str, int]]:
    """Requests sent by this process so far: ``{host: {method: n}}``, retries and redirect hops included."""
    with _counts_lock:
        items = list(_counts.items())
    out: dict[str, dict[str, int]] = {}
    for (method, host), n in sorted(items, key=lambda kv: (kv[0][1], kv[0][0])):
        out.setdefault(host, {})[method] = n
    return out


def reset_request_counts() -> None:
    """Start counting from zero (tests and benchmarks)."""
    global _pushback
    with _counts_lock:
        _counts.clear()
        _pushback = 0


#: Answers that told this process to slow down (HTTP 429 or 5xx), for adaptive concurrency.
_pushback = 0


def _count_pushback(status: int) -> None:
    global _pushback
    if status == 429 or status >= 500:
        with _counts_lock:
            _pushback += 1


def pushback_count() -> int:
    """HTTP 429 and 5xx answers received by this process so far (each retried attempt counts)."""
    with _counts_lock:
        return _pushback


# -- the watchdog ---------------------------------------------------------------------------------

class _Attempt:
    """One attempt's wall-clock limit: when it passes, the socket in use is shut down."""

    def __init__(self, seconds: float) -> None:
        self.lock = threading.Lock()
        self.ends = time.monotonic() + max(0.0, seconds)
        self.sock: socket.socket | None = None
        self.expired = False
        self.done = False

    def note(self, sock: socket.socket | None) -> None:
        with self.lock:
            self.sock = sock
            if self.expired and sock is not None:
                _shutdown(sock)

    def expire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            if self.sock is not None:
                _shutdown(self.sock)

    def finish(self) -> None:
        with self.lock:
            self.done = True


class _Watchdog:
    """One daemon thread per process expiring attempts at their deadlines (cheaper than a timer each)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._seq = itertools.count()
        self._pid = 0

    def watch(self, attempt: _Attempt) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child that lost the thread
                self._pid, self._heap = os.getpid(), []
                threading.Thread(target=self._run, name="chainmail-http-watchdog", daemon=True).start()
            heapq.heappush(self._heap, (attempt.ends, next(self._seq), attempt))
            if self._heap[0][2] is attempt:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                ends, _, attempt = self._heap[0]
                delay = ends - time.monotonic()
                if not attempt.done and delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                if not attempt.done:
                    attempt.expire()


_watchdog = _Watchdog()


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked on ``sock`` (the plain socket call: an SSL socket's own would drop its state)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


_local = threading.local()


def _note_socket(sock: socket.socket | None) -> None:
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    if attempt is not None:
        attempt.note(sock)


def _adapter() -> Any:
    """A requests adapter whose connections report their socket to the running attempt's watchdog."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _Noting:
        """Tell the watchdog which socket the attempt uses, on connect and before each response."""

        sock: Any

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            _note_socket(self.sock)

        def getresponse(self) -> Any:
            _note_socket(self.sock)
            return super().getresponse()  # type: ignore[misc]

    class _Conn(_Noting, HTTPConnection):
        pass

    class _TLSConn(_Noting, HTTPSConnection):
        pass

    class _Pool(HTTPConnectionPool):
        ConnectionCls = _Conn

    class _TLSPool(HTTPSConnectionPool):
        ConnectionCls = _TLSConn

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    return _Adapter(pool_connections=8, pool_maxsize=16, max_retries=0)


def session() -> requests.Session:
    """The thread's keep-alive session (environment proxies and CA bundles ignored: see :mod:`.tls`)."""
    sess = getattr(_local, "session", None)
    if sess is None:
        import requests

        sess = requests.Session()
        sess.trust_env = False
        adapter = _adapter()
        sess.mount("http://", adapter)
        sess.mount("https://", adapter)
        _local.session = sess
    return sess


# -- the direct path -------------------------------------------------------------------------------
#
# ``Session.request`` spends about as much CPU as the socket work itself on things chainmail does not
# use (merging session settings, cookie jars, hooks, proxies from the environment, re-parsing the URL
# character by character), which made it most of a sweep's CPU. A request with plain inputs (bytes or
# JSON body, dict params, a login tuple, an already-encoded URL) goes straight to the thread session's
# urllib3 pool instead, with the same headers, TLS settings, timeouts and error types as ``requests``;
# anything else (and any request while the session holds cookies) takes ``Session.request``.

#: A URL the direct path sends as written: http(s), no userinfo or fragment, nothing to percent-encode.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:/?]|%[0-9A-Fa-f]{2})*)?")
_DIRECT_KWARGS = frozenset({"headers", "data", "json", "params", "auth", "timeout", "verify", "cert"})
_default_headers: dict[str, str] | None = None


def _defaults() -> dict[str, str]:
    """The session's default headers (User-Agent, Accept, Accept-Encoding, Connection), read once."""
    global _default_headers
    if _default_headers is None:
        from requests.utils import default_headers

        _default_headers = dict(default_headers())
    return _default_headers


def _direct(sess: requests.Session, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response | None:
    """Send on the session's own connection pool without ``Session.request``; None when the inputs need it."""
    data, body_json, auth, params = kwargs.get("data"), kwargs.get("json"), kwargs.get("auth"), kwargs.get("params")
    if (sess.cookies or not kwargs.keys() <= _DIRECT_KWARGS or not _PLAIN_URL.fullmatch(url)
            or not (data is None or isinstance(data, bytes))
            or not (auth is None or (isinstance(auth, tuple) and len(auth) == 2))
            or not (params is None or isinstance(params, (dict, list, tuple)))):
        return None
    method = method.upper()
    from requests.models import PreparedRequest, Response
    from requests.structures import CaseInsensitiveDict
    from requests.utils import check_header_validity, get_encoding_from_headers

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or not parts.path:
        return None
    query = parts.query
    if params:
        pairs = params.items() if isinstance(params, dict) else params
        # as requests encodes them: a list value repeats the key, a None value is left out
        encoded = urlencode([(k, v) for k, vs in pairs
                             for v in (vs if isinstance(vs, (list, tuple)) else [vs]) if v is not None])
        if encoded:
            query = f"{query}&{encoded}" if query else encoded
    target = f"{parts.path}?{query}" if query else parts.path
    url = f"{parts.scheme}://{parts.netloc}{target}"

    # merged as Session.request merges: defaults, then the caller's (a None value drops the header)
    headers = CaseInsensitiveDict(_defaults())
    for item in (kwargs.get("headers") or {}).items():
        if item[1] is None:
            headers.pop(item[0], None)
            continue
        check_header_validity(item)
        headers[item[0]] = item[1]
    body: bytes | None = data or None  # as requests: an empty body is no body (Content-Length: 0 on writes)
    if body is None and body_json is not None:
        import json

        body = json.dumps(body_json, allow_nan=False).encode()
        if "content-type" not in headers:
            headers["Content-Type"] = "application/json"
    if body:
        headers["Content-Length"] = str(len(body))
    elif body is None and method not in ("GET", "HEAD") and "content-length" not in headers:
        headers["Content-Length"] = "0"
    if auth is not None:
        headers["Authorization"] = _basic(*auth)

    prep = PreparedRequest()
    prep.method, prep.url, prep.body = method, url, body
    prep.headers = headers
    raw = _urlopen(sess, prep, parts.scheme, parts.hostname, port, target, kwargs)
    resp = Response()
    resp.status_code = raw.status
    resp.headers = CaseInsensitiveDict(raw.headers)
    resp.encoding = get_encoding_from_headers(resp.headers)
    resp.raw, resp.reason, resp.url, resp.request = raw, raw.reason, url, prep
    if "set-cookie" in resp.headers:  # kept as Session.request keeps them (later requests then take its path)
        from requests.cookies import extract_cookies_to_jar

        extract_cookies_to_jar(resp.cookies, prep, raw)
        extract_cookies_to_jar(sess.cookies, prep, raw)
    return resp


def _basic(user: str | bytes, password: str | bytes) -> str:
    """RFC 7617 Basic credentials, encoded as requests encodes them (text as Latin-1)."""
    import base64

    raw = b":".join(v if isinstance(v, bytes) else v.encode("latin-1") for v in (user, password))
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _urlopen(sess: requests.Session, prep: requests.PreparedRequest, scheme: str, host: str, port: int | None,
             target: str, kwargs: dict[str, Any]) -> Any:
    """``HTTPAdapter.send`` for a prepared request: its pool, TLS checks, timeouts and exception mapping."""
    import requests
    from urllib3 import exceptions as u3
    from urllib3.util import Timeout

    adapter = sess.get_adapter(prep.url or "")
    verify, cert = kwargs.get("verify"), kwargs.get("cert")
    if verify is None:
        verify = True
    pool_kwargs: dict[str, Any] = {"cert_reqs": "CERT_NONE" if verify is False else "CERT_REQUIRED"}
    if isinstance(verify, str):
        pool_kwargs["ca_cert_dir" if os.path.isdir(verify) else "ca_certs"] = verify
    if cert is not None:
        if isinstance(cert, tuple) and len(cert) == 2:
            pool_kwargs["cert_file"], pool_kwargs["key_file"] = cert
        else:
            pool_kwargs["cert_file"] = cert
    try:
        conn = adapter.poolmanager.connection_from_host(host, port, scheme, pool_kwargs=pool_kwargs)
    except u3.LocationValueError as exc:
        raise requests.exceptions.InvalidURL(exc, request=prep) from None
    adapter.cert_verify(conn, prep.url, verify, cert)
    timeout = kwargs.get("timeout")
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    try:
        return conn.urlopen(method=prep.method, url=target, body=prep.body, headers=prep.headers, redirect=False,
                            assert_same_host=False, preload_content=False, decode_content=False,
                            retries=adapter.max_retries, timeout=Timeout(connect=connect, read=read),
                            chunked=prep.body is not None and "Content-Length" not in prep.headers)
    except (u3.ProtocolError, OSError) as exc:
        raise requests.ConnectionError(exc, request=prep) from None
    except u3.MaxRetryError as exc:
        reason = exc.reason
        if isinstance(reason, u3.ConnectTimeoutError) and not isinstance(reason, u3.NewConnectionError):
            raise requests.exceptions.ConnectTimeout(exc, request=prep) from None
        if isinstance(reason, u3.ResponseError):
            raise requests.exceptions.RetryError(exc, request=prep) from None
        if isinstance(reason, u3.SSLError):
            raise requests.exceptions.SSLError(exc, request=prep) from None
        raise requests.ConnectionError(exc, request=prep) from None
    except u3.ClosedPoolError as exc:
        raise requests.ConnectionError(exc, request=prep) from None
    except u3.SSLError as exc:
        raise requests.exceptions.SSLError(exc, request=prep) from None
    except u3.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc, request=prep) from None
    except u3.InvalidHeader as exc:
        raise requests.exceptions.InvalidHeader(exc, request=prep) from None


def _send(method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
    """One request on the thread's session: the direct path when it can, else ``Session.request``."""
    sess = session()
    resp = _direct(sess, method, url, kwargs)
    if resp is None:
        resp = sess.request(method, url, stream=True, allow_redirects=False, **kwargs)
    return resp


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


# -- one attempt ----------------------------------------------------------------------------------

class _CutShortError(Exception):
    """The attempt failed in a way worth retrying (timeout, dropped or truncated body)."""


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB" if n >= 1048576 else f"{n} bytes"


def _read_body(resp: requests.Response, method: str, max_bytes: int, attempt: _Attempt) -> None:
    """Read the body into ``resp`` (so ``.content``/``.json()`` work), stopping at ``max_bytes``."""
    if method == "HEAD" or resp.status_code in _NO_BODY:
        # Reading the empty body marks the connection's answer as done; a pooled connection whose
        # last answer was left open fails the next request sent on it (ResponseNotReady).
        resp.raw.read()
        _keep(resp, b"")
        return
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        resp.close()
        raise BadResponseError(f"response declares {_mib(int(declared))}, over the {_mib(max_bytes)} limit")
    buf = bytearray()
    while True:
        chunk = resp.raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            break
        buf += chunk
        if len(buf) > max_bytes:
            resp.close()
            raise BadResponseError(f"response is larger than the {_mib(max_bytes)} limit")
        if attempt.expired:
            break
    if attempt.expired:
        resp.close()
        raise _CutShortError("timed out (response too slow)")
    _keep(resp, bytes(buf))


def _keep(resp: requests.Response, body: bytes) -> None:
    """Hold ``body`` as the response's content (as requests does after reading) and free the connection."""
    resp._content = body
    resp._content_consumed = True
    resp.raw.release_conn()


def _attempt(method: str, url: str, kwargs: dict[str, Any], max_bytes: int, follow: bool,
             attempt: _Attempt) -> requests.Response:
    """Send, follow redirects (credentials only to the first URL's origin), and read the final body."""
    import requests
    import urllib3.exceptions

    current, hop_kwargs = url, kwargs
    for _hop in range(MAX_REDIRECTS + 1):
        _count(method, current)
        try:
            resp = _send(method, current, hop_kwargs)
        except requests.exceptions.SSLError:
            raise  # a bad certificate does not heal by waiting: fail fast
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _CutShortError("timed out" if attempt.expired else type(exc).__name__) from None
        if not (follow and resp.is_redirect):
            try:
                _read_body(resp, method, max_bytes, attempt)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                resp.close()
                if isinstance(exc, urllib3.exceptions.DecodeError):
                    raise BadResponseError("response body cannot be decoded") from None
                reason = "timed out" if attempt.expired else f"body cut short ({type(exc).__name__})"
                raise _CutShortError(reason) from None
            return resp
        resp.close()
        try:
            nxt = urljoin(current, resp.headers["Location"])
            target = origin(nxt)
        except ValueError:
            raise BadResponseError("redirect Location is not a URL") from None
        if target[0] not in ("http", "https") or not target[1]:
            raise BadResponseError("redirect to a non-HTTP location")
        if not same_origin(nxt, url):
            hop_kwargs = {k: v for k, v in kwargs.items() if k not in ("auth", "params", "headers")}
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
            hop_kwargs["headers"] = headers
        else:
            hop_kwargs = {k: v for k, v in kwargs.items() if k != "params"}
        current = nxt
    raise BadResponseError(f"more than {MAX_REDIRECTS} redirects")


def request(method: str, url: str, *, policy: RetryPolicy | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
            **kwargs: Any) -> requests.Response:
    """Send one request, retrying transient failures until ``policy.deadline``.

    Returns the final response with its body read (any status that is not transient, or a
    transient one when the deadline has passed). Raises :class:`TransientError` when the deadline
    passes without any response (connection failures, timeouts, truncated bodies) and
    :class:`BadResponseError` when the server breaks a limit. ``allow_redirects`` defaults to
    True for GET/HEAD; other methods never follow redirects. HTTPS is verified against
    :func:`chainmail._internal.tls.verify` unless the caller passes ``verify`` (the Kubernetes API does).
    """
    policy = policy or RetryPolicy()
    kwargs.setdefault("timeout", policy.timeout)
    if "verify" not in kwargs:
        kwargs["verify"] = tls.verify()
    follow = bool(kwargs.pop("allow_redirects", True)) and method in ("GET", "HEAD")
    kwargs.pop("stream", None)
    started = time.monotonic()
    attempt_no = 0
    while True:
        wait: float | None = None
        resp: requests.Response | None = None
        left = policy.deadline - (time.monotonic() - started)
        watchdog = _Attempt(min(policy.attempt_limit, max(left, MIN_ATTEMPT)))
        _local.attempt = watchdog
        _watchdog.watch(watchdog)
        try:
            resp = _attempt(method, url, kwargs, max_bytes, follow, watchdog)
        except _CutShortError as exc:
            problem = f"{method} {_safe(url)}: {exc}"
        finally:
            watchdog.finish()
            _local.attempt = None
        if resp is not None:
            if resp.status_code not in RETRY_STATUSES:
                return resp
            _count_pushback(resp.status_code)
            problem = f"{method} {_safe(url)}: HTTP {resp.status_code}"
            wait = _retry_after(resp)
        if wait is None:
            wait = policy.backoff(attempt_no)
        if time.monotonic() - started + wait > policy.deadline:
            if resp is not None:
                return resp
            raise TransientError(f"{problem} (gave up after {attempt_no + 1} attempts)")
        body = kwargs.get("data")
        if body is not None and hasattr(body, "seek"):
            body.seek(0)
        log.debug("retrying %s in %.2fs", problem, wait)
        policy.retries += 1
        attempt_no += 1
        time.sleep(wait)


def _safe(url: str) -> str:
    """``url`` without its query (presigned storage URLs carry signatures there) or userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{parts.path}"
