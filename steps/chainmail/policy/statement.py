"""What a Chains statement says, normalised across SLSA v0.2 and v1.0 (for policies and reports).

:func:`statement_facts` reads one statement whatever the version: builder, build type, the source
the build names, the definition's source, params, step images, materials, run kind and service
account, timestamps, PipelineRun tasks. It does not judge trust: :mod:`chainmail.policy.trust`
splits these into what the platform vouches for and what the build controls.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.policy._shapes import as_dict as _dict
from chainmail.policy._shapes import as_list as _list
from chainmail.policy._shapes import commit_of as _commit_of
from chainmail.policy._shapes import image_ref as _image_ref
from chainmail.policy._shapes import is_git as _is_git
from chainmail.policy._shapes import material as _material
from chainmail.policy._shapes import params_map as _params_list
from chainmail.policy._shapes import unique as _unique
from chainmail.policy.refs import branch_from_params
from chainmail.policy.urls import normalize_repository


def statement_facts(statement: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise a Chains statement (SLSA v0.2 or v1.0) into version-independent facts.

    Returns ``builder``, ``buildType``, ``source``, ``sources``, ``configSource``, ``params``,
    ``stepImages``, ``materials``, ``run`` (``kind``, ``name``, ``namespace``,
    ``serviceAccount``, ``uid``), ``startedOn``/``finishedOn`` (strings as written, or ""), and
    ``tasks`` (PipelineRun children, for reports).
    """
    predicate = _dict(statement.get("predicate"))
    if "buildDefinition" in predicate or "runDetails" in predicate:
        return _facts_v1(predicate)
    return _facts_v02(predicate)


def _facts_v02(predicate: dict[str, Any]) -> dict[str, Any]:
    invocation = _dict(predicate.get("invocation"))
    build_config = _dict(predicate.get("buildConfig"))
    metadata = _dict(predicate.get("metadata"))
    params = _dict(invocation.get("parameters"))
    build_type = str(predicate.get("buildType") or "")
    tasks = [_dict(t) for t in _list(build_config.get("tasks"))]
    steps = [_dict(s) for s in _list(build_config.get("steps"))]
    for task in tasks:
        steps.extend(_dict(s) for s in _list(task.get("steps")))
    step_images = _unique(str(_dict(s.get("environment")).get("image") or "") for s in steps)

    materials = [_material(m) for m in _list(predicate.get("materials"))]
    config = _config_source_v02(_dict(invocation.get("configSource")))
    definitions = {(config["uri"], config["commit"])}
    for task in tasks:
        task_config = _config_source_v02(_dict(_dict(task.get("invocation")).get("configSource")))
        definitions.add((task_config["uri"], task_config["commit"]))
    kind = "PipelineRun" if build_type.endswith("/PipelineRun") or tasks else (
        "TaskRun" if build_type.endswith("/TaskRun") or steps else "")
    git_inputs = [m for m in materials if _is_git(m) and (m["uri"], _commit_of(m)) not in definitions]
    if kind == "PipelineRun":  # the pipeline-level CHAINS-GIT material comes last
        git_inputs.reverse()
    source = _pick_source(params, git_inputs, config)

    service_account = next((str(t["serviceAccountName"]) for t in tasks if t.get("serviceAccountName")), "")
    return {
        "builder": str(_dict(predicate.get("builder")).get("id") or ""),
        "buildType": build_type,
        "source": source,
        "sources": _sources(git_inputs),
        "configSource": config,
        "params": params,
        "stepImages": step_images,
        "materials": materials,
        "run": {"kind": kind, "name": "", "namespace": "", "serviceAccount": service_account, "uid": ""},
        "startedOn": str(metadata.get("buildStartedOn") or ""),
        "finishedOn": str(metadata.get("buildFinishedOn") or ""),
        "tasks": [_task_v02(t) for t in tasks],
    }


def _facts_v1(predicate: dict[str, Any]) -> dict[str, Any]:
    definition = _dict(predicate.get("buildDefinition"))
    details = _dict(predicate.get("runDetails"))
    metadata = _dict(details.get("metadata"))
    external = _dict(definition.get("externalParameters"))
    run_spec = _dict(external.get("runSpec"))
    params = _params_list(run_spec.get("params"))
    deps = [_dict(d) for d in _list(definition.get("resolvedDependencies"))]
    materials = [_material(d) for d in deps]

    step_images = _unique(_image_ref(m) for m in materials if not m["name"] and m["uri"].startswith("oci://"))
    git_inputs = [m for m in materials if m["name"] == "inputs/result" and _is_git(m)]
    is_pipeline = any(k in run_spec for k in ("pipelineRef", "pipelineSpec")) or any(
        m["name"] in ("pipeline", "pipelineTask") for m in materials)
    if is_pipeline:  # the pipeline-level CHAINS-GIT input comes last
        git_inputs.reverse()
    definition_dep = next((m for m in materials if m["name"] in ("task", "pipeline")), None)
    config = _config_source_v1(_dict(external.get("buildConfigSource")), definition_dep, run_spec)
    source = _pick_source(params, git_inputs, config)

    template = _dict(run_spec.get("taskRunTemplate"))
    service_account = str(run_spec.get("serviceAccountName") or template.get("serviceAccountName") or "")
    tasks = [_task_v1(d) for d in deps if d.get("name") == "pipelineTask"]
    namespace = next((t["namespace"] for t in tasks if t.get("namespace")), "")
    return {
        "builder": str(_dict(details.get("builder")).get("id") or ""),
        "buildType": str(definition.get("buildType") or ""),
        "source": source,
        "sources": _sources(git_inputs),
        "configSource": config,
        "params": params,
        "stepImages": step_images,
        "materials": materials,
        "run": {"kind": "PipelineRun" if is_pipeline else ("TaskRun" if run_spec or deps else ""),
                "name": "", "namespace": namespace, "serviceAccount": service_account,
                "uid": str(metadata.get("invocationId") or "")},
        "startedOn": str(metadata.get("startedOn") or ""),
        "finishedOn": str(metadata.get("finishedOn") or ""),
        "tasks": tasks,
    }


