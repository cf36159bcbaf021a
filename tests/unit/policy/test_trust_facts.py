"""Facts split by trust: facts.platform (what Tekton and the signer vouch for) vs facts.build."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chainmail.policy import evaluate, parse_policy, policy_inputs, signed_run_identity
from chainmail.policy.dockerfile import dockerfile_evidence
from chainmail.policy.refs import branch_from_params

CATALOG = "https://github.com/tektoncd/catalog"
CATALOG_COMMIT = "4df486f198c3c2616ab129186fb30a74f580b5a1"


def facts(standin, statement: dict[str, Any]) -> dict[str, Any]:
    return policy_inputs(standin("img@sha256:1", statement))["facts"]


def passes(standin, statement: dict[str, Any], expression: str) -> bool:
    policy = parse_policy("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: t}\nspec:\n"
                          f"  rules:\n    - name: r\n      expression: {json.dumps(expression)}\n      message: m\n")
    return evaluate(policy, [standin("img@sha256:1", statement)]).passed


# -- platform facts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["v2alpha3", "v2alpha4"])
def test_platform_source_is_the_git_resolvers_answer(conformance, standin, fmt: str) -> None:
    platform = facts(standin, conformance("taskrun-remote-resolver", fmt))["platform"]
    assert platform["source"] == {"repository": CATALOG, "host": "github.com", "org": "tektoncd",
                                  "path": "tektoncd/catalog", "uri": "git+https://github.com/tektoncd/catalog.git",
                                  "commit": CATALOG_COMMIT, "ref": "main",
                                  "entryPoint": "task/gcloud/0.3/gcloud.yaml"}
    assert platform["definition"]["resolver"] == "git" and platform["definition"]["pinned"] is True
    assert platform["builder"] == "https://tekton.dev/chains/v2"
    assert platform["run"]["uid"] and platform["run"]["kind"] == "TaskRun"


def test_slsa_v02_records_the_commit_but_not_the_revision(conformance, standin) -> None:
    source = facts(standin, conformance("pipelinerun-remote-resolver", "v1"))["platform"]["source"]
    assert (source["repository"], source["commit"], source["ref"]) == (CATALOG, CATALOG_COMMIT, "")


@pytest.mark.parametrize("fmt", ["v1", "v2alpha4"])
def test_a_short_or_missing_commit_is_not_a_platform_source(conformance, standin, fmt: str) -> None:
    # taskrun-basic's refSource is git+https://github.com/test at sha1 "ab123" (and no resolver in v1.0)
    platform = facts(standin, conformance("taskrun-basic", fmt))["platform"]
    assert platform["source"]["repository"] == "" and platform["definition"]["pinned"] is False


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda bcs, ref: bcs.update(repository="git+https://github.com/acme/../mallory/app"), "dot-dot URL"),
    (lambda bcs, ref: bcs.update(repository="git+https://github.com/acme/%2e%2e/mallory/app"), "escaped dots"),
    (lambda bcs, ref: bcs.update(ref="sha1:4df486f"), "short commit"),
    (lambda bcs, ref: bcs.update(ref="sha256:" + "a" * 64), "not a git commit"),
    (lambda bcs, ref: ref.update(resolver="bundles"), "another resolver"),
    (lambda bcs, ref: bcs.update(repository="https://github.com/tektoncd/catalog"), "no git+ URI"),
])
def test_platform_source_fails_closed(conformance, standin, mutate, why: str) -> None:
    statement = conformance("taskrun-remote-resolver", "v2alpha4")
    external = statement["predicate"]["buildDefinition"]["externalParameters"]
    mutate(external["buildConfigSource"], external["runSpec"]["taskRef"])
    assert facts(standin, statement)["platform"]["source"]["repository"] == "", why


def test_cluster_resolver_definition_is_not_remote(conformance, standin) -> None:
    statement = conformance("taskrun-four", "v1")
    statement["predicate"]["invocation"]["configSource"] = {
        "uri": "/apis/tekton.dev/v1/namespaces/ci/tasks/build@uid", "digest": {"sha256": "a" * 64}}
    platform = facts(standin, statement)["platform"]
    assert platform["definition"]["remote"] is False and platform["source"]["repository"] == ""


# -- build facts --------------------------------------------------------------------------------------


def test_chains_git_source_is_a_build_fact(conformance, standin) -> None:
    split = facts(standin, conformance("taskrun-basic", "v2alpha4"))
    assert split["build"]["source"]["repository"] == "https://git.test.com"
    assert split["build"]["source"]["origin"] == "materials"
    assert split["build"]["params"]["CHAINS-GIT_URL"] == "https://git.test.com"
    assert "source" not in policy_inputs(standin("img@sha256:1", conformance("taskrun-basic", "v2alpha4")))


def test_build_results_are_build_facts(conformance, standin) -> None:
    results = facts(standin, conformance("taskrun-basic", "v2alpha3"))["build"]["results"]
    assert results["taskRunResults/IMAGE_URL"] == "gcr.io/my/image"


@pytest.mark.parametrize(("params", "value", "problem"), [
    ({"revision": "main"}, "main", ""),
    ({"revision": "main", "branch": "main"}, "main", ""),
    ({"GIT_BRANCH": "refs/heads/main"}, "refs/heads/main", ""),
    ({}, "", ""),
    ({"revision": ["feature"], "branch": "main"}, "", "param revision is a list, not a branch name"),
    ({"revision": {"a": "b"}, "branch": "main"}, "", "param revision is a map, not a branch name"),
    ({"revision": "", "branch": "main"}, "", "param revision is empty, not a branch name"),
    ({"revision": None, "branch": "main"}, "", "param revision is given twice, not a branch name"),
    ({"revision": "feature", "CHAINS-GIT_REF": "main"}, "", "params revision, CHAINS-GIT_REF name different branches"),
    ({"branch": "feature", "git-revision": "main"}, "", "params git-revision, branch name different branches"),
    ({"EVIL_REF": "main"}, "", ""),            # names outside the fixed list never count
    ({"my-branch": "main", "IMAGE_REF": "x"}, "", ""),
])
def test_branch_params_have_a_fixed_precedence(params: dict[str, Any], value: str, problem: str) -> None:
    fact = branch_from_params(params)
    assert (fact.value, fact.problem) == (value, problem)


def test_a_duplicated_param_is_not_resolved_by_order(conformance, standin) -> None:
    statement = conformance("taskrun-basic", "v2alpha4")
    spec = statement["predicate"]["buildDefinition"]["externalParameters"]["runSpec"]
    spec["params"] += [{"name": "revision", "value": "feature"}, {"name": "revision", "value": "main"}]
    build = facts(standin, statement)["build"]
    assert build["ref"] == "" and build["refProblem"] == "param revision is given twice, not a branch name"
    assert not passes(standin, statement, "facts.build.ref == 'main'")


@pytest.mark.parametrize(("params", "evidence"), [
    ([("", "DOCKERFILE", "./Dockerfile"), ("", "CONTEXT", "."), ("", "EXTRA_ARGS", ["--no-push"])], []),
    ([("", "BUILD_EXTRA_ARGS", "--file ./Dockerfile --build-arg A=b")], []),
    ([("", "DOCKERFILE", "evil/Dockerfile")], ["param DOCKERFILE=evil/Dockerfile"]),
    ([("", "dockerfile-location", "x/Dockerfile")], ["param dockerfile-location=x/Dockerfile"]),
    ([("", "path-context", "sub")], ["param path-context=sub"]),
    ([("", "PATH_CONTEXT", "sub")], ["param PATH_CONTEXT=sub"]),
    ([("", "BUILD_CONTEXT", "/tmp")], ["param BUILD_CONTEXT=/tmp"]),
    ([("", "DOCKERFILE", ["a", "b"])], ["param DOCKERFILE is not a string"]),
    ([("", "BUILD_EXTRA_ARGS", "--file evil.Dockerfile")], ["param BUILD_EXTRA_ARGS: --file evil.Dockerfile"]),
    ([("", "BUILD_EXTRA_ARGS", "--file=evil.Dockerfile")], ["param BUILD_EXTRA_ARGS: --file=evil.Dockerfile"]),
    ([("", "BUILD_EXTRA_ARGS", "-f evil")], ["param BUILD_EXTRA_ARGS: -f evil"]),
    ([("", "BUILD_EXTRA_ARGS", "-fevil")], ["param BUILD_EXTRA_ARGS: -fevil"]),
    ([("", "BUILD_EXTRA_ARGS", "-qf evil")], ["param BUILD_EXTRA_ARGS: -qf evil"]),
    ([("", "BUILD_EXTRA_ARGS", "--layers -f")], ["param BUILD_EXTRA_ARGS: -f without a value"]),
    ([("", "EXTRA_ARGS", ["--dockerfile=evil"])], ["param EXTRA_ARGS: --dockerfile=evil"]),
    ([("", "EXTRA_ARGS", ["--dockerfile", "evil"])], ["param EXTRA_ARGS: --dockerfile evil"]),
    ([("", "EXTRA_ARGS", ["--context=dir:///evil"])], ["param EXTRA_ARGS: --context=dir:///evil"]),
    ([("", "EXTRA_ARGS", ["-c", "sub"])], ["param EXTRA_ARGS: -c sub"]),
    ([("", "extra-args", "-dockerfile evil")], ["param extra-args: -dockerfile evil"]),
    ([("", "BUILD_EXTRA_ARGS", "--build-context x=../y")], ["param BUILD_EXTRA_ARGS: --build-context x=../y"]),
    ([("", "BUILD_EXTRA_ARGS", "--file 'unbalanced")], [
        "param BUILD_EXTRA_ARGS: cannot be parsed (\"--file 'unbalanced\")"]),
    ([("", "EXTRA_ARGS", [["--file"]])], ["param EXTRA_ARGS: holds something other than strings"]),
    ([("task build: ", "DOCKERFILE", "x")], ["task build: param DOCKERFILE=x"]),
])
def test_dockerfile_override_evidence(params: list[tuple[str, str, Any]], evidence: list[str]) -> None:
    assert dockerfile_evidence(params) == evidence


def test_dockerfile_override_in_a_pipeline_task(conformance, standin) -> None:
    statement = conformance("pipelinerun-basic", "v1")
    task = statement["predicate"]["buildConfig"]["tasks"][0]
    task.setdefault("invocation", {}).setdefault("parameters", {})["BUILD_EXTRA_ARGS"] = "-f ../evil"
    build = facts(standin, statement)["build"]
    assert build["dockerfileOverridden"] is True
    assert build["dockerfileEvidence"] == [f"task {task['name']}: param BUILD_EXTRA_ARGS: -f ../evil"]


# -- the run's identity -------------------------------------------------------------------------------


def tekton_pipelinerun(uid: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    deps = [{"name": "pipelineTask", "uri": "git+https://github.com/acme/app.git", "digest": {"sha1": "a" * 40},
             "content": base64.b64encode(json.dumps(c).encode()).decode()} for c in children]
    return {"buildDefinition": {"buildType": "https://tekton.dev/chains/v2/slsa-tekton",
                                "externalParameters": {"runSpec": {"pipelineRef": {"name": "release"}}},
                                "resolvedDependencies": deps},
            "runDetails": {"builder": {"id": "https://tekton.dev/chains/v2"}, "metadata": {"invocationId": uid}}}


def child(namespace: str, owner: str, owner_uid: str, *, controller: bool = True) -> dict[str, Any]:
    md: dict[str, Any] = {"name": f"{owner}-build", "namespace": namespace,
                          "labels": {"tekton.dev/pipelineRun": owner, "tekton.dev/pipelineRunUID": owner_uid},
                          "ownerReferences": [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": owner,
                                               "uid": owner_uid, "controller": controller}]}
    return {"metadata": md, "spec": {}, "status": {}}


@pytest.mark.parametrize(("predicate", "identity"), [
    (tekton_pipelinerun("u1", [child("prod", "release", "u1")]), {"name": "release", "namespace": "prod", "uid": "u1"}),
    (tekton_pipelinerun("u1", [child("prod", "release", "u1", controller=False)]),
     {"name": "", "namespace": "", "uid": "u1"}),
    (tekton_pipelinerun("u1", [child("prod", "release", "other-uid")]), {"name": "", "namespace": "", "uid": "u1"}),
    (tekton_pipelinerun("u1", [child("prod", "release", "u1"), child("demo", "release", "u1")]),
     {"name": "", "namespace": "", "uid": "u1"}),
    (tekton_pipelinerun("", [child("prod", "release", "")]), {"name": "", "namespace": "", "uid": ""}),
    ({"runDetails": {"metadata": {"invocationId": "u2"}}}, {"name": "", "namespace": "", "uid": "u2"}),
    ({"metadata": {"buildStartedOn": "2026-01-01T00:00:00Z"}}, {"name": "", "namespace": "", "uid": ""}),
])
def test_run_identity_comes_from_the_signed_statement(predicate: dict[str, Any], identity: dict[str, str]) -> None:
    assert signed_run_identity(predicate) == identity


def test_run_namespace_rule_uses_the_signed_identity(standin) -> None:
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
                 "subject": [], "predicate": tekton_pipelinerun("u1", [child("prod", "release", "u1")])}
    assert passes(standin, statement, "run.namespace == 'prod' && facts.platform.run.name == 'release'")
    item = standin("pipelinerun/prod/release", statement)
    item.statement["predicate"] = tekton_pipelinerun("u1", [child("demo", "build-app", "u1")])
    assert policy_inputs(item)["namespace"] == "demo"  # the reference it was found under does not count


def test_verifications_signed_run_is_preferred(standin) -> None:
    from types import SimpleNamespace

    statement = {"predicate": tekton_pipelinerun("u1", [child("prod", "release", "u1")])}
    item = standin("pipelinerun/x/y", statement)
    item.signed_run = SimpleNamespace(kind="PipelineRun", namespace="", name="", uid="u1", parent_uid="")
    assert policy_inputs(item)["run"]["namespace"] == ""  # verification found no binding identity: none here

# -- CEL helpers --------------------------------------------------------------------------------------


def test_normalize_repo_cel_helper(conformance, standin) -> None:
    statement = conformance("taskrun-basic", "v2alpha4")
    assert passes(standin, statement, "normalizeRepo('git@GitHub.com:acme/app.git') == 'https://github.com/acme/app'")
    assert passes(standin, statement, "normalizeRepo('https://github.com/acme/../mallory/app') == ''")
    assert not passes(standin, statement, "normalizeRepo(1) == ''")


def test_org_recipe_rejects_dot_dot(conformance, standin) -> None:
    statement = conformance("taskrun-remote-resolver", "v2alpha4")
    rule = "facts.platform.source.host == 'github.com' && facts.platform.source.org == 'tektoncd'"
    assert passes(standin, statement, rule)
    bcs = statement["predicate"]["buildDefinition"]["externalParameters"]["buildConfigSource"]
    bcs["repository"] = "git+https://github.com/tektoncd/../mallory/catalog.git"
    assert not passes(standin, statement, rule)
    assert not passes(standin, statement, "facts.platform.source.repository.startsWith('https://github.com/tektoncd/')")


def test_timestamps_inside_facts_are_cel_timestamps(conformance, standin) -> None:
    statement = conformance("taskrun-basic", "v2alpha4")
    assert passes(standin, statement, "facts.platform.finishedOn - facts.platform.startedOn == duration('15s')")
