"""Helpers shared by the secondary storage backend tests: run the CLI, read the workspace, free ports."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from chainmail.models import SignedPayload
from clirun import cli

REPO = Path(__file__).resolve().parents[3]

TASKRUN = REPO / "examples" / "taskrun.json"
PIPELINERUN = REPO / "examples" / "pipelinerun.json"
#: The example run's image is in no registry (so no digest check) and failures should not retry for minutes.
BASE = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Wait until something listens on 127.0.0.1:port (fail early if ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def sign_run(capsys: pytest.CaptureFixture[str], key: str, ws: Path, settings: list[str],
             run: Path = TASKRUN, extra: list[str] | None = None) -> tuple[int, str, str]:
    """``chainmail run --from-file RUN --key KEY -w WS --set …``: (exit code, stdout, stderr)."""
    args = ["run", "--from-file", str(run), "--key", key, "-w", str(ws), *(extra or [])]
    # A run read from a file gets its Chains annotations in the file store: keep that inside the test's tmp dir.
    local = [f"chainmail.storage.file.directory={ws.parent / 'file-store'}"]
    for item in [*BASE, *local, *settings]:
        args += ["--set", item]
    return cli(args, capsys)


def signed_items(ws: Path) -> list[SignedPayload]:
    """The signed payloads the run wrote to its workspace (what every backend was given)."""
    doc = json.loads((ws / "signed.json").read_text())
    return [SignedPayload.from_json(item) for item in doc["signatures"]]


def file_settings(directory: Path) -> list[str]:
    """Store everything with the ``file`` backend (to get a workspace's signed.json for library-level tests)."""
    return ["artifacts.taskrun.storage=file", "artifacts.oci.storage=file", "artifacts.pipelinerun.storage=file",
            f"chainmail.storage.file.directory={directory}"]
