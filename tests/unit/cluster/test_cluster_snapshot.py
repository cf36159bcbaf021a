"""snapshot: files in every accepted shape, clear input errors, and the cluster path."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import yaml

from chainmail import snapshot
from chainmail.errors import InputError, NotFoundError
from doubles.kube import completed_taskrun, pipelinerun_with_children, running_taskrun


def _write(tmp_path, name, doc, *, as_yaml=False):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if as_yaml else json.dumps(doc))
    return path


def test_is_finished_and_successful():
    assert snapshot.is_finished(completed_taskrun("a")) and snapshot.is_successful(completed_taskrun("a"))
    failed = completed_taskrun("b", succeeded=False)
    assert snapshot.is_finished(failed) and not snapshot.is_successful(failed)
    assert not snapshot.is_finished(running_taskrun("c"))
    assert not snapshot.is_finished({"status": {}})
    assert not snapshot.is_finished({})


def test_single_taskrun_json_and_yaml(tmp_path):
    tr = completed_taskrun("build", "demo")
    snap = snapshot.from_file(_write(tmp_path, "tr.json", tr))
    assert snap.kind == "TaskRun" and snap.task_runs == [] and snap.source == f"file:{tmp_path / 'tr.json'}"
    snap = snapshot.from_file(_write(tmp_path, "tr.yaml", tr, as_yaml=True))
    assert snap.run == tr


def test_pipelinerun_with_taskruns_shapes(tmp_path):
    pr, children = pipelinerun_with_children("release", tasks=("clone", "build"))
    snap = snapshot.from_file(_write(tmp_path, "pr.json", {"pipelineRun": pr, "taskRuns": children}))
    assert snap.kind == "PipelineRun" and [t["metadata"]["name"] for t in snap.task_runs] == \
        ["release-clone", "release-build"]
    listed = snapshot.from_file(_write(tmp_path, "list.yaml", {"apiVersion": "v1", "kind": "List",
                                                                "items": [children[0], pr, children[1]]},
                                       as_yaml=True))
    assert listed.kind == "PipelineRun" and len(listed.task_runs) == 2
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump(pr) + "---\n" + yaml.safe_dump(children[0]))
    assert len(snapshot.from_file(multi).task_runs) == 1
    event = snapshot.from_file(_write(tmp_path, "event.json", {"taskRun": children[0]}))
    assert event.kind == "TaskRun"


def test_chains_conformance_inputs_load(shared):
    inputs = sorted((shared / "conformance" / "chains-formats").glob("*/input.json"))
    assert inputs
    for path in inputs:
        snap = snapshot.from_file(path, strict=False)
        assert snap.kind == ("PipelineRun" if path.parent.name.startswith("pipelinerun") else "TaskRun")
    assert len(snapshot.from_file(shared / "conformance/chains-formats/pipelinerun-basic/input.json").task_runs) == 2


@pytest.mark.parametrize(("doc", "message"), [
    ({"kind": "Pipeline", "metadata": {"name": "p"}}, "kind is 'Pipeline', not TaskRun or PipelineRun"),
    ({"apiVersion": "tekton.dev/v1beta1", "kind": "TaskRun", "metadata": {"name": "x"}, "status": {}},
     "apiVersion is 'tekton.dev/v1beta1'"),
    ({"kind": "TaskRun", "status": {}}, "has no metadata"),
    ({"kind": "TaskRun", "metadata": {}, "status": {}}, "metadata.name is missing"),
    ({"kind": "TaskRun", "metadata": {"name": "x"}}, "has no status"),
    ({"kind": "TaskRun", "metadata": {"name": "x", "labels": []}, "status": {}}, "metadata.labels must be a mapping"),
    ({"pipelineRun": {"kind": "TaskRun", "metadata": {"name": "x"}, "status": {}}}, "expected a PipelineRun"),
    ({"kind": "List", "items": []}, "the List has no items"),
    ([1], "expected a TaskRun or PipelineRun object"),
    ("just text", "got str"),
])
def test_input_errors(tmp_path, doc, message):
    path = _write(tmp_path, "bad.json", doc)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        snapshot.from_file(path)
    assert str(path) in str(err.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        snapshot.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        snapshot.from_file(bad)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [")
    with pytest.raises(InputError, match="not valid JSON or YAML"):
        snapshot.from_file(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        snapshot.from_file(empty)
    trs = [completed_taskrun("a"), completed_taskrun("b")]
    with pytest.raises(InputError, match="2 TaskRuns and no PipelineRun"):
        snapshot.from_file(_write(tmp_path, "two.json", {"kind": "List", "items": trs}))


# ------------------------------------------------------------------ cluster


def test_from_cluster_taskrun(kube_api, kube):
    kube_api.add(completed_taskrun("build"))
    snap = snapshot.from_cluster(kube, "TaskRun", None, "build")
    assert snap.ref.name == "build" and snap.ref.namespace == "default"
    assert snap.source == f"api:{kube_api.url}"
    with pytest.raises(NotFoundError):
        snapshot.from_cluster(kube, "TaskRun", "default", "missing")


def test_from_cluster_pipelinerun_fetches_children_with_one_list(kube_api, kube):
    pr, children = pipelinerun_with_children("release", "ci", tasks=("clone", "build", "scan"))
    for obj in (pr, *children):
        kube_api.add(obj)
    kube_api.add(completed_taskrun("unrelated", "ci"))
    kube_api.request_log.clear()
    snap = snapshot.from_cluster(kube, "PipelineRun", "ci", "release")
    assert [t["metadata"]["name"] for t in snap.task_runs] == ["release-clone", "release-build", "release-scan"]
    assert [r.method for r in kube_api.request_log] == ["GET", "GET"]  # the run, then one labelled list
    assert "labelSelector" in kube_api.request_log[1].query


def test_children_missing_label_gone_and_customrun(kube_api, kube, caplog):
    pr, children = pipelinerun_with_children("release", tasks=("clone", "build", "scan"))
    pr["status"]["childReferences"].append({"apiVersion": "tekton.dev/v1beta1", "kind": "CustomRun",
                                            "name": "release-wait", "pipelineTaskName": "wait"})
    del children[0]["metadata"]["labels"]["tekton.dev/pipelineRunUID"]  # found by name instead
    kube_api.add(pr)
    kube_api.add(children[0])
    kube_api.add(children[2])  # release-build is gone
    with caplog.at_level(logging.WARNING, "chainmail.snapshot"):
        got = snapshot.children_of(kube, kube.get("pipelineruns", "default", "release"))
    assert [t["metadata"]["name"] for t in got] == ["release-clone", "release-scan"]
    assert "child TaskRun release-build no longer exists" in caplog.text
    assert "CustomRun release-wait is not a TaskRun" in caplog.text


def test_children_without_child_references_use_the_uid_label(kube_api, kube):
    pr, children = pipelinerun_with_children("release", tasks=("b", "a"))
    del pr["status"]["childReferences"]
    for obj in (pr, *children):
        kube_api.add(obj)
    got = snapshot.children_of(kube, kube.get("pipelineruns", "default", "release"))
    assert [t["metadata"]["name"] for t in got] == ["release-a", "release-b"]


def test_a_labelled_taskrun_is_not_a_child(kube_api, kube, caplog):
    """The pipelineRunUID label alone (anyone who can create a TaskRun can set it) never makes a child."""
    pr, children = pipelinerun_with_children("release", tasks=("build",))
    forged = completed_taskrun("forged", labels={"tekton.dev/pipelineRunUID": pr["metadata"]["uid"],
                                                 "tekton.dev/pipelineRun": "release"})
    for obj in (pr, *children, forged):
        kube_api.add(obj)
    snap = snapshot.from_cluster(kube, "PipelineRun", "default", "release")
    assert [t["metadata"]["name"] for t in snap.task_runs] == ["release-build"]
    # without childReferences: only TaskRuns the PipelineRun controls
    pr2, children2 = pipelinerun_with_children("other", tasks=("a",))
    del pr2["status"]["childReferences"]
    forged2 = completed_taskrun("forged2", labels={"tekton.dev/pipelineRunUID": pr2["metadata"]["uid"]})
    forged2["metadata"]["ownerReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": "other",
                                               "uid": pr2["metadata"]["uid"], "controller": False}]
    for obj in (pr2, *children2, forged2):
        kube_api.add(obj)
    with caplog.at_level(logging.WARNING, "chainmail.snapshot"):
        got = snapshot.children_of(kube, kube.get("pipelineruns", "default", "other"))
    assert [t["metadata"]["name"] for t in got] == ["other-a"]
    assert "forged2 carries its tekton.dev/pipelineRunUID label but is not controlled by it" in caplog.text
    assert snapshot.is_child(pr2, children2[0]) and not snapshot.is_child(pr2, forged2)
    other_ns = copy.deepcopy(children2[0])
    other_ns["metadata"]["namespace"] = "elsewhere"
    assert not snapshot.is_child(pr2, other_ns)


def test_deeply_nested_run_files_are_input_errors(tmp_path):
    deep_json = tmp_path / "deep.json"
    deep_json.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(InputError, match="nested deeper"):
        snapshot.from_file(deep_json)
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("a: " + "[" * 5_000 + "]" * 5_000 + "\n")
    with pytest.raises(InputError, match="nested deeper"):
        snapshot.from_file(deep_yaml)
    shallow_yaml = tmp_path / "ok.yaml"
    shallow_yaml.write_text("a: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(InputError, match="kind|metadata|status"):  # parsed; rejected for what it is, not depth
        snapshot.from_file(shallow_yaml)
