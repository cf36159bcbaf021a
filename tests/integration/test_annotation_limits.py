"""``tekton`` storage and Kubernetes' 256 KiB annotation limit (tektoncd/chains#1076).

A PipelineRun whose provenance does not fit in its annotations is refused by chainmail *before* the
merge patch (exit 23, ``AnnotationsTooLargeError``), the run is marked ``signed: failed`` with the
reason, no payload or signature annotation is half-written, and the API server (the double answers
422 over 256 KiB like the real one) never sees an oversized patch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from clirun import cli

REPO = Path(__file__).resolve().parents[2]
PIPELINERUN = REPO / "examples" / "pipelinerun.json"
PREFIX = "chains.tekton.dev/"
SETS = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3",
        "artifacts.pipelinerun.storage=tekton", "artifacts.taskrun.storage=tekton", "artifacts.oci.storage=tekton"]


def _load(param_bytes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The example PipelineRun (and its TaskRuns) with a ``notes`` param of ``param_bytes`` characters."""
    doc = json.loads(PIPELINERUN.read_text())
    run = copy.deepcopy(doc["pipelineRun"])
    if param_bytes:
        run["spec"]["params"].append({"name": "notes", "value": "n" * param_bytes})
    children = [copy.deepcopy(tr) for tr in doc["taskRuns"]]
    for obj in (run, *children):
        obj["metadata"].pop("resourceVersion", None)
    return run, children


def _sign(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, run: dict[str, Any],
          children: list[dict[str, Any]], fmt: str = "slsa/v1") -> tuple[int, str]:
    """Put the runs in the API double and ``chainmail run --pipelinerun`` the PipelineRun (all in ``tekton``)."""
    kube_api.add(run)
    for child in children:
        kube_api.add(child)
    ns, name = run["metadata"]["namespace"], run["metadata"]["name"]
    args = ["run", "--pipelinerun", name, "--namespace", ns, "--key", key,
            "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=ns)), "--workspace", str(tmp_path / "ws")]
    for item in [*SETS, f"artifacts.pipelinerun.format={fmt}", f"artifacts.taskrun.format={fmt}"]:
        args += ["--set", item]
    code, _, err = cli(args, capsys)
    return code, err


@pytest.fixture(autouse=True)
def _no_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)


def _refused(kube_api: Any) -> list[Any]:
    return [r for r in kube_api.request_log if r.status == 422]


@pytest.mark.parametrize("fmt", ["slsa/v1", "slsa/v2alpha4"])
def test_oversized_provenance_fails_before_the_patch(kube_api: Any, tmp_path: Path, key: str,
                                                     capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    run, children = _load(300 * 1024)
    code, err = _sign(kube_api, tmp_path, capsys, key, run, children, fmt)
    assert code == 23, err
    assert "would total" in err and "Kubernetes allows 262144 bytes" in err, err
    assert "oci or file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one line plus the hint
    notes = kube_api.annotations("pipelineruns", run["metadata"]["namespace"], run["metadata"]["name"])
    assert notes[PREFIX + "signed"] == "failed"
    assert notes[PREFIX + "retries"] == "1"
    assert "256 KiB" in notes["chainmail.dev/failure-reason"] or "262144" in notes["chainmail.dev/failure-reason"]
    # Nothing half-stored on the PipelineRun: no payload/signature annotation of its own.
    assert not [k for k in notes if k.startswith((PREFIX + "payload-", PREFIX + "signature-"))], sorted(notes)
    assert _refused(kube_api) == []  # the API server never had to refuse a patch


def test_small_provenance_still_signs(kube_api: Any, tmp_path: Path, key: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run, children = _load(0)
    code, err = _sign(kube_api, tmp_path, capsys, key, run, children)
    assert code == 0, err
    notes = kube_api.annotations("pipelineruns", run["metadata"]["namespace"], run["metadata"]["name"])
    assert notes[PREFIX + "signed"] == "true"
    assert PREFIX + f"signature-pipelinerun-{run['metadata']['uid']}" in notes
    assert _refused(kube_api) == []


def test_existing_annotations_count_towards_the_limit(kube_api: Any, tmp_path: Path, key: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A run already carrying 250 KiB of someone else's annotations: the small provenance no longer fits."""
    run, children = _load(0)
    run["metadata"]["annotations"]["example.com/blob"] = "b" * (250 * 1024)
    code, err = _sign(kube_api, tmp_path, capsys, key, run, children)
    assert code == 23, err
    ns, name = run["metadata"]["namespace"], run["metadata"]["name"]
    notes = kube_api.annotations("pipelineruns", ns, name)
    assert notes[PREFIX + "signed"] == "failed" and notes["example.com/blob"] == "b" * (250 * 1024)
    assert _refused(kube_api) == []
