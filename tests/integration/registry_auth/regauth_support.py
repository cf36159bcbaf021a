"""Helpers shared by the registry-auth tests: logins as docker configs, a TaskRun naming an image, store settings."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
#: ``chainmail run`` settings: store only in the registry, give up on a dead registry quickly.
STORE = ["--set", "chainmail.retry.deadline-seconds=5", "--set", "artifacts.taskrun.storage=oci",
         "--set", "artifacts.oci.storage=oci"]


def no_ambient_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point DOCKER_CONFIG at an empty directory, so only the logins a test passes are used."""
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    monkeypatch.delenv("COSIGN_REPOSITORY", raising=False)


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    """A directory holding a ``config.json`` with one login for ``host``."""
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


def run_file(tmp_path: Path, image: str) -> Path:
    """The example TaskRun with IMAGE_URL/IMAGE_DIGEST results naming ``image`` (``host/repo@digest``)."""
    run = json.loads((REPO / "examples" / "taskrun.json").read_text())
    repo, digest = image.split("@")
    run["status"]["results"] = [{"name": "IMAGE_URL", "type": "string", "value": repo},
                                {"name": "IMAGE_DIGEST", "type": "string", "value": digest}]
    path = tmp_path / "taskrun.json"
    path.write_text(json.dumps(run))
    return path
