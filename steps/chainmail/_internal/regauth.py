"""Registry auth pieces with no I/O: ``WWW-Authenticate`` parsing, token answers, the token cache.

The distribution token flow (https://distribution.github.io/distribution/spec/auth/token/): a
``401`` carries ``WWW-Authenticate: Bearer realm="…",service="…",scope="…"``; the client asks the
realm for a token (HTTP Basic with the registry's login, or anonymously) and retries with
``Authorization: Bearer <token>``. A ``401`` whose challenge says ``error="insufficient_scope"``
means the token lacks an action; its ``scope`` names what the request needs.

Tokens are cached process-wide per (registry, login, scope), until ``expires_in`` (less a margin)
has passed, and fetched single-flight: threads needing the same key wait for one fetch.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chainmail._internal.encoding import load_json

#: Largest token-endpoint answer read, and largest token accepted (big JWTs stay far below).
MAX_TOKEN_RESPONSE_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 64 * 1024
#: ``expires_in`` when the answer has none (the spec's default), and the longest honoured.
DEFAULT_TOKEN_TTL = 60.0
MAX_TOKEN_TTL = 24 * 3600.0
#: Cached tokens kept before the cache is cleared.
TOKEN_CACHE_LIMIT = 1024
#: A token is used for at most ``expires_in`` minus this share of it (capped at 30 s).
_MARGIN_SHARE = 0.1
_MARGIN_MAX = 30.0

#: RFC 7235 auth-param: ``name = token | quoted-string``.
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')
#: Header-safe token characters (RFC 6750 b64token plus what real registries send in JWTs).
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9\-._~+/=:]+$")


class TokenResponseError(ValueError):
    """The token endpoint's answer is not a usable token (the message never holds the token)."""


@dataclass(frozen=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` challenge."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The ``scope`` parameter split on spaces (a registry may ask for several)."""
        return tuple(self.params.get("scope", "").split())

    @property
    def insufficient_scope(self) -> bool:
        return self.params.get("error", "") == "insufficient_scope"


def parse_challenge(header: str) -> Challenge | None:
    """The first Basic or Bearer challenge of a ``WWW-Authenticate`` value, else None.

    Parameter names are case-insensitive; values may be quoted (with ``\\`` escapes) or bare.
    """
    text = header.strip()
    match = re.match(r"^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+|$)", text)
    if not match:
        return None
    scheme = match.group(1).lower()
    if scheme not in ("basic", "bearer"):
        return None
    rest = text[match.end():]
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        name, value = m.group(1).lower(), m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name, value)
        pos = m.end()
    return Challenge(scheme, params)


def repository_scope(repository: str, actions: str) -> str:
    """``repository:<name>:<actions>``, the resource scope the distribution spec defines."""
    return f"repository:{repository}:{actions}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes with the actions of one resource merged (``pull`` + ``push`` → ``pull,push``), sorted."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            continue
        merged.setdefault(f"{kind}:{name}", set()).update(a for a in actions.split(",") if a)
    return tuple(f"{resource}:{','.join(sorted(acts))}" for resource, acts in sorted(merged.items()))


def widen(scopes: tuple[str, ...], asked: Iterable[str]) -> tuple[str, ...]:
    """``scopes`` plus the ``asked`` scopes (from a challenge) that name a resource already in ``scopes``.

    A registry may only widen the actions on what the request is about: a challenge naming another
    repository does not make chainmail ask for a token there.
    """
    resources = {s.rpartition(":")[0] for s in scopes}
    return merge_scopes([*scopes, *(s for s in asked if s.rpartition(":")[0] in resources)])


def parse_token_response(body: bytes) -> tuple[str, float]:
    """``(token, expires_in)`` from a token endpoint's JSON (``token`` or ``access_token``).

    Raises :class:`TokenResponseError` for anything else: not a JSON object, no token, a token
    too long or with characters that do not belong in a header.
    """
    if len(body) > MAX_TOKEN_RESPONSE_BYTES:
        raise TokenResponseError("token answer is too large")
    try:
        doc = load_json(body)
    except ValueError:
        raise TokenResponseError("token endpoint did not return JSON") from None
    if not isinstance(doc, dict):
        raise TokenResponseError("token answer is not a JSON object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenResponseError("token answer has no 'token' or 'access_token' string")
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
        raise TokenResponseError("token answer holds a malformed token")
    ttl = doc.get("expires_in")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl != ttl:
        ttl = DEFAULT_TOKEN_TTL
    return token, float(min(ttl, MAX_TOKEN_TTL))


def login_id(username: str, secret: str) -> str:
    """A cache-key name for a login: the user and a short hash of the secret (never the secret)."""
    if not username and not secret:
        return ""
    return f"{username}#{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


TokenKey = tuple[str, str, tuple[str, ...]]


class TokenCache:
    """Bearer tokens by (registry, login, scopes), honouring their lifetime; fetches are single-flight."""

    def __init__(self, limit: int = TOKEN_CACHE_LIMIT, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._flights: dict[TokenKey, threading.Lock] = {}
        #: Keys whose fresh token the registry still refused (insufficient_scope), until that token expires.
        self._denied: dict[TokenKey, float] = {}
        self._limit = limit
        self._clock = clock
        #: Tokens fetched through :meth:`fetch` (tests and reports).
        self.fetches = 0

    def get(self, key: TokenKey) -> str | None:
        """A live token for ``key``, else None."""
        with self._lock:
            hit = self._tokens.get(key)
            if hit is None:
                return None
            if hit[1] <= self._clock():
                del self._tokens[key]
                return None
            return hit[0]

    def fetch(self, key: TokenKey, fetcher: Callable[[], tuple[str, float]], *, stale: str | None = None) -> str:
        """The cached token for ``key`` or one from ``fetcher`` (called by one thread at a time per key).

        ``stale`` names a token the server just refused: it is not returned again, but a different
        token another thread fetched meanwhile is.
        """
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            current = self.get(key)
            if current is not None and current != stale:
                return current
            token, ttl = fetcher()
            with self._lock:
                self.fetches += 1
                if ttl > 0:
                    if len(self._tokens) >= self._limit:
                        self._tokens.clear()
                        self._flights = {key: flight}
                    margin = min(_MARGIN_MAX, ttl * _MARGIN_SHARE)
                    self._tokens[key] = (token, self._clock() + ttl - margin)
            return token

    def deny(self, key: TokenKey) -> None:
        """Remember that even a fresh token for ``key`` lacks the access: later calls fail without asking."""
        with self._lock:
            hit = self._tokens.get(key)
            if hit is not None:
                if len(self._denied) >= self._limit:
                    self._denied.clear()
                self._denied[key] = hit[1]

    def denied(self, key: TokenKey) -> bool:
        with self._lock:
            until = self._denied.get(key)
            if until is None:
                return False
            if until <= self._clock():
                del self._denied[key]
                return False
            return True

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._flights.clear()
            self._denied.clear()
            self.fetches = 0


#: The process's token cache, shared by every :class:`~chainmail._internal.registry.RegistryClient`.
TOKENS = TokenCache()
