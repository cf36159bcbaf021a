"""Benchmark: 10 runs finish during a 60 s registry outage -- how long until all are signed?

Measured on Tekton Chains, the same scenario left all 10 runs ``chains.tekton.dev/signed: failed``
for good (the controller gave up while the registry was away). Here the real registry
(Debian's docker-registry) sits behind :class:`~doubles.faultproxy.FaultProxy`; at T0 the outage
starts, and one run finishes every ``FINISH_EVERY`` seconds. Two ways chainmail is triggered:

``finally``
    each run's finally task calls ``chainmail run --taskrun <name>`` the moment it finishes
    (the per-run reaction Chains' controller has);
``sweep``
    one ``chainmail sweep`` starts once the last run has finished (a CronJob, or a user).

Both use chainmail's default retry settings (``chainmail.retry.deadline-seconds`` 300, backoff
0.2 s doubling to 10 s, full jitter). Results go to ``bench/results/outage.json``.

Run with ``make bench`` or ``pytest -m bench -o addopts= tests/bench/bench_outage.py``.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("doubles.faultproxy")
from doubles.faultproxy import Fleet, finish_chainmail, start_chainmail  # noqa: E402

#: The ``fault_proxy_factory`` fixture.
pytest_plugins = ["doubles.faultproxy"]
pytestmark = [pytest.mark.bench, pytest.mark.registry]

OUTAGE_SECONDS = 60.0
RUNS = 10
#: One run finishes every this-many seconds after the outage starts.
FINISH_EVERY = 1.0
RESULT = "bench/results/outage.json"
CHAINS_REFERENCE = {
    "signed": 0,
    "failed": RUNS,
    "seconds_until_all_signed": None,
    "note": "measured on Tekton Chains with a 60 s registry outage while 10 runs finished: "
            "all 10 left chains.tekton.dev/signed=failed for good",
}


def _scenario(mode: str, registry: Any, kube_api: Any, proxy: Any, tmp_path: Path, key: str) -> dict[str, Any]:
    from doubles.kube import completed_taskrun

    work = tmp_path / mode
    work.mkdir()
    fleet = Fleet(kube_api, registry, work, image_host=proxy.host, prefix=f"bench-{mode}")
    # Images exist before the outage (they were pushed by the builds); the runs "finish" during it.
    pending = fleet.add(RUNS, namespaces=1, repos=2, name=mode)
    for run in pending:
        kube_api.delete(*run.key)
    finished_at: dict[str, float] = {}
    signed_at: dict[str, float] = {}
    procs: list[tuple[Any, Path, list[str], float]] = []

    t0 = time.monotonic()
    proxy.outage_for(OUTAGE_SECONDS)
    for i, run in enumerate(pending):
        time.sleep(max(0.0, t0 + i * FINISH_EVERY - time.monotonic()))
        kube_api.add(completed_taskrun(run.name, run.namespace, image=f"{proxy.host}/{run.repo}", digest=run.digest,
                                       uid=run.uid))
        finished_at[run.name] = time.monotonic()
        if mode == "finally":
            args = fleet.run_args(run, key)
            proc, retry_file = start_chainmail(args, work, tag=run.name)
            procs.append((proc, retry_file, args, time.monotonic()))
    if mode == "sweep":
        args = fleet.sweep_args(key, concurrency=4)
        proc, retry_file = start_chainmail(args, work, tag="sweep")
        procs.append((proc, retry_file, args, time.monotonic()))

    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and len(signed_at) < RUNS:
            for run in pending:
                if run.name not in signed_at and \
                        fleet.annotations(run).get("chains.tekton.dev/signed") in ("true", "failed"):
                    signed_at[run.name] = time.monotonic()
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = [finish_chainmail(p, f, a, s, timeout=OUTAGE_SECONDS + 400) for p, f, a, s in procs]
    stop.set()
    watcher.join(5)
    outage_end = t0 + OUTAGE_SECONDS
    states = {run.name: fleet.annotations(run).get("chains.tekton.dev/signed") for run in pending}
    signed = [n for n, s in states.items() if s == "true"]
    last = max(signed_at.values()) if signed_at else None
    waits = sorted(signed_at[n] - finished_at[n] for n in signed if n in signed_at)
    return {
        "signed": len(signed),
        "failed": sum(1 for s in states.values() if s == "failed"),
        "unsigned": sum(1 for s in states.values() if s not in ("true", "failed")),
        "exactly_once": fleet.problems() == [],
        "seconds_until_all_signed": round(last - t0, 2) if last and len(signed) == RUNS else None,
        "seconds_after_outage_end": round(last - outage_end, 2) if last and len(signed) == RUNS else None,
        "seconds_from_finish_to_signed": {"min": round(waits[0], 2), "median": round(waits[len(waits) // 2], 2),
                                          "max": round(waits[-1], 2)} if waits else None,
        "processes": len(results),
        "process_exit_codes": sorted({r.returncode for r in results}),
        "retries": sum(r.retries["total"] for r in results),
        "attempts_refused_during_outage": proxy.stats()["outage-rejected"],
    }


def test_bench_ten_runs_during_a_60_second_registry_outage(registry, kube_api, fault_proxy_factory, tmp_path, key,
                                                          repo):
    modes: dict[str, Any] = {}
    for mode in ("finally", "sweep"):
        proxy = fault_proxy_factory(registry.host, name=f"registry-{mode}")
        modes[mode] = _scenario(mode, registry, kube_api, proxy, tmp_path, key)
    doc = {
        "scenario": f"{RUNS} runs finish during a {OUTAGE_SECONDS:g} s full registry outage "
                    f"(one every {FINISH_EVERY:g} s from its start); time until all are signed",
        "outage_seconds": OUTAGE_SECONDS,
        "runs": RUNS,
        "retry_settings": {"chainmail.retry.deadline-seconds": 300, "initial_backoff": 0.2, "max_backoff": 10.0,
                           "jitter": "full"},
        "chainmail": modes,
        "tekton_chains": CHAINS_REFERENCE,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(repo) / RESULT
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out)
    print(f"\n{out}: " + json.dumps(modes, sort_keys=True))
    for mode, figures in modes.items():
        assert figures["signed"] == RUNS and figures["failed"] == 0, (mode, figures)
        assert figures["exactly_once"], (mode, figures)
