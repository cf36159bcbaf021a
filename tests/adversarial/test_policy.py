"""Policies cannot be passed with data the build controls, end to end through ``chainmail verify``.

Each case builds a run the way an attacker could shape it (task results, params, resolver URLs, the
unsigned run file), signs it for real with the shared cosign key (``chainmail run --from-file``,
file storage), and checks ``chainmail verify run --from-file … --policy …``: the attack ends with
exit 14 (policy violated) or a verification exit code, the genuine run passes with exit 0.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adversarial.conftest import REPO, Outcome, assert_rejected, chainmail, files_under

pytest.importorskip("celpy")

EXAMPLES = REPO / "examples" / "policies"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
STEP_IMAGE = "registry.example/tools/build@sha256:" + "b" * 64
POLICY_VIOLATED = 14
NO_MATCHING_SIGNATURE = 12
WITHIN = 30.0


def git_ref(url: str = "https://github.com/acme/app.git", revision: str = "main") -> dict[str, Any]:
    return {"resolver": "git", "params": [{"name": "url", "value": url}, {"name": "revision", "value": revision},
                                          {"name": "pathInRepo", "value": "tekton/build.yaml"}]}


def ref_source(url: str = "https://github.com/acme/app.git", commit: str = COMMIT) -> dict[str, Any]:
    return {"uri": f"git+{url}", "digest": {"sha1": commit}, "entryPoint": "tekton/build.yaml"}


def taskrun(*, params: dict[str, Any] | None = None, results: dict[str, str] | None = None,
            task_ref: dict[str, Any] | None = None, source: dict[str, Any] | None = None,
            name: str = "build-app", namespace: str = "ci", uid: str = "7c0ffee0-0000-4000-8000-000000000001",
            ) -> dict[str, Any]:
    """A finished TaskRun as the API server would hold it."""
    params = params or {}
    results = results or {}
    return {
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"params": [{"name": k, "value": v} for k, v in params.items()], "serviceAccountName": "build-bot",
                 "taskRef": task_ref or {"name": "build", "kind": "Task"}},
        "status": {
            "startTime": "2026-11-23T08:00:00Z", "completionTime": "2026-11-23T08:00:10Z",
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded",
                            "lastTransitionTime": "2026-11-23T08:00:10Z"}],
            "podName": f"{name}-pod",
            "provenance": {"refSource": source} if source else {},
            "results": [{"name": k, "type": "string", "value": v} for k, v in results.items()],
            "steps": [{"name": "build", "container": "step-build", "imageID": f"docker-pullable://{STEP_IMAGE}"}],
            "taskSpec": {"params": [{"name": k, "type": "array" if isinstance(v, list) else "string"}
                                    for k, v in params.items()],
                         "results": [{"name": k} for k in results],
                         "steps": [{"name": "build", "image": STEP_IMAGE.split("@")[0], "script": "build"}]},
        },
    }


def signed_pipelinerun(namespace: str, name: str, uid: str) -> dict[str, Any]:
    child = taskrun(name=f"{name}-build", namespace=namespace, uid=uid[:-1] + "f")
    child["metadata"]["labels"] = {"tekton.dev/pipelineTask": "build", "tekton.dev/pipelineRun": name}
    child["metadata"]["ownerReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": name,
                                             "uid": uid, "controller": True, "blockOwnerDeletion": True}]
    pipeline_run = {
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"pipelineRef": {"name": "release"}},
        "status": {"startTime": "2026-11-23T08:00:00Z", "completionTime": "2026-11-23T08:01:00Z",
                   "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
                   "pipelineSpec": {"tasks": [{"name": "build", "taskRef": {"name": "build"}}]},
                   "childReferences": [{"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "name": f"{name}-build",
                                        "pipelineTaskName": "build"}]},
    }
    return {"pipelineRun": pipeline_run, "taskRuns": [child]}


@pytest.fixture
def sign(key: str, tmp_path: Path):
    """``sign(run, fmt)`` → the run with Chains' annotations, signed by ``chainmail run`` with the shared key."""
    counter = iter(range(100))

    def do(run: dict[str, Any], fmt: str = "slsa/v2alpha4", **config: str) -> dict[str, Any]:
        work = tmp_path / f"sign-{next(counter)}"
        work.mkdir()
        (work / "run.json").write_text(json.dumps(run))
        kind = "pipelinerun" if "pipelineRun" in run else "taskrun"
        sets = {f"artifacts.{kind}.format": fmt, f"artifacts.{kind}.storage": "file", "artifacts.oci.storage": "",
                **config}
        args = ["run", "--from-file", str(work / "run.json"), "--key", key, "--file-store", str(work / "store")]
        for k, v in sets.items():
            args += ["--set", f"{k}={v}"]
        out = chainmail(args, timeout=60)
        assert out.code == 0, out.stderr[-2000:]
        target = copy.deepcopy(run["pipelineRun"] if kind == "pipelinerun" else run)
        uid = target["metadata"]["uid"]
        (payload,) = (work / "store").rglob(f"{kind}-{uid}.payload")
        annotations = target["metadata"].setdefault("annotations", {})
        annotations["chains.tekton.dev/signed"] = "true"
        for part in ("payload", "signature"):
            data = payload.with_suffix(f".{part}").read_bytes()
            annotations[f"chains.tekton.dev/{part}-{kind}-{uid}"] = base64.b64encode(data).decode()
        return target

    return do


