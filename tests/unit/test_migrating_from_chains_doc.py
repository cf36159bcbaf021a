"""Every command in docs/migrating-from-chains.md runs, in order, against a cluster double.

The double holds what a cluster that runs Tekton Chains has: Chains' controller Deployment (its container
with no ``args``, as Chains ships it), ``tekton-chains/chains-config``, Chains' ``signing-secrets`` (the key
that signed ``../shared/fixtures/chains-run``) and, in namespace ``demo``, the TaskRun Chains really signed
next to one it never got to, each run carrying the finalizers Chains puts on the runs it sees.

``chainmail`` lines run in-process through the CLI's ``main``; every other line (``kubectl``, ``jq``, the
finalizer loop, ``cmp``) runs through ``bash`` with a real ``kubectl`` on ``PATH`` and a kubeconfig of a
cluster administrator pointing at the double, which serves kubectl's discovery, JSON and merge patches and
the ``scale`` subresource with RBAC enforced. The test then checks what each line did to the double's
objects. There is no registry here, so the test's config keeps image signatures in annotations
(``artifacts.oci.storage: tekton``); the OCI side of the same Chains run is covered by
tests/integration/test_oci_verify.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from chainmail import annotations as ann
from clirun import cli, doc_line
from doubles.kube import KubeApiDouble
from tooling import require_tool

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-chains.md"

CHAINS_CONFIG = {"artifacts.taskrun.format": "in-toto", "artifacts.taskrun.storage": "tekton",
                 "artifacts.oci.storage": "tekton", "transparency.enabled": "false",
                 "chainmail.sign.verify-images-exist": "false"}
KUBECTL_USER = "migrating-admin"
#: Chains' controller Deployment as its release installs it: one container, configured by env, no args.
CHAINS_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "tekton-chains-controller", "namespace": "tekton-chains",
                 "labels": {"app.kubernetes.io/name": "controller", "app.kubernetes.io/part-of": "tekton-chains"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "controller",
                                     "app.kubernetes.io/part-of": "tekton-chains"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "controller",
                                    "app.kubernetes.io/part-of": "tekton-chains"}},
            "spec": {"serviceAccountName": "tekton-chains-controller",
                     "containers": [{"name": "tekton-chains-controller",
                                     "image": "registry.example/tekton-chains/controller:v0.25.1",
                                     "env": [{"name": "SYSTEM_NAMESPACE", "value": "tekton-chains"}]}]},
        },
    },
}


def doc_commands() -> list[str]:
    """The commands of the doc's ``bash`` blocks, in order.

    A line starting in column 0 starts a command; an indented line, or the ``done``/``fi`` that closes
    a loop, belongs to the command above it (so a ``\\`` continuation or a whole ``for`` loop is one).
    """
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S):
        lines: list[str] = []
        for line in block.splitlines():
            if not line.strip():
                continue
            if lines and (line[0].isspace() or line.split()[0] in ("done", "fi", "esac", "}")):
                lines[-1] += "\n" + line
            else:
                lines.append(line)
        commands.extend(lines)
    return commands


def _yaml_block() -> dict[str, str]:
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return {str(k): str(v) for k, v in yaml.safe_load(block).items()}


def _run(name: str, namespace: str, template: dict[str, Any], finalizers: list[str] | None = None,
         kind: str = "TaskRun", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    return {**template, "kind": kind, "metadata": meta}


@pytest.fixture
def cluster(kube_api_https: KubeApiDouble, key: str, shared: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> KubeApiDouble:
    api = kube_api_https
    keys = Path(key)
    api.add({"kind": "Secret", "metadata": {"name": "signing-secrets", "namespace": "tekton-chains"},
             "data": {name: base64.b64encode((keys / name).read_bytes()).decode()
                      for name in ("cosign.key", "cosign.pub", "cosign.password")}})
    api.add({"kind": "ConfigMap", "metadata": {"name": "chains-config", "namespace": "tekton-chains"},
             "data": CHAINS_CONFIG})
    api.add(CHAINS_DEPLOYMENT)
    # installing the watcher: the same keys in its own ConfigMap, plus the doc's idle setting
    api.add({"kind": "ConfigMap", "metadata": {"name": "chainmail-config", "namespace": "chainmail"},
             "data": {**CHAINS_CONFIG, **_yaml_block()}})
    signed_by_chains = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    signed_by_chains["kind"] = "TaskRun"
    assert signed_by_chains["metadata"]["finalizers"] == ["chains.tekton.dev/taskrun"]  # as Chains left it
    api.add(signed_by_chains)
    template = {k: v for k, v in signed_by_chains.items() if k != "metadata"}
    labels = signed_by_chains["metadata"].get("labels", {})
    # Chains saw these runs too (its finalizer), some of which another controller also holds on to
    api.add(_run("unit-tests", "demo", template, ["example.com/keep-logs", "chains.tekton.dev/taskrun"],
                 labels=labels))
    api.add(_run("other-team", "team-b", template))
    pipelinerun = {"apiVersion": "tekton.dev/v1", "spec": {"pipelineRef": {"name": "release"}}}
    api.add(_run("release", "team-c", pipelinerun, ["chains.tekton.dev/pipelinerun"], kind="PipelineRun"))
    api.add(_run("nightly", "team-c", pipelinerun, ["example.com/keep-logs"], kind="PipelineRun"))
    api.use_admin_token()  # the doc's commands are an administrator's
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return api


@pytest.fixture
def shell(cluster: KubeApiDouble, tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run one of the doc's shell commands with ``bash``, a real kubectl and jq, as a cluster admin."""
    for tool in ("kubectl", "jq"):
        if shutil.which(tool) is None:
            require_tool(tool, "the migration doc's kubectl lines run with a real kubectl and jq "
                               "(`make system-deps` installs Debian's kubernetes-client and jq)")
    admin = cluster.user_token(KUBECTL_USER, ("system:masters",))
    home = tmp_path / "home"  # kubectl's discovery cache, away from the user's
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
           "KUBECONFIG": str(cluster.kubeconfig(tmp_path, token=admin, name="kubectl-kubeconfig"))}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        # -e and pipefail: a kubectl that fails inside the loop's pipeline fails the command
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], env=env, cwd=Path.cwd(),
                              capture_output=True, text=True, timeout=120, check=False)

    return run


