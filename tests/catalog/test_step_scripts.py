"""Run each Task's and StepAction's step script under sh with a fake `chainmail` on PATH.

The env is built the way Tekton builds it (param defaults, unbound optional workspaces are "",
result paths, the downward-API namespace), so these pin the exact command lines the steps run:
empty values are left out, the key falls back as documented, config and policy text reach
chainmail as files, and the verify gate fails when it should.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from catalog_support import STEPACTIONS, TASKS

pytestmark = pytest.mark.skipif(shutil.which("sh") is None or shutil.which("mktemp") is None,
                                reason="needs a POSIX sh and mktemp, as the step image has")

FAKE_CHAINMAIL = """#!/bin/sh
{ echo '---'; for a in "$@"; do printf '%s\\n' "$a"; done; } >>"$FAKE_ARGV_LOG"
printf '%s\\n' "${CHAINMAIL_CA_BUNDLE-<unset>}" >>"$FAKE_ARGV_LOG.ca"
exit "${FAKE_RC:-0}"
"""


@dataclass
class Result:
    rc: int
    calls: list[list[str]]
    stderr: str
    #: CHAINMAIL_CA_BUNDLE as each chainmail call saw it ("<unset>" when it was not set).
    ca_bundles: list[str]


def _load_step(path: Path, stepaction: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    step = spec if stepaction else spec["steps"][0]
    return step, spec.get("params") or []


def task_step(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return _load_step(TASKS / name / f"{name}.yaml", stepaction=False)


def stepaction_step(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return _load_step(STEPACTIONS / name / f"{name}.yaml", stepaction=True)


@pytest.fixture
def run(tmp_path: Path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "chainmail"
    fake.write_text(FAKE_CHAINMAIL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    results = tmp_path / "results"
    results.mkdir()

    def _run(step_and_params: tuple[dict[str, Any], list[dict[str, Any]]], *, params: dict[str, str] | None = None,
             workspaces: dict[str, str] | None = None, namespace: str = "team-a", rc: int = 0,
             extra_env: dict[str, str] | None = None) -> Result:
        step, param_specs = step_and_params
        values = {p["name"]: p.get("default") for p in param_specs}
        values.update(params or {})
        missing = [k for k, v in values.items() if v is None]
        assert not missing, f"required params not given: {missing}"
        ws = workspaces or {}

        def sub(text: str) -> str:
            text = re.sub(r"\$\(params\.([A-Za-z0-9_-]+)\)", lambda m: values[m.group(1)], text)
            text = re.sub(r"\$\(workspaces\.([a-z0-9-]+)\.path\)", lambda m: ws.get(m.group(1), ""), text)
            return re.sub(r"\$\((?:step\.)?results\.([A-Za-z0-9_-]+)\.path\)", lambda m: str(results / m.group(1)),
                          text)

        log = tmp_path / f"argv-{len(list(tmp_path.glob('argv-*')))}.log"
        env = {"PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
               "FAKE_ARGV_LOG": str(log), "FAKE_RC": str(rc), "TMPDIR": str(tmp_path), **(extra_env or {})}
        for entry in step.get("env") or []:
            if "valueFrom" in entry:
                assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
                env[entry["name"]] = namespace
            else:
                env[entry["name"]] = sub(entry["value"])
        script = tmp_path / "script.sh"
        script.write_text(step["script"])
        proc = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
        calls: list[list[str]] = []
        if log.exists():
            for line in log.read_text().splitlines():
                if line == "---":
                    calls.append([])
                else:
                    calls[-1].append(line)
        ca_log = Path(f"{log}.ca")
        ca_bundles = ca_log.read_text().splitlines() if ca_log.exists() else []
        return Result(proc.returncode, calls, proc.stderr, ca_bundles)

    _run.results = results  # type: ignore[attr-defined]
    return _run


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# --------------------------------------------------------------------------------- chainmail-sign


def test_sign_minimal_taskrun(run) -> None:
    out = run(task_step("chainmail-sign"), params={"TASKRUN": "build-7x2kq"})
    assert out.rc == 0, out.stderr
    assert out.calls == [["run", "--taskrun", "build-7x2kq", "--key", "k8s://team-a/signing-secrets",
                          "--results-dir", str(run.results)]]


def test_sign_pipelinerun_with_everything(run) -> None:
    config = "artifacts.pipelinerun.format: slsa/v2alpha4\nartifacts.pipelinerun.storage: tekton,oci"
    out = run(task_step("chainmail-sign"), params={
        "PIPELINERUN": "release-run", "RUN_NAMESPACE": "release", "RUN_UID": "0b9a-uid", "KEY": "awskms:///alias/k",
        "CHAINS_CONFIGMAP": "tekton-chains/chains-config", "CHAINS_CONFIG": config,
    }, workspaces={"dockerconfig": "/ws/docker", "output": "/ws/out", "signing-secrets": "/ws/key"})
    assert out.rc == 0, out.stderr
    (argv,) = out.calls
    assert argv[:3] == ["run", "--pipelinerun", "release-run"]
    assert _flag(argv, "--namespace") == "release" and _flag(argv, "--uid") == "0b9a-uid"
    assert "--with-children" in argv
    assert _flag(argv, "--key") == "awskms:///alias/k", "KEY wins over the workspace"
    assert _flag(argv, "--configmap") == "tekton-chains/chains-config"
    assert Path(_flag(argv, "--config")).read_text() == config + "\n"
    assert _flag(argv, "--docker-config") == "/ws/docker" and _flag(argv, "--workspace") == "/ws/out"
    assert "--taskrun" not in argv


def test_sign_key_from_bound_workspace(run) -> None:
    out = run(task_step("chainmail-sign"), params={"TASKRUN": "t"}, workspaces={"signing-secrets": "/ws/key"})
    assert _flag(out.calls[0], "--key") == "/ws/key"


def test_sign_children_can_be_turned_off(run) -> None:
    out = run(task_step("chainmail-sign"), params={"PIPELINERUN": "p", "SIGN_CHILDREN": "false"})
    assert "--with-children" not in out.calls[0]
    out = run(task_step("chainmail-sign"), params={"TASKRUN": "t"})
    assert "--with-children" not in out.calls[0], "only PipelineRuns have children"


def test_sign_passes_chainmail_failures_through(run) -> None:
    out = run(task_step("chainmail-sign"), params={"TASKRUN": "t"}, rc=9)
    assert out.rc == 9


def test_sign_params_with_shell_metacharacters_stay_arguments(run) -> None:
    nasty = 'x"; touch /tmp/pwned; echo "$(id)'
    out = run(task_step("chainmail-sign"), params={"TASKRUN": nasty})
    assert out.calls[0][:3] == ["run", "--taskrun", nasty]


# ------------------------------------------------------------------------------ chainmail-finally


def test_finally_defaults_to_the_pipelineruns_namespace_key(run) -> None:
    out = run(task_step("chainmail-finally"), params={
        "PIPELINERUN_NAME": "build-and-sign-x8k2p", "PIPELINERUN_NAMESPACE": "team-b", "PIPELINERUN_UID": "u-1"},
        namespace="team-b")
    assert out.rc == 0, out.stderr
    assert out.calls == [["finally", "--pipelinerun", "build-and-sign-x8k2p", "--namespace", "team-b",
                          "--uid", "u-1", "--key", "k8s://team-b/signing-secrets"]]


def test_finally_with_workspaces(run) -> None:
    out = run(task_step("chainmail-finally"), params={
        "PIPELINERUN_NAME": "p", "PIPELINERUN_NAMESPACE": "n", "PIPELINERUN_UID": "u",
        "CHAINS_CONFIG": "artifacts.taskrun.format: slsa/v1"},
        workspaces={"signing-secrets": "/ws/key", "dockerconfig": "/ws/docker"})
    (argv,) = out.calls
    assert _flag(argv, "--key") == "/ws/key" and _flag(argv, "--docker-config") == "/ws/docker"
    assert Path(_flag(argv, "--config")).read_text() == "artifacts.taskrun.format: slsa/v1\n"


@pytest.mark.parametrize(("kind", "name", "params"), [
    ("task", "chainmail-sign", {"TASKRUN": "t"}),
    ("task", "chainmail-finally", {"PIPELINERUN_NAME": "p", "PIPELINERUN_NAMESPACE": "n", "PIPELINERUN_UID": "u"}),
    ("task", "chainmail-verify", {"IMAGE": "registry.example.com/a@sha256:" + "a" * 64, "KEY": "k"}),
    ("stepaction", "chainmail-store", {"OUTPUT_PATH": "/ws/out"}),
    ("stepaction", "chainmail-sign-payloads", {"OUTPUT_PATH": "/ws/out"}),
    ("stepaction", "chainmail-verify", {"IMAGE": "registry.example.com/a@sha256:" + "a" * 64, "KEY": "k"}),
])
def test_the_ca_workspace_reaches_chainmail_added_to_what_is_set(run, kind: str, name: str,
                                                                 params: dict[str, str]) -> None:
    """Bound, ssl-ca-directory comes first in CHAINMAIL_CA_BUNDLE; unbound, the variable is left as it was."""
    step = task_step(name) if kind == "task" else stepaction_step(name)

    def seen(ca_dir: str, extra_env: dict[str, str] | None = None) -> set[str]:
        given, ws = dict(params), {}
        if ca_dir and kind == "task":
            ws["ssl-ca-directory"] = ca_dir
        elif ca_dir:
            given["SSL_CA_DIRECTORY_PATH"] = ca_dir
        out = run(step, params=given, workspaces=ws, extra_env=extra_env)
        assert out.rc == 0, out.stderr
        assert out.ca_bundles, "chainmail was not called"
        return set(out.ca_bundles)

    assert seen("") == {"<unset>"}
    assert seen("/ws/ca") == {"/ws/ca"}
    assert seen("/ws/ca", {"CHAINMAIL_CA_BUNDLE": "/etc/extra.pem"}) == {"/ws/ca:/etc/extra.pem"}
    assert seen("", {"CHAINMAIL_CA_BUNDLE": "/etc/extra.pem"}) == {"/etc/extra.pem"}


# ------------------------------------------------------------------------------- chainmail-verify

IMAGE = "registry.example.com/team/app@sha256:" + "a" * 64


@pytest.mark.parametrize("source", ["task", "stepaction"])
def test_verify_checks_signature_then_attestation(run, source: str) -> None:
    step = task_step("chainmail-verify") if source == "task" else stepaction_step("chainmail-verify")
    ws = {"public-key": "/ws/pub"} if source == "task" else {}
    params = {"IMAGE": IMAGE} if source == "task" else {"IMAGE": IMAGE, "PUBLIC_KEY_PATH": "/ws/pub"}
    out = run(step, params=params, workspaces=ws)
    assert out.rc == 0, out.stderr
    assert out.calls == [
        ["verify", "image", IMAGE, "--key", "/ws/pub/cosign.pub"],
        ["verify", "attestation", IMAGE, "--key", "/ws/pub/cosign.pub", "--type", "slsaprovenance"],
    ]


@pytest.mark.parametrize("source", ["task", "stepaction"])
def test_verify_transparency_log_params(run, source: str) -> None:
    step = task_step("chainmail-verify") if source == "task" else stepaction_step("chainmail-verify")
    out = run(step, params={"IMAGE": IMAGE, "KEY": "/k", "IGNORE_TLOG": "true"})
    assert out.rc == 0, out.stderr
    assert all("--insecure-ignore-tlog" in argv and "--rekor-url" not in argv for argv in out.calls)
    out = run(step, params={"IMAGE": IMAGE, "KEY": "/k", "REKOR_URL": "https://rekor.example"})
    assert out.rc == 0, out.stderr
    assert len(out.calls) == 2
    for argv in out.calls:
        assert _flag(argv, "--rekor-url") == "https://rekor.example" and "--insecure-ignore-tlog" not in argv


def test_verify_inline_policy_and_attestations_only(run) -> None:
    policy = "apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: []}"
    out = run(task_step("chainmail-verify"), params={
        "IMAGE": IMAGE, "KEY": "k8s://prod/cosign", "CHECK_SIGNATURE": "false", "POLICY": policy,
        "ATTESTATION_TYPE": "slsaprovenance1"})
    assert out.rc == 0, out.stderr
    (argv,) = out.calls
    assert argv[:5] == ["verify", "attestation", IMAGE, "--key", "k8s://prod/cosign"]
    assert _flag(argv, "--type") == "slsaprovenance1"
    assert Path(_flag(argv, "--policy")).read_text() == policy + "\n"


def test_verify_reads_signature_locations_from_chains_config(run) -> None:
    config = 'storage.oci.repository: registry.example.com/signatures\nstorage.oci.repository.insecure: "true"'
    out = run(task_step("chainmail-verify"), params={"IMAGE": IMAGE, "KEY": "/k", "CHAINS_CONFIG": config})
    assert out.rc == 0, out.stderr
    assert len(out.calls) == 2
    for argv in out.calls:
        assert Path(_flag(argv, "--config")).read_text() == config + "\n", "both checks use the same config"


def test_verify_policy_from_workspace(run) -> None:
    out = run(task_step("chainmail-verify"), params={"IMAGE": IMAGE, "KEY": "/k/cosign.pub",
                                                      "POLICY_FILE": "release.yaml"},
              workspaces={"policy": "/ws/policy"})
    assert _flag(out.calls[-1], "--policy") == "/ws/policy/release.yaml"


def test_verify_needs_a_key(run) -> None:
    out = run(task_step("chainmail-verify"), params={"IMAGE": IMAGE})
    assert out.rc == 2 and "set KEY or bind the public-key workspace" in out.stderr
    assert out.calls == []


def test_verify_refuses_two_policies(run) -> None:
    out = run(task_step("chainmail-verify"), params={"IMAGE": IMAGE, "KEY": "/k", "POLICY": "x"},
              workspaces={"policy": "/ws/policy"})
    assert out.rc == 2 and out.calls == []


def test_verify_fails_the_step_when_the_signature_does_not_verify(run) -> None:
    out = run(task_step("chainmail-verify"), params={"IMAGE": IMAGE, "KEY": "/k"}, rc=12)
    assert out.rc == 12
    assert len(out.calls) == 1, "set -e stops before the attestation check"


# ---------------------------------------------------------------------------------- StepActions


def test_snapshot_stepaction(run) -> None:
    out = run(stepaction_step("chainmail-snapshot"), params={"TASKRUN": "t", "RUN_UID": "u", "OUTPUT_PATH": "/w"})
    assert out.calls == [["snapshot", "--taskrun", "t", "--uid", "u", "--workspace", "/w"]]


def test_format_stepaction(run) -> None:
    out = run(stepaction_step("chainmail-format"), params={"OUTPUT_PATH": "/w"})
    assert out.calls == [["format", "--workspace", "/w"]]


def test_sign_payloads_stepaction(run) -> None:
    out = run(stepaction_step("chainmail-sign-payloads"), params={"OUTPUT_PATH": "/w", "SIGNING_SECRETS_PATH": "/k"})
    assert out.calls == [["sign", "--key", "/k", "--workspace", "/w"]]


def test_store_stepaction_writes_step_results(run) -> None:
    out = run(stepaction_step("chainmail-store"), params={"OUTPUT_PATH": "/w", "DOCKERCONFIG_PATH": "/d"})
    # store verifies with the operator's key (never a key named in signed.json): the namespace's
    # signing-secrets unless KEY or the signing-secrets path says otherwise
    assert out.calls == [["store", "--key", "k8s://team-a/signing-secrets", "--docker-config", "/d",
                          "--workspace", "/w", "--results-dir", str(run.results)]]


def test_store_stepaction_uses_the_signing_key_it_is_given(run) -> None:
    out = run(stepaction_step("chainmail-store"), params={"OUTPUT_PATH": "/w", "SIGNING_SECRETS_PATH": "/k"})
    assert out.calls[0][:3] == ["store", "--key", "/k"]
