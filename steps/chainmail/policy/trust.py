"""Facts split by trust: what the platform vouches for, and what the build controls.

``platform`` facts come from fields a build's steps cannot write: the builder id and build type
(chains-config), the run's identity and timestamps (set by Tekton), the image each step ran (the
kubelet's imageID), the definition's ``refSource`` (the resolver's answer: repository, pinned commit),
the service account, and the signer (from verification, not from the statement). ``build`` facts come
from what the run's creator or its steps choose: params, results, the ``CHAINS-GIT_*`` source,
materials from results, Dockerfile and context overrides. A policy that must not be passable by the
build reads only ``facts.platform``. ``docs/policy.md`` lists each fact with its source field.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.policy._shapes import (
    FULL_DIGEST,
    as_dict,
    as_list,
    as_str,
    material,
    params_map,
    pinned,
    timestamp,
)
from chainmail.policy.dockerfile import dockerfile_evidence
from chainmail.policy.refs import branch_from_params
from chainmail.policy.runs import signed_run_identity
from chainmail.policy.urls import normalize_source_url

_EMPTY_SOURCE = {"repository": "", "host": "", "org": "", "path": ""}


def trust_facts(statement: dict[str, Any], facts: dict[str, Any], signer: dict[str, str],
                identity: dict[str, str] | None = None) -> dict[str, Any]:
    """``{platform: {...}, build: {...}}`` for one verified statement.

    ``facts``: its :func:`~chainmail.policy.statement.statement_facts`; ``signer``: from verification;
    ``identity``: the run's ``{name, namespace, uid}`` as the signed statement records it (computed
    from ``statement`` when not given).
    """
    predicate = as_dict(statement.get("predicate"))
    v1 = "buildDefinition" in predicate or "runDetails" in predicate
    definition = _definition_v1(predicate) if v1 else _definition_v02(predicate)
    run = {"kind": facts["run"]["kind"], **(identity or signed_run_identity(predicate))}
    platform = {
        "builder": facts["builder"],
        "buildType": facts["buildType"],
        "run": run,
        "serviceAccount": facts["run"]["serviceAccount"],
        "definition": definition,
        "source": _platform_source(definition),
        "stepImages": facts["stepImages"],
        "startedOn": timestamp(facts["startedOn"]),
        "finishedOn": timestamp(facts["finishedOn"]),
        "signer": signer,
    }
    return {"platform": platform, "build": _build_facts(predicate, facts, v1)}


# -- platform: the definition and the source it pins ------------------------------------------------


def _definition_v02(predicate: dict[str, Any]) -> dict[str, Any]:
    """v0.2 ``invocation.configSource``: the run's refSource (v0.2 names neither resolver nor revision)."""
    config = material(as_dict(predicate.get("invocation")).get("configSource"))
    entry = as_str(as_dict(as_dict(predicate.get("invocation")).get("configSource")).get("entryPoint"))
    remote = bool(config["uri"]) and not config["uri"].startswith("/")  # the Cluster resolver's URIs are /apis/…
    return _definition(config["uri"], config["digest"], entry, resolver="", revision="", remote=remote)


def _definition_v1(predicate: dict[str, Any]) -> dict[str, Any]:
    """v1.0 ``externalParameters.buildConfigSource`` (remote resolvers only) and the resolver's params."""
    external = as_dict(as_dict(predicate.get("buildDefinition")).get("externalParameters"))
    run_spec = as_dict(external.get("runSpec"))
    ref = as_dict(run_spec.get("pipelineRef") or run_spec.get("taskRef"))
    revision = params_map(ref.get("params")).get("revision")
    revision = revision if isinstance(revision, str) else ""
    resolver = as_str(ref.get("resolver"))
    config = as_dict(external.get("buildConfigSource"))
    if not config:  # not remotely resolved: the task/pipeline dependency, for information
        deps = [material(d) for d in as_list(as_dict(predicate.get("buildDefinition")).get("resolvedDependencies"))]
        dep = next((d for d in deps if d["name"] in ("task", "pipeline")), material({}))
        return _definition(dep["uri"], dep["digest"], "", resolver=resolver, revision=revision, remote=False)
    alg, _, value = as_str(config.get("ref")).partition(":")
    return _definition(as_str(config.get("repository")), {alg: value} if alg and value else {},
                       as_str(config.get("path")), resolver=resolver, revision=revision, remote=True)


def _definition(uri: str, digest: dict[str, str], entry: str, *, resolver: str, revision: str,
                remote: bool) -> dict[str, Any]:
    return {"uri": uri, "digest": digest, "entryPoint": entry, "resolver": resolver, "revision": revision,
            "remote": remote, "pinned": pinned(digest)}


