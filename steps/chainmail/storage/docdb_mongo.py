"""``docdb`` on MongoDB: ``mongo://<database>/<collection>?id_field=name``.

The server URL comes, as in Chains, from the first of ``storage.docdb.mongo-server-url-path``
(a file), ``storage.docdb.mongo-server-url-dir`` (the file ``MONGO_SERVER_URL`` in that
directory), ``storage.docdb.mongo-server-url`` and the ``MONGO_SERVER_URL`` environment
variable; one trailing newline is dropped. Files are read again on every store and the
client is cached per server URL, so a long-running process follows a rotated Secret.

Documents are written as go-cloud's mongodocstore does: the Go field names, the key (found
by ``id_field``, case-insensitively) copied to ``_id``, and the field named exactly
``id_field`` removed (so ``id_field=name`` keeps ``Name``, ``id_field=Name`` drops it).
``Put`` is a replace-with-upsert on ``_id``. Without ``id_field`` the document has no key
and Chains' write fails; chainmail says so before connecting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.storage.docdb import DocdbUrl, fold_field, without_key_field

ENV = "MONGO_SERVER_URL"
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed


def _read(path: Path, key: str) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    return text.removesuffix("\n")


def server_url(cfg: Config) -> str:
    """The Mongo server URL, by Chains' precedence: path, dir, url, then ``$MONGO_SERVER_URL``."""
    path = cfg.get("storage.docdb.mongo-server-url-path").strip()
    if path:
        return _read(Path(path), "storage.docdb.mongo-server-url-path")
    directory = cfg.get("storage.docdb.mongo-server-url-dir").strip()
    if directory:
        if not Path(directory).is_dir():
            raise ConfigError(f"storage.docdb.mongo-server-url-dir: {directory} is not a directory")
        return _read(Path(directory) / ENV, "storage.docdb.mongo-server-url-dir")
    url = cfg.get("storage.docdb.mongo-server-url").strip()
    if url:
        return url
    env = os.environ.get(ENV, "")
    if not env:
        raise ConfigError("docdb storage with mongo:// needs a server URL: set storage.docdb.mongo-server-url-path, "
                          f"storage.docdb.mongo-server-url-dir, storage.docdb.mongo-server-url or {ENV}")
    return env


def redacted(url: str) -> str:
    """The server URL without user info, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _client(url: str, ctx: Context) -> Any:
    cache_key = f"docdb.mongo:{url}"
    client = ctx.cache.get(cache_key)
    if client is None:
        import pymongo
        from pymongo.errors import ConfigurationError, InvalidURI

        timeout_ms = int(min(ctx.retry.deadline, 30.0) * 1000)
        try:
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=5000,
                                         socketTimeoutMS=30000, retryWrites=True, connect=False)
        except (ConfigurationError, InvalidURI, ValueError) as exc:
            raise ConfigError(f"the Mongo server URL for {redacted(url)} is not valid "
                              f"({str(exc).split(':')[0]})") from None
        ctx.cache[cache_key] = client
    return client


def mongo_document(doc: dict[str, Any], id_field: str) -> dict[str, Any]:
    """What mongodocstore stores for a SignedDocument with ``id_field``."""
    key_field = fold_field(id_field)
    if key_field is None:
        raise ConfigError(f"storage.docdb.url: id_field '{id_field or '_id'}' is not a field of Chains' document, "
                          "so it has no key and cannot be put; use id_field=name")
    return {**without_key_field(doc, id_field), "_id": doc[key_field]}


def check(url: DocdbUrl) -> dict[str, str]:
    """Validate the URL (no network): database, collection and a usable ``id_field``."""
    id_field = url.take("id_field") or "_id"
    url.take("revision_field")  # Chains' document has no revision field, so this changes nothing
    url.refuse_rest("id_field, revision_field")
    database, collection = url.host, url.path.lstrip("/")
    if not database or not collection:
        raise ConfigError("storage.docdb.url: mongo:// needs a database (host) and a collection (path)")
    mongo_document(dict.fromkeys(("Signed", "Signature", "Cert", "Chain", "Object", "Name"), ""), id_field)
    return {"database": database, "collection": collection, "id_field": id_field}


def put(url: DocdbUrl, docs: list[dict[str, Any]], ctx: Context) -> str:
    """Replace-with-upsert every document in one ordered bulk write; returns a location prefix."""
    opts = check(url)
    database, collection = opts["database"], opts["collection"]
    mdocs = [mongo_document(doc, opts["id_field"]) for doc in docs]
    server = server_url(ctx.config)
    from pymongo import ReplaceOne
    from pymongo.errors import (
        BulkWriteError,
        NetworkTimeout,
        OperationFailure,
        PyMongoError,
        ServerSelectionTimeoutError,
    )

    coll = _client(server, ctx)[database][collection]
    where = f"{redacted(server)} {database}.{collection}"
    try:
        coll.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in mdocs], ordered=True)
    except BulkWriteError as exc:
        first = (exc.details.get("writeErrors") or [{}])[0]
        raise StorageError(f"docdb storage: MongoDB rejected document {first.get('op', {}).get('_id', '?')} in "
                           f"{where} ({first.get('errmsg', 'write error')})") from None
    except OperationFailure as exc:
        if exc.code in _AUTH_CODES:
            raise StorageError(f"docdb storage: MongoDB refused the credentials for {where}") from None
        raise StorageError(f"docdb storage: MongoDB write to {where} failed (code {exc.code})") from None
    except (ServerSelectionTimeoutError, NetworkTimeout):
        raise StorageError(f"docdb storage: MongoDB server {redacted(server)} unreachable") from None
    except PyMongoError as exc:
        raise StorageError(f"docdb storage: MongoDB write to {where} failed ({type(exc).__name__})") from None
    return f"mongo://{database}/{collection}"
