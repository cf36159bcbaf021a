"""Every ``chainmail`` command in docs/openshift.md runs, in order, against a cluster double.

The double stands in for the OpenShift cluster the doc talks to: it holds
``openshift-pipelines/chains-config`` as the operator writes it and the operator's ``signing-secrets``.
``oc`` lines are not run; their outputs (``tektonconfig.yaml``) are provided as the doc describes them.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from clirun import doc_line

DOC = Path(__file__).resolve().parents[2] / "docs" / "openshift.md"

TEKTONCONFIG = {
    "apiVersion": "operator.tekton.dev/v1alpha1",
    "kind": "TektonConfig",
    "metadata": {"name": "config"},
    "spec": {"targetNamespace": "openshift-pipelines", "profile": "all",
             "chain": {"disabled": False, "generateSigningSecret": True, "artifacts.taskrun.format": "in-toto",
                       "artifacts.taskrun.storage": "tekton,oci", "transparency.enabled": False}},
}


def doc_commands() -> list[str]:
    """The ``chainmail`` lines of the doc's ``sh`` blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith("chainmail ")]


def test_the_doc_has_the_commands_the_brief_names() -> None:
    commands = doc_commands()
    assert any(c.startswith("chainmail config check") for c in commands)
    assert any(c.startswith("chainmail config import") for c in commands)
    formats = {c.split("--format ")[1].split()[0] for c in commands if c.startswith("chainmail policy nodes")}
    assert formats == {"policy-json", "registries-d", "clusterimagepolicy", "machineconfig", "butane"}


@pytest.fixture
def openshift(kube_api, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    keys = Path(key)
    kube_api.add({"kind": "Secret", "metadata": {"name": "signing-secrets", "namespace": "openshift-pipelines"},
                  "data": {name: base64.b64encode((keys / name).read_bytes()).decode()
                           for name in ("cosign.key", "cosign.pub", "cosign.password")}})
    kube_api.add({"kind": "ConfigMap", "metadata": {"name": "chains-config", "namespace": "openshift-pipelines"},
                  "data": {"artifacts.taskrun.format": "in-toto", "artifacts.taskrun.storage": "tekton,oci",
                           "artifacts.pipelinerun.format": "in-toto", "artifacts.pipelinerun.storage": "oci",
                           "artifacts.oci.format": "simplesigning", "artifacts.oci.storage": "oci",
                           "transparency.enabled": "false"}})
    work = tmp_path / "work"
    work.mkdir()
    (work / "tektonconfig.yaml").write_text(yaml.safe_dump(TEKTONCONFIG))  # oc get tektonconfig config -o yaml
    kube_api.use_admin_token()  # the doc's commands are an administrator's, run with `oc login` as one
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path)))
    monkeypatch.chdir(work)
    return work


def test_every_chainmail_command_in_the_doc_runs(openshift: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commands = doc_commands()
    assert len(commands) >= 8
    for command in commands:
        code, _, err = doc_line(command, capsys, cwd=openshift)
        assert code == 0, f"{command}: exit {code}: {err}"
        assert "Traceback" not in err
    assert yaml.safe_load((openshift / "chains-config.yaml").read_text())["metadata"]["namespace"] == \
        "openshift-pipelines"
    assert (openshift / "cosign.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    cip = yaml.safe_load((openshift / "cip.yaml").read_text())
    assert cip["kind"] == "ClusterImagePolicy" and cip["spec"]["scopes"] == ["quay.io/acme"]
    assert yaml.safe_load((openshift / "51-worker-chainmail.yaml").read_text())["kind"] == "MachineConfig"
    butane = yaml.safe_load((openshift / "chainmail.bu").read_text())
    assert butane["metadata"]["labels"]["machineconfiguration.openshift.io/role"] == "master"
    policy = next(f for f in butane["storage"]["files"] if f["path"] == "/etc/containers/policy.json")
    assert "quay.io/acme" in json.loads(policy["contents"]["inline"])["transports"]["docker"]
