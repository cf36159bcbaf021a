"""``docdb`` on Firestore: ``firestore://projects/<p>/databases/<db>/documents/<collection>?name_field=name``.

As go-cloud's gcpfirestore driver does, the document is named ``<collection path>/<key>``,
where the key is the field ``name_field`` finds (case-insensitively), and the field named
exactly ``name_field`` is left out of the stored fields. Values: ``[]byte`` → bytesValue,
strings (also empty) → stringValue, float64 → doubleValue, maps → mapValue, lists →
arrayValue, nil → nullValue. All documents of a store go in one ``Commit`` (atomic), each an
``update`` without precondition or mask, as go-cloud's ``Put``.

Uses the official ``google-cloud-firestore`` client over its REST transport, with
application-default credentials; ``FIRESTORE_EMULATOR_HOST`` points it at an emulator,
anonymously.
"""

from __future__ import annotations

import os
from typing import Any

from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.storage.docdb import DocdbUrl, fold_field, without_key_field

SCOPES = ("https://www.googleapis.com/auth/datastore",)
EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"


def value(obj: Any) -> Any:
    """A Firestore ``Value`` for a Python value, as go-cloud's gcpfirestore encoder builds it."""
    from google.cloud.firestore_v1.types import ArrayValue, MapValue, Value

    if obj is None:
        return Value(null_value=0)
    if isinstance(obj, bool):
        return Value(boolean_value=obj)
    if isinstance(obj, bytes):
        return Value(bytes_value=obj)
    if isinstance(obj, str):
        return Value(string_value=obj)
    if isinstance(obj, float):
        return Value(double_value=obj)
    if isinstance(obj, int):
        return Value(integer_value=obj)
    if isinstance(obj, list):
        return Value(array_value=ArrayValue(values=[value(v) for v in obj]))
    if isinstance(obj, dict):
        return Value(map_value=MapValue(fields={str(k): value(v) for k, v in obj.items()}))
    raise TypeError(f"cannot encode {type(obj).__name__} for Firestore")


def _client(ctx: Context) -> Any:
    client = ctx.cache.get("docdb.firestore")
    if client is not None:
        return client
    from google.cloud.firestore_v1.services.firestore import FirestoreClient

    emulator = os.environ.get(EMULATOR_ENV, "").strip()
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        client = FirestoreClient(transport="rest", credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": endpoint})
    else:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            creds, _ = google.auth.default(scopes=list(SCOPES))
        except DefaultCredentialsError:
            raise StorageError("docdb storage: no application-default credentials found for Firestore") from None
        client = FirestoreClient(transport="rest", credentials=creds)
    ctx.cache["docdb.firestore"] = client
    return client


def _error(exc: BaseException, where: str) -> StorageError:
    from google.api_core import exceptions as gexc

    text = " ".join(str(getattr(exc, "message", "") or exc).split("\n")[0].split())[:300]
    if isinstance(exc, gexc.NotFound):
        return StorageError(f"docdb storage: Firestore database for {where} does not exist ({text})")
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
        return StorageError(f"docdb storage: Firestore refused the credentials for {where} (HTTP {exc.code}: {text})")
    if isinstance(exc, gexc.GoogleAPICallError):
        return StorageError(f"docdb storage: Firestore commit to {where} failed (HTTP {exc.code}: {text})")
    return StorageError(f"docdb storage: Firestore commit to {where} failed ({type(exc).__name__}: {text})")


def check(url: DocdbUrl) -> dict[str, str]:
    """Validate the URL (no network): the collection path and a usable ``name_field``."""
    name_field = url.take("name_field")
    url.take("revision_field")  # Chains' document has no revision field
    url.refuse_rest("name_field, revision_field")
    if not name_field:
        raise ConfigError("storage.docdb.url: name_field is required for firestore:// (use name_field=name)")
    key_field = fold_field(name_field)
    if key_field is None:
        raise ConfigError(f"storage.docdb.url: name_field '{name_field}' is not a field of Chains' document; "
                          "use name_field=name")
    collection = f"{url.host}{url.path}".strip("/")
    parts = collection.split("/")
    if len(parts) < 5 or parts[0] != "projects" or parts[2] != "databases" or parts[4] != "documents":
        raise ConfigError("storage.docdb.url: firestore:// needs projects/<p>/databases/<db>/documents/<collection>")
    return {"name_field": name_field, "key_field": key_field, "collection": collection,
            "database": "/".join(parts[:4])}


def put(url: DocdbUrl, docs: list[dict[str, Any]], ctx: Context) -> str:
    """Commit every document in one atomic request; returns a location prefix for the refs."""
    opts = check(url)
    name_field, key_field, collection = opts["name_field"], opts["key_field"], opts["collection"]
    from google.api_core import retry as gretry
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError
    from google.cloud.firestore_v1.types import Document, Write

    writes = [Write(update=Document(name=f"{collection}/{doc[key_field]}",
                                    fields={k: value(v) for k, v in without_key_field(doc, name_field).items()}))
              for doc in docs]
    database = opts["database"]
    try:
        _client(ctx).commit(database=database, writes=writes,
                            retry=gretry.Retry(timeout=float(ctx.retry.deadline)), timeout=30.0)
    except (GoogleAPICallError, GoogleAuthError) as exc:
        raise _error(exc, collection) from None
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise StorageError(f"docdb storage: Firestore unreachable for {collection} ({type(exc).__name__})") from None
    return f"firestore://{collection}"