@pytest.fixture
def verify(key: str, tmp_path: Path):
    """``verify(signed_run, policy)`` → the outcome of ``chainmail verify run --from-file … --policy …``."""
    counter = iter(range(100))

    def do(run: dict[str, Any], policy: Path | str) -> Outcome:
        work = tmp_path / f"verify-{next(counter)}"
        work.mkdir()
        (work / "run.json").write_text(json.dumps(run))
        if isinstance(policy, str):
            (work / "policy.yaml").write_text(policy)
            policy = work / "policy.yaml"
        before = files_under(tmp_path)
        out = chainmail(["verify", "run", "--insecure-ignore-tlog", "--from-file", str(work / "run.json"), "--key",
                         str(Path(key) / "cosign.pub"), "--policy", str(policy)], cwd=work, timeout=WITHIN)
        assert files_under(tmp_path) == before, "verify wrote files"
        return out

    return do


def policy(*rules: tuple[str, str]) -> str:
    lines = [f"    - {{name: {name}, expression: {json.dumps(expr)}, message: {name} must hold}}" for name, expr in rules]
    return "apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: adversarial}\nspec:\n  rules:\n" \
        + "\n".join(lines) + "\n"


def rejected_by_policy(out: Outcome, *rules: str) -> None:
    assert_rejected(out, POLICY_VIOLATED, mentions="policy", within=WITHIN)
    failed = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("FAIL ")}
    assert failed >= set(rules), out.stdout


# -- the genuine build passes ------------------------------------------------------------------------


def test_genuine_build_from_main_passes(sign, verify) -> None:
    out = verify(sign(taskrun(task_ref=git_ref(), source=ref_source())), EXAMPLES / "built-by-builder-from-main.yaml")
    assert out.code == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert out.stdout.count("PASS ") == 4 and "FAIL" not in out.stdout


# -- the build's own results and params ---------------------------------------------------------------


def test_chains_git_results_and_revision_param_do_not_pass(sign, verify) -> None:
    """The build writes CHAINS-GIT_URL/COMMIT results and a revision param naming acme/app@main."""
    run = taskrun(params={"revision": "main"},
                  results={"CHAINS-GIT_URL": "https://github.com/acme/app", "CHAINS-GIT_COMMIT": COMMIT})
    rejected_by_policy(verify(sign(run), EXAMPLES / "built-by-builder-from-main.yaml"),
                       "source-repository", "main-branch")


def test_chains_git_ref_does_not_outrank_revision(sign, verify) -> None:
    run = taskrun(params={"revision": "feature/evil", "CHAINS-GIT_REF": "main"})
    rejected_by_policy(verify(sign(run), policy(("branch", "facts.build.ref == 'main'"))), "branch")


def test_array_revision_is_not_skipped_for_another_param(sign, verify) -> None:
    run = taskrun(params={"revision": ["feature/evil"], "branch": "main"})
    rejected_by_policy(verify(sign(run), policy(("branch", "facts.build.ref == 'main'"))), "branch")


# -- Dockerfile and context overrides -----------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"BUILD_EXTRA_ARGS": "--layers --file=evil/Dockerfile"},
    {"BUILD_EXTRA_ARGS": "-f evil/Dockerfile"},
    {"EXTRA_ARGS": ["--dockerfile", "evil/Dockerfile"]},
    {"EXTRA_ARGS": ["--dockerfile=evil/Dockerfile"]},
    {"DOCKERFILE": "./Dockerfile", "PATH_CONTEXT": "evil"},
], ids=["buildah-file-eq", "buildah-f", "kaniko-dockerfile", "kaniko-dockerfile-eq", "s2i-path-context"])
def test_dockerfile_overrides_are_caught(sign, verify, params: dict[str, Any]) -> None:
    rejected_by_policy(verify(sign(taskrun(params=params)), EXAMPLES / "no-dockerfile-override.yaml"),
                       "no-dockerfile-override")


def test_pipeline_level_dockerfile_location_is_caught(sign, verify) -> None:
    run = signed_pipelinerun("ci", "release", "9e1ea5e0-0000-4000-8000-0000000000d1")
    run["pipelineRun"]["spec"]["params"] = [{"name": "dockerfile-location", "value": "evil/Dockerfile"}]
    rejected_by_policy(verify(sign(run), EXAMPLES / "no-dockerfile-override.yaml"), "no-dockerfile-override")


def test_default_dockerfile_passes(sign, verify) -> None:
    run = taskrun(params={"DOCKERFILE": "./Dockerfile", "CONTEXT": ".", "BUILD_EXTRA_ARGS": "--layers"})
    out = verify(sign(run), EXAMPLES / "no-dockerfile-override.yaml")
    assert out.code == 0, out.stdout + out.stderr


