"""The largest PipelineRun ``tekton`` storage can sign (run with ``pytest -m bench tests/bench/bench_annotation_limits.py``).

For ``slsa/v1`` and ``slsa/v2alpha4`` (deep inspection on), a synthetic PipelineRun with N child TaskRuns is
put in the Kubernetes API double and signed with ``chainmail run --pipelinerun`` (every artifact kind in
``tekton`` storage). Bisection over N finds the largest run that signs (exit 0) and the smallest that is
refused before the patch (exit 23, annotations over 256 KiB); the PipelineRun's payload size and annotation
total at both go to ``bench/results/annotation_limits.json``. The API double never answers 422.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import pytest

from bench.bench_formats import _pipelinerun
from clirun import cli

pytestmark = pytest.mark.bench

FORMATS = ("slsa/v1", "slsa/v2alpha4")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "annotation_limits.json"
HIGH = 4096  # an upper bound no format fits (checked)
PREFIX = "chains.tekton.dev/"


def _add(kube_api: Any, n: int, tag: str) -> tuple[str, str]:
    """Put a PipelineRun with ``n`` children (names made unique by ``tag``) in the double."""
    snap = _pipelinerun(n)
    run = json.loads(json.dumps(snap.run).replace('"big', f'"{tag}').replace("big-t", f"{tag}-t"))
    run["metadata"]["uid"] = f"uid-{tag}"
    for ref in run["status"]["childReferences"]:
        ref["name"] = ref["name"].replace("big-", f"{tag}-")
    kube_api.add(run)
    for child in snap.task_runs:
        obj = json.loads(json.dumps(child))
        obj["metadata"]["name"] = obj["metadata"]["name"].replace("big-", f"{tag}-")
        obj["metadata"]["uid"] = f"{tag}-{obj['metadata']['uid']}"
        obj["metadata"]["labels"]["tekton.dev/pipelineRun"] = tag
        obj["metadata"]["ownerReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": tag,
                                              "uid": run["metadata"]["uid"], "controller": True}]
        kube_api.add(obj)
    return run["metadata"]["namespace"], tag


def _try(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, fmt: str, n: int,
         ) -> dict[str, Any]:
    tag = f"pr-{fmt.replace('/', '')}-{n}"
    ns, name = _add(kube_api, n, tag)
    sets = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3",
            "artifacts.pipelinerun.storage=tekton", "artifacts.taskrun.storage=tekton",
            "artifacts.oci.storage=tekton", f"artifacts.pipelinerun.format={fmt}", f"artifacts.taskrun.format={fmt}",
            "artifacts.pipelinerun.enable-deep-inspection=true"]
    args = ["run", "--pipelinerun", name, "--namespace", ns, "--key", key,
            "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=ns)), "--workspace", str(tmp_path / tag)]
    for item in sets:
        args += ["--set", item]
    start = time.perf_counter()
    code, _, err = cli(args, capsys)
    seconds = time.perf_counter() - start
    assert code in (0, 23), f"{fmt} n={n}: exit {code}: {err}"
    notes = kube_api.annotations("pipelineruns", ns, name)
    own = PREFIX + f"payload-pipelinerun-uid-{tag}"
    return {"children": n, "exit": code, "seconds": round(seconds, 2),
            "payload_b64_kib": round(len(notes[own]) / 1024, 1) if own in notes else None,
            "annotations_kib": round(sum(len(k) + len(v) for k, v in notes.items()) / 1024, 1),
            "reason": notes.get("chainmail.dev/failure-reason", "")}


def test_largest_pipelinerun_in_annotations(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    report: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                              "limit_bytes": 256 * 1024, "formats": {}}
    for fmt in FORMATS:
        trials = [_try(kube_api, tmp_path, capsys, key, fmt, HIGH)]
        assert trials[0]["exit"] == 23
        low, high = 1, HIGH
        first = _try(kube_api, tmp_path, capsys, key, fmt, low)
        trials.append(first)
        assert first["exit"] == 0, first
        while high - low > 1:
            mid = (low + high) // 2
            trial = _try(kube_api, tmp_path, capsys, key, fmt, mid)
            trials.append(trial)
            low, high = (mid, high) if trial["exit"] == 0 else (low, mid)
        fits = next(t for t in trials if t["children"] == low)
        refused = next(t for t in trials if t["children"] == high)
        report["formats"][fmt] = {"max_children": low, "at_max": fits, "refused_at": refused,
                                  "trials": sorted(trials, key=lambda t: t["children"])}
    assert [r for r in kube_api.request_log if r.status == 422] == []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
