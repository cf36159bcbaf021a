"""``docdb`` on DynamoDB: ``dynamodb://<table>?partition_key=Name[&sort_key=…][&region=…][&endpoint=…]``.

Items are encoded the way go-cloud's ``awsdynamodb`` codec does: ``[]byte`` → ``B``, a string →
``S`` but the empty string → ``NULL``, a float64 → ``N`` (Go's shortest ``'f'`` formatting),
maps → ``M``, lists → ``L``, nil → ``NULL``. The key attributes are matched by exact name, so
``partition_key`` must be spelled as the Go field (``Name``). All the documents of one store
go in one ``TransactWriteItems`` call: either every document is written or none is.
Credentials are boto3's usual chain (environment, profile, web identity, instance role).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.storage.docdb import FIELDS, DocdbUrl

#: Query parameters understood besides the go-cloud docstore ones (AWS config overrides).
AWS_PARAMS = ("region", "endpoint", "profile")
#: DynamoDB's limit for one TransactWriteItems call.
MAX_TRANSACT = 100
_AUTH_CODES = {"UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
               "ExpiredTokenException", "IncompleteSignature", "MissingAuthenticationToken"}


def go_float(value: float) -> str:
    """``strconv.FormatFloat(value, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def attribute(value: Any) -> dict[str, Any]:
    """One DynamoDB attribute value, as go-cloud's awsdynamodb encoder writes it."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, str):
        return {"S": value} if value else {"NULL": True}
    if isinstance(value, float):
        return {"N": go_float(value)}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"L": [attribute(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): attribute(v) for k, v in value.items()}}
    raise TypeError(f"cannot encode {type(value).__name__} for DynamoDB")


def item(doc: dict[str, Any]) -> dict[str, Any]:
    """The DynamoDB item for a SignedDocument."""
    return {name: attribute(value) for name, value in doc.items()}


def _check_key(param: str, field: str, required: bool) -> None:
    if not field:
        if required:
            raise ConfigError(f"storage.docdb.url: {param} is required for dynamodb:// (use {param}=Name)")
        return
    if field not in FIELDS:
        raise ConfigError(f"storage.docdb.url: {param} '{field}' is not a field of Chains' document; DynamoDB "
                          f"matches names exactly: use one of {', '.join(FIELDS)} (normally Name)")


def _client(url: DocdbUrl, region: str, endpoint: str, profile: str, ctx: Context) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError

    cache_key = f"docdb.dynamodb:{region}:{endpoint}:{profile}"
    client = ctx.cache.get(cache_key)
    if client is not None:
        return client
    try:
        session = boto3.session.Session(profile_name=profile or None, region_name=region or None)
        client = session.client("dynamodb", endpoint_url=endpoint or None, config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30))
    except BotoCoreError as exc:  # ProfileNotFound, NoRegionError, bad endpoint …
        raise ConfigError(f"storage.docdb.url: cannot set up the DynamoDB client for table '{url.host}' ({exc})",
                          hint="add ?region=… or set AWS_REGION") from None
    ctx.cache[cache_key] = client
    return client


def _error(exc: BaseException, table: str) -> StorageError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return StorageError(f"docdb storage: no AWS credentials found for DynamoDB table '{table}'")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"docdb storage: DynamoDB endpoint unreachable for table '{table}' ({exc})")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "?"), " ".join(str(err.get("Message", "")).split())
        if code == "ResourceNotFoundException":
            return StorageError(f"docdb storage: DynamoDB table '{table}' does not exist")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _AUTH_CODES or status in (401, 403):
            return StorageError(f"docdb storage: DynamoDB refused the credentials for table '{table}' "
                                f"({code if code != str(status) else f'HTTP {status}'})")
        if code == "TransactionCanceledException":
            reasons = [r.get("Message") or r.get("Code") for r in exc.response.get("CancellationReasons", [])
                       if r.get("Code") not in (None, "None")]
            message = "; ".join(str(r) for r in reasons) or message
        return StorageError(f"docdb storage: DynamoDB rejected the write to table '{table}' ({code}: {message})")
    return StorageError(f"docdb storage: writing to DynamoDB table '{table}' failed ({type(exc).__name__}: {exc})")


def check(url: DocdbUrl) -> dict[str, str]:
    """Validate the URL (no network): the table, key fields and AWS overrides."""
    partition, sort = url.take("partition_key"), url.take("sort_key")
    for param in ("allow_scans", "consistent_read", "revision_field"):
        url.take(param)  # go-cloud options that do not change how a Put is written
    region, endpoint, profile = (url.take(p) for p in AWS_PARAMS)
    url.refuse_rest("partition_key, sort_key, allow_scans, consistent_read, revision_field, region, endpoint, profile")
    table = url.host
    if not table or url.path not in ("", "/"):
        raise ConfigError("storage.docdb.url: dynamodb:// takes the table name as its host and no path")
    _check_key("partition_key", partition, True)
    _check_key("sort_key", sort, False)
    return {"table": table, "partition": partition, "sort": sort, "region": region, "endpoint": endpoint,
            "profile": profile}


def put(url: DocdbUrl, docs: list[dict[str, Any]], ctx: Context) -> str:
    """Write every document in one transaction per 100; returns a location prefix for the refs."""
    opts = check(url)
    table, partition, sort = opts["table"], opts["partition"], opts["sort"]
    items = [item(doc) for doc in docs]
    for it in items:
        for key in filter(None, (partition, sort)):
            if it[key] == {"NULL": True}:
                raise StorageError(f"docdb storage: document {it['Name'].get('S', '?')} has an empty '{key}', "
                                   "the table's key")
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(url, opts["region"], opts["endpoint"], opts["profile"], ctx)
    try:
        for start in range(0, len(items), MAX_TRANSACT):
            chunk = items[start:start + MAX_TRANSACT]
            client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": it}} for it in chunk])
    except (BotoCoreError, ClientError) as exc:
        raise _error(exc, table) from None
    return f"dynamodb://{table}"


def get(url: DocdbUrl, name: str, ctx: Context) -> dict[str, Any] | None:
    """The stored ``SignedDocument`` whose ``Name`` is ``name`` (``Signed`` bytes, other fields as strings).

    Only a table keyed by ``Name`` alone can be read by key; None when there is no such item.
    """
    opts = check(url)
    if opts["partition"] != "Name" or opts["sort"]:
        raise ConfigError(f"storage.docdb.url: table '{opts['table']}' is not keyed by Name alone; a document "
                          "cannot be read back by its name")
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(url, opts["region"], opts["endpoint"], opts["profile"], ctx)
    try:
        got = client.get_item(TableName=opts["table"], Key={"Name": {"S": name}}, ConsistentRead=True)
    except (BotoCoreError, ClientError) as exc:
        raise _error(exc, opts["table"]) from None
    found = got.get("Item")
    if not found:
        return None
    out: dict[str, Any] = {}
    for field in ("Signed", "Signature", "Cert", "Chain", "Name"):
        value = found.get(field) or {"NULL": True}
        out[field] = bytes(value["B"]) if "B" in value else str(value.get("S", ""))
    return out
