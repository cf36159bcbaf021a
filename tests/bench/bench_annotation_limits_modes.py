"""How many children fit per ``chainmail.storage.tekton.mode`` (run with ``pytest -m bench`` on this file).

The same synthetic PipelineRuns as ``bench_annotation_limits.py`` (deep inspection on), signed with
``chainmail run --pipelinerun`` in the Kubernetes API double, with ``artifacts.*.storage=tekton,file``:

- ``full`` (Chains' behaviour): bisection for the largest run whose annotations fit in 256 KiB;
- ``refs``: the run keeps only digests and a file-store reference, so its annotations do not grow with the
  run: measured at the ``full`` limit, just past it, and up to ``HIGH`` children.

Results go to ``bench/results/annotation_limits_modes.json``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import pytest

from bench.bench_annotation_limits import HIGH, _add
from clirun import cli

pytestmark = pytest.mark.bench

FORMATS = ("slsa/v1", "slsa/v2alpha4")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "annotation_limits_modes.json"


def _try(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, fmt: str, mode: str,
         n: int) -> dict[str, Any]:
    tag = f"pr-{fmt.replace('/', '')}-{n}"  # as bench_annotation_limits: names count towards the size
    ns, name = _add(kube_api, n, tag)
    sets = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3",
            "artifacts.pipelinerun.storage=tekton,file", "artifacts.taskrun.storage=tekton,file",
            "artifacts.oci.storage=tekton,file", f"artifacts.pipelinerun.format={fmt}",
            f"artifacts.taskrun.format={fmt}", "artifacts.pipelinerun.enable-deep-inspection=true",
            f"chainmail.storage.tekton.mode={mode}", f"chainmail.storage.file.directory={tmp_path / 'store'}"]
    args = ["run", "--pipelinerun", name, "--namespace", ns, "--key", key,
            "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=ns)), "--workspace", str(tmp_path / tag)]
    for item in sets:
        args += ["--set", item]
    start = time.perf_counter()
    code, _, err = cli(args, capsys)
    seconds = time.perf_counter() - start
    assert code in (0, 23), f"{fmt} {mode} n={n}: exit {code}: {err}"
    notes = kube_api.annotations("pipelineruns", ns, name)
    kube_api.objects.clear()  # keep the double small: each trial stands alone
    payload = tmp_path / "store" / f"pipelinerun-{ns}-{name}" / f"pipelinerun-uid-{tag}.payload"
    return {"children": n, "exit": code, "seconds": round(seconds, 2),
            "payload_kib": round(payload.stat().st_size / 1024, 1) if code == 0 and payload.exists() else None,
            "annotations_bytes": sum(len(k) + len(v) for k, v in notes.items())}


def _bisect(run: Any, high: int) -> tuple[int, list[dict[str, Any]]]:
    trials = [run(high), run(1)]
    assert trials[0]["exit"] == 23 and trials[1]["exit"] == 0, trials
    low = 1
    while high - low > 1:
        mid = (low + high) // 2
        trials.append(run(mid))
        low, high = (mid, high) if trials[-1]["exit"] == 0 else (low, mid)
    return low, sorted(trials, key=lambda t: t["children"])


def test_children_per_mode(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    report: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                              "limit_bytes": 256 * 1024, "storage": "tekton,file", "high": HIGH, "formats": {}}
    for fmt in FORMATS:
        full_max, full_trials = _bisect(lambda n, f=fmt: _try(kube_api, tmp_path, capsys, key, f, "full", n), HIGH)
        refs_trials = [_try(kube_api, tmp_path, capsys, key, fmt, "refs", n)
                       for n in (1, full_max, full_max + 1, 1024, HIGH)]
        assert all(t["exit"] == 0 for t in refs_trials), refs_trials
        sizes = {t["annotations_bytes"] for t in refs_trials}
        report["formats"][fmt] = {
            "full": {"max_children": full_max, "trials": full_trials},
            "refs": {"max_children": f">= {HIGH} (every trial signed; annotations do not grow with the run)",
                     "annotations_bytes": sorted(sizes), "trials": refs_trials},
        }
    assert [r for r in kube_api.request_log if r.status == 422] == []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