def _platform_source(definition: dict[str, Any]) -> dict[str, str]:
    """The git repository and full commit the definition was resolved from, else empty strings.

    Only a remote git resolution counts: a ``git+`` URI that normalises safely and a full sha1
    commit (what the git resolver records). ``ref`` is the revision the resolver was asked for
    (v1.0 only: v0.2 does not record the resolver's params), so ``ref == 'main'`` means the
    resolver fetched this commit as ``main``.
    """
    empty = {**_EMPTY_SOURCE, "uri": "", "commit": "", "ref": "", "entryPoint": ""}
    commit = definition["digest"].get("sha1", "")
    uri = definition["uri"]
    if (not definition["remote"] or not uri.lower().startswith("git+") or not FULL_DIGEST["sha1"].match(commit)
            or definition["resolver"] not in ("", "git")):
        return empty
    url = normalize_source_url(uri)
    if url is None:
        return empty
    return {**url.to_fact(), "uri": uri, "commit": commit, "ref": definition["revision"],
            "entryPoint": definition["entryPoint"]}


# -- build: what the run's creator and its steps choose -----------------------------------------------


def _build_facts(predicate: dict[str, Any], facts: dict[str, Any], v1: bool) -> dict[str, Any]:
    params = facts["params"]
    branch = branch_from_params(params)
    claimed = facts["source"] if facts["source"]["origin"] in ("materials", "params") else None
    evidence = dockerfile_evidence(_param_sets_v1(predicate) if v1 else _param_sets_v02(predicate))
    return {
        "params": params,
        "results": _results_v1(predicate) if v1 else _results_v02(predicate),
        "source": _claimed_source(claimed),
        "sources": [_claimed_source({**s, "origin": "materials"}) for s in facts["sources"]],
        "ref": branch.value,
        "refParam": branch.param,
        "refProblem": branch.problem,
        "dockerfileOverridden": bool(evidence),
        "dockerfileEvidence": evidence,
        "materials": facts["materials"],
    }


def _claimed_source(source: dict[str, str] | None) -> dict[str, str]:
    if source is None:
        return {**_EMPTY_SOURCE, "uri": "", "commit": "", "origin": ""}
    url = normalize_source_url(source["uri"])
    fact = url.to_fact() if url is not None else dict(_EMPTY_SOURCE)
    return {**fact, "uri": source["uri"], "commit": source["commit"], "origin": source.get("origin", "")}


def _param_sets_v02(predicate: dict[str, Any]) -> list[tuple[str, str, Any]]:
    out = [("", str(k), v) for k, v in as_dict(as_dict(predicate.get("invocation")).get("parameters")).items()]
    for task in as_list(as_dict(predicate.get("buildConfig")).get("tasks")):
        task = as_dict(task)
        where = f"task {as_str(task.get('name'))}: "
        params = as_dict(as_dict(task.get("invocation")).get("parameters"))
        out += [(where, str(k), v) for k, v in params.items()]
    return out


def _param_sets_v1(predicate: dict[str, Any]) -> list[tuple[str, str, Any]]:
    definition = as_dict(predicate.get("buildDefinition"))
    run_spec = as_dict(as_dict(definition.get("externalParameters")).get("runSpec"))
    out = [("", k, v) for k, v in params_map(run_spec.get("params")).items()]
    pipeline_spec = as_dict(run_spec.get("pipelineSpec"))
    for task in as_list(pipeline_spec.get("tasks")) + as_list(pipeline_spec.get("finally")):
        task = as_dict(task)
        where = f"task {as_str(task.get('name'))}: "
        out += [(where, k, v) for k, v in params_map(task.get("params")).items()]
    for dep in as_list(definition.get("resolvedDependencies")):
        child = _content(as_dict(dep)) if as_dict(dep).get("name") == "pipelineTask" else None
        if isinstance(child, dict):
            where = f"task {as_str(as_dict(child.get('metadata')).get('name'))}: "
            out += [(where, k, v) for k, v in params_map(as_dict(child.get("spec")).get("params")).items()]
    return out


def _results_v02(predicate: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in as_list(as_dict(predicate.get("buildConfig")).get("tasks")):
        task = as_dict(task)
        for result in as_list(task.get("results")):
            result = as_dict(result)
            if isinstance(result.get("name"), str):
                out[f"{as_str(task.get('name'))}/{result['name']}"] = result.get("value")
    return out


def _results_v1(predicate: dict[str, Any]) -> dict[str, Any]:
    """``runDetails.byproducts`` named ``taskRunResults/…``, ``pipelineRunResults/…``, ``stepResults/…``."""
    out: dict[str, Any] = {}
    for item in as_list(as_dict(predicate.get("runDetails")).get("byproducts")):
        item = as_dict(item)
        name = as_str(item.get("name"))
        if name and "content" in item:
            out[name] = _content(item)
    return out


def _content(item: dict[str, Any]) -> Any:
    content = item.get("content")
    if not isinstance(content, str):
        return None
    try:
        return load_json(base64.b64decode(content, validate=True))
    except (ValueError, binascii.Error):
        return None