def _pick_source(params: Mapping[str, Any], git_inputs: list[dict[str, Any]],
                 config: dict[str, str]) -> dict[str, str]:
    """The code that was built: a git input material, else CHAINS-GIT params, else the definition's source.

    Materials come first because Chains builds the CHAINS-GIT material from the Task's param
    defaults, then the run's params, then its results (later wins), so it is the final value.
    """
    ref = _ref_param(params)
    if git_inputs:
        m = git_inputs[0]
        return {"repository": normalize_repository(m["uri"]), "uri": m["uri"], "commit": _commit_of(m),
                "ref": ref, "origin": "materials"}
    url, commit = params.get("CHAINS-GIT_URL"), params.get("CHAINS-GIT_COMMIT")
    if isinstance(url, str) and url and isinstance(commit, str) and commit:
        return {"repository": normalize_repository(url), "uri": url, "commit": commit, "ref": ref,
                "origin": "params"}
    if config["uri"]:
        return {"repository": config["repository"], "uri": config["uri"], "commit": config["commit"],
                "ref": ref or config["ref"], "origin": "configSource"}
    return {"repository": "", "uri": "", "commit": "", "ref": ref, "origin": ""}


def _sources(git_inputs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"repository": normalize_repository(m["uri"]), "uri": m["uri"], "commit": _commit_of(m)}
            for m in git_inputs]


def _ref_param(params: Mapping[str, Any]) -> str:
    return branch_from_params(params).value


def _config_source_v02(config: dict[str, Any]) -> dict[str, str]:
    uri = str(config.get("uri") or "")
    digest = _dict(config.get("digest"))
    return {"repository": normalize_repository(uri) if uri else "", "uri": uri,
            "commit": str(digest.get("sha1") or next(iter(digest.values()), "") or ""),
            "entryPoint": str(config.get("entryPoint") or ""), "ref": ""}


def _config_source_v1(build_config: dict[str, Any], dep: dict[str, Any] | None,
                      run_spec: dict[str, Any]) -> dict[str, str]:
    ref_params = _params_list(_dict(run_spec.get("pipelineRef") or run_spec.get("taskRef")).get("params"))
    revision = ref_params.get("revision")
    revision = revision if isinstance(revision, str) else ""
    if build_config:
        uri = str(build_config.get("repository") or "")
        commit = str(build_config.get("ref") or "").partition(":")[2] or str(build_config.get("ref") or "")
        return {"repository": normalize_repository(uri) if uri else "", "uri": uri, "commit": commit,
                "entryPoint": str(build_config.get("path") or ""), "ref": revision}
    if dep is not None:
        return {"repository": normalize_repository(dep["uri"]) if dep["uri"] else "", "uri": dep["uri"],
                "commit": _commit_of(dep), "entryPoint": "", "ref": revision}
    return {"repository": "", "uri": "", "commit": "", "entryPoint": "", "ref": revision}


def _task_v02(task: dict[str, Any]) -> dict[str, Any]:
    results = {}
    for r in _list(task.get("results")):
        r = _dict(r)
        if r.get("name"):
            results[str(r["name"])] = r.get("value")
    return {"name": str(task.get("name") or ""), "after": [str(a) for a in _list(task.get("after"))],
            "status": str(task.get("status") or ""), "results": results, "namespace": "",
            "ref": _dict(task.get("ref")).get("name") or "", "uri": "", "digest": ""}


def _task_v1(dep: dict[str, Any]) -> dict[str, Any]:
    """A ``pipelineTask`` resolvedDependency; with buildType slsa-tekton its content is the TaskRun."""
    material = _material(dep)
    task: dict[str, Any] = {"name": "", "after": [], "status": "", "results": {}, "namespace": "",
                            "ref": "", "uri": material["uri"], "digest": material["digest"]}
    content = dep.get("content")
    if isinstance(content, str) and content:
        try:
            taskrun = load_json(base64.b64decode(content, validate=True))
        except (ValueError, binascii.Error):
            taskrun = None
        if isinstance(taskrun, dict):
            md = _dict(taskrun.get("metadata"))
            labels = _dict(md.get("labels"))
            task["name"] = str(labels.get("tekton.dev/pipelineTask") or md.get("name") or "")
            task["namespace"] = str(md.get("namespace") or "")
            status = _dict(taskrun.get("status"))
            for r in _list(status.get("results")):
                r = _dict(r)
                if r.get("name"):
                    task["results"][str(r["name"])] = r.get("value")
            conditions = [_dict(c) for c in _list(status.get("conditions"))]
            task["status"] = next(
                (str(c.get("reason") or "") for c in conditions if c.get("type") == "Succeeded"), "")
    return task