def _chainmail(line: str, capsys: pytest.CaptureFixture[str]) -> str:
    """A doc ``chainmail`` line through the CLI's ``main``; a ``> FILE`` redirection is honoured."""
    code, out, err = doc_line(line, capsys)
    assert code == 0, f"{line}: exit {code}: {err}"
    assert "Traceback" not in err and "s3cret" not in out + err
    return out


def _finalizers(api: KubeApiDouble, plural: str, namespace: str, name: str) -> list[str]:
    return (api.get(plural, namespace, name) or {})["metadata"].get("finalizers", [])


def test_every_command_in_the_doc_runs(cluster: KubeApiDouble, shell: Callable[[str], Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    commands = doc_commands()
    assert sum(c.startswith("chainmail ") for c in commands) >= 7
    assert sum(c.startswith("kubectl ") for c in commands) == 3 and any("| jq " in c for c in commands)
    assert all(c.split()[0] in ("chainmail", "kubectl", "cmp", "for") for c in commands), commands
    outputs: dict[str, str] = {}
    for command in commands:
        if command.startswith("chainmail "):
            outputs[command] = _chainmail(command, capsys)
            continue
        seen = len(cluster.request_log)
        done = shell(command)
        assert done.returncode == 0 and done.stderr == "", f"{command}\nexit {done.returncode}: {done.stderr}"
        outputs[command] = done.stdout
        if command.startswith(("kubectl ", "for ")):  # kubectl spoke to the double, as the admin
            users = {r.user for r in cluster.request_log[seen:]}
            assert users == {KUBECTL_USER}, users

    # step 2: the key was copied, immutable, with only the key entries, and both public halves match
    copied = cluster.get("secrets", "chainmail", "signing-secrets")
    assert copied["immutable"] is True
    assert sorted(copied["data"]) == ["cosign.key", "cosign.password", "cosign.pub"]
    assert Path("cosign.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # step 3: Chains watches every namespace but demo, chainmail watches demo
    (container,) = cluster.get("deployments", "tekton-chains", "tekton-chains-controller")["spec"]["template"][
        "spec"]["containers"]
    assert container["args"] == ["--namespace=team-b,team-c"]
    assert container["env"] == CHAINS_DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["env"]
    config = cluster.get("configmaps", "chainmail", "chainmail-config")["data"]
    assert config == {**CHAINS_CONFIG, "chainmail.namespaces": "demo"}
    # the sweep signed the run Chains never got to, left Chains' signature alone, and kept off team-b
    assert ann.is_signed(cluster.get("taskruns", "demo", "unit-tests"))
    assert not ann.is_signed(cluster.get("taskruns", "team-b", "other-team"))
    sweep = next(out for line, out in outputs.items() if line.startswith("chainmail sweep"))
    assert sweep.startswith("sweep: 1 signed")
    # step 5: Chains is stopped, and only its finalizers are gone
    assert cluster.get("deployments", "tekton-chains", "tekton-chains-controller")["spec"]["replicas"] == 0
    assert _finalizers(cluster, "taskruns", "demo", "build-app") == []
    assert _finalizers(cluster, "taskruns", "demo", "unit-tests") == ["example.com/keep-logs"]
    assert _finalizers(cluster, "pipelineruns", "team-c", "release") == []
    assert _finalizers(cluster, "pipelineruns", "team-c", "nightly") == ["example.com/keep-logs"]
    loop = next(out for line, out in outputs.items() if line.startswith("for "))
    assert sorted(loop.splitlines()) == ["pipelinerun.tekton.dev/release patched",
                                         "taskrun.tekton.dev/build-app patched",
                                         "taskrun.tekton.dev/unit-tests patched"]
    # runs without a Chains finalizer were not written to
    patched = {r.key for r in cluster.writes() if r.user == KUBECTL_USER}
    assert ("taskruns", "team-b", "other-team") not in patched
    assert ("pipelineruns", "team-c", "nightly") not in patched


def test_the_chains_signature_survives_the_sweep_unchanged(cluster: KubeApiDouble, shell: Callable[[str], Any],
                                                           shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    for command in doc_commands():
        if command.startswith(("chainmail keys copy", "chainmail sweep")):
            _chainmail(command, capsys)
        elif command.startswith("kubectl -n chainmail patch configmap"):
            assert shell(command).returncode == 0
    assert cluster.get("configmaps", "chainmail", "chainmail-config")["data"]["chainmail.namespaces"] == "demo"
    after = cluster.get("taskruns", "demo", "build-app")["metadata"]["annotations"]
    assert {k: v for k, v in after.items() if k.startswith("chains.tekton.dev/")} == \
        {k: v for k, v in before["metadata"]["annotations"].items() if k.startswith("chains.tekton.dev/")}


def test_the_doc_kubectl_lines_are_refused_without_the_rights(cluster: KubeApiDouble, shell: Callable[[str], Any],
                                                              tmp_path: Path) -> None:
    """kubectl is held to RBAC like any client: as the watcher's signer it may not touch Chains' Deployment."""
    before = cluster.get("deployments", "tekton-chains", "tekton-chains-controller")
    signer = cluster.kubeconfig(tmp_path, token=cluster.sa_token("chainmail", "chainmail-signer"), name="signer")
    lines = [c for c in doc_commands() if c.startswith("kubectl -n tekton-chains ")]
    assert len(lines) == 2  # the --namespace patch and the scale to 0
    for line in lines:
        seen = len(cluster.request_log)
        done = shell(f"KUBECONFIG={shlex.quote(str(signer))}; {line}")
        assert done.returncode != 0, line
        tried = [r for r in cluster.request_log[seen:] if r.key and r.key[0] == "deployments"]
        assert tried and {(r.status, r.user) for r in tried} == {
            (403, "system:serviceaccount:chainmail:chainmail-signer")}, line
    assert cluster.get("deployments", "tekton-chains", "tekton-chains-controller") == before


def test_keys_copy_refuses_what_it_cannot_use(cluster: KubeApiDouble, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.add({"kind": "Secret", "metadata": {"name": "junk", "namespace": "tekton-chains"},
                 "data": {"cosign.key": base64.b64encode(b"not a key").decode()}})
    code, _, err = cli(["keys", "copy", "k8s://tekton-chains/junk", "k8s://chainmail/signing-secrets"], capsys)
    assert code == 5 and "Traceback" not in err
    assert cluster.get("secrets", "chainmail", "signing-secrets") is None  # nothing half-written
    args = ["keys", "copy", "k8s://tekton-chains/signing-secrets", "k8s://chainmail/signing-secrets"]
    assert cli(args, capsys)[0] == 0
    code, _, err = cli(args, capsys)
    assert code == 4 and "already exists" in err
    assert cli([*args, "--force"], capsys)[0] == 0
    code, _, err = cli(["keys", "copy", "k8s://tekton-chains/signing-secrets", "k8s://tekton-chains/signing-secrets"],
                       capsys)
    assert code == 4 and "the same Secret" in err


def test_the_finalizer_loop_never_drops_a_finalizer_added_after_its_list(
        cluster: KubeApiDouble, shell: Callable[[str], Any], tmp_path: Path) -> None:
    """Another controller adds a finalizer between the loop's list and its patch: the patch is refused, not applied."""
    (loop,) = [c for c in doc_commands() if c.startswith("for ")]
    real = shutil.which("kubectl")
    assert real is not None
    shim = tmp_path / "shim"
    shim.mkdir()
    late = '{"metadata":{"finalizers":["chains.tekton.dev/pipelinerun","example.com/late"]}}'
    (shim / "kubectl").write_text(
        "#!/bin/bash\n"
        f'if [ "$3" = patch ] && [ "$5" = release ] && [ ! -e {tmp_path}/raced ]; then\n'
        f"  touch {tmp_path}/raced\n"
        f"  {real} -n team-c patch pipelineruns release --type merge -p '{late}' >/dev/null\n"
        "fi\n"
        f'exec {real} "$@"\n')
    (shim / "kubectl").chmod(0o755)
    raced = shell(f"PATH={shim}:$PATH; {loop}")
    assert raced.returncode != 0 and "Conflict" in raced.stderr + raced.stdout
    assert _finalizers(cluster, "pipelineruns", "team-c", "release") == ["chains.tekton.dev/pipelinerun",
                                                                         "example.com/late"]
    again = shell(loop)  # what the doc says to do: run the loop again
    assert again.returncode == 0, again.stderr
    assert _finalizers(cluster, "pipelineruns", "team-c", "release") == ["example.com/late"]
    assert _finalizers(cluster, "taskruns", "demo", "unit-tests") == ["example.com/keep-logs"]
