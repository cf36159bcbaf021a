"""The workspace contract: each step's file is chained to the one it was made from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainmail.errors import WorkspaceError
from chainmail.models import Artifact, Payload, RunRef, RunSnapshot, SignedPayload, StoredRef
from chainmail.workspace import Workspace

RUN = {"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
       "metadata": {"name": "build", "namespace": "ci", "uid": "u-1", "resourceVersion": "7"}, "status": {}}
OWNER = RunRef("TaskRun", "ci", "build", "u-1")
ART = Artifact("taskrun", "tekton.dev-v1-TaskRun-u-1", "taskrun-u-1", "ci/build", OWNER)


def _fill(ws: Workspace) -> tuple[Payload, SignedPayload]:
    ws.write_snapshot(RunSnapshot(RUN))
    payload = Payload(ART, "slsa/v1", "application/vnd.in-toto+json", b'{"a":1}', True, ("r/x@sha256:" + "a" * 64,))
    ws.write_payloads([payload])
    signed = SignedPayload(payload, b'{"payloadType":"x"}', "SHA256:abc", "PEM", "file:///k")
    ws.write_signed([signed])
    ws.write_stored([StoredRef("file", ART.full_key, "/tmp/x", "sha256:00")])
    return payload, signed


def test_round_trip(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    payload, signed = _fill(ws)
    assert ws.read_snapshot().ref == OWNER
    assert ws.read_snapshot().resource_version == "7"
    assert ws.read_payloads() == [payload]
    assert ws.read_signed() == [signed]
    assert ws.read_stored()[0].backend == "file"


def test_documents_name_their_input(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _fill(ws)
    doc = json.loads((tmp_path / "signed.json").read_text())
    assert doc["kind"] == "Signatures"
    assert doc["input"]["file"] == "payloads.json"
    assert doc["input"]["digest"].startswith("sha256:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"snapshot\.json is missing"):
        Workspace(tmp_path).read_snapshot()


def test_changed_previous_file_is_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _fill(ws)
    snap = json.loads((tmp_path / "snapshot.json").read_text())
    snap["run"]["metadata"]["name"] = "other"
    (tmp_path / "snapshot.json").write_text(json.dumps(snap))
    with pytest.raises(WorkspaceError, match="changed after payloads.json"):
        ws.read_payloads()


def test_edited_payload_body_is_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _fill(ws)
    path = tmp_path / "payloads.json"
    doc = json.loads(path.read_text())
    doc["payloads"][0]["body"] = "eyJhIjoyfQ=="  # {"a":2}
    path.write_text(json.dumps(doc))
    # signed.json was made from the old payloads.json: the chain breaks there...
    with pytest.raises(WorkspaceError, match="changed after signed.json"):
        ws.read_signed()
    # ...and the payload's own digest no longer matches its body.
    with pytest.raises(WorkspaceError, match="does not match its digest"):
        ws.read_payloads()


def test_not_json(tmp_path: Path) -> None:
    (tmp_path / "snapshot.json").write_text("{nope")
    with pytest.raises(WorkspaceError, match="not valid JSON"):
        Workspace(tmp_path).read_snapshot()


def test_hostile_nesting_is_a_workspace_error(tmp_path: Path) -> None:
    (tmp_path / "snapshot.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(WorkspaceError, match="nested deeper"):
        Workspace(tmp_path).read_snapshot()


def test_oversized_document_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import chainmail.workspace as workspace

    monkeypatch.setattr(workspace, "MAX_DOCUMENT_BYTES", 1000)
    (tmp_path / "snapshot.json").write_bytes(b" " * 1001)
    with pytest.raises(WorkspaceError, match="larger than"):
        Workspace(tmp_path).read_snapshot()


def test_stored_is_chained_to_signed(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _fill(ws)
    doc = json.loads((tmp_path / "signed.json").read_text())
    doc["signatures"] = []
    (tmp_path / "signed.json").write_text(json.dumps(doc))
    with pytest.raises(WorkspaceError, match="changed after stored.json"):
        ws.read_stored()


def test_wrong_kind(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _fill(ws)
    (tmp_path / "snapshot.json").write_text((tmp_path / "stored.json").read_text())
    with pytest.raises(WorkspaceError, match="not a chainmail Snapshot document"):
        ws.read_snapshot()


def test_writes_are_atomic(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _fill(ws)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []
