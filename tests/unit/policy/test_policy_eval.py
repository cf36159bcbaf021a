"""Evaluating policies on genuine Chains provenance (SLSA v0.2 and v1.0) and on tampered copies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from chainmail.policy import (
    SLSA_V1,
    PolicyResult,
    evaluate,
    load_policy,
    normalize_repository,
    policy_inputs,
    run_of_ref,
    statement_facts,
)

ACME = "https://github.com/acme/app"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHAINS_BUILDER = "https://tekton.dev/chains/v2"


def retarget_source(statement: dict[str, Any], repo: str = ACME, commit: str = COMMIT,
                    branch: str | None = "main") -> dict[str, Any]:
    """Point a Chains statement's CHAINS-GIT source at another repo/commit, in either SLSA version."""
    predicate = statement["predicate"]
    if "invocation" in predicate:
        params = predicate["invocation"]["parameters"]
        params.update({"CHAINS-GIT_URL": repo, "CHAINS-GIT_COMMIT": commit})
        if branch is not None:
            params["revision"] = branch
        for m in predicate["materials"]:
            if m["uri"].startswith("git+"):
                m.update(uri=f"git+{repo}.git", digest={"sha1": commit})
    else:
        spec = predicate["buildDefinition"]["externalParameters"]["runSpec"]
        for p in spec["params"]:
            if p["name"] == "CHAINS-GIT_URL":
                p["value"] = repo
            if p["name"] == "CHAINS-GIT_COMMIT":
                p["value"] = commit
        if branch is not None:
            spec["params"].append({"name": "revision", "value": branch})
        for d in predicate["buildDefinition"]["resolvedDependencies"]:
            if d.get("name") == "inputs/result" and d["uri"].startswith("git+"):
                d.update(uri=f"git+{repo}.git", digest={"sha1": commit})
    return statement


RELEASE_KEY = "SHA256:yHmPkfSLBAYYd1fCfqLVYNH+Bo0NtuhBak9kXqPO7Po"


def resolved_from(statement: dict[str, Any], repo: str = ACME, commit: str = COMMIT,
                  revision: str | None = "main") -> dict[str, Any]:
    """Say the run's Task came from ``repo`` at ``commit`` through the git resolver (``revision``), as the
    platform records it: v0.2 ``invocation.configSource``, v1.0 ``buildConfigSource`` + the taskRef params."""
    predicate = statement["predicate"]
    if "invocation" in predicate:
        predicate["invocation"]["configSource"] = {"uri": f"git+{repo}.git", "digest": {"sha1": commit},
                                                   "entryPoint": "tekton/build.yaml"}
        return statement
    external = predicate["buildDefinition"]["externalParameters"]
    external["buildConfigSource"] = {"repository": f"git+{repo}.git", "ref": f"sha1:{commit}",
                                     "path": "tekton/build.yaml"}
    params = [{"name": "url", "value": f"{repo}.git"}, {"name": "pathInRepo", "value": "tekton/build.yaml"}]
    if revision is not None:
        params.append({"name": "revision", "value": revision})
    external["runSpec"]["taskRef"] = {"resolver": "git", "params": params}
    return statement


def unpin_first_step_image(statement: dict[str, Any]) -> dict[str, Any]:
    predicate = statement["predicate"]
    if "buildConfig" in predicate:
        predicate["buildConfig"]["steps"][1]["environment"]["image"] = "oci://gcr.io/test2/test2:latest"
    else:
        dep = next(d for d in predicate["buildDefinition"]["resolvedDependencies"]
                   if not d.get("name") and d["uri"].startswith("oci://"))
        dep.pop("digest")
    return statement


def only(result: PolicyResult, rule: str) -> list[Any]:
    return [r for r in result.results if r.rule == rule]


# --------------------------------------------------------------------------- genuine provenance passes


def test_chains_run_fixture_passes_step_images_and_dockerfile(examples: Path, chains_run_verified) -> None:
    for name in ("step-images-pinned", "no-dockerfile-override"):
        result = evaluate(load_policy(examples / f"{name}.yaml"), [chains_run_verified])
        assert result.passed, result.to_text()
        assert all(r.artifact == chains_run_verified.ref for r in result.results)


def test_chains_run_fixture_passes_a_builder_policy(write_policy, chains_run_verified) -> None:
    policy = load_policy(write_policy(f"""
        - name: builder
          expression: builder == '{CHAINS_BUILDER}'
          message: built by Chains
        - name: taskrun
          expression: buildType == 'tekton.dev/v1/TaskRun' && run.kind == 'TaskRun'
          message: a TaskRun
        - name: subject-is-the-image
          expression: subject.exists(s, image.digest == 'sha256:' + s.digest.sha256)
          message: the statement names the image
        - name: times
          expression: startedOn < finishedOn && finishedOn - startedOn == duration('10s')
          message: build times recorded
        - name: key
          expression: signer.keyId == 'SHA256:test-key'
          message: signed by the test key
    """, spec_extra="predicateTypes: [slsaprovenance]\n"))
    result = evaluate(policy, [chains_run_verified])
    assert result.passed, result.to_text()
    assert len(result.results) == 6


@pytest.mark.parametrize("fmt", ["v2alpha3", "v2alpha4"])
def test_built_by_builder_from_main_accepts_genuine_provenance(examples: Path, conformance, standin,
                                                                fmt: str) -> None:
    statement = resolved_from(conformance("taskrun-remote-resolver", fmt))
    item = standin("img@sha256:1", statement, key_id=RELEASE_KEY)
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"), [item])
    assert result.passed, result.to_text()


def test_built_by_builder_from_main_fails_closed_on_slsa_v02(examples: Path, conformance, standin) -> None:
    """SLSA v0.2 records the resolved commit but not the revision the resolver fetched."""
    statement = resolved_from(conformance("taskrun-remote-resolver", "v1"))
    item = standin("img@sha256:1", statement, key_id=RELEASE_KEY)
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"), [item])
    assert [r.rule for r in result.failures] == ["main-branch"]


def test_one_policy_accepts_every_conformance_payload(conformance, conformance_cases, standin, write_policy) -> None:
    policy = load_policy(write_policy(f"""
        - name: builder
          expression: builder in ['{CHAINS_BUILDER}', 'https://example.com/builders/tekton-prod']
          message: a known builder
        - name: pinned
          expression: stepImages.all(i, i.matches('@sha256:[0-9a-f]{{64}}$'))
          message: pinned step images
        - name: kind
          expression: run.kind in ['TaskRun', 'PipelineRun']
          message: a Tekton run
        - name: times
          expression: startedOn == null || finishedOn == null || startedOn <= finishedOn
          message: consistent times
    """))
    verified = [standin(f"{case}:{fmt}", conformance(case, fmt)) for case in conformance_cases
                for fmt in ("v1", "v2alpha3", "v2alpha4")]
    result = evaluate(policy, verified)
    assert result.passed, result.to_text()
    assert len(result.results) == 4 * 3 * len(conformance_cases)


def test_normalised_helpers_agree_across_slsa_versions(conformance, conformance_cases) -> None:
    for case in conformance_cases:
        v02, v1a3, v1a4 = (statement_facts(conformance(case, f)) for f in ("v1", "v2alpha3", "v2alpha4"))
        assert v02["builder"] == v1a3["builder"] == v1a4["builder"], case
        assert v02["run"]["kind"] == v1a3["run"]["kind"] == v1a4["run"]["kind"], case
        assert v02["startedOn"] == v1a3["startedOn"] == v1a4["startedOn"], case
        assert set(v02["stepImages"]) == set(v1a3["stepImages"]) == set(v1a4["stepImages"]), case
        pick = ("repository", "commit")
        assert [v02["source"][k] for k in pick] == [v1a3["source"][k] for k in pick], case
        if case not in ("taskrun-four", "taskrun-second"):  # v2alpha4 also reads StepAction results
            assert [v1a3["source"][k] for k in pick] == [v1a4["source"][k] for k in pick], case


def test_source_prefers_the_git_input(conformance) -> None:
    facts = statement_facts(conformance("pipelinerun-basic-deep", "v2alpha3"))
    # deep inspection lists the children's CHAINS-GIT inputs first; the pipeline's own comes last
    assert facts["source"] == {"repository": "https://git.test.com", "uri": "git+https://git.test.com.git",
                               "commit": "abcd", "ref": "", "origin": "materials"}
    assert [s["commit"] for s in facts["sources"]] == ["abcd", "taskrun", "sha:taskdefault"]
    remote = statement_facts(conformance("taskrun-remote-resolver", "v2alpha4"))
    assert remote["source"]["origin"] == "configSource"
    assert remote["configSource"]["ref"] == "main"
    assert remote["source"]["repository"] == "https://github.com/tektoncd/catalog"


@pytest.mark.parametrize(("uri", "expected"), [
    ("git+https://github.com/acme/app.git", ACME), ("https://github.com/acme/app/", ACME),
    ("https://github.com/acme/app", ACME), ("git+ssh://git@github.com/acme/app.git", ACME),
])
def test_normalize_repository(uri: str, expected: str) -> None:
    assert normalize_repository(uri) == expected


# --------------------------------------------------------------------------- rejections


def built_from_main(conformance, standin, fmt: str = "v2alpha4", **kwargs: Any) -> Any:
    return standin("img@sha256:1", resolved_from(conformance("taskrun-remote-resolver", fmt), **kwargs),
                   key_id=RELEASE_KEY)


def test_wrong_builder_is_rejected(examples: Path, conformance, standin) -> None:
    item = built_from_main(conformance, standin)
    item.statement["predicate"]["runDetails"]["builder"]["id"] = "https://example.com/builders/tekton-prod"
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"), [item])
    assert not result.passed
    (builder,) = only(result, "builder")
    assert not builder.passed
    assert builder.message == "the provenance must name the builder https://tekton.dev/chains/v2"
    assert "FAIL builder [img@sha256:1]: the provenance must name the builder" in result.to_text()
    assert [r.rule for r in result.failures] == ["builder"]


@pytest.mark.parametrize("fmt", ["v2alpha3", "v2alpha4"])
def test_wrong_source_repository_is_rejected(examples: Path, conformance, standin, fmt: str) -> None:
    item = built_from_main(conformance, standin, fmt, repo="https://github.com/evil/app")
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"), [item])
    assert [r.rule for r in result.failures] == ["source-repository"]
    assert result.failures[0].message == (
        "the run's definition must be resolved from https://github.com/acme/app at a pinned commit")


@pytest.mark.parametrize("fmt", ["v1", "v2alpha3", "v2alpha4"])
def test_build_controlled_source_and_branch_do_not_count(examples: Path, conformance, standin, fmt: str) -> None:
    """CHAINS-GIT_URL/COMMIT and a revision param naming acme/app@main are the build's word, not the platform's."""
    statement = retarget_source(conformance("taskrun-basic", fmt))  # definition: git+https://github.com/test@ab123
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"),
                      [standin("img@sha256:1", statement, key_id=RELEASE_KEY)])
    assert [r.rule for r in result.failures] == ["source-repository", "main-branch"]
    inputs = policy_inputs(standin("img@sha256:1", statement))
    assert inputs["facts"]["build"]["source"]["repository"] == ACME
    assert inputs["facts"]["build"]["ref"] == "main"
    assert inputs["facts"]["platform"]["source"]["repository"] == ""


def test_unpinned_definition_does_not_count(examples: Path, conformance, standin) -> None:
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"),
                      [built_from_main(conformance, standin, commit="0123456")])
    assert [r.rule for r in result.failures] == ["source-repository", "main-branch"]


def test_wrong_branch_is_rejected(examples: Path, conformance, standin) -> None:
    policy = load_policy(examples / "built-by-builder-from-main.yaml")
    result = evaluate(policy, [built_from_main(conformance, standin, revision="dev"),
                               built_from_main(conformance, standin, "v2alpha3", revision=None)])
    assert [r.rule for r in result.failures] == ["main-branch", "main-branch"]
    assert result.failures[0].message.startswith("the git resolver must have fetched the definition from the main")


def test_wrong_signer_is_rejected(examples: Path, conformance, standin) -> None:
    item = built_from_main(conformance, standin)
    item.key_id = "SHA256:someone-else"
    result = evaluate(load_policy(examples / "built-by-builder-from-main.yaml"), [item])
    assert [r.rule for r in result.failures] == ["signer"]


@pytest.mark.parametrize("fmt", ["v1", "v2alpha3", "v2alpha4"])
def test_unpinned_step_image_is_rejected(examples: Path, conformance, standin, fmt: str) -> None:
    statement = unpin_first_step_image(conformance("taskrun-basic", fmt))
    result = evaluate(load_policy(examples / "step-images-pinned.yaml"), [standin("img@sha256:1", statement)])
    assert [r.rule for r in result.failures] == ["step-images-pinned"]
    assert result.failures[0].message == (
        "every step image must be pinned by sha256 digest (oci://repo@sha256:<64 hex>)")


def test_no_step_images_is_rejected(examples: Path, conformance, standin) -> None:
    result = evaluate(load_policy(examples / "step-images-pinned.yaml"),
                      [standin("img@sha256:1", conformance("taskrun-type-hinting", "v2alpha3"))])
    assert [r.rule for r in result.failures] == ["step-images-recorded"]
    assert result.failures[0].message == "the provenance must record the step images"


@pytest.mark.parametrize("case", ["taskrun-basic", "pipelinerun-basic"])
def test_wrong_predicate_type_is_rejected(examples: Path, conformance, standin, case: str) -> None:
    policy = load_policy(examples / "slsa-v1-only.yaml")
    assert evaluate(policy, [standin("img@sha256:1", conformance(case, "v2alpha4"))]).passed
    result = evaluate(policy, [standin("img@sha256:1", conformance(case, "v1"))])
    failed = {r.rule: r.message for r in result.failures}
    assert failed == {
        "predicate-types": f"the predicate type must be one of: {SLSA_V1}",
        "statement-v1": "the attestation must be an in-toto Statement v1",
    }


def test_missing_timestamps_are_rejected(examples: Path, conformance, standin) -> None:
    statement = conformance("taskrun-multiple-subjects", "v2alpha4")  # Chains wrote no start/finish times
    result = evaluate(load_policy(examples / "slsa-v1-only.yaml"), [standin("img@sha256:1", statement)])
    assert [(r.rule, r.message) for r in result.failures] == [
        ("build-times-recorded", "the provenance must record when the build started and finished")]


FRESH = """
- name: fresh
  expression: finishedOn != null && now - finishedOn < duration('720h')
  message: the provenance must be younger than 30 days
"""


@pytest.mark.parametrize("fmt", ["v1", "v2alpha4"])
def test_expired_provenance_is_rejected(write_policy, conformance, standin, fmt: str) -> None:
    policy = load_policy(write_policy(FRESH))
    verified = [standin("img@sha256:1", conformance("taskrun-basic", fmt))]  # finished 2021-03-29T09:50:15Z
    result = evaluate(policy, verified)
    assert [(r.rule, r.passed, r.message) for r in result.results] == [
        ("fresh", False, "the provenance must be younger than 30 days")]
    recent = evaluate(policy, verified, now=dt.datetime(2021, 4, 1, tzinfo=dt.UTC))
    assert recent.passed


def test_missing_timestamp_without_guard_fails_with_the_error(write_policy, conformance, standin) -> None:
    policy = load_policy(write_policy("""
        - name: fresh
          expression: now - finishedOn < duration('720h')
          message: recent build
    """))
    (res,) = evaluate(policy, [standin("img@sha256:1", conformance("taskrun-type-hinting", "v1"))]).results
    assert not res.passed
    assert res.error == "found no matching overload for '-' applied to (timestamp, null)"
    assert res.message == f"recent build (error: {res.error})"


@pytest.mark.parametrize("fmt", ["v1", "v2alpha4"])
def test_dockerfile_override_is_rejected(examples: Path, conformance, standin, fmt: str) -> None:
    policy = load_policy(examples / "no-dockerfile-override.yaml")

    def with_params(**params: Any) -> Any:
        statement = conformance("taskrun-basic", fmt)
        predicate = statement["predicate"]
        if fmt == "v1":
            predicate["invocation"]["parameters"].update(params)
        else:
            spec = predicate["buildDefinition"]["externalParameters"]["runSpec"]
            spec["params"] += [{"name": k, "value": v} for k, v in params.items()]
        return standin("img@sha256:1", statement)

    assert evaluate(policy, [with_params(DOCKERFILE="./Dockerfile", CONTEXT=".")]).passed
    result = evaluate(policy, [with_params(DOCKERFILE="./other/Dockerfile")])
    assert [(r.rule, r.message) for r in result.failures] == [
        ("no-dockerfile-override",
         "the run must not override the Dockerfile or the build context (params or --file/--context flags)")]
    for attack in ({"dockerfile_path": "evil.Dockerfile"}, {"CONTEXT": "./sub"},
                   {"BUILD_EXTRA_ARGS": "--file=evil.Dockerfile"}, {"EXTRA_ARGS": ["--dockerfile", "evil"]},
                   {"PATH_CONTEXT": "sub"}, {"dockerfile-location": "x/Dockerfile"}):
        assert [r.rule for r in evaluate(policy, [with_params(**attack)]).failures] == ["no-dockerfile-override"]


# --------------------------------------------------------------------------- runtime behaviour


def test_runtime_errors_fail_the_rule_with_the_error_text(write_policy, chains_run_verified) -> None:
    policy = load_policy(write_policy("""
        - name: missing-field
          expression: predicate.nope == 1
          message: needs nope
        - name: not-a-bool
          expression: size(subject)
          message: must be a bool
        - name: undeclared
          expression: nosuchvar == 1
          message: undeclared variable
        - name: ok
          expression: "true"
          message: fine
    """))
    result = evaluate(policy, [chains_run_verified])
    assert not result.passed
    by_rule = {r.rule: r for r in result.results}
    assert by_rule["missing-field"].error == "no such member in mapping: 'nope'"
    assert by_rule["missing-field"].message == "needs nope (error: no such member in mapping: 'nope')"
    assert by_rule["not-a-bool"].error == "the expression returned int, not a bool"
    assert by_rule["undeclared"].error == "undeclared reference to 'nosuchvar'"
    assert by_rule["ok"].passed and by_rule["ok"].error is None
    lines = result.to_text().splitlines()
    assert lines[0] == (f"FAIL missing-field [{chains_run_verified.ref}]: needs nope "
                        "(error: no such member in mapping: 'nope')")
    assert lines[-1] == f"PASS ok [{chains_run_verified.ref}]: fine"


def test_warnings_do_not_fail_the_policy(write_policy, chains_run_verified) -> None:
    policy = load_policy(write_policy("""
        - {name: soft, expression: "false", message: advisory, severity: warning}
        - {name: hard, expression: "true", message: required}
    """))
    result = evaluate(policy, [chains_run_verified])
    assert result.passed
    assert result.to_text().splitlines()[0].startswith("WARN soft ")
    assert result.summary() == "policy test: passed (1/2 passed)"


def test_no_statement_means_every_rule_fails(write_policy, standin) -> None:
    policy = load_policy(write_policy("- {name: r, expression: 'true', message: m}"))
    result = evaluate(policy, [standin("img@sha256:1", None, layout="simplesigning")])
    assert not result.passed
    assert result.results[0].message == "m (no verified provenance statement to check)"
    assert not evaluate(policy, []).passed


def test_rules_run_per_statement(write_policy, conformance, standin) -> None:
    policy = load_policy(write_policy(f"- {{name: v1, expression: \"predicateType == '{SLSA_V1}'\", message: m}}"))
    result = evaluate(policy, [standin("a@sha256:1", conformance("taskrun-basic", "v1")),
                               standin("a@sha256:1", conformance("taskrun-basic", "v2alpha4"))])
    assert [r.passed for r in result.results] == [False, True]


def test_to_json_round_trips(write_policy, chains_run_verified) -> None:
    policy = load_policy(write_policy("- {name: r, expression: 'nope', message: m}"))
    doc = json.loads(json.dumps(evaluate(policy, [chains_run_verified]).to_json()))
    assert doc["policy"] == "test" and doc["passed"] is False
    assert doc["results"] == [{"rule": "r", "passed": False, "artifact": chains_run_verified.ref,
                               "severity": "error", "error": "undeclared reference to 'nope'", "kind": "TaskRun",
                               "message": "m (error: undeclared reference to 'nope')"}]


def test_string_extension_functions(write_policy, chains_run_verified) -> None:
    policy = load_policy(write_policy("""
        - {name: lower, expression: "'ABC'.lowerAscii() == 'abc' && 'abc'.upperAscii() == 'ABC'", message: m}
        - {name: split, expression: "'a/b/c'.split('/') == ['a', 'b', 'c'] && ' x '.trim() == 'x'", message: m}
        - {name: replace, expression: "'a-b'.replace('-', '_') == 'a_b'", message: m}
        - {name: bad-overload, expression: "[1].exists(x, x.lowerAscii() == '1')", message: m}
    """))
    result = evaluate(policy, [chains_run_verified])
    assert [r.passed for r in result.results] == [True, True, True, False]
    assert result.results[3].error == "no such overload: lowerAscii"


# --------------------------------------------------------------------------- inputs


