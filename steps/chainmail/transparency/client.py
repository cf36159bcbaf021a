"""A Rekor v1 API client: upload entries, fetch them by UUID or log index, search the index.

Example::

    rekor = RekorClient("https://rekor.sigstore.dev", keys=load_log_keys(None), retry=ctx.retry)
    entry = rekor.upload(kinds.hashedrekord(payload, sig, pub_pem))   # 409: the existing entry
    rekor.get(uuid=entry.uuid); rekor.get(log_index=entry.log_index)
    rekor.search(sha256="sha256:…")                                     # UUIDs

Every entry returned is verified (SET, inclusion proof with checkpoint, UUID) against ``keys``
first; every failure is a one-line :class:`TransparencyError` (exit 7).
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chainmail.errors import TransparencyError
from chainmail.transparency.entry import LogEntry
from chainmail.transparency.verify import verify_entry

if TYPE_CHECKING:
    import requests

    from chainmail._internal.http import RetryPolicy
    from chainmail.transparency.trust import LogKey

_UUID_RE = re.compile(r"^(?:[0-9a-fA-F]{16})?[0-9a-fA-F]{64}$")
#: Largest Rekor response read (an entry is a few kB; a search result a list of UUIDs).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def check_log_url(url: str) -> None:
    """A transparency log address must be an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TransparencyError(f"transparency log URL '{url}' is not an http(s) URL")


def call_log(base: str, retry: RetryPolicy | None, method: str, path: str, **kwargs: Any) -> requests.Response:
    """One bounded request to the log at ``base``; not reachable (after retries) is :class:`LogUnavailableError`."""
    import requests

    from chainmail._internal.http import BadResponseError, TransientError, request
    from chainmail.transparency.errors import LogUnavailableError

    try:
        return request(method, base + path, policy=retry, max_bytes=MAX_RESPONSE_BYTES, **kwargs)
    except TransientError as exc:
        raise LogUnavailableError(f"transparency log {base} is unreachable: {exc}") from None
    except BadResponseError as exc:
        raise TransparencyError(f"transparency log {base}: bad response ({exc})") from None
    except requests.RequestException as exc:
        raise LogUnavailableError(f"transparency log {base}: {type(exc).__name__}") from None


class RekorClient:
    """One Rekor instance; ``keys`` are the log keys entries must verify with."""

    def __init__(self, url: str, *, keys: list[LogKey], retry: RetryPolicy | None = None) -> None:
        check_log_url(url)
        self.url = url.rstrip("/")
        self.keys = keys
        self.retry = retry

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return call_log(self.url, self.retry, method, path, **kwargs)

    def _json(self, resp: requests.Response, what: str) -> Any:
        from chainmail._internal.encoding import load_json

        if resp.status_code >= 300:
            raise TransparencyError(f"transparency log {self.url}: {what} failed: HTTP {resp.status_code}"
                                    f"{_message(resp)}")
        try:
            return load_json(resp.content)
        except ValueError:
            raise TransparencyError(f"transparency log {self.url}: {what}: the response is not JSON") from None

    def _entry(self, resp: requests.Response, what: str) -> LogEntry:
        entry = LogEntry.from_response(self._json(resp, what))
        verify_entry(entry, self.keys)
        return entry

    def upload(self, proposed: dict[str, Any]) -> LogEntry:
        """Log ``proposed`` (see :mod:`chainmail.transparency.kinds`); an existing entry (409) is fetched."""
        resp = self._call("POST", "/api/v1/log/entries", json=proposed)
        if resp.status_code == 409:
            uuid = _uuid_from_conflict(resp)
            if uuid is None:
                raise TransparencyError(f"transparency log {self.url}: entry exists (HTTP 409) but the log did "
                                        "not say where")
            return self.get(uuid=uuid)
        return self._entry(resp, f"uploading a {proposed.get('kind', '?')} entry")

    def get(self, *, uuid: str | None = None, log_index: int | None = None) -> LogEntry:
        """The verified entry with this UUID or at this log index."""
        entry = LogEntry.from_response(self.fetch_raw(uuid=uuid, log_index=log_index))
        verify_entry(entry, self.keys)
        check_addressed(entry, uuid=uuid, log_index=log_index, url=self.url)
        return entry

    def fetch_raw(self, *, uuid: str | None = None, log_index: int | None = None) -> Any:
        """The log's JSON answer for the entry with this UUID or at this log index (not parsed or verified);
        :class:`TransparencyError` when the log cannot be reached or answers with an error."""
        if (uuid is None) == (log_index is None):
            raise TransparencyError("name exactly one of a UUID or a log index")
        if uuid is not None:
            if not _UUID_RE.match(uuid):
                raise TransparencyError(f"'{uuid}' is not a Rekor entry UUID (64 or 80 hex digits)")
            return self._json(self._call("GET", f"/api/v1/log/entries/{uuid.lower()}"), f"getting entry {uuid}")
        index = int(log_index or 0)
        if index < 0:
            raise TransparencyError(f"log index {index} is negative")
        resp = self._call("GET", "/api/v1/log/entries", params={"logIndex": str(index)})
        return self._json(resp, f"getting log index {index}")

    def search(self, *, sha256: str | None = None, public_key_pem: str | None = None) -> list[str]:
        """UUIDs of the entries indexed under an artifact/payload sha256 or a public key (unverified)."""
        if (sha256 is None) == (public_key_pem is None):
            raise TransparencyError("search by exactly one of a sha256 digest or a public key")
        if sha256 is not None:
            digest = sha256.lower().removeprefix("sha256:")
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise TransparencyError(f"'{sha256}' is not a sha256 digest")
            query: dict[str, Any] = {"hash": f"sha256:{digest}"}
        else:
            query = {"publicKey": {"format": "x509",
                                   "content": base64.b64encode(str(public_key_pem).encode()).decode()}}
        doc = self._json(self._call("POST", "/api/v1/index/retrieve", json=query), "searching the index")
        if not isinstance(doc, list) or not all(isinstance(u, str) and _UUID_RE.match(u) for u in doc):
            raise TransparencyError(f"transparency log {self.url}: the search answer is not a list of UUIDs")
        return list(dict.fromkeys(u.lower() for u in doc))


def check_addressed(entry: LogEntry, *, uuid: str | None = None, log_index: int | None = None,
                    url: str = "") -> None:
    """The log answered with the entry that was asked for (same UUID, or same log index)."""
    if uuid is not None and entry.uuid.lower()[-64:] != uuid.lower()[-64:]:
        raise TransparencyError(f"transparency log {url} answered with entry {entry.uuid} for UUID {uuid}")
    if log_index is not None and entry.log_index != log_index:
        raise TransparencyError(f"transparency log {url} answered with log index {entry.log_index} "
                                f"for {log_index}")


def _message(resp: requests.Response) -> str:
    """``: <message>`` from a Rekor error body, one line and bounded."""
    from chainmail._internal.encoding import load_json

    try:
        doc = load_json(resp.content)
        text = doc.get("message") if isinstance(doc, dict) else None
    except ValueError:
        text = None
    if not isinstance(text, str) or not text.strip():
        return ""
    text = " ".join(text.split())
    return ": " + (text[:200] + "…" if len(text) > 200 else text)


def _uuid_from_conflict(resp: requests.Response) -> str | None:
    location = resp.headers.get("Location") or ""
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    if _UUID_RE.match(tail):
        return tail
    match = re.search(r"\b((?:[0-9a-fA-F]{16})?[0-9a-fA-F]{64})\b", _message(resp))
    return match.group(1) if match else None
