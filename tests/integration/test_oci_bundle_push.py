"""`chainmail catalog bundle push/inspect` round trip through a real registry (pushed with oras-py)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from chainmail import bundle as b
from chainmail._internal.registry import RegistryClient
from chainmail.errors import InputError, RegistryAuthError
from clirun import cli
from doubles.registry import RegistryServer

pytestmark = pytest.mark.registry

TASK = """\
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: chainmail-sign
  labels: {app.kubernetes.io/version: "0.1"}
spec:
  params: [{name: run, type: string}]
  steps:
    - name: sign
      image: ghcr.io/example/chainmail@sha256:1111111111111111111111111111111111111111111111111111111111111111
      args: [run, --taskrun, $(params.run)]
"""
MORE = """\
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: release}
spec:
  tasks: [{name: sign, taskRef: {name: chainmail-sign}}]
---
apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata: {name: chainmail-verify}
spec: {image: "ghcr.io/example/chainmail:0.1", args: [verify]}
"""


@pytest.fixture(autouse=True)
def _no_ambient_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    a, c = tmp_path / "task.yaml", tmp_path / "more.yaml"
    a.write_text(TASK)
    c.write_text(MORE)
    return [a, c]


def test_push_pull_round_trip(registry: RegistryServer, inputs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("oras.provider")
    ref = f"{registry.host}/catalog/chainmail:0.1"
    args = ["catalog", "bundle", "push", ref, "--ctime", "2024-06-01T12:00:00Z",
            "--annotate", "org.opencontainers.image.source=https://github.com/example/chainmail",
            "--label", "version=0.1"]
    for path in inputs:
        args += ["-f", str(path)]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    digest = out.strip()
    assert "Added Task: chainmail-sign" in err

    # exactly the bytes that were built (no re-serialisation by oras)
    built = b.build_bundle([p.read_text() for p in inputs], created="2024-06-01T12:00:00Z",
                           annotations={"org.opencontainers.image.source": "https://github.com/example/chainmail"},
                           labels={"version": "0.1"})
    raw = registry.get_manifest("catalog/chainmail", "0.1")
    assert raw == built.manifest and digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    manifest = json.loads(raw)
    assert manifest["mediaType"] == b.MANIFEST_TYPE and len(manifest["layers"]) == 3
    assert manifest["annotations"] == {"org.opencontainers.image.source": "https://github.com/example/chainmail"}
    config = json.loads(registry.get_blob("catalog/chainmail", manifest["config"]["digest"]))
    assert config["created"] == "2024-06-01T12:00:00Z" and config["config"]["Labels"] == {"version": "0.1"}

    # every layer: one 0600 entry named after the object, holding the object
    sources = {doc["metadata"]["name"]: doc for text in (TASK, MORE) for doc in yaml.safe_load_all(text)}
    for layer in manifest["layers"]:
        ann = layer["annotations"]
        blob = registry.get_blob("catalog/chainmail", layer["digest"])
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
            [member] = tar.getmembers()
            content = tar.extractfile(member).read()  # type: ignore[union-attr]
        assert member.name == ann[b.ANN_NAME] and member.mode == 0o600
        doc = json.loads(content)
        assert doc == sources[ann[b.ANN_NAME]]
        assert ann[b.ANN_KIND] == doc["kind"].lower()
        assert ann[b.ANN_API_VERSION] == doc["apiVersion"].split("/")[1]

    # resolver-style lookups by digest
    client = RegistryClient()
    pinned = f"{registry.host}/catalog/chainmail@{digest}"
    assert b.resolve(client, pinned, "task", "chainmail-sign") == sources["chainmail-sign"]
    assert b.resolve(client, pinned, "stepaction", "chainmail-verify")["spec"]["args"] == ["verify"]
    assert b.resolve(client, pinned, "Pipeline", "release")["kind"] == "Pipeline"
    with pytest.raises(InputError):
        b.resolve(client, pinned, "task", "missing")

    # the same inputs give the same digest (tkn's deterministic ordering)
    code, out2, err = cli(args[:4] + ["-f", str(inputs[1]), "-f", str(inputs[0])] + args[4:10], capsys)
    assert code == 0 and out2.strip() == digest, err

    code, out, err = cli(["catalog", "bundle", "inspect", pinned], capsys)
    assert code == 0, err
    assert "task/chainmail-sign (apiVersion v1)" in out and "stepaction/chainmail-verify (apiVersion v1beta1)" in out
    code, out, err = cli(["catalog", "bundle", "inspect", ref, "-o", "json"], capsys)
    assert code == 0, err
    assert [layer["annotations"][b.ANN_NAME] for layer in json.loads(out)["layers"]] == \
        [layer["annotations"][b.ANN_NAME] for layer in manifest["layers"]]


def test_oras_reads_the_bundle(registry: RegistryServer, inputs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    oras_provider = pytest.importorskip("oras.provider")
    ref = f"{registry.host}/catalog/oras-read:1"
    code, _out, err = cli(["catalog", "bundle", "push", ref, "-f", str(inputs[0])], capsys)
    assert code == 0, err
    reader = oras_provider.Registry(hostname=registry.host, insecure=True)
    manifest = reader.get_manifest(reader.get_container(ref),
                                   allowed_media_type=["application/vnd.docker.distribution.manifest.v2+json"])
    assert manifest["layers"][0]["annotations"][b.ANN_NAME] == "chainmail-sign"


def test_push_to_basic_auth_registry(auth_registry: RegistryServer, inputs: list[Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("oras.provider")
    ref = f"{auth_registry.host}/catalog/private:0.1"
    code, _out, err = cli(["catalog", "bundle", "push", ref, "-f", str(inputs[0])], capsys)
    assert code == RegistryAuthError.exit_code, err
    wrong = auth_registry.docker_config(tmp_path / "wrong", password="nope")
    code, _out, err = cli(["catalog", "bundle", "push", ref, "-f", str(inputs[0]), "--docker-config", str(wrong)],
                          capsys)
    assert code == RegistryAuthError.exit_code, err
    cfg = auth_registry.docker_config(tmp_path / "docker")
    code, out, err = cli(["catalog", "bundle", "push", ref, "-f", str(inputs[0]), "--docker-config", str(cfg)],
                         capsys)
    assert code == 0, err
    assert auth_registry.get_manifest("catalog/private", "0.1") is not None
    code, out, err = cli(["catalog", "bundle", "inspect", ref, "--docker-config", str(cfg)], capsys)
    assert code == 0 and "task/chainmail-sign" in out


def test_push_rejects_bad_input(registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cm.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    code, _out, err = cli(["catalog", "bundle", "push", f"{registry.host}/catalog/bad:1", "-f", str(bad)], capsys)
    assert code == InputError.exit_code and "not a Tekton object" in err