def test_policy_inputs_for_the_chains_run_fixture(chains_run_verified) -> None:
    now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
    inputs = policy_inputs(chains_run_verified, now=now)
    repo, _, digest = chains_run_verified.ref.partition("@")
    assert inputs["image"] == {"ref": chains_run_verified.ref, "repository": repo, "digest": digest}
    assert inputs["builder"] == CHAINS_BUILDER
    assert inputs["facts"]["build"]["params"] == {"IMAGE": "127.0.0.1:5000/demo/app"}
    assert inputs["stepImages"] == [
        "oci://docker.io/library/busybox@sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5"]
    assert inputs["startedOn"] == dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
    assert inputs["facts"]["build"]["source"]["origin"] == ""
    assert inputs["facts"]["platform"]["source"]["repository"] == ""
    assert inputs["facts"]["platform"]["stepImages"] == inputs["stepImages"]
    assert inputs["signer"] == {"keyId": "SHA256:test-key", "cert": "", "identity": "", "issuer": ""}
    assert inputs["now"] == now
    assert set(inputs) >= {"facts", "statement", "predicate", "predicateType", "subject", "builder", "buildType",
                           "stepImages", "namespace", "serviceAccount", "startedOn", "finishedOn",
                           "signer", "image", "now"}
    assert not set(inputs) & {"source", "sources", "params", "materials"}  # build-controlled: only in facts.build


def test_namespace_and_service_account(conformance, standin) -> None:
    """The run's namespace and name come from the signed statement only, never from where it was found."""
    v1 = policy_inputs(standin("ci/build-xyz", conformance("taskrun-basic", "v2alpha3")))
    assert (v1["namespace"], v1["serviceAccount"], v1["image"]["digest"]) == ("", "default", "")
    assert v1["run"]["name"] == "" and v1["run"]["uid"] == "abhhf-12354-asjsdbjs23-3435353n"
    pr = policy_inputs(standin("x@sha256:1", conformance("pipelinerun-basic", "v1")))
    assert (pr["namespace"], pr["serviceAccount"], pr["run"]["kind"]) == ("", "pipeline", "PipelineRun")
    item = standin("x@sha256:1", conformance("taskrun-basic", "v1"))
    item.namespace = "tenant-a"  # unsigned metadata a caller attaches is ignored
    assert policy_inputs(item)["run"]["namespace"] == ""


@pytest.mark.parametrize(("ref", "expected"), [
    ("taskrun/demo/build-app", ("TaskRun", "demo", "build-app")),
    ("pipelinerun/release/release-run", ("PipelineRun", "release", "release-run")),
    ("ci/build-xyz", ("", "ci", "build-xyz")),
    ("127.0.0.1:5000/demo/app@sha256:188a", None),
    ("registry.example/app", None),
])
def test_run_of_ref(ref: str, expected: tuple[str, str, str] | None) -> None:
    assert run_of_ref(ref) == expected


def test_run_inputs_from_a_verified_run_reference(chains_run_statement, standin) -> None:
    raw, statement = chains_run_statement
    inputs = policy_inputs(standin("taskrun/demo/build-app", statement, payload=raw))
    # SLSA v0.2 records neither namespace nor name: the (unsigned) run reference does not fill them in
    assert inputs["run"] == {"kind": "TaskRun", "name": "", "namespace": "", "serviceAccount": "", "uid": ""}
    assert inputs["namespace"] == ""
    assert inputs["artifact"] == "taskrun/demo/build-app"
    assert inputs["image"] == {"ref": "", "repository": "", "digest": ""}


def test_signer_identity_from_a_fulcio_style_certificate(write_policy, chains_run_verified) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev")])
    issuer = "https://token.actions.githubusercontent.com"
    identity = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    der_issuer = b"\x0c" + bytes([len(issuer)]) + issuer.encode()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2026, 1, 1)).not_valid_after(dt.datetime(2026, 1, 2))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), der_issuer),
                           critical=False)
            .sign(key, hashes.SHA256()))
    chains_run_verified.cert = cert.public_bytes(serialization.Encoding.PEM).decode()
    signer = policy_inputs(chains_run_verified)["signer"]
    assert (signer["identity"], signer["issuer"]) == (identity, issuer)
    policy = load_policy(write_policy(f"""
        - name: identity
          expression: signer.identity.endsWith('@refs/heads/main') && signer.issuer == '{issuer}'
          message: signed by the release workflow
    """))
    assert evaluate(policy, [chains_run_verified]).passed
