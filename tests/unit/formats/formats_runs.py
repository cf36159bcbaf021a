"""Builders for small tekton.dev/v1 runs used by the format tests (``from formats_runs import …``)."""

from __future__ import annotations

import copy
from typing import Any

DIGEST = "sha256:" + "a" * 64
DIGEST2 = "sha256:" + "b" * 64
STEP_IMAGE = "docker-pullable://gcr.io/tools/build@sha256:" + "c" * 64


def build_taskrun(
    name: str = "build",
    *,
    uid: str = "tr-uid",
    results: list[dict[str, Any]] | None = None,
    succeeded: str = "True",
    labels: dict[str, str] | None = None,
    steps: list[dict[str, Any]] | None = None,
    spec: dict[str, Any] | None = None,
    task_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A finished TaskRun with one step (``main``) unless told otherwise."""
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": "ci", "uid": uid, "labels": dict(labels or {})},
        "spec": copy.deepcopy(spec) if spec is not None else {"taskRef": {"name": name, "kind": "Task"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": succeeded, "reason": "Done"}],
            "podName": f"{name}-pod",
            "startTime": "2024-02-09T09:14:00Z",
            "completionTime": "2024-02-09T09:18:06Z",
            "steps": copy.deepcopy(steps)
            if steps is not None
            else [{"name": "main", "container": "step-main", "imageID": STEP_IMAGE}],
            "taskSpec": copy.deepcopy(task_spec)
            if task_spec is not None
            else {"steps": [{"name": "main", "image": "gcr.io/tools/build", "script": "make"}]},
            "results": copy.deepcopy(results or []),
        },
    }


def build_pipelinerun(
    children: list[dict[str, Any]],
    *,
    tasks: list[dict[str, Any]] | None = None,
    finally_: list[dict[str, Any]] | None = None,
    results: list[dict[str, Any]] | None = None,
    child_refs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A finished PipelineRun whose pipeline tasks are named after the children's pipelineTask labels."""
    if tasks is None:
        tasks = [{"name": c["metadata"]["labels"]["tekton.dev/pipelineTask"]} for c in children]
    if child_refs is None:
        child_refs = [
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "name": c["metadata"]["name"],
                "pipelineTaskName": c["metadata"]["labels"]["tekton.dev/pipelineTask"],
            }
            for c in children
        ]
    spec: dict[str, Any] = {"tasks": tasks}
    if finally_:
        spec["finally"] = finally_
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "release", "namespace": "ci", "uid": "pr-uid"},
        "spec": {"pipelineRef": {"name": "release"}, "taskRunTemplate": {"serviceAccountName": "bot"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "startTime": "2024-02-09T09:10:00Z",
            "completionTime": "2024-02-09T09:20:00Z",
            "pipelineSpec": spec,
            "childReferences": child_refs,
            "results": copy.deepcopy(results or []),
        },
    }


def child(task: str, *, image: str | None = None, uid: str | None = None, **kw: Any) -> dict[str, Any]:
    """A child TaskRun for pipeline task ``task``, optionally producing ``image`` (IMAGE_URL/DIGEST)."""
    results = kw.pop("results", None) or []
    if image is not None:
        results = [{"name": "IMAGE_URL", "value": image}, {"name": "IMAGE_DIGEST", "value": DIGEST}, *results]
    return build_taskrun(
        f"release-{task}",
        uid=uid or f"uid-{task}",
        labels={"tekton.dev/pipelineTask": task},
        results=results,
        **kw,
    )
