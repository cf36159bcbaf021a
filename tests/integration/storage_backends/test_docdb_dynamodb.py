"""``docdb`` with ``dynamodb://`` against moto's DynamoDB server (moto[server], on a loopback port)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from backend_cli import free_port, sign_run, signed_items, wait_for_port

boto3 = pytest.importorskip("boto3", reason="install chainmail[test]: boto3 is a test extra")
pytest.importorskip("moto.server", reason="install chainmail[test]: moto[server] is a test extra")

TABLE = "chains"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's server mode in its own process on a loopback port (state reset per test)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def dynamo(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """An empty table keyed by ``Name``; yields (client, endpoint)."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    for name, val in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                      "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, val)
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "Name", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "Name", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    yield client, moto_endpoint


def _settings(url: str) -> list[str]:
    return ["artifacts.taskrun.storage=docdb", "artifacts.oci.storage=docdb", f"storage.docdb.url={url}"]


def _plain(av: dict[str, Any]) -> Any:
    """Decode an attribute value back to JSON-like Python (test-side, written independently of the encoder)."""
    (kind, val), = av.items()
    return {
        "S": lambda: val, "N": lambda: float(Decimal(val)), "B": lambda: bytes(val), "NULL": lambda: None,
        "BOOL": lambda: val, "L": lambda: [_plain(v) for v in val], "M": lambda: {k: _plain(v) for k, v in val.items()},
    }[kind]()


def _empty_strings_to_none(doc: Any) -> Any:
    """go-cloud's DynamoDB codec writes every empty string, nested ones too, as NULL."""
    if doc == "":
        return None
    if isinstance(doc, list):
        return [_empty_strings_to_none(v) for v in doc]
    if isinstance(doc, dict):
        return {k: _empty_strings_to_none(v) for k, v in doc.items()}
    return doc


def _numbers(av: dict[str, Any]) -> list[str]:
    (kind, val), = av.items()
    if kind == "N":
        return [val]
    if kind == "L":
        return [n for v in val for n in _numbers(v)]
    if kind == "M":
        return [n for v in val.values() for n in _numbers(v)]
    return []


def _scan(client: Any) -> list[dict[str, Any]]:
    return client.scan(TableName=TABLE)["Items"]


def test_documents_match_go_clouds_dynamodb_encoding(dynamo: tuple[Any, str], key: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    client, endpoint = dynamo
    url = f"dynamodb://{TABLE}?partition_key=Name&region=us-east-1&endpoint={endpoint}"
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(url))
    assert code == 0, err
    items = signed_items(tmp_path / "ws")
    stored = {it["Name"]["S"]: it for it in _scan(client)}
    assert set(stored) == {s.payload.artifact.short_key for s in items}
    for signed in items:
        got = stored[signed.payload.artifact.short_key]
        assert set(got) == {"Signed", "Signature", "Cert", "Chain", "Object", "Name"}  # Go field names, as is
        assert got["Signed"] == {"B": signed.payload.body}
        assert got["Signature"] == {"S": base64.b64encode(signed.signature).decode()}
        assert got["Cert"] == {"NULL": True} and got["Chain"] == {"NULL": True}  # go-cloud: "" is stored as NULL
        assert "M" in got["Object"]
        assert _plain(got["Object"]) == _empty_strings_to_none(json.loads(signed.payload.body))
        for number in _numbers(got["Object"]):  # Go's FormatFloat(f, 'f', -1, 64): no exponent, no ".0"
            assert "e" not in number.lower() and not number.endswith(".0")
    image = stored["3b1f6a9c2d4e"]["Object"]["M"]
    assert image["optional"] == {"NULL": True}  # JSON null → NULL
    refs = json.loads((tmp_path / "ws" / "stored.json").read_text())["stored"]
    assert {r["location"] for r in refs} == {f"dynamodb://{TABLE}#{k}" for k in stored}


def test_go_float_formatting() -> None:
    from chainmail.storage.docdb_dynamodb import go_float

    # strconv.FormatFloat(x, 'f', -1, 64) for each x
    cases = {3.0: "3", 0.1: "0.1", 1e21: "1000000000000000000000", 1e23: "100000000000000000000000",
             1e-7: "0.0000001", -0.0: "-0", 123456789.125: "123456789.125", -2.5: "-2.5"}
    assert {x: go_float(x) for x in cases} == cases


def test_missing_table_is_a_storage_error(dynamo: tuple[Any, str], key: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    client, endpoint = dynamo
    url = f"dynamodb://no-such-table?partition_key=Name&region=us-east-1&endpoint={endpoint}"
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(url))
    assert code == 8
    assert "DynamoDB table 'no-such-table' does not exist" in err and "Traceback" not in err
    assert _scan(client) == []


def test_partition_key_must_be_the_go_field_name(dynamo: tuple[Any, str], key: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    client, endpoint = dynamo
    url = f"dynamodb://{TABLE}?partition_key=name&region=us-east-1&endpoint={endpoint}"
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(url))
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "partition_key 'name' is not a field of Chains' document" in err
    assert _scan(client) == []


def test_refused_credentials(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A second moto server with IAM auth on from the first call: the test's access key is unknown to it."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for_port(port, proc)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        url = f"dynamodb://{TABLE}?partition_key=Name&region=us-east-1&endpoint=http://127.0.0.1:{port}"
        code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(url))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert code == 8, err
    assert "DynamoDB refused the credentials for table 'chains'" in err
    assert "not-a-real-secret" not in err and "Traceback" not in err


def test_unknown_scheme_and_parameters_are_config_errors(key: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings("redis://chains/docs"))
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "storage.docdb.url: unknown scheme 'redis://'" in err
    code, _, err = sign_run(capsys, key, tmp_path / "ws2", _settings("dynamodb://t?partition_key=Name&colour=blue"))
    assert "unknown query parameter 'colour'" in err


def test_config_errors_are_config_errors_in_the_library() -> None:
    from chainmail.config import Config
    from chainmail.context import Context
    from chainmail.errors import ConfigError
    from chainmail.storage.docdb import DocdbBackend

    for url in ("", "redis://x/y", "dynamodb://t", "dynamodb://t?partition_key=Name&sort_key=sig"):
        ctx = Context(config=Config.from_mapping({"storage.docdb.url": url}))
        with pytest.raises(ConfigError):
            DocdbBackend.preflight(ctx)