# -- repository URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://github.com/acme/../mallory/app.git",
                                 "https://github.com/acme/%2e%2e/mallory/app.git",
                                 "https://github.com/acme/..%2fmallory/app.git"])
def test_dot_dot_repository_does_not_pass_the_prefix_recipe(sign, verify, url: str) -> None:
    """The resolver fetched /mallory/app; the raw URL starts with https://github.com/acme/."""
    run = taskrun(task_ref=git_ref(url), source=ref_source(url))
    rules = policy(("org", "facts.platform.source.repository.startsWith('https://github.com/acme/')"),
                   ("org-parts", "facts.platform.source.host == 'github.com' && facts.platform.source.org == 'acme'"))
    rejected_by_policy(verify(sign(run), rules), "org", "org-parts")


def test_definition_from_another_branch_does_not_pass(sign, verify) -> None:
    run = taskrun(task_ref=git_ref(revision="feature/evil"), source=ref_source(), params={"revision": "main"})
    rejected_by_policy(verify(sign(run), EXAMPLES / "built-by-builder-from-main.yaml"), "main-branch")


# -- the run's identity ---------------------------------------------------------------------------


def test_genuine_attestation_presented_as_another_run(verify, shared: Path) -> None:
    """Real Chains' attestation of demo/build-app, with the unsigned run file renamed to prod/release."""
    run = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    run["metadata"].update(namespace="prod", name="release")
    out = verify(run, policy(("namespace", "run.namespace == 'prod'"),
                             ("name", "facts.platform.run.name == 'release'")))
    rejected_by_policy(out, "namespace", "name")


def test_signed_namespace_passes_and_a_renamed_file_does_not_change_it(sign, verify) -> None:
    """slsa-tekton provenance embeds the child TaskRuns: their namespace and owner are signed."""
    tekton = {"builddefinition.buildtype": "https://tekton.dev/chains/v2/slsa-tekton"}
    rules = policy(("namespace", "run.namespace == 'prod' && facts.platform.run.name == 'release'"))
    genuine = sign(signed_pipelinerun("prod", "release", "9e1ea5e0-0000-4000-8000-000000000001"), **tekton)
    out = verify(genuine, rules)
    assert out.code == 0, out.stdout + out.stderr
    demo = sign(signed_pipelinerun("demo", "build-app", "9e1ea5e0-0000-4000-8000-000000000002"), **tekton)
    demo["metadata"].update(namespace="prod", name="release")
    # verification binds the signed namespace to the run it was found on: refused before the policy runs
    out = verify(demo, rules)
    assert_rejected(out, NO_MATCHING_SIGNATURE, mentions="namespace 'demo', not 'prod'", within=WITHIN)
    assert "PASS" not in out.stdout


def test_edited_signed_payload_fails_verification(sign, verify) -> None:
    signed = sign(taskrun(namespace="demo"))
    key = next(k for k in signed["metadata"]["annotations"] if "/payload-" in k)
    statement = json.loads(base64.b64decode(signed["metadata"]["annotations"][key]))
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://tekton.dev/chains/v2-forged"
    signed["metadata"]["annotations"][key] = base64.b64encode(json.dumps(statement).encode()).decode()
    out = verify(signed, EXAMPLES / "built-by-builder-from-main.yaml")
    assert_rejected(out, NO_MATCHING_SIGNATURE, within=WITHIN)
    assert "PASS" not in out.stdout


# -- through the registry: verify attestation ---------------------------------------------------------


def test_attestation_in_the_registry_with_build_written_source(sign, key: str, registry, tmp_path: Path) -> None:
    """The same attack through ``chainmail verify attestation``: an .att in a real registry."""
    from doubles.registry import push_test_image

    image = push_test_image(registry, "policy/app", "h4-policy")
    repo, digest = image.split("@")
    env = {"DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    run = taskrun(params={"revision": "main"},
                  results={"IMAGE_URL": repo, "IMAGE_DIGEST": digest,
                           "CHAINS-GIT_URL": "https://github.com/acme/app", "CHAINS-GIT_COMMIT": COMMIT})
    (tmp_path / "att-run.json").write_text(json.dumps(run))
    signed = chainmail(["run", "--from-file", str(tmp_path / "att-run.json"), "--key", key,
                        "--set", "artifacts.taskrun.format=slsa/v2alpha4", "--set", "artifacts.taskrun.storage=oci",
                        "--set", "artifacts.oci.storage=oci"], env=env, timeout=60)
    assert signed.code == 0, signed.stderr[-2000:]
    args = ["verify", "attestation", "--insecure-ignore-tlog", image, "--key", str(Path(key) / "cosign.pub"), "--type", "slsaprovenance1",
            "--policy"]
    rejected_by_policy(chainmail([*args, str(EXAMPLES / "built-by-builder-from-main.yaml")], env=env, timeout=WITHIN),
                       "source-repository", "main-branch")
    passing = tmp_path / "builder-only.yaml"
    passing.write_text(policy(("builder", "facts.platform.builder == 'https://tekton.dev/chains/v2'")))
    out = chainmail([*args, str(passing)], env=env, timeout=WITHIN)
    assert out.code == 0, out.stdout + out.stderr
