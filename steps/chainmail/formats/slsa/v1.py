"""``in-toto`` / ``slsa/v1``: in-toto Statement v0.1 with a SLSA v0.2 provenance predicate."""

from __future__ import annotations

import re
from typing import Any

from chainmail.artifacts import Descriptors
from chainmail.formats._base import InTotoFormatter
from chainmail.formats._goval import GoTime
from chainmail.formats.slsa._common import (
    LAST_APPLIED,
    REPRODUCIBLE_LABEL,
    PipelineRunView,
    RunView,
    TaskRunView,
    materials_json,
    pipeline_materials,
    subjects_v1,
    task_materials,
)

_VAR = re.compile(r"\$\([_a-zA-Z0-9.-]+(\.[_a-zA-Z0-9.-]+)*(\[([0-9]+|\*)\])?\)")


def invocation(
    view: RunView, params: list[dict[str, Any]], param_specs: list[dict[str, Any]]
) -> dict[str, Any]:
    """``invocation``: configSource, parameters (defaults overlaid by values), environment."""
    source: dict[str, Any] = {}
    ref = view.ref_source
    if ref is not None:
        source = {k: ref[k] for k in ("uri", "digest", "entryPoint") if k in ref}
    parameters = {p["name"]: p["default"] for p in param_specs if "default" in p}
    parameters.update({p["name"]: p["value"] for p in params})
    out: dict[str, Any] = {"configSource": source, "parameters": parameters}
    environment: dict[str, Any] = {}
    annotations = {
        k: v
        for k, v in view.annotations.items()
        if k != LAST_APPLIED and not k.startswith("chains.tekton.dev/")
    }
    if annotations:
        environment["annotations"] = annotations
    if view.labels:
        environment["labels"] = view.labels
    if environment:
        out["environment"] = environment
    return out


def step_attestation(step: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """One ``buildConfig`` step: entry point (script or command), arguments, image and container."""
    entry = step.get("script") or " ".join(step.get("command") or [])
    image = "oci://" + str(state.get("imageID", "")).removeprefix("docker-pullable://")
    return {
        "entryPoint": entry,
        "arguments": step.get("args"),
        "environment": {"image": image, "container": state.get("name", "")},
        "annotations": None,
    }


def metadata(view: RunView) -> dict[str, Any]:
    """SLSA v0.2 ``metadata``."""
    out: dict[str, Any] = {}
    if view.start is not None:
        out["buildStartedOn"] = view.start.rfc3339nano()
    if view.completion is not None:
        out["buildFinishedOn"] = view.completion.rfc3339nano()
    out["completeness"] = {"parameters": False, "environment": False, "materials": False}
    out["reproducible"] = view.labels.get(REPRODUCIBLE_LABEL) == "true"
    return out


def _taskrun_build_config(tr: TaskRunView) -> dict[str, Any]:
    spec_steps = (tr.task_spec or {}).get("steps") or []
    by_name: dict[str, dict[str, Any]] = {}
    for s in spec_steps:
        by_name.setdefault(s.get("name", ""), s)
    return {"steps": [step_attestation(by_name.get(st.get("name", ""), {}), st) for st in tr.steps]}


def _expressions(value: Any) -> list[str]:
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, list):
        values = value
    elif isinstance(value, dict):
        values = list(value.values())
    else:
        values = []
    return [m.group(0)[2:-1] for v in values for m in _VAR.finditer(v)]


