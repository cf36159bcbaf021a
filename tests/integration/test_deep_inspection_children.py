"""``slsa-tekton`` deep inspection: each ``pipelineTask`` content is the child TaskRun *as signed*.

Chains signs a PipelineRun's children before the PipelineRun, and its PipelineRun provenance embeds each child
as the API then returns it (``metadata``, ``spec``, ``status``; no ``kind``/``apiVersion``), so with the
children's own ``chains.tekton.dev/*`` annotations, finalizers and managedFields. ``chainmail run
--with-children`` must do the same: the PipelineRun's provenance is built from the children re-read after they
were signed (from the cluster, or, for a run read from a file without one, with the annotations written to the
file store).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.models import RunSnapshot
from chainmail.snapshot import reread_children
from clirun import cli

REPO = Path(__file__).resolve().parents[2]
PREFIX = "chains.tekton.dev/"
MANAGED = [{"manager": "pipelines-controller", "operation": "Update", "apiVersion": "tekton.dev/v1",
            "time": "2026-11-20T14:02:10Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
SETS = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3",
        "artifacts.pipelinerun.storage=tekton", "artifacts.taskrun.storage=tekton", "artifacts.oci.storage=tekton",
        "artifacts.pipelinerun.format=slsa/v2alpha4", "artifacts.taskrun.format=slsa/v2alpha4",
        "artifacts.pipelinerun.enable-deep-inspection=true",
        "builddefinition.buildtype=https://tekton.dev/chains/v2/slsa-tekton"]


@pytest.fixture(autouse=True)
def _no_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)


def _load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = json.loads((REPO / "examples" / "pipelinerun.json").read_text())
    run = copy.deepcopy(doc["pipelineRun"])
    children = [copy.deepcopy(tr) for tr in doc["taskRuns"]]
    for obj in (run, *children):
        obj["metadata"].pop("resourceVersion", None)
    for child in children:
        child["metadata"]["finalizers"] = ["chains.tekton.dev/finalizer"]
        child["metadata"]["managedFields"] = MANAGED
    return run, children


def _contents(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each ``pipelineTask`` content, decoded, by TaskRun name."""
    out = {}
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if dep.get("name") == "pipelineTask" and "content" in dep:
            body = json.loads(base64.b64decode(dep["content"]))
            out[body["metadata"]["name"]] = body
    return out


