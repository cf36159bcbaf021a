"""Tekton bundle images as `tkn bundle push` builds them (no registry)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from chainmail import bundle as b
from chainmail.errors import InputError

TASK = """\
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: hello
  annotations:
    tekton.dev/displayName: "Hello <world> & co"
spec:
  steps:
    - name: say
      image: alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000
      script: echo hi
      env:
        - {name: WHEN, value: 2024-01-01}
"""
PIPELINE_AND_ACTION = """\
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: pipe}
spec:
  tasks: [{name: t, taskRef: {name: hello}}]
---
apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata: {name: act}
spec: {image: alpine, script: echo}
"""
JSON_TASK = '{"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": "json-task"}, "spec": {"steps": []}}'


def _tar_entries(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
        return tar.getmembers()


def test_build_layout() -> None:
    built = b.build_bundle([TASK, PIPELINE_AND_ACTION, JSON_TASK], annotations={"org.example/a": "1"},
                           labels={"version": "0.1"}, created="2024-05-01T00:00:00Z")
    manifest = json.loads(built.manifest)
    assert manifest["mediaType"] == b.MANIFEST_TYPE and manifest["schemaVersion"] == 2
    assert manifest["config"] == {"mediaType": b.CONFIG_TYPE, "size": len(built.config),
                                  "digest": "sha256:" + hashlib.sha256(built.config).hexdigest()}
    assert manifest["annotations"] == {"org.example/a": "1"}
    config = json.loads(built.config)
    assert list(config) == ["architecture", "created", "history", "os", "rootfs", "config"]
    assert config["created"] == "2024-05-01T00:00:00Z" and config["config"] == {"Labels": {"version": "0.1"}}
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in built.layers]
    assert len(config["history"]) == len(built.layers) == 4
    # files sorted by sha256 of their text; documents keep their order inside a file
    order = sorted([TASK, PIPELINE_AND_ACTION, JSON_TASK], key=lambda t: hashlib.sha256(t.encode()).digest())
    names = {TASK: ["hello"], PIPELINE_AND_ACTION: ["pipe", "act"], JSON_TASK: ["json-task"]}
    assert [layer.obj.name for layer in built.layers] == [n for text in order for n in names[text]]
    for layer, desc in zip(built.layers, manifest["layers"], strict=True):
        assert desc["mediaType"] == b.LAYER_TYPE
        assert desc["annotations"] == {b.ANN_API_VERSION: layer.obj.api_version.split("/")[1],
                                       b.ANN_KIND: layer.obj.kind.lower(), b.ANN_NAME: layer.obj.name}
        entries = _tar_entries(layer.blob)
        assert [(e.name, e.mode, e.mtime, e.isfile()) for e in entries] == [(layer.obj.name, 0o600, 0, True)]
        assert "sha256:" + hashlib.sha256(gzip.decompress(layer.blob)).hexdigest() == layer.diff_id
    action = next(layer for layer in built.layers if layer.obj.kind == "StepAction")
    assert action.annotations[b.ANN_API_VERSION] == "v1beta1" and action.annotations[b.ANN_KIND] == "stepaction"


def test_yaml_becomes_sorted_go_json_and_json_is_kept() -> None:
    built = b.build_bundle([TASK, JSON_TASK])
    by_name = {layer.obj.name: layer.obj.raw for layer in built.layers}
    hello = by_name["hello"]
    assert hello.startswith(b'{"apiVersion":"tekton.dev/v1","kind":"Task","metadata":{"annotations":')
    assert b"\\u003cworld\\u003e \\u0026 co" in hello  # Go's HTML escaping
    assert json.loads(hello)["spec"]["steps"][0]["env"][0]["value"] == "2024-01-01"  # no timestamp decoding
    assert by_name["json-task"] == JSON_TASK.encode()


def test_deterministic_and_order_independent() -> None:
    one = b.build_bundle([TASK, PIPELINE_AND_ACTION])
    two = b.build_bundle([PIPELINE_AND_ACTION, TASK])
    assert one.manifest == two.manifest and one.config == two.config
    assert json.loads(one.config)["created"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(("text", "match"), [
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "not a Tekton object"),
    ("apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {}\n", "no metadata.name"),
    ("kind: Task\nmetadata: {name: x}\n", "no kind or apiVersion"),
    ("- a\n- b\n", "expected a Tekton object"),
    ("{not json", "not valid JSON"),
    ("a: [", "not valid YAML"),
    ("", "no Tekton objects"),
])
def test_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        b.build_bundle([text])


def test_limits_and_duplicates() -> None:
    many = "\n---\n".join(f"apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {{name: t{i}}}\n" for i in range(21))
    with pytest.raises(InputError, match="at most 20"):
        b.build_bundle([many])
    with pytest.raises(InputError, match="appears twice"):
        b.build_bundle([TASK, TASK + "\n"])


def test_ctime_sources() -> None:
    assert b.ctime_from("2024-05-01", {}) == "2024-05-01T00:00:00Z"
    assert b.ctime_from("2024-05-01T10:20:30", {}) == "2024-05-01T10:20:30Z"
    assert b.ctime_from("2024-05-01T10:20:30+02:00", {}) == "2024-05-01T08:20:30Z"
    assert b.ctime_from("86400", {}) == "1970-01-02T00:00:00Z"
    assert b.ctime_from(None, {"SOURCE_DATE_EPOCH": "1700000000"}) == "2023-11-14T22:13:20Z"
    assert b.ctime_from(None, {}) == "1970-01-01T00:00:00Z"
    with pytest.raises(InputError):
        b.ctime_from("yesterday", {})
    with pytest.raises(InputError):
        b.ctime_from(None, {"SOURCE_DATE_EPOCH": "soon"})


def test_pairs_and_first_entry() -> None:
    assert b.parse_pairs(["a=1", "b=x=y"], "--label") == {"a": "1", "b": "x=y"}
    with pytest.raises(InputError):
        b.parse_pairs(["novalue"], "--label")
    tar = b.tar_single("obj", b"{}")
    assert len(tar) % 512 == 0 and b._first_entry(gzip.compress(tar)) == b"{}"
    assert b._first_entry(b"raw bytes") == b"raw bytes"
