"""Every ``chainmail`` command in docs/migrating-from-chains.md runs, in order, against a cluster double.

The double holds what a cluster that runs Tekton Chains has: ``tekton-chains/chains-config``, Chains'
``signing-secrets`` (the key that signed ``../shared/fixtures/chains-run``) and, in namespace ``demo``, the
TaskRun Chains really signed next to one it never got to. The doc's ``kubectl`` lines change objects
chainmail does not own; the ConfigMap patch is applied to the double from the doc's own JSON, the
Deployment lines are checked for the flag they set. There is no registry here, so the test's config keeps
image signatures in annotations (``artifacts.oci.storage: tekton``); the OCI side of the same Chains run is
covered by tests/integration/test_oci_verify.py.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chainmail import annotations as ann
from clirun import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-chains.md"

CHAINS_CONFIG = {"artifacts.taskrun.format": "in-toto", "artifacts.taskrun.storage": "tekton",
                 "artifacts.oci.storage": "tekton", "transparency.enabled": "false",
                 "chainmail.sign.verify-images-exist": "false"}


def doc_lines() -> list[str]:
    """The lines of the doc's ``sh`` blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    return [line.strip() for line in "\n".join(blocks).replace("\\\n", " ").splitlines() if line.strip()]


def _yaml_block() -> dict[str, str]:
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return {str(k): str(v) for k, v in yaml.safe_load(block).items()}


@pytest.fixture
def cluster(kube_api: Any, key: str, shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    keys = Path(key)
    kube_api.add({"kind": "Secret", "metadata": {"name": "signing-secrets", "namespace": "tekton-chains"},
                  "data": {name: base64.b64encode((keys / name).read_bytes()).decode()
                           for name in ("cosign.key", "cosign.pub", "cosign.password")}})
    kube_api.add({"kind": "ConfigMap", "metadata": {"name": "chains-config", "namespace": "tekton-chains"},
                  "data": CHAINS_CONFIG})
    # installing the watcher: the same keys in its own ConfigMap, plus the doc's idle setting
    kube_api.add({"kind": "ConfigMap", "metadata": {"name": "chainmail-config", "namespace": "chainmail"},
                  "data": {**CHAINS_CONFIG, **_yaml_block()}})
    signed_by_chains = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    signed_by_chains["kind"] = "TaskRun"
    kube_api.add(signed_by_chains)
    template = {k: v for k, v in signed_by_chains.items() if k != "metadata"}
    labels = signed_by_chains["metadata"].get("labels", {})
    kube_api.add({**template, "metadata": {"name": "unit-tests", "namespace": "demo", "labels": labels}})
    kube_api.add({**template, "metadata": {"name": "other-team", "namespace": "team-b"}})
    kube_api.use_admin_token()  # the doc's commands are an administrator's
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return kube_api


def _kubectl(api: Any, line: str) -> None:
    """Apply a doc ``kubectl`` line's effect to the double.

    The ConfigMap patch is applied from the doc's JSON; the Deployment lines must set what the doc says
    they set; the finalizer loop has nothing to do here (the double's runs carry no Chains finalizers).
    """
    if "patch configmap chainmail-config" in line:
        words = shlex.split(line)
        patch = json.loads(words[words.index("-p") + 1])
        current = api.get("configmaps", "chainmail", "chainmail-config")
        current["data"].update(patch["data"])
        api.add(current)
    elif "tekton-chains-controller" in line:
        assert "--namespace=team-b,team-c" in line or "--replicas=0" in line, line


def test_every_chainmail_command_in_the_doc_runs(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    lines = doc_lines()
    commands = [line for line in lines if line.startswith("chainmail ")]
    assert len(commands) >= 7
    outputs: dict[str, str] = {}
    for line in lines:
        if line.startswith("kubectl"):
            _kubectl(cluster, line)
        if not line.startswith(("chainmail ", "cmp ")):
            continue
        words = shlex.split(line)
        if words[0] == "cmp":
            assert subprocess.run(words, check=False).returncode == 0, line
            continue
        target = None
        if ">" in words:
            target = words[words.index(">") + 1]
            words = words[: words.index(">")]
        code, out, err = cli(words[1:], capsys)
        assert code == 0, f"{line}: exit {code}: {err}"
        assert "Traceback" not in err and "s3cret" not in out + err
        outputs[line] = out
        if target is not None:
            Path(target).write_text(out)

    # the key was copied, immutable, with only the key entries
    copied = cluster.get("secrets", "chainmail", "signing-secrets")
    assert copied["immutable"] is True
    assert sorted(copied["data"]) == ["cosign.key", "cosign.password", "cosign.pub"]
    assert Path("cosign.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # the sweep signed the run Chains never got to, left Chains' signature alone, and kept off team-b
    assert ann.is_signed(cluster.get("taskruns", "demo", "unit-tests"))
    assert not ann.is_signed(cluster.get("taskruns", "team-b", "other-team"))
    sweep = next(out for line, out in outputs.items() if line.startswith("chainmail sweep"))
    assert sweep.startswith("sweep: 1 signed")


def test_the_chains_signature_survives_the_sweep_unchanged(cluster: Any, shared: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    for line in doc_lines():
        if line.startswith("chainmail keys copy") or line.startswith("chainmail sweep"):
            code, _, err = cli(shlex.split(line)[1:], capsys)
            assert code == 0, err
        elif line.startswith("kubectl -n chainmail patch configmap"):
            _kubectl(cluster, line)
    after = cluster.get("taskruns", "demo", "build-app")["metadata"]["annotations"]
    assert {k: v for k, v in after.items() if k.startswith("chains.tekton.dev/")} == \
        {k: v for k, v in before["metadata"]["annotations"].items() if k.startswith("chains.tekton.dev/")}


def test_keys_copy_refuses_what_it_cannot_use(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
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
