"""Sweep benchmarks: ``chainmail sweep`` as a subprocess against the API double (and the real registry).

- 100 completed TaskRuns, each naming its own image in the registry fixture, ``slsa/v1``,
  storage ``tekton,oci`` (the setup of Chains' measured backlog in ``chains.md``), at
  ``--concurrency`` 4 and 8;
- memory: 100 and 5,000 completed TaskRuns, storage ``tekton`` only.

Wall time, CPU seconds and peak RSS are the sweep process's own (``os.wait4`` rusage); the
API double runs in the pytest process and is not counted, as the API server is not counted
for Chains. Results go to ``bench/results/sweep.json``. Run with::

    pytest -m bench tests/bench/bench_sweep.py -o addopts=""
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from doubles.kube import KubeApiDouble, completed_taskrun
from doubles.registry import push_test_image

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "sweep.json"
CHAINS_100 = {
    "wall_s": 34.6,
    "cpu_s": 31.6,
    "peak_rss_mb": 428,
    "threads": 2,
    "source": "chains.md: real controller, slsa/v1, storage tekton,oci, 100-run backlog",
}


def run_sweep(args: list[str], tmp_path: Path, label: str) -> dict[str, Any]:
    """Run ``chainmail sweep`` in a child process; its report plus wall, CPU and peak RSS."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CHAINMAIL_KEY", "DOCKER_CONFIG")}
    out_path, err_path = tmp_path / f"{label}.out", tmp_path / f"{label}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainmail", "sweep", *args, "-o", "json"], stdout=out, stderr=err, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err_path.read_text()[-3000:]
    report = json.loads(out_path.read_text())
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "signed": report["signed"],
        "failed": len(report["failed"]),
        "sweep_reported_s": report["seconds"],
    }


def record(name: str, value: dict[str, Any]) -> None:
    """Merge one result into bench/results/sweep.json."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            doc = json.loads(RESULTS.read_text())
        except ValueError:
            doc = {}
    doc[name] = value
    doc["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


def sets(values: dict[str, str]) -> list[str]:
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def test_bench_sweep_100_tekton_oci(kube_api: KubeApiDouble, registry, tmp_path: Path, key: str) -> None:
    kube_api.log_bodies = False
    config = {
        "artifacts.taskrun.format": "slsa/v1",
        "artifacts.taskrun.storage": "tekton,oci",
        "artifacts.oci.storage": "tekton,oci",
        "artifacts.oci.format": "simplesigning",
    }
    results: dict[str, Any] = {"runs": 100, "config": config, "chains": CHAINS_100}
    for threads in (4, 8):
        ns = f"bench-j{threads}"
        images = []
        for i in range(100):
            ref = push_test_image(registry, f"{ns}/app-{i % 10}", seed=f"{ns}-{i}", tag=f"v{i}")
            name, digest = ref.split("@")
            images.append((name, digest))
            kube_api.add(completed_taskrun(f"build-{i:03d}", ns, image=name, digest=digest))
        kc = kube_api.kubeconfig(tmp_path, name=f"kc-{threads}")
        got = run_sweep(
            ["-n", ns, "--kubeconfig", str(kc), "--key", key, "-j", str(threads), *sets(config)], tmp_path, ns
        )
        assert got["signed"] == 100 and got["failed"] == 0
        name, digest = images[7]
        repo = name.split("/", 1)[1]
        assert registry.get_manifest(repo, digest.replace(":", "-") + ".sig") is not None
        results[f"concurrency_{threads}"] = got
    record("sweep_100_tekton_oci", results)


def test_bench_sweep_memory_tekton(kube_api: KubeApiDouble, tmp_path: Path, key: str) -> None:
    kube_api.log_bodies = False
    config = {"artifacts.taskrun.storage": "tekton", "artifacts.oci.storage": "tekton"}
    results: dict[str, Any] = {"config": config}
    for count in (100, 5000):
        ns = f"mem-{count}"
        for i in range(count):
            kube_api.add(completed_taskrun(f"build-{i:05d}", ns))
        kc = kube_api.kubeconfig(tmp_path, name=f"kc-{count}")
        got = run_sweep(["-n", ns, "--kubeconfig", str(kc), "--key", key, *sets(config)], tmp_path, ns)
        assert got["signed"] == count and got["failed"] == 0
        results[f"runs_{count}"] = got
    record("sweep_memory_tekton", results)