def test_with_children_embeds_the_children_as_signed(kube_api: Any, tmp_path: Path, key: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run, children = _load()
    for obj in (run, *children):
        kube_api.add(obj)
    ns, name = run["metadata"]["namespace"], run["metadata"]["name"]
    args = ["run", "--pipelinerun", name, "--namespace", ns, "--key", key, "--with-children",
            "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=ns)), "--workspace", str(tmp_path / "ws")]
    code, _, err = cli(args + [a for s in SETS for a in ("--set", s)], capsys)
    assert code == 0, err
    notes = kube_api.annotations("pipelineruns", ns, name)
    statement = json.loads(base64.b64decode(notes[PREFIX + f"payload-pipelinerun-{run['metadata']['uid']}"]))
    contents = _contents(statement)
    assert set(contents) == {c["metadata"]["name"] for c in children}
    for child in children:
        now = kube_api.get("taskruns", ns, child["metadata"]["name"])
        body = contents[child["metadata"]["name"]]
        assert set(body) == {"metadata", "spec", "status"}
        meta = body["metadata"]
        assert meta["annotations"] == now["metadata"]["annotations"]
        assert meta["annotations"][PREFIX + "signed"] == "true"
        assert PREFIX + f"signature-taskrun-{child['metadata']['uid']}" in meta["annotations"]
        assert meta["resourceVersion"] == now["metadata"]["resourceVersion"]
        assert meta["finalizers"] == ["chains.tekton.dev/finalizer"]
        assert meta["managedFields"] == MANAGED


def test_file_snapshot_children_get_the_annotations_written(tmp_path: Path) -> None:
    """No cluster: a child re-read is the snapshot's copy plus what the file store says was annotated."""
    run, children = _load()
    ctx = Context(config=Config.from_mapping({"chainmail.storage.file.directory": str(tmp_path)}))
    child = children[0]
    md = child["metadata"]
    folder = tmp_path / f"taskrun-{md['namespace']}-{md['name']}"
    folder.mkdir()
    (folder / "annotations.json").write_text(json.dumps({PREFIX + "signed": "true", PREFIX + "payload-x": "eA=="}))
    fresh = reread_children(RunSnapshot(run, children, "file:run.json"), ctx)
    notes = fresh.task_runs[0]["metadata"]["annotations"]
    assert notes[PREFIX + "signed"] == "true" and notes[PREFIX + "payload-x"] == "eA=="
    assert {k: v for k, v in notes.items() if not k.startswith(PREFIX)} == md.get("annotations", {})
    assert fresh.task_runs[1] == children[1]  # nothing written for it: unchanged
    assert PREFIX + "signed" not in (children[0]["metadata"].get("annotations") or {})  # the input is not mutated


# ------------------------------------------------------------------ sweep and the finally task

DEEP = {"artifacts.taskrun.storage": "tekton", "artifacts.pipelinerun.storage": "tekton",
        "artifacts.oci.storage": "tekton", "chainmail.sign.verify-images-exist": "false",
        "artifacts.pipelinerun.format": "slsa/v2alpha4", "artifacts.taskrun.format": "slsa/v2alpha4",
        "artifacts.pipelinerun.enable-deep-inspection": "true",
        "builddefinition.buildtype": "https://tekton.dev/chains/v2/slsa-tekton"}


def _ctx(kube_api: Any, tmp_path: Path, key: str) -> Context:
    from chainmail._internal.http import RetryPolicy
    from chainmail._internal.kube import KubeClient

    ctx = Context(config=Config.from_mapping(DEEP), key=key)
    ctx.kube = KubeClient.from_environment(kube_api.kubeconfig(tmp_path),
                                           retry=RetryPolicy(deadline=10, initial_backoff=0.01, max_backoff=0.1))
    return ctx


def _embedded_as_now(kube_api: Any, ns: str, pr: dict[str, Any], names: set[str]) -> None:
    notes = kube_api.annotations("pipelineruns", ns, pr["metadata"]["name"])
    statement = json.loads(base64.b64decode(notes[PREFIX + f"payload-pipelinerun-{pr['metadata']['uid']}"]))
    contents = _contents(statement)
    assert names <= set(contents)
    for name in names:
        now = kube_api.get("taskruns", ns, name)
        assert now["metadata"]["annotations"][PREFIX + "signed"] == "true"
        assert contents[name]["metadata"]["annotations"] == now["metadata"]["annotations"], name
        assert contents[name]["metadata"]["resourceVersion"] == now["metadata"]["resourceVersion"], name


def test_sweep_embeds_the_children_as_signed(kube_api: Any, tmp_path: Path, key: str) -> None:
    from chainmail.sweep import SweepOptions, sweep
    from doubles.kube import pipelinerun_with_children

    pr, children = pipelinerun_with_children("release", "ci", tasks=("clone", "build"))
    for obj in (pr, *children):
        kube_api.add(obj)
    ctx = _ctx(kube_api, tmp_path, key)
    for _ in range(2):  # the PipelineRun waits for its children: at most one more pass
        sweep(ctx, SweepOptions(namespace="ci"))
    _embedded_as_now(kube_api, "ci", pr, {c["metadata"]["name"] for c in children})


def test_finally_provisional_embeds_the_children_as_signed(kube_api: Any, tmp_path: Path, key: str) -> None:
    from chainmail.finally_ import sign_so_far
    from doubles.kube import pipelinerun_with_children, running_taskrun

    pr, children = pipelinerun_with_children("release", "ci", tasks=("clone", "build"), finished=False,
                                             finally_tasks=("sign",))
    children[-1] = running_taskrun(children[-1]["metadata"]["name"], "ci", labels=children[-1]["metadata"]["labels"])
    for obj in (pr, *children):
        kube_api.add(obj)
    report = sign_so_far(_ctx(kube_api, tmp_path, key), "release", "ci", pr["metadata"]["uid"])
    assert report.outcome == "provisional", report
    _embedded_as_now(kube_api, "ci", pr, {"release-clone", "release-build"})


def test_reread_lists_once_and_keeps_a_gone_child_as_first_read(kube_api: Any, tmp_path: Path, key: str) -> None:
    run, children = _load()
    for obj in (run, *children):
        kube_api.add(obj)
    ns = run["metadata"]["namespace"]
    first = [kube_api.get("taskruns", ns, c["metadata"]["name"]) for c in children]
    snapshot = RunSnapshot(kube_api.get("pipelineruns", ns, run["metadata"]["name"]), first, "api:test")
    with kube_api.lock:
        kube_api.objects[("taskruns", ns, children[0]["metadata"]["name"])]["metadata"]["annotations"] = {"x": "1"}
    kube_api.delete("taskruns", ns, children[1]["metadata"]["name"])
    kube_api.request_log.clear()
    fresh = reread_children(snapshot, _ctx(kube_api, tmp_path, key))
    assert fresh.task_runs[0]["metadata"]["annotations"] == {"x": "1"}
    assert fresh.task_runs[1] == first[1]
    assert [r.method for r in kube_api.request_log].count("GET") <= 2  # one list, one get for the missing child
