"""Format cost against PipelineRun size (run with ``pytest -m bench tests/bench/bench_formats.py``).

A synthetic PipelineRun with 10, 100 and 1000 child TaskRuns (deep inspection on) is
formatted in ``slsa/v1`` and ``slsa/v2alpha4``; time and peak memory (tracemalloc) per
size go to ``bench/results/formats.json``. Cost must grow linearly: the per-child time
and memory at 1000 children may not exceed a small multiple of those at 100.
"""

from __future__ import annotations

import json
import platform
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.formats import create_payloads
from chainmail.models import RunSnapshot

pytestmark = pytest.mark.bench

SIZES = (10, 100, 1000)
FORMATS = ("slsa/v1", "slsa/v2alpha4")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "formats.json"
#: Allowed growth of the per-child cost from 100 to 1000 children (1.0 is perfectly linear).
MAX_GROWTH = 2.5


def _hex(i: int, salt: str) -> str:
    return (f"{salt}{i:x}" * 64)[:64]


def _child(i: int) -> dict[str, Any]:
    task = f"t{i}"
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {
            "name": f"big-{task}",
            "namespace": "ci",
            "uid": f"uid-{i}",
            "labels": {"tekton.dev/pipelineTask": task, "tekton.dev/pipelineRun": "big"},
            "annotations": {"note": "x" * 40},
        },
        "spec": {
            "params": [{"name": "rev", "value": f"r{i}"}, {"name": "args", "value": ["a", "b"]}],
            "serviceAccountName": "bot",
            "taskRef": {"kind": "Task", "name": "build"},
            "timeout": "1h",
        },
        "status": {
            "conditions": [
                {"type": "Succeeded", "status": "True", "lastTransitionTime": "2024-02-09T09:18:06Z"}
            ],
            "podName": f"big-{task}-pod",
            "startTime": "2024-02-09T09:14:00Z",
            "completionTime": "2024-02-09T09:18:06Z",
            "provenance": {
                "refSource": {"uri": "git+https://github.com/acme/catalog", "digest": {"sha1": "1" * 40}},
                "featureFlags": {"EnableAPIFields": "beta"},
            },
            "steps": [
                {
                    "name": "fetch",
                    "container": "step-fetch",
                    "imageID": "gcr.io/tools/git@sha256:" + "c" * 64,
                    "terminated": {
                        "exitCode": 0,
                        "startedAt": "2024-02-09T09:14:01Z",
                        "finishedAt": "2024-02-09T09:14:05Z",
                    },
                },
                {
                    "name": "build",
                    "container": "step-build",
                    "imageID": "gcr.io/tools/kaniko@sha256:" + "d" * 64,
                    "results": [{"name": "log", "value": "done"}],
                },
            ],
            "taskSpec": {
                "params": [{"name": "rev", "type": "string", "default": "main"}],
                "steps": [
                    {"name": "fetch", "image": "gcr.io/tools/git", "script": "git fetch"},
                    {"name": "build", "image": "gcr.io/tools/kaniko", "args": ["--push"]},
                ],
            },
            "results": [
                {"name": "IMAGE_URL", "value": f"gcr.io/acme/app-{i}"},
                {"name": "IMAGE_DIGEST", "value": "sha256:" + _hex(i, "a")},
                {
                    "name": "src-ARTIFACT_INPUTS",
                    "value": {"uri": "https://github.com/acme/app", "digest": "sha1:" + "f" * 40},
                },
                {"name": "summary", "value": f"built {i}"},
            ],
        },
    }


def _pipelinerun(n: int) -> RunSnapshot:
    children = [_child(i) for i in range(n)]
    tasks = []
    for i in range(n):
        task: dict[str, Any] = {"name": f"t{i}", "taskRef": {"kind": "Task", "name": "build"}}
        if i:
            task["params"] = [{"name": "rev", "value": f"$(tasks.t{i - 1}.results.summary)"}]
        tasks.append(task)
    run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "big", "namespace": "ci", "uid": "pr-big"},
        "spec": {"pipelineRef": {"name": "big"}, "taskRunTemplate": {"serviceAccountName": "bot"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "startTime": "2024-02-09T09:10:00Z",
            "completionTime": "2024-02-09T10:10:00Z",
            "pipelineSpec": {"tasks": tasks},
            "childReferences": [
                {
                    "apiVersion": "tekton.dev/v1",
                    "kind": "TaskRun",
                    "name": f"big-t{i}",
                    "pipelineTaskName": f"t{i}",
                }
                for i in range(n)
            ],
            "results": [
                {"name": "IMAGE_URL", "value": "gcr.io/acme/app-0"},
                {"name": "IMAGE_DIGEST", "value": "sha256:" + _hex(0, "a")},
            ],
        },
    }
    return RunSnapshot(run, children)


def _measure(snapshot: RunSnapshot, fmt: str) -> dict[str, float]:
    config = Config.from_mapping(
        {"artifacts.pipelinerun.format": fmt, "artifacts.pipelinerun.enable-deep-inspection": "true"}
    )
    create_payloads(snapshot, config)  # warm up (lazy type tables)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        (payload,) = create_payloads(snapshot, config)
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    create_payloads(snapshot, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": round(best, 4),
        "peak_mib": round(peak / 2**20, 2),
        "payload_kib": round(len(payload.body) / 1024, 1),
        "subjects": len(json.loads(payload.body).get("subject") or []),
    }


def test_format_cost_is_linear() -> None:
    report: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(), "runs": []}
    per_child: dict[tuple[str, int], dict[str, float]] = {}
    for n in SIZES:
        snapshot = _pipelinerun(n)
        for fmt in FORMATS:
            m = _measure(snapshot, fmt)
            assert m["subjects"] == n  # every child's image, merged with the pipeline's own
            report["runs"].append({"children": n, "format": fmt, **m})
            per_child[(fmt, n)] = {"seconds": m["seconds"] / n, "peak_mib": m["peak_mib"] / n}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for fmt in FORMATS:
        for key in ("seconds", "peak_mib"):
            growth = per_child[(fmt, 1000)][key] / per_child[(fmt, 100)][key]
            assert growth < MAX_GROWTH, f"{fmt}: per-child {key} grew {growth:.1f}x from 100 to 1000 children"