def _container_expressions(c: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("name", "image", "imagePullPolicy", "script", "workingDir"):
        out += _expressions(c.get(key, ""))
    for key in ("command", "args"):
        out += _expressions(c.get(key) or [])
    for env in c.get("env") or []:
        out += _expressions(env.get("value", ""))
        source = env.get("valueFrom") or {}
        for ref in ("secretKeyRef", "configMapKeyRef"):
            if source.get(ref):
                out += _expressions(source[ref].get("key", "")) + _expressions(source[ref].get("name", ""))
    return out


def _result_ref_tasks(task: dict[str, Any]) -> list[str]:
    """Pipeline tasks whose results ``task`` uses (params, matrix, when, embedded steps)."""
    params = list(task.get("params") or [])
    matrix = task.get("matrix") or {}
    params += matrix.get("params") or []
    for include in matrix.get("include") or []:
        params += include.get("params") or []
    expressions = [e for p in params for e in _expressions(p.get("value"))]
    for when in task.get("when") or []:
        expressions += _expressions(when.get("input", "")) + _expressions(when.get("cel", ""))
        expressions += _expressions(when.get("values") or [])
    embedded = task.get("taskSpec")
    if embedded is not None:
        for c in list(embedded.get("steps") or []) + list(embedded.get("sidecars") or []):
            expressions += _container_expressions(c)
    names = []
    for expr in expressions:
        parts = expr.split(".")
        if len(parts) in (4, 5) and parts[0] in ("tasks", "finally") and parts[2] == "results":
            names.append(parts[1])
    return names


def _status(conditions: list[dict[str, Any]]) -> str:
    if not conditions:
        return ""
    return {"False": "Failed", "True": "Succeeded", "Unknown": "Running"}.get(
        conditions[0].get("status", ""), ""
    )


def _steps_match(tr: TaskRunView) -> list[dict[str, Any]] | None:
    spec_steps = (tr.task_spec or {}).get("steps") or []
    if tr.task_spec is None or len(spec_steps) != len(tr.steps):
        return None
    out = []
    for step, state in zip(spec_steps, tr.steps, strict=True):
        if str(state.get("name", "")).startswith("unnamed-") and step.get("name"):
            return None
        out.append(step_attestation(step, state))
    return out


def _pipelinerun_build_config(pr: PipelineRunView) -> dict[str, Any]:
    """``buildConfig.tasks``: one entry per completed child TaskRun, in pipelineSpec order (tasks, then finally).

    ``after`` is the declared ``runAfter`` plus the tasks whose results are referenced; a finally task left
    with none gets the last regular task (spec order) that has a TaskRun: skipped tasks never, failed ones do.
    """
    if pr.pipeline_spec is None:
        return {"tasks": None}
    regular = len(pr.pipeline_spec.get("tasks") or [])
    service_account = (pr.spec.get("taskRunTemplate") or {}).get("serviceAccountName", "")
    tasks = []
    last = ""
    for index, task in enumerate(pr.pipeline_tasks()):
        name = str(task.get("name", ""))
        runs = pr.task_runs_for(name)
        if not runs:
            continue  # skipped (no TaskRun): it never becomes a finally task's implied "after"
        for tr in runs:
            if tr.completion is None:
                continue
            steps = _steps_match(tr)
            if steps is None:
                continue
            after = list(task.get("runAfter") or [])
            for ref in _result_ref_tasks(task):
                if ref not in after:
                    after.append(ref)
            if not after and index >= regular and last:
                after.append(last)  # implied: the last regular task that has a TaskRun, in spec order
            entry: dict[str, Any] = {"name": name} if name else {}
            if after:
                entry["after"] = after
            entry["ref"] = task.get("taskRef") or {}
            entry["startedOn"] = (tr.start or GoTime.zero()).rfc3339nano()
            entry["finishedOn"] = tr.completion.rfc3339nano()
            if service_account:
                entry["serviceAccountName"] = service_account
            status = _status(tr.status.get("conditions") or [])
            if status:
                entry["status"] = status
            if steps:
                entry["steps"] = steps
            entry["invocation"] = invocation(
                tr, tr.spec.get("params") or [], (tr.task_spec or {}).get("params") or []
            )
            if tr.status.get("results"):
                entry["results"] = tr.status["results"]
            tasks.append(entry)
        if index < regular:
            last = name
    return {"tasks": tasks}


class InTotoIte6(InTotoFormatter):
    """SLSA v0.2 provenance; registered as both ``in-toto`` and ``slsa/v1``, like Chains."""

    type = "slsa/v1"
    statement_type = "https://in-toto.io/Statement/v0.1"
    predicate_type = "https://slsa.dev/provenance/v0.2"

    def subjects(self, view: TaskRunView | PipelineRunView) -> Descriptors:
        return subjects_v1(view, deep=self.deep)

    def predicate(self, view: TaskRunView | PipelineRunView) -> dict[str, Any]:
        if isinstance(view, PipelineRunView):
            mats = pipeline_materials(view, deep=self.deep)
            specs = (view.pipeline_spec or {}).get("params") or []
            build_config = _pipelinerun_build_config(view)
        else:
            mats = task_materials(view)
            specs = (view.task_spec or {}).get("params") or []
            build_config = _taskrun_build_config(view)
        out: dict[str, Any] = {
            "builder": {"id": self.builder_id},
            "buildType": view.gvk,
            "invocation": invocation(view, view.spec.get("params") or [], specs),
            "buildConfig": build_config,
            "metadata": metadata(view),
        }
        if len(mats):
            out["materials"] = materials_json(mats)
        return out
