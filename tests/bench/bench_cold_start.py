"""Cold start: how long ``chainmail`` takes before it does any work.

Measured, each as the median (and minimum) of :data:`REPEATS` fresh processes:

- ``chainmail --help`` and ``chainmail sweep --help`` (wall, from exec to exit);
- ``chainmail sweep`` of an empty namespace against the API double (exec, imports, key decryption,
  two empty LISTs, report), the fixed cost a backlog drain pays once;
- the import time of ``chainmail._cli`` (``python -X importtime``, cumulative), and of everything a
  key-file sweep to ``tekton,oci`` imports (:data:`SWEEP_PATH`: the modules it touches, each package
  ``__init__`` pulling in what it pulls in).

``CHAINMAIL_BENCH_SRC=<dir holding chainmail/>`` measures another source tree (e.g. an older commit
unpacked with ``git archive <rev> steps | tar -x -C /tmp/old``, then ``CHAINMAIL_BENCH_SRC=/tmp/old/steps``);
its figures are recorded under ``baseline`` instead of ``current``. Results:
``bench/results/cold_start.json``. Run with ``make bench``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from doubles.kube import KubeApiDouble

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "cold_start.json"
REPEATS = 15
CHAINMAIL = [sys.executable, "-c", "from chainmail._cli import main; main()"]
#: What ``chainmail sweep`` with a key file and storage ``tekton,oci`` imports before and while signing.
SWEEP_PATH = ("chainmail._cli", "chainmail._cli.sweep", "chainmail._cli.steps", "chainmail.sweep", "chainmail.job",
              "chainmail.signing._file", "chainmail.formats.slsa.v1", "chainmail.formats.simplesigning",
              "chainmail.storage.oci", "chainmail.storage.tekton", "chainmail.image_check",
              "chainmail._internal.kube", "requests")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CHAINMAIL_KEY", "DOCKER_CONFIG")}
    src = os.environ.get("CHAINMAIL_BENCH_SRC")
    if src:
        env["PYTHONPATH"] = src
    return env


def timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Median and minimum wall seconds of ``argv`` over :data:`REPEATS` runs (after one warm-up)."""
    subprocess.run(argv, env=env, capture_output=True, check=True)
    walls = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
    return {"median_ms": round(statistics.median(walls) * 1000, 1), "min_ms": round(min(walls) * 1000, 1)}


def import_ms(modules: tuple[str, ...], env: dict[str, str]) -> float:
    """Median time to import ``modules`` in a fresh interpreter (``-X importtime``, top-level entries), in ms."""
    values = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import " + ", ".join(modules)], env=env,
                             capture_output=True, text=True, check=True)
        top = re.findall(r"import time:\s+-?\d+ \|\s+(\d+) \| (\S+)", out.stderr)  # no indent: top level
        values.append(sum(int(us) for us, _name in top) / 1000)
    return round(statistics.median(values), 1)


def test_bench_cold_start(kube_api: KubeApiDouble, key: str, tmp_path: Path) -> None:
    env = _env()
    kc = kube_api.kubeconfig(tmp_path, name="kc-cold")
    sweep = [*CHAINMAIL, "sweep", "-n", "cold-empty", "--kubeconfig", str(kc), "--key", key, "-o", "json"]
    figures = {
        "help": timed([*CHAINMAIL, "--help"], env),
        "sweep_help": timed([*CHAINMAIL, "sweep", "--help"], env),
        "sweep_empty_namespace": timed(sweep, env),
        "import_cli_ms": import_ms(("chainmail._cli",), env),
        "import_sweep_path_ms": import_ms(SWEEP_PATH, env),
        "python_bare": timed([sys.executable, "-c", "pass"], env),
    }
    doc: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc["baseline" if os.environ.get("CHAINMAIL_BENCH_SRC") else "current"] = figures
    doc["repeats"] = REPEATS
    doc["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    doc["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print("\n" + json.dumps(figures))
