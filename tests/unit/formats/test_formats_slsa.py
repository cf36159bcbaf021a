"""Details of the SLSA predicates that the shared conformance cases do not reach."""

from __future__ import annotations

import base64
import json
from typing import Any

from formats_runs import DIGEST, DIGEST2, build_pipelinerun, build_taskrun, child

from chainmail.config import Config
from chainmail.formats import get_formatter
from chainmail.formats._tekton import decode_run
from chainmail.models import RunSnapshot

REF = {"uri": "git+https://github.com/acme/catalog", "digest": {"sha1": "1" * 40}, "entryPoint": "task.yaml"}


def statement(fmt: str, snap: RunSnapshot, **config: str) -> dict[str, Any]:
    return get_formatter(fmt, Config.from_mapping(config)).statement(snap)


def test_builder_id_and_build_type_are_honoured() -> None:
    snap = RunSnapshot(build_taskrun(labels={"team": "a"}))
    for fmt in ("slsa/v1", "slsa/v2alpha3", "slsa/v2alpha4"):
        doc = statement(fmt, snap, **{"builder.id": "https://ci.example/builder"})
        pred = doc["predicate"]
        builder = pred["builder"] if fmt == "slsa/v1" else pred["runDetails"]["builder"]
        assert builder == {"id": "https://ci.example/builder"}
    doc = statement(
        "slsa/v2alpha4", snap, **{"builddefinition.buildtype": "https://tekton.dev/chains/v2/slsa-tekton"}
    )
    definition = doc["predicate"]["buildDefinition"]
    assert definition["buildType"] == "https://tekton.dev/chains/v2/slsa-tekton"
    assert definition["internalParameters"] == {"annotations": None, "labels": {"team": "a"}}


def test_v1_pipeline_build_config() -> None:
    kids = [child("clone"), child("build"), child("test"), child("notify")]
    kids[1]["status"]["taskSpec"]["steps"].append({"name": "extra"})  # steps no longer match the status
    tasks = [
        {"name": "clone", "taskRef": {"name": "git-clone", "kind": "Task"}},
        {"name": "build", "params": [{"name": "rev", "value": "$(tasks.clone.results.commit)"}]},
        {
            "name": "test",
            "runAfter": ["clone"],
            "params": [{"name": "x", "value": ["$(tasks.build.results.a)", "$(tasks.clone.results.b)"]}],
            "when": [{"input": "$(tasks.build.results.ok)", "operator": "in", "values": ["true"]}],
        },
    ]
    run = build_pipelinerun(kids, tasks=tasks, finally_=[{"name": "notify"}])
    config = statement("slsa/v1", RunSnapshot(run, kids))["predicate"]["buildConfig"]
    tasks_out = config["tasks"]
    assert [t["name"] for t in tasks_out] == ["clone", "test", "notify"]  # build skipped: step mismatch
    clone, test, notify = tasks_out
    assert clone["ref"] == {"kind": "Task", "name": "git-clone"}
    assert "after" not in clone
    assert test["ref"] == {}
    assert test["after"] == ["clone", "build"]
    assert notify["after"] == ["test"]  # a finally task without runAfter follows the last task
    assert clone["serviceAccountName"] == "bot"
    assert clone["status"] == "Succeeded"
    assert clone["startedOn"] == "2024-02-09T09:14:00Z"
    assert clone["steps"] == [
        {
            "annotations": None,
            "arguments": None,
            "entryPoint": "make",
            "environment": {"container": "main", "image": "oci://gcr.io/tools/build@sha256:" + "c" * 64},
        }
    ]


def test_v1_git_material_quirk() -> None:
    # Chains adds "git+" and ".git" before checking the URL, so a commit alone still yields a material.
    run = build_taskrun(spec={"params": [{"name": "CHAINS-GIT_COMMIT", "value": "abc"}]})
    mats = statement("slsa/v1", RunSnapshot(run))["predicate"]["materials"]
    assert mats[-1] == {"digest": {"sha1": "abc"}, "uri": "git+.git"}


