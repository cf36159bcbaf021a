"""Scale benchmarks: a 5,000-run backlog and a 1,000-task PipelineRun, against an API double that answers
as slowly as a real API server.

Issue goals: the backlog drains in time linear in its size with flat memory; a PipelineRun with
``--with-children`` is signed in time linear in its children, and the children are signed
concurrently. Storage is ``tekton`` only, so the figures are the API path's (the registry path is
bench_floor's). Each size runs in its own ``chainmail`` process, measured with ``wait4`` (wall,
CPU, peak RSS). Results go to ``bench/results/scale.json``; no figure is recorded unless every run
was signed exactly once.

Run with ``make bench`` (or ``pytest -m bench tests/bench/bench_scale.py -s``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from doubles.kube import KubeApiDouble, completed_taskrun, pipelinerun_with_children

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "scale.json"
#: Backlog sizes: each twice the one before, so linear time doubles the wall time at each step.
BACKLOGS = (1250, 2500, 5000)
#: Child TaskRuns of one PipelineRun.
CHILDREN = (250, 500, 1000)
#: Measured on a real kube-apiserver (v1.20): GET 5 ms, merge PATCH 11 ms, LIST of 100 ≈ 100 ms.
LATENCY = {"GET": 0.005, "PATCH": 0.011, "POST": 0.011, "PUT": 0.011, "DELETE": 0.011}
LIST_PER_OBJECT = 0.00095
CONFIG = {"artifacts.taskrun.format": "slsa/v1", "artifacts.taskrun.storage": "tekton",
          "artifacts.pipelinerun.format": "slsa/v1", "artifacts.pipelinerun.storage": "tekton",
          "artifacts.oci.storage": "", "chainmail.sign.verify-images-exist": "false"}


class SlowApi:
    """Answers as slowly as a real API server and counts the PATCHes in flight at once."""

    def __init__(self, api: KubeApiDouble) -> None:
        self.api = api
        self.in_flight = 0
        self.max_patches_in_flight = 0
        self._lock = threading.Lock()

    def _listed(self, query: dict[str, str]) -> int:
        return int(query.get("limit") or 500)

    def __call__(self, method: str, path: str, query: dict[str, str]) -> None:
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if method == "GET" and last in ("taskruns", "pipelineruns"):
            with self.api.lock:
                count = sum(1 for (plural, _, _) in self.api.objects if plural == last)
            time.sleep(LATENCY["GET"] + LIST_PER_OBJECT * min(count, self._listed(query)))
            return
        if method != "PATCH":
            time.sleep(LATENCY.get(method, 0.005))
            return
        with self._lock:
            self.in_flight += 1
            self.max_patches_in_flight = max(self.max_patches_in_flight, self.in_flight)
        try:
            time.sleep(LATENCY["PATCH"])
        finally:
            with self._lock:
                self.in_flight -= 1


def run_chainmail(args: list[str], api: KubeApiDouble, key: str, tmp_path: Path, label: str,
                  **extra: str) -> dict[str, Any]:
    """``chainmail ARGS`` in a child process: its wall time, CPU and peak RSS, and its JSON report."""
    kc = api.kubeconfig(tmp_path, name=f"kc-{label}")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CHAINMAIL_KEY", "DOCKER_CONFIG")}
    sets = [a for k, v in {**CONFIG, **extra}.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "chainmail", *args, "--kubeconfig", str(kc), "--key", key, "-o", "json", *sets]
    out, err = tmp_path / f"{label}.out", tmp_path / f"{label}.err"
    with out.open("wb") as o, err.open("wb") as e:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text()[-3000:]
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "report": json.loads(out.read_text())}


def assert_signed_once(api: KubeApiDouble, keys: list[tuple[str, str, str]]) -> None:
    """Refuse to record a figure unless each of ``keys`` got exactly one ``signed: "true"`` PATCH."""
    writes = api.signed_writes()
    missing = [k for k in keys if writes.get(k, 0) == 0]
    twice = [k for k in keys if writes.get(k, 0) > 1]
    assert not missing and not twice, f"{len(missing)} unsigned, {len(twice)} signed twice"


def record(section: str, rows: list[dict[str, Any]]) -> None:
    import importlib.metadata as md

    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc[section] = rows
    doc["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    doc["versions"] = {name: md.version(name) for name in ("chainmail", "requests", "cryptography")}
    doc["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["api_latency"] = {**LATENCY, "LIST_per_object": LIST_PER_OBJECT}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_bench_backlog_scales_linearly(tmp_path: Path, key: str) -> None:
    rows = []
    for size in BACKLOGS:
        api = KubeApiDouble(rbac=True).start()
        try:
            api.use_admin_token()
            namespace = f"backlog-{size}"
            for i in range(size):
                api.add(completed_taskrun(f"run-{i:05d}", namespace))
            api.hooks.append(SlowApi(api))
            result = run_chainmail(["sweep", "-n", namespace], api, key, tmp_path, f"backlog-{size}")
            assert result["report"]["signed"] == size and not result["report"]["failed"], result["report"]
            assert_signed_once(api, [("taskruns", namespace, f"run-{i:05d}") for i in range(size)])
        finally:
            api.stop()
        row = {k: v for k, v in result.items() if k != "report"}
        rows.append({"runs": size, **row, "ms_per_run": round(1000 * row["wall_s"] / size, 2),
                     "cpu_ms_per_run": round(1000 * row["cpu_s"] / size, 2)})
        print(f"\n[backlog {size}] {rows[-1]}")
    record("backlog", rows)


def test_bench_pipelinerun_children_scale_linearly(tmp_path: Path, key: str) -> None:
    rows = []
    for size in CHILDREN:
        api = KubeApiDouble(rbac=True).start()
        try:
            api.use_admin_token()
            namespace, name = "wide", f"wide-{size}"
            pr, children = pipelinerun_with_children(name, namespace, tasks=tuple(f"t{i:04d}" for i in range(size)))
            for child in children:
                api.add(child)
            api.add(pr)
            slow = SlowApi(api)
            api.hooks.append(slow)
            # a PipelineRun of hundreds of children does not fit in 256 KiB of annotations (exit 23; see
            # bench_annotation_limits_modes.py): its own attestation goes to the file store here
            result = run_chainmail(["run", "--pipelinerun", name, "-n", namespace, "--with-children"],
                                   api, key, tmp_path, f"children-{size}",
                                   **{"artifacts.pipelinerun.storage": "file",
                                      "chainmail.storage.file.directory": str(tmp_path / f"store-{size}")})
            keys = [("taskruns", namespace, c["metadata"]["name"]) for c in children]
            assert_signed_once(api, [*keys, ("pipelineruns", namespace, name)])
        finally:
            api.stop()
        row = {k: v for k, v in result.items() if k != "report"}
        rows.append({"children": size, **row, "ms_per_child": round(1000 * row["wall_s"] / size, 2),
                     "max_patches_in_flight": slow.max_patches_in_flight})
        print(f"\n[children {size}] {rows[-1]}")
    record("pipelinerun_children", rows)
