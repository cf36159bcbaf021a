"""Refs mode pointing into DynamoDB: ``tekton,docdb`` with a ``dynamodb://`` table keyed by ``Name`` (moto).

The run's annotations hold only digests and ``dynamodb://<table>#<key>``; ``verify run`` reads each document
back by its ``Name``, checks both digests and the signatures. A changed ``Signed`` field fails its digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backend_cli import TASKRUN, sign_run
from test_docdb_dynamodb import TABLE, dynamo, moto_endpoint  # noqa: F401 - fixtures

from clirun import cli

UID = "c3a9d1e2-7b4f-4f6e-b2d8-9a1c0e5f3b27"
RUN_DIR = "taskrun-shop-build-and-push-7xk2p-build-image"


def _settings(endpoint: str) -> list[str]:
    url = f"dynamodb://{TABLE}?partition_key=Name&region=us-east-1&endpoint={endpoint}"
    return ["artifacts.taskrun.storage=tekton,docdb", "artifacts.oci.storage=tekton,docdb",
            f"storage.docdb.url={url}", "chainmail.storage.tekton.mode=refs"]


def _signed_run(capsys: pytest.CaptureFixture[str], key: str, tmp_path: Path, endpoint: str) -> Path:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(endpoint))
    assert code == 0, err
    notes = json.loads((tmp_path / "file-store" / RUN_DIR / "annotations.json").read_text())
    run = json.loads(TASKRUN.read_text())
    run["metadata"].setdefault("annotations", {}).update(notes)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    return path


def _verify(capsys: pytest.CaptureFixture[str], key: str, run: Path, endpoint: str) -> tuple[int, str, str]:
    args = ["verify", "run", "--insecure-ignore-tlog", "--from-file", str(run), "--key", str(Path(key, "cosign.pub")), "-o", "json"]
    for item in _settings(endpoint):
        args += ["--set", item]
    return cli(args, capsys)


def test_refs_to_dynamodb_verify(dynamo: tuple[Any, str], key: str, tmp_path: Path,  # noqa: F811
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, endpoint = dynamo
    run = _signed_run(capsys, key, tmp_path, endpoint)
    notes = json.loads(run.read_text())["metadata"]["annotations"]
    assert json.loads(notes[f"chainmail.dev/stored-taskrun-{UID}"]) == [
        {"backend": "docdb", "location": f"dynamodb://{TABLE}#taskrun-{UID}"}]
    code, out, err = _verify(capsys, key, run, endpoint)
    assert code == 0, err
    verified = json.loads(out)["verified"]
    assert len(verified) == 2 and all(v["location"].startswith("docdb dynamodb://") for v in verified)


def test_refs_to_a_changed_dynamodb_document_fail(dynamo: tuple[Any, str], key: str, tmp_path: Path,  # noqa: F811
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    client, endpoint = dynamo
    run = _signed_run(capsys, key, tmp_path, endpoint)
    item = client.get_item(TableName=TABLE, Key={"Name": {"S": f"taskrun-{UID}"}})["Item"]
    item["Signed"] = {"B": bytes(item["Signed"]["B"]).replace(b"frontend", b"backdoor")}
    client.put_item(TableName=TABLE, Item=item)
    code, _, err = _verify(capsys, key, run, endpoint)
    assert code == 12, err
    assert "payload in docdb" in err and "not the annotated" in err, err
