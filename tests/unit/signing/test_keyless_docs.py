"""The Tasks and the watcher mount the keyless token exactly where chainmail (and Tekton Chains) read it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chainmail.signing._oidc import AUDIENCE, DEFAULT_TOKEN_FILE

ROOT = Path(__file__).resolve().parents[3]
TASKS = [ROOT / "tasks" / "chainmail-sign" / "chainmail-sign.yaml",
         ROOT / "tasks" / "chainmail-finally" / "chainmail-finally.yaml"]
WATCHER = ROOT / "pipelines" / "chainmail-watcher"


def _binding(text: str) -> dict:
    """The projected serviceAccountToken source in a README snippet or a commented YAML block."""
    match = re.search(r"serviceAccountToken:\s*\n\s*#?\s*audience: (\S+)\s*\n\s*#?\s*expirationSeconds: (\d+)\s*\n"
                      r"\s*#?\s*path: (\S+)", text)
    assert match, "no serviceAccountToken projection found"
    return {"audience": match[1], "expirationSeconds": int(match[2]), "path": match[3]}


@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.parent.name)
def test_task_workspace_mounts_the_token_where_chains_reads_it(task: Path) -> None:
    spec = yaml.safe_load(task.read_text())["spec"]
    [ws] = [w for w in spec["workspaces"] if w["name"] == "oidc-token"]
    assert ws["optional"] is True and ws["readOnly"] is True
    readme = (task.parent / "README.md").read_text()
    binding = _binding(readme)
    assert binding["audience"] == AUDIENCE and binding["expirationSeconds"] >= 600  # the API's minimum
    assert f"{ws['mountPath']}/{binding['path']}" == DEFAULT_TOKEN_FILE


def test_watcher_token_binding_and_mount_agree() -> None:
    pipeline = yaml.safe_load((WATCHER / "chainmail-watcher.yaml").read_text())["spec"]
    assert any(w["name"] == "oidc-token" and w.get("optional") for w in pipeline["workspaces"])
    [task] = pipeline["tasks"]
    [ws] = [w for w in task["taskSpec"]["workspaces"] if w["name"] == "oidc-token"]
    for name in ("triggers.yaml", "cronjob.yaml"):
        binding = _binding((WATCHER / name).read_text())
        assert binding["audience"] == AUDIENCE
        assert f"{ws['mountPath']}/{binding['path']}" == DEFAULT_TOKEN_FILE, name
    assert f"mountPath: {ws['mountPath']}" in (WATCHER / "cronjob.yaml").read_text()
