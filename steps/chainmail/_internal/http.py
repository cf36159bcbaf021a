"""One HTTP session per process, with retries that outlast short outages.

Every network call (Kubernetes API, registry, Rekor, Fulcio, KMS) goes through
:func:`request`. Transient failures -- connection refused/reset, timeouts, 429 (honouring
``Retry-After``) and 5xx -- are retried with exponential backoff and full jitter until the
policy's deadline (TLS certificate errors are not retried); anything else is returned to
the caller at once, who maps 401/403/404 to a typed error. ``requests`` is imported lazily: it costs ~0.1 s.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

log = logging.getLogger("chainmail.http")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class RetryPolicy:
    """How long to keep trying a transient failure."""

    #: Give up this many seconds after the first attempt.
    deadline: float = 300.0
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    #: Per-attempt (connect, read) timeout in seconds.
    timeout: tuple[float, float] = (5.0, 30.0)
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


_local = threading.local()


def session() -> requests.Session:
    """The thread's keep-alive session (environment proxies and CA bundles ignored: TLS is explicit)."""
    sess = getattr(_local, "session", None)
    if sess is None:
        import requests
        from requests.adapters import HTTPAdapter

        sess = requests.Session()
        sess.trust_env = False
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=16, max_retries=0)
        sess.mount("http://", adapter)
        sess.mount("https://", adapter)
        _local.session = sess
    return sess


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


def request(method: str, url: str, *, policy: RetryPolicy | None = None, **kwargs: Any) -> requests.Response:
    """Send one request, retrying transient failures until ``policy.deadline``.

    Returns the final response (any status that is not transient, or a transient one
    when the deadline has passed and a response exists). Raises :class:`TransientError`
    when the deadline passes without any response (connection failures).
    """
    import requests

    policy = policy or RetryPolicy()
    kwargs.setdefault("timeout", policy.timeout)
    started = time.monotonic()
    attempt = 0
    while True:
        wait: float | None = None
        try:
            resp = session().request(method, url, **kwargs)
        except requests.exceptions.SSLError:
            raise  # a bad certificate does not heal by waiting: fail fast
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem: str = f"{method} {url}: {type(exc).__name__}"
            resp = None
        else:
            if resp.status_code not in RETRY_STATUSES:
                return resp
            problem = f"{method} {url}: HTTP {resp.status_code}"
            wait = _retry_after(resp)
        if wait is None:
            wait = policy.backoff(attempt)
        if time.monotonic() - started + wait > policy.deadline:
            if resp is not None:
                return resp
            raise TransientError(f"{problem} (gave up after {attempt + 1} attempts)")
        body = kwargs.get("data")
        if body is not None and hasattr(body, "seek"):
            body.seek(0)
        log.debug("retrying %s in %.2fs", problem, wait)
        policy.retries += 1
        attempt += 1
        time.sleep(wait)
