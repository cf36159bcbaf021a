"""The ``docdb`` backend: one go-cloud docstore document per signed payload.

Chains ``Put``s a ``SignedDocument`` into the collection named by ``storage.docdb.url``::

    Signed     the raw payload bytes
    Signature  standard base64 of the signature (raw DER, or the DSSE envelope JSON)
    Cert       PEM certificate, or ""
    Chain      PEM chain, or ""
    Object     the payload parsed as JSON (numbers are Go float64)
    Name       the short key (``taskrun-<uid>``, ``pipelinerun-<uid>``, 12 hex of an image digest)

Field names are the Go names, unchanged by every driver (go-cloud lowercases only when a
program asks; the URL cannot). The key field named in the URL (``partition_key``, ``id_field``,
``name_field``) is matched as each driver does; see ``docs/storage-backends.md``. Schemes:
``dynamodb://`` (boto3), ``mongo://`` (pymongo) and ``firestore://`` (google-cloud-firestore);
each library is an optional extra.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chainmail._internal.encoding import b64encode, sha256_digest
from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.models import SignedPayload, StoredRef
from chainmail.storage import Backend

#: SignedDocument's fields, in Chains' declaration order.
FIELDS = ("Signed", "Signature", "Cert", "Chain", "Object", "Name")
SCHEMES = {"dynamodb": "docdb_dynamodb", "mongo": "docdb_mongo", "firestore": "docdb_firestore"}
EXTRAS = {"dynamodb": ("boto3", "docdb-dynamodb"), "mongo": ("pymongo", "docdb-mongo"),
          "firestore": ("google.cloud.firestore_v1", "docdb-firestore")}


def document(item: SignedPayload) -> dict[str, Any]:
    """Chains' ``SignedDocument`` for one signed payload, as Python values."""
    body = item.payload.body
    try:
        obj = json.loads(body, parse_int=float)  # Go's json.Unmarshal into interface{}: every number a float64
    except ValueError:
        raise StorageError(f"docdb storage: the payload for {item.payload.artifact.full_key} is not JSON") from None
    return {
        "Signed": body,
        "Signature": b64encode(item.signature),
        "Cert": item.cert,
        "Chain": item.chain,
        "Object": obj,
        "Name": item.payload.artifact.short_key,
    }


def fold_field(name: str) -> str | None:
    """The SignedDocument field go-cloud's ``GetField`` finds for ``name`` (case-insensitive), if any."""
    return next((f for f in FIELDS if f.lower() == name.lower()), None)


def without_key_field(doc: dict[str, Any], field: str) -> dict[str, Any]:
    """go-cloud deletes the key field from the stored fields by its exact (case-sensitive) name."""
    return {k: v for k, v in doc.items() if k != field}


class DocdbUrl:
    """``storage.docdb.url`` split into scheme, host, path and single-valued query parameters."""

    def __init__(self, raw: str) -> None:
        raw = raw.strip()
        if not raw:
            raise ConfigError("storage.docdb.url is not set; the docdb storage backend needs a collection URL")
        parts = urlsplit(raw)
        if parts.scheme not in SCHEMES:
            raise ConfigError(f"storage.docdb.url: unknown scheme '{parts.scheme}://'; "
                              "expected dynamodb://, mongo:// or firestore://")
        self.raw = raw
        self.scheme = parts.scheme
        self.host = parts.netloc
        self.path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        self.params = {k: v[-1] for k, v in query.items()}

    def take(self, name: str) -> str:
        return self.params.pop(name, "")

    def refuse_rest(self, known: str) -> None:
        """go-cloud rejects query parameters its driver does not know."""
        if self.params:
            bad = sorted(self.params)[0]
            raise ConfigError(f"storage.docdb.url: unknown query parameter '{bad}' for {self.scheme}:// "
                              f"(known: {known})")


def driver(url: DocdbUrl) -> ModuleType:
    """The driver module for the URL's scheme, after checking its client library is installed."""
    lib, extra = EXTRAS[url.scheme]
    try:
        importlib.import_module(lib)
    except ImportError:
        raise ConfigError(f"docdb storage with {url.scheme}:// needs {lib.split('.')[0]}: "
                          f"pip install 'chainmail[{extra}]'") from None
    return importlib.import_module(f"chainmail.storage.{SCHEMES[url.scheme]}")


class DocdbBackend(Backend):
    """Puts Chains' SignedDocument into a DynamoDB table, MongoDB collection or Firestore collection."""

    NAME = "docdb"

    @classmethod
    def preflight(cls, ctx: Context) -> None:
        """Raise :class:`ConfigError` for a bad ``storage.docdb.*`` setting, without any network call."""
        url = DocdbUrl(ctx.config.get("storage.docdb.url"))
        mod = driver(url)
        mod.check(url)
        if url.scheme == "mongo":
            mod.server_url(ctx.config)

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        url = DocdbUrl(self.ctx.config.get("storage.docdb.url"))
        docs = [document(item) for item in signed]
        location = driver(url).put(url, docs, self.ctx)
        return [StoredRef(self.NAME, item.payload.artifact.full_key, f"{location}#{doc['Name']}",
                          sha256_digest(item.signature)) for item, doc in zip(signed, docs, strict=True)]