def test_v2alpha4_byproducts_and_subjects() -> None:
    results = [
        {"name": "IMAGE_URL", "value": "gcr.io/acme/app"},
        {"name": "IMAGE_DIGEST", "value": DIGEST},
        {
            "name": "out-ARTIFACT_OUTPUTS",
            "value": {"uri": "gs://b/app.tgz", "digest": DIGEST2, "isBuildArtifact": "true"},
        },
        {"name": "report-ARTIFACT_OUTPUTS", "value": {"uri": "gs://b/report", "digest": DIGEST2}},
        {"name": "bad-ARTIFACT_OUTPUTS", "value": "not-an-object"},
        {"name": "summary", "value": "ok"},
    ]
    steps = [
        {
            "name": "main",
            "imageID": "gcr.io/tools/build@" + DIGEST,
            "results": [
                {
                    "name": "step-ARTIFACT_OUTPUTS",
                    "value": {"uri": "gs://b/s", "digest": DIGEST, "isBuildArtifact": "true"},
                }
            ],
        }
    ]
    kid = child("build", results=results, steps=steps)
    doc = statement("slsa/v2alpha4", RunSnapshot(kid))
    names = [b["name"] for b in doc["predicate"]["runDetails"]["byproducts"]]
    assert names == [
        "taskRunResults/release-build/report-ARTIFACT_OUTPUTS",
        "taskRunResults/release-build/summary",
    ]
    assert sorted(s["name"] for s in doc["subject"]) == ["gcr.io/acme/app", "gs://b/app.tgz", "gs://b/s"]

    run = build_pipelinerun([kid], results=[{"name": "note", "value": "x"}])
    shallow = statement("slsa/v2alpha4", RunSnapshot(run, [kid]))
    assert [b["name"] for b in shallow["predicate"]["runDetails"]["byproducts"]] == [
        "pipelineRunResults/release/note"
    ]
    assert "subject" not in shallow
    deep = statement(
        "slsa/v2alpha4", RunSnapshot(run, [kid]), **{"artifacts.pipelinerun.enable-deep-inspection": "true"}
    )
    assert [b["name"] for b in deep["predicate"]["runDetails"]["byproducts"]] == [
        "pipelineRunResults/release/note",
        *names,
    ]
    assert sorted(s["name"] for s in deep["subject"]) == ["gcr.io/acme/app", "gs://b/app.tgz", "gs://b/s"]


def test_remote_step_actions_and_dedup() -> None:
    steps = [
        {"name": "fetch", "imageID": "gcr.io/tools/git@" + DIGEST, "provenance": {"refSource": REF}},
        {"name": "build", "imageID": "gcr.io/tools/git@" + DIGEST},
    ]
    run = build_taskrun(steps=steps, task_spec={"steps": [{"name": "fetch"}, {"name": "build"}]})
    run["status"]["provenance"] = {"refSource": REF}
    deps = statement("slsa/v2alpha4", RunSnapshot(run))["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert deps == [
        {"digest": REF["digest"], "name": "task", "uri": REF["uri"]},
        {"digest": {"sha256": "a" * 64}, "uri": "oci://gcr.io/tools/git"},
        {"digest": REF["digest"], "name": "stepAction/fetch", "uri": REF["uri"]},
    ]
    v2alpha3 = statement("slsa/v2alpha3", RunSnapshot(run))["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert [d.get("name") for d in v2alpha3] == ["task", None]


def test_remote_resolver_build_config_source() -> None:
    run = build_taskrun(spec={"taskRef": {"resolver": "git", "params": [{"name": "url", "value": "u"}]}})
    run["status"]["provenance"] = {"refSource": REF}
    params = statement("slsa/v2alpha3", RunSnapshot(run))["predicate"]["buildDefinition"][
        "externalParameters"
    ]
    assert params["buildConfigSource"] == {
        "path": "task.yaml",
        "ref": "sha1:" + "1" * 40,
        "repository": REF["uri"],
    }
    run["spec"]["taskRef"]["resolver"] = "Cluster"
    params = statement("slsa/v2alpha3", RunSnapshot(run))["predicate"]["buildDefinition"][
        "externalParameters"
    ]
    assert "buildConfigSource" not in params


def test_slsa_tekton_pipeline_task_content() -> None:
    kids = [child("build"), child("test")]
    for kid in kids:
        kid["status"]["provenance"] = {"refSource": REF}
    run = build_pipelinerun(kids)
    doc = statement(
        "slsa/v2alpha4",
        RunSnapshot(run, kids),
        **{"builddefinition.buildtype": "https://tekton.dev/chains/v2/slsa-tekton"},
    )
    deps = [
        d
        for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d.get("name") == "pipelineTask"
    ]
    assert len(deps) == 2  # the same refSource twice is kept: the content differs
    content = base64.b64decode(deps[0]["content"])
    # Go's field order; no apiVersion/kind, as in the controller's informer cache
    assert content.startswith(b'{"metadata":{"name":"release-build","namespace":"ci","uid":"uid-build"')
    expected = decode_run(kids[0], "TaskRun")
    del expected["kind"], expected["apiVersion"]
    assert json.loads(content) == expected
    assert deps[0]["uri"] == REF["uri"]
    internal = doc["predicate"]["buildDefinition"]["internalParameters"]
    assert internal == {"annotations": None, "labels": None}

    plain = statement("slsa/v2alpha4", RunSnapshot(run, kids))
    tasks = [
        d
        for d in plain["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d.get("name") == "pipelineTask"
    ]
    assert tasks == [
        {"digest": REF["digest"], "name": "pipelineTask", "uri": REF["uri"]}
    ]  # duplicates dropped
