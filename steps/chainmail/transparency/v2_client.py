"""The Rekor v2 HTTP client: ``POST /api/v2/log/entries``, and reading a logged entry back after a 409.

Example::

    rekor = RekorV2Client(url, keys=load_log_keys("trusted_root.json"), retry=ctx.retry)
    entry = rekor.upload(hashedrekord_request(payload, signature, public_key_pem))   # verified

Every entry returned has passed :func:`chainmail.transparency.v2.verify_entry` (checkpoint and
inclusion proof); what it binds is checked by the caller. Failures are :class:`TransparencyError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainmail.errors import TransparencyError
from chainmail.transparency.checkpoint import verify_signed_checkpoint
from chainmail.transparency.errors import LogUnavailableError
from chainmail.transparency.trust import LogKey
from chainmail.transparency.v2 import ENTRIES_PATH, RekorV2Entry, base_url, verify_entry

if TYPE_CHECKING:
    import requests

    from chainmail._internal.http import RetryPolicy

#: Largest answer read (an entry is a few kB; a tile 8 KiB; an entry bundle 256 entries).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class RekorV2Client:
    """One Rekor v2 log; ``keys`` are the trusted logs its checkpoints must verify with."""

    version = "2"

    def __init__(self, url: str, *, keys: list[LogKey], retry: RetryPolicy | None = None) -> None:
        from chainmail.transparency.client import check_log_url

        check_log_url(url)
        self.url = base_url(url)
        self.keys = keys
        self.retry = retry

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        from chainmail.transparency.client import call_log

        return call_log(self.url, self.retry, method, path, **kwargs)

    def _read(self, path: str) -> bytes:
        """``GET /api/v2/<path>`` (a checkpoint, tile or entry bundle): the body bytes."""
        from chainmail.transparency.client import _message

        resp = self._call("GET", "/api/v2/" + path)
        if resp.status_code != 200:
            raise LogUnavailableError(f"transparency log {self.url}: reading {path} failed: HTTP "
                                    f"{resp.status_code}{_message(resp)}")
        return resp.content

    def upload(self, request_body: dict[str, Any]) -> RekorV2Entry:
        """Log a ``CreateEntryRequest``; returns the entry once its checkpoint and proof verify.

        An entry the log already holds (HTTP 409 naming its index) is read back from the tiles.
        """
        import re

        from chainmail._internal.encoding import load_json
        from chainmail.transparency.client import _message

        kind = "dsse" if "dsseRequestV002" in request_body else "hashedrekord"
        resp = self._call("POST", ENTRIES_PATH, json=request_body)
        if resp.status_code == 409:
            found = re.search(r"\bindex (\d+)\b", _message(resp))
            if found is None:
                raise TransparencyError(f"transparency log {self.url}: this {kind} entry is already logged "
                                        "(HTTP 409) but the log did not say at which index")
            entry = self.read_back(int(found.group(1)))
        elif resp.status_code >= 300:
            raise TransparencyError(f"transparency log {self.url}: uploading a {kind} entry failed: HTTP "
                                    f"{resp.status_code}{_message(resp)}")
        else:
            try:
                doc = load_json(resp.content)
            except ValueError:
                raise TransparencyError(f"transparency log {self.url}: uploading a {kind} entry: the response "
                                        "is not JSON") from None
            entry = RekorV2Entry.from_json(doc)
        verify_entry(entry, self.keys)
        return entry

    def read_back(self, index: int) -> RekorV2Entry:
        """Entry ``index`` with an inclusion proof against the log's current, verified checkpoint."""
        from chainmail.transparency.tiles import TileReader

        note = self._read("checkpoint").decode("utf-8", "replace")
        checkpoint, key = verify_signed_checkpoint(note, self.keys)
        tiles = TileReader(self._read, checkpoint.size)
        body = tiles.entry(index)
        try:
            from chainmail._internal.encoding import load_json

            doc = load_json(body)
            kind, version = str(doc["kind"]), str(doc["apiVersion"])
        except (ValueError, KeyError, TypeError):
            raise TransparencyError(f"transparency log {self.url}: entry {index} is not a JSON entry") from None
        return RekorV2Entry(log_index=index, log_id=key.log_id, kind=kind, version=version, body=body,
                            proof_index=index, tree_size=checkpoint.size, root_hash=checkpoint.root_hash,
                            hashes=tuple(tiles.inclusion_proof(index)), checkpoint=note)
