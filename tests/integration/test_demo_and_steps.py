"""The README's first command, and the five steps run one by one through a workspace."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainmail import errors
from chainmail._cli import app
from chainmail.demo import example_dir, run_demo

runner = CliRunner()
FILE_STORAGE = [
    "--set", "artifacts.taskrun.storage=file", "--set", "artifacts.pipelinerun.storage=file",
    "--set", "artifacts.oci.storage=file", "--set", "artifacts.taskrun.format=slsa/v1",
    # the example's images were never pushed to any registry
    "--set", "chainmail.sign.verify-images-exist=false",
]


def test_demo_signs_and_verifies_everything(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path, echo=lines.append)
    # two child TaskRun attestations, one image signature, one PipelineRun attestation
    assert result.signed == 4
    assert result.verified == 4
    assert lines[-1].startswith("OK: 4/4")
    assert not any("s3cret" in line or "PRIVATE KEY" in line for line in lines)


def test_demo_detects_a_tampered_store(tmp_path: Path) -> None:
    run_demo(tmp_path, echo=lambda _: None)
    payload = next((tmp_path / "store").rglob("taskrun-*.payload"))
    statement = json.loads(payload.read_bytes())
    statement["predicate"]["builder"]["id"] = "https://evil.example/builder"
    payload.write_bytes(json.dumps(statement).encode())
    from chainmail.context import Context
    from chainmail.verify import verify_file_store

    public = (tmp_path / "keys" / "cosign.pub").read_text()
    with pytest.raises(errors.VerificationError):
        verify_file_store(tmp_path / "store", [public], Context())


def _keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    res = runner.invoke(app, ["keys", "generate", str(keys), "--write-password"], env={"COSIGN_PASSWORD": "pw"})
    assert res.exit_code == 0, res.stderr
    return keys


def test_five_steps_through_a_workspace(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    ws, store = tmp_path / "ws", tmp_path / "store"
    run = example_dir() / "taskrun.json"
    steps = [
        ["snapshot", "--from-file", str(run), "-w", str(ws)],
        ["format", "-w", str(ws), *FILE_STORAGE],
        ["sign", "-w", str(ws), "--key", str(keys), "--trust-file-snapshot", *FILE_STORAGE],
        ["store", "-w", str(ws), "--key", str(keys / "cosign.pub"), "--trust-file-snapshot",
         "--file-store", str(store), *FILE_STORAGE, "--results-dir", str(tmp_path / "res")],
    ]
    for argv in steps:
        res = runner.invoke(app, argv)
        assert res.exit_code == 0, (argv[0], res.stderr)
    stored = json.loads((ws / "stored.json").read_text())["stored"]
    assert {r["backend"] for r in stored} == {"file"}
    assert len(stored) == 2  # the TaskRun attestation and the image signature
    assert (tmp_path / "res" / "SIGNED").read_text() == "true"
    res = runner.invoke(app, ["verify", "run", "--insecure-ignore-tlog", "--file-store", str(store), "--key", str(keys / "cosign.pub")])
    assert res.exit_code == 0, res.stderr


def test_store_refuses_a_tampered_signature_file(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    ws, store = tmp_path / "ws", tmp_path / "store"
    run = example_dir() / "taskrun.json"
    for argv in (["snapshot", "--from-file", str(run), "-w", str(ws)],
                 ["format", "-w", str(ws), *FILE_STORAGE],
                 ["sign", "-w", str(ws), "--key", str(keys), "--trust-file-snapshot", *FILE_STORAGE]):
        assert runner.invoke(app, argv).exit_code == 0
    path = ws / "signed.json"
    doc = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(doc["signatures"][1]["signature"]))
    sig[-3] ^= 0x01
    doc["signatures"][1]["signature"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(doc))
    res = runner.invoke(app, ["store", "-w", str(ws), "--key", str(keys), "--trust-file-snapshot",
                              "--file-store", str(store), *FILE_STORAGE])
    assert res.exit_code == errors.WorkspaceError.exit_code
    assert "does not verify" in res.stderr
    # refused before any backend ran: nothing written at all
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_sign_refuses_a_file_snapshot_nobody_vouched_for(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    ws = tmp_path / "ws"
    for argv in (["snapshot", "--from-file", str(example_dir() / "taskrun.json"), "-w", str(ws)],
                 ["format", "-w", str(ws), *FILE_STORAGE]):
        assert runner.invoke(app, argv).exit_code == 0
    res = runner.invoke(app, ["sign", "-w", str(ws), "--key", str(keys), *FILE_STORAGE])
    assert res.exit_code == errors.WorkspaceError.exit_code
    assert "--trust-file-snapshot" in res.stderr
    assert not (ws / "signed.json").exists()


def test_run_refuses_an_unfinished_run(tmp_path: Path) -> None:
    run = json.loads((example_dir() / "taskrun.json").read_text())
    run["status"]["conditions"][0].update(status="Unknown", reason="Running")
    del run["status"]["completionTime"]
    path = tmp_path / "running.json"
    path.write_text(json.dumps(run))
    res = runner.invoke(app, ["run", "--from-file", str(path), *FILE_STORAGE, "--file-store", str(tmp_path / "s")])
    assert res.exit_code == errors.RunNotFinishedError.exit_code
    assert "has not finished" in res.stderr
