"""A Python catlin: the catalog rules of conventions §1.2/§1.5/§8 for every Task, StepAction and
Pipeline we ship (metadata, names, descriptions, pinned images, scripts, security), plus the
webhook checks the schema cannot express (declared variables, StepAction restrictions)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from catalog_support import (
    AH_CHANGE_KINDS,
    DNS1123_LABEL,
    HUB_CATEGORIES,
    LOWER_KEBAB,
    PARAM_NAME,
    PINNED_IMAGE,
    PLATFORM,
    RESULT_NAME,
    SCRIPT_FORBIDDEN,
    SEMVER,
    UPPER_SNAKE,
    Doc,
    all_docs,
    catalog,
    catalog_image,
    package_docs,
    steps_of,
    substitute_param_defaults,
    task_like_specs,
    walk_strings,
)

PACKAGES = package_docs()
PACKAGE_IDS = [d.where for d in PACKAGES]
SPECS = list(task_like_specs())
SPEC_IDS = [w for w, _, _ in SPECS]
CREDENTIAL_WORKSPACES = {"signing-secrets", "dockerconfig", "public-key"}


def test_every_kind_is_packaged() -> None:
    kinds = sorted(d.kind for d in PACKAGES)
    assert kinds.count("Task") == 3 and kinds.count("StepAction") == 5 and kinds.count("Pipeline") == 2


# ------------------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("doc", PACKAGES, ids=PACKAGE_IDS)
def test_layout_is_kind_dir_name_name_yaml(doc: Doc) -> None:
    assert doc.path.stem == doc.path.parent.name == doc.obj["metadata"]["name"]
    assert doc.index == 0 and len([1 for _ in yaml.safe_load_all(doc.path.read_text())]) == 1, \
        f"{doc.rel}: a package file holds exactly one object"
    assert doc.obj["metadata"].get("generateName") is None


@pytest.mark.parametrize("doc", PACKAGES, ids=PACKAGE_IDS)
def test_required_labels_and_annotations(doc: Doc) -> None:
    meta = doc.obj["metadata"]
    version = meta["labels"]["app.kubernetes.io/version"]
    assert SEMVER.match(version) and version == str(catalog()["version"])
    ann = meta["annotations"]
    assert ann["tekton.dev/pipelines.minVersion"] == "1.0.0"
    categories = [c.strip() for c in ann["tekton.dev/categories"].split(",")]
    assert set(categories) <= HUB_CATEGORIES and "Security" in categories
    tags = [t.strip() for t in ann["tekton.dev/tags"].split(",")]
    assert all(tags) and {"security", "provenance"} & set(tags)
    assert ann["tekton.dev/displayName"].strip()
    platforms = [p.strip() for p in ann["tekton.dev/platforms"].split(",")]
    assert platforms and all(PLATFORM.match(p) for p in platforms)
    assert "tekton.dev/deprecated" not in ann


@pytest.mark.parametrize("doc", PACKAGES, ids=PACKAGE_IDS)
def test_artifact_hub_annotations(doc: Doc) -> None:
    ann = doc.obj["metadata"]["annotations"]
    assert ann["artifacthub.io/category"] == "security"
    assert ann["artifacthub.io/license"] == "Apache-2.0"
    assert ann["artifacthub.io/provider"]
    maintainers = yaml.safe_load(ann["artifacthub.io/maintainers"])
    assert maintainers and all(m.get("name") and "@" in m.get("email", "") for m in maintainers), \
        "Artifact Hub drops maintainers without an email"
    links = yaml.safe_load(ann["artifacthub.io/links"])
    assert any(link["name"] == "support" and link["url"].startswith("https://") for link in links)
    changes = yaml.safe_load(ann["artifacthub.io/changes"])
    assert changes and all(c["kind"] in AH_CHANGE_KINDS and c["description"] for c in changes)


@pytest.mark.parametrize("doc", PACKAGES, ids=PACKAGE_IDS)
def test_description_is_multi_paragraph(doc: Doc) -> None:
    description = doc.obj["spec"]["description"]
    assert len(description) > 200 and "\n" in description.strip()


# ------------------------------------------------------------------------------ params, results


def _named(spec: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return list(spec.get(section) or [])


#: What users bind to (samples and tests may require a workspace the published Task keeps optional).
PUBLISHED = {d.where for d in PACKAGES}
ALL_INTERFACES: list[tuple[str, dict[str, Any]]] = [(w, s) for w, s, _ in SPECS] + [
    (d.where, d.obj["spec"]) for d in PACKAGES if d.kind == "Pipeline"]


@pytest.mark.parametrize(("where", "spec"), ALL_INTERFACES, ids=[w for w, _ in ALL_INTERFACES])
def test_params_results_workspaces_are_named_and_described(where: str, spec: dict[str, Any]) -> None:
    params = _named(spec, "params")
    names = [p["name"] for p in params]
    assert len({n.lower() for n in names}) == len(names), f"{where}: param names clash ignoring case"
    for p in params:
        assert PARAM_NAME.match(p["name"]) and UPPER_SNAKE.match(p["name"]), f"{where}: param {p['name']}"
        assert p.get("description", "").strip(), f"{where}: param {p['name']} has no description"
        assert p.get("type", "string") in ("string", "array", "object")
    for r in _named(spec, "results"):
        assert RESULT_NAME.match(r["name"]) and UPPER_SNAKE.match(r["name"]), f"{where}: result {r['name']}"
        assert r.get("description", "").strip(), f"{where}: result {r['name']} has no description"
    ws_names = [w["name"] for w in _named(spec, "workspaces")]
    assert len(set(ws_names)) == len(ws_names)
    for w in _named(spec, "workspaces"):
        assert LOWER_KEBAB.match(w["name"]), f"{where}: workspace {w['name']} is not lower-kebab"
        assert w.get("description", "").strip(), f"{where}: workspace {w['name']} has no description"
        if w["name"] in CREDENTIAL_WORKSPACES and where in PUBLISHED:
            assert w.get("optional") is True, f"{where}: credentials workspace {w['name']} must be optional"


# ------------------------------------------------------------------------------------------ steps


def _step_image(step: dict[str, Any], spec: dict[str, Any]) -> str:
    return substitute_param_defaults(step.get("image", ""), _named(spec, "params"))


@pytest.mark.parametrize(("where", "spec", "is_sa"), SPECS, ids=SPEC_IDS)
def test_steps_are_named_and_images_pinned(where: str, spec: dict[str, Any], is_sa: bool) -> None:
    steps = steps_of(spec, is_sa)
    assert steps, where
    if not is_sa:
        names = [s["name"] for s in steps]
        assert len(set(names)) == len(names) and all(DNS1123_LABEL.match(n) for n in names), where
    for step in steps:
        if "ref" in step:
            continue
        image = _step_image(step, spec)
        if "$(" in image:
            continue  # an image param without a default: the caller chooses (nothing of ours)
        assert PINNED_IMAGE.match(image), f"{where}: image {image!r} is not host/repo:tag@sha256:<64 hex>"
        assert ":latest@" not in image
        if image.startswith("ghcr.io/chainmail-dev/chainmail:"):
            assert image == catalog_image(), f"{where}: chainmail image differs from catalog.yaml"


@pytest.mark.parametrize(("where", "spec", "is_sa"), SPECS, ids=SPEC_IDS)
def test_steps_run_as_non_root(where: str, spec: dict[str, Any], is_sa: bool) -> None:
    for step in steps_of(spec, is_sa):
        if "ref" in step:
            continue
        sc = step.get("securityContext") or {}
        assert sc.get("runAsNonRoot") is True, f"{where}: {step.get('name')}"
        if step.get("image", "").startswith("$(params.CHAINMAIL_IMAGE"):
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where


FIXED_IDS = {"runAsUser", "runAsGroup", "fsGroup"}


def _security_contexts(obj: Any, path: str = "") -> Any:
    """Yield (path, securityContext) for every securityContext nested anywhere in obj."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "securityContext" and isinstance(value, dict):
                yield f"{path}.{key}", value
            yield from _security_contexts(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _security_contexts(value, f"{path}[{i}]")


def test_no_fixed_ids_so_openshift_restricted_scc_admits_us() -> None:
    """OpenShift's restricted-v2 SCC assigns UIDs/GIDs from the namespace's range and refuses fixed ones."""
    contexts = [(f"{d.rel}#{d.index}{p}", sc) for d in all_docs() for p, sc in _security_contexts(d.obj)]
    assert len(contexts) >= 10
    fixed = [(where, sorted(FIXED_IDS & set(sc))) for where, sc in contexts if FIXED_IDS & set(sc)]
    assert not fixed
    for where, sc in contexts:
        if ".containers[" not in where:  # a Pod's containers inherit the pod-level runAsNonRoot
            assert sc.get("runAsNonRoot") is True, where


_SHELL_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_SHELL_ASSIGN = re.compile(r"(?:^|[\s;])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")


@pytest.mark.parametrize(("where", "spec", "is_sa"), SPECS, ids=SPEC_IDS)
def test_scripts_are_safe(where: str, spec: dict[str, Any], is_sa: bool) -> None:
    for step in steps_of(spec, is_sa):
        script = step.get("script")
        if script is None:
            continue
        assert script.startswith("#!/bin/sh\n"), f"{where}: scripts start with a shebang"
        assert re.search(r"^set -eu?$", script, re.M), f"{where}: scripts use set -e"
        assert not SCRIPT_FORBIDDEN.search(script), f"{where}: Tekton variables in a script; use env"
        # Every variable the script reads is set in env (or by the script): catches typos that
        # set -u would only catch at run time on a cluster.
        env = {e["name"] for e in step.get("env") or []}
        local = set(_SHELL_ASSIGN.findall(script))
        used = set(_SHELL_VAR.findall(script)) - {"HOME", "PATH"}
        assert used <= env | local, f"{where}: script reads {sorted(used - env - local)} not set in env"
        unused = {e for e in env if e.startswith(("PARAM_", "WORKSPACE_", "RESULT_"))} - used
        assert not unused, f"{where}: env {sorted(unused)} is never read"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh to check script syntax")
@pytest.mark.parametrize(("where", "spec", "is_sa"), SPECS, ids=SPEC_IDS)
def test_scripts_parse(where: str, spec: dict[str, Any], is_sa: bool) -> None:
    for step in steps_of(spec, is_sa):
        if step.get("script"):
            proc = subprocess.run(["sh", "-n"], input=step["script"], text=True, capture_output=True, check=False)
            assert proc.returncode == 0, f"{where}: {proc.stderr}"


# --------------------------------------------------------------------------- declared variables

_REF = re.compile(r"\$\((params|workspaces|results)\.([A-Za-z0-9_.-]+?)(?:\.(path|bound|claim|volume))?\)")
_REF_ARRAY = re.compile(r"\$\(params\.([A-Za-z0-9_-]+)\[\*\]\)")


def _declared(spec: dict[str, Any]) -> dict[str, set[str]]:
    return {section: {x["name"] for x in _named(spec, section)} for section in ("params", "workspaces", "results")}


@pytest.mark.parametrize(("where", "spec", "is_sa"), SPECS, ids=SPEC_IDS)
def test_task_variables_are_declared(where: str, spec: dict[str, Any], is_sa: bool) -> None:
    declared = _declared(spec)
    body = {k: v for k, v in spec.items() if k not in ("params", "workspaces", "results", "description")}
    for text in walk_strings(body):
        for section, name, _ in _REF.findall(text):
            assert name in declared[section], f"{where}: $({section}.{name}) is not declared"
        for name in _REF_ARRAY.findall(text):
            assert name in declared["params"], f"{where}: $(params.{name}[*]) is not declared"
    for text in walk_strings(body):
        for name in re.findall(r"\$\(step\.results\.([A-Za-z0-9_.-]+)\.path\)", text):
            assert is_sa and name in declared["results"], f"{where}: step result {name}"


@pytest.mark.parametrize("doc", [d for d in PACKAGES if d.kind == "StepAction"],
                         ids=[d.where for d in PACKAGES if d.kind == "StepAction"])
def test_stepaction_restrictions(doc: Doc) -> None:
    spec = doc.obj["spec"]
    assert "$(params." not in spec.get("script", ""), "the webhook rejects param substitution in scripts"
    assert not ("script" in spec and "command" in spec)
    for mount in spec.get("volumeMounts") or []:
        assert re.fullmatch(r"\$\(params\.[A-Za-z0-9_-]+\)", mount["name"])


@pytest.mark.parametrize("doc", [d for d in PACKAGES if d.kind == "Pipeline"],
                         ids=[d.where for d in PACKAGES if d.kind == "Pipeline"])
def test_pipeline_references_are_declared(doc: Doc) -> None:
    spec = doc.obj["spec"]
    declared = _declared(spec)
    tasks = {t["name"] for t in (spec.get("tasks") or []) + (spec.get("finally") or [])}
    for section in ("tasks", "finally"):
        for task in spec.get(section) or []:
            assert DNS1123_LABEL.match(task["name"])
            for after in task.get("runAfter") or []:
                assert after in tasks and section == "tasks"
            for binding in task.get("workspaces") or []:
                assert binding["workspace"] in declared["workspaces"], f"{doc.where}: {binding}"
            for text in walk_strings(task.get("params") or []):
                for sect, name, _ in _REF.findall(text):
                    assert sect == "params" and name in declared["params"], f"{doc.where}: {text}"
                for pt in re.findall(r"\$\(tasks\.([a-z0-9-]+)\.", text):
                    assert pt in tasks
            if "taskSpec" in task:
                passed = {p["name"] for p in task.get("params") or []}
                needed = {p["name"] for p in task["taskSpec"].get("params") or [] if "default" not in p}
                assert needed <= passed, f"{doc.where}: {task['name']} misses params {needed - passed}"
    for result in spec.get("results") or []:
        for pt in re.findall(r"\$\(tasks\.([a-z0-9-]+)\.results\.", result["value"]):
            assert pt in tasks


def test_finally_signers_take_only_context_variables() -> None:
    """conventions §8.7: never $(tasks.X.results.Y) in the signer (it would be skipped on failure)."""
    checked = 0
    for doc in [d for d in PACKAGES if d.kind == "Pipeline"]:
        for task in doc.obj["spec"].get("finally") or []:
            if (task.get("taskRef") or {}).get("name") != "chainmail-finally":
                continue
            params = {p["name"]: p["value"] for p in task["params"]}
            assert params["PIPELINERUN_NAME"] == "$(context.pipelineRun.name)"
            assert params["PIPELINERUN_NAMESPACE"] == "$(context.pipelineRun.namespace)"
            assert params["PIPELINERUN_UID"] == "$(context.pipelineRun.uid)"
            assert not any("$(tasks." in v for v in walk_strings(task)), doc.where
            assert "when" not in task and "runAfter" not in task
            checked += 1
    assert checked == 1


def test_pipeline_child_workspaces_and_results_match_the_tasks() -> None:
    """build-and-sign passes what the pinned git-clone/kaniko Tasks and chainmail-finally expect."""
    doc = next(d for d in PACKAGES if d.obj["metadata"]["name"] == "build-and-sign")
    by_name = {t["name"]: t for t in doc.obj["spec"]["tasks"] + doc.obj["spec"]["finally"]}
    assert [w["name"] for w in by_name["clone"]["workspaces"]] == ["output"]
    assert {w["name"] for w in by_name["build"]["workspaces"]} == {"source", "dockerconfig"}
    for task in ("clone", "build"):
        ref = by_name[task]["taskRef"]
        assert ref["resolver"] == "git"
        revision = next(p["value"] for p in ref["params"] if p["name"] == "revision")
        assert re.fullmatch(r"[0-9a-f]{40}", revision), "pin remote Tasks to a commit, not a movable tag"
    finally_task = next(d for d in PACKAGES if d.obj["metadata"]["name"] == "chainmail-finally")
    declared = {p["name"] for p in finally_task.obj["spec"]["params"]}
    assert {p["name"] for p in by_name["sign"]["params"]} <= declared
    ws = {w["name"] for w in finally_task.obj["spec"]["workspaces"]}
    assert {w["name"] for w in by_name["sign"]["workspaces"]} <= ws
    results = {r["name"] for r in doc.obj["spec"]["results"]}
    assert results == {"IMAGE_URL", "IMAGE_DIGEST"}, "the Chains type hints for the built image"
