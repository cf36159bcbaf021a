"""Attacks on ``chainmail verify run``: a run verifies only by its own attestation, bound to its uid.

Each case runs the CLI in a subprocess against the Kubernetes API double (or a ``--from-file`` run) built
from the runs Tekton Chains really signed (``../shared/fixtures``) and checks the documented exit code:
10 (no signature of its own / marked failed), 12 (a stored signature that does not verify or is bound to
another run), 4 (malformed input: no uid, nesting too deep), 2 (ambiguous RUN), 14 (policy on signed facts).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adversarial.conftest import Outcome, assert_rejected, chainmail, files_under

BOUND = 30.0  # seconds: each case is one CLI process and a few local requests
PREFIX = "chains.tekton.dev/"


@pytest.fixture(scope="module")
def fx(shared: Path) -> Path:
    return shared / "fixtures"


@pytest.fixture(scope="module")
def pub(fx: Path) -> str:
    return str(fx / "chains-run" / "cosign.pub")


def _load(path: Path, kind: str) -> dict[str, Any]:
    obj = json.loads(path.read_text())
    obj.setdefault("apiVersion", "tekton.dev/v1")
    obj.setdefault("kind", kind)
    return obj


@pytest.fixture
def pipeline(fx: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    d = fx / "chains-pipelinerun"
    return (_load(d / "pipelinerun-after-chains.json", "PipelineRun"),
            [_load(d / f"taskrun-{n}-after-chains.json", "TaskRun") for n in ("clone", "build", "scan")])


@pytest.fixture
def taskrun(fx: Path) -> dict[str, Any]:
    return _load(fx / "chains-run" / "taskrun-after-chains.json", "TaskRun")


def _unsigned(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` without Chains' payload/signature annotations of its own."""
    out = copy.deepcopy(run)
    ann = out["metadata"]["annotations"]
    for key in [k for k in ann if k.startswith(PREFIX) and ("run-" in k)]:
        del ann[key]
    return out


def _verify(api: Any, tmp: Path, pub: str, *args: str) -> Outcome:
    return chainmail(["verify", "run", "--insecure-ignore-tlog", *args, "--key", pub, "--kubeconfig", str(api.kubeconfig(tmp))],
                     timeout=BOUND * 2)


def _verify_file(tmp: Path, pub: str, doc: Any, *args: str, name: str = "run.json") -> Outcome:
    path = tmp / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    before = files_under(tmp)
    out = chainmail(["verify", "run", "--insecure-ignore-tlog", "--from-file", str(path), "--key", pub, *args], timeout=BOUND * 2)
    assert files_under(tmp) == before, "verify wrote files"
    return out


# -- the PipelineRun's own attestation -------------------------------------------------------------------

def test_unsigned_pipelinerun_with_signed_children(kube_api, tmp_path: Path, pub: str, pipeline) -> None:
    """Before: the children's valid signatures made the PipelineRun pass. Now: exit 10."""
    pr, children = pipeline
    for obj in (_unsigned(pr), *children):
        kube_api.add(obj)
    out = _verify(kube_api, tmp_path, pub, "pipelinerun/release-run", "-n", "release")
    assert_rejected(out, 10, mentions="no signature of its own", within=BOUND)
    assert "3 child taskrun(s) do not stand in" in out.stderr.lower()
    assert kube_api.writes() == [], "verify must not write to the cluster"


def test_pipelinerun_marked_signed_failed(kube_api, tmp_path: Path, pub: str, pipeline) -> None:
    pr, children = pipeline
    failed = _unsigned(pr)
    failed["metadata"]["annotations"][PREFIX + "signed"] = "failed"
    failed["metadata"]["annotations"]["chainmail.dev/failure-reason"] = "storage oci: registry unreachable"
    for obj in (failed, *children):
        kube_api.add(obj)
    out = _verify(kube_api, tmp_path, pub, "pr/release-run", "-n", "release")
    assert_rejected(out, 10, mentions="signed: failed", within=BOUND)


def test_pipelinerun_marked_failed_despite_a_valid_signature(tmp_path: Path, pub: str, pipeline) -> None:
    pr, children = pipeline
    pr["metadata"]["annotations"][PREFIX + "signed"] = "failed"
    out = _verify_file(tmp_path, pub, {"pipelineRun": pr, "taskRuns": children})
    assert_rejected(out, 10, mentions="signed: failed", within=BOUND)


def test_forged_child_by_label_does_not_stand_in(kube_api, tmp_path: Path, pub: str, pipeline, taskrun) -> None:
    """A genuine signed TaskRun of another pipeline, relabelled with this PipelineRun's uid, next to a
    PipelineRun without childReferences and without a signature: before, it verified as a child."""
    pr, _children = pipeline
    bare = _unsigned(pr)
    del bare["status"]["childReferences"]
    forged = copy.deepcopy(taskrun)
    forged["metadata"]["namespace"] = "release"
    forged["metadata"]["labels"] = {"tekton.dev/pipelineRunUID": pr["metadata"]["uid"],
                                    "tekton.dev/pipelineRun": "release-run"}
    for obj in (bare, forged):
        kube_api.add(obj)
    out = _verify(kube_api, tmp_path, pub, "pipelinerun/release-run", "-n", "release")
    assert_rejected(out, 10, mentions="no signature of its own", within=BOUND)
    assert "build-app" not in out.stdout


def test_forged_child_is_left_out_of_a_signed_pipelinerun(kube_api, tmp_path: Path, pub: str, pipeline,
                                                          taskrun) -> None:
    """The genuine PipelineRun verifies; the labelled impostor is not reported as one of its children."""
    pr, children = pipeline
    forged = copy.deepcopy(taskrun)
    forged["metadata"]["namespace"] = "release"
    forged["metadata"]["labels"] = {"tekton.dev/pipelineRunUID": pr["metadata"]["uid"]}
    for obj in (pr, *children, forged):
        kube_api.add(obj)
    out = _verify(kube_api, tmp_path, pub, "pipelinerun/release-run", "-n", "release", "-o", "json")
    assert out.code == 0, out.stderr
    refs = {v["ref"] for v in json.loads(out.stdout)["verified"]}
    assert refs == {"pipelinerun/release/release-run", "taskrun/release/release-run-clone",
                    "taskrun/release/release-run-build", "taskrun/release/release-run-scan"}


def test_ambiguous_bare_name_is_a_usage_error(kube_api, tmp_path: Path, pub: str, pipeline, taskrun) -> None:
    """A TaskRun named like the PipelineRun: a bare NAME used to pick the TaskRun first."""
    pr, children = pipeline
    impostor = copy.deepcopy(taskrun)
    impostor["metadata"].update(name="release-run", namespace="release")
    for obj in (pr, *children, impostor):
        kube_api.add(obj)
    out = _verify(kube_api, tmp_path, pub, "release-run", "-n", "release")
    assert_rejected(out, 2, mentions="pipelinerun/release-run", within=BOUND)
    assert "taskrun/release-run" in out.stderr
    assert _verify(kube_api, tmp_path, pub, "pipelinerun/release-run", "-n", "release").code == 0


# -- binding to the run ------------------------------------------------------------------------------------

def test_from_file_namespace_relabel_fails_a_namespace_policy(tmp_path: Path, pub: str, taskrun) -> None:
    """A genuine attestation of demo/build-app presented as prod/release: the namespace is not signed."""
    relabelled = copy.deepcopy(taskrun)
    relabelled["metadata"].update(namespace="prod", name="release")
    policy = tmp_path / "prod-only.yaml"
    policy.write_text("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: prod-only}\n"
                      "spec:\n  rules:\n    - name: prod\n      expression: run.namespace == 'prod'\n"
                      "      message: only runs of the prod namespace\n")
    out = _verify_file(tmp_path, pub, relabelled, "--policy", str(policy))
    assert_rejected(out, 14, mentions="policy", within=BOUND)


def test_from_file_without_uid_is_refused(tmp_path: Path, pub: str, taskrun) -> None:
    """Before: without metadata.uid the uid binding was skipped."""
    del taskrun["metadata"]["uid"]
    out = _verify_file(tmp_path, pub, taskrun)
    assert_rejected(out, 4, mentions="metadata.uid", within=BOUND)


def test_annotations_replayed_from_another_run(tmp_path: Path, pub: str, taskrun) -> None:
    """Run A's annotations copied onto run B (another uid, another start): the key names A."""
    b = copy.deepcopy(taskrun)
    b["metadata"].update(name="other", uid="0b1e55ed-0000-4000-8000-0000000000b0")
    b["status"]["startTime"] = "2026-12-01T10:00:00Z"
    out = _verify_file(tmp_path, pub, b)
    assert_rejected(out, 12, mentions="names another run", within=BOUND)
    # the keys renamed to B's uid too: the SLSA v0.2 statement's start time is A's
    ann = b["metadata"]["annotations"]
    old = taskrun["metadata"]["uid"]
    b["metadata"]["annotations"] = {k.replace(old, b["metadata"]["uid"]): v for k, v in ann.items()}
    out = _verify_file(tmp_path, pub, b, name="rekeyed.json")
    assert_rejected(out, 12, mentions="start time", within=BOUND)
    # and a run B that started in the same second as A: SLSA v0.2 records no uid, the finish time binds it
    b["status"]["startTime"] = taskrun["status"]["startTime"]
    b["status"]["completionTime"] = "2026-11-23T08:05:00Z"
    out = _verify_file(tmp_path, pub, b, name="same-start.json")
    assert_rejected(out, 12, mentions="finish time", within=BOUND)


def test_pipelinerun_annotations_replayed_under_its_own_start_time(tmp_path: Path, pub: str, pipeline) -> None:
    """SLSA v1.0: the statement's invocationId is the signed uid, whatever the keys and times say."""
    pr, children = pipeline
    old, new = pr["metadata"]["uid"], "0b1e55ed-0000-4000-8000-0000000000c0"
    pr["metadata"]["uid"] = new
    pr["metadata"]["annotations"] = {k.replace(old, new): v for k, v in pr["metadata"]["annotations"].items()}
    for child in children:
        for ref in child["metadata"].get("ownerReferences") or []:
            ref["uid"] = new
    out = _verify_file(tmp_path, pub, {"pipelineRun": pr, "taskRuns": children})
    assert_rejected(out, 12, mentions="invocationId", within=BOUND)


def test_child_annotations_moved_onto_the_pipelinerun(tmp_path: Path, pub: str, pipeline) -> None:
    """A child's genuine attestation pasted onto the unsigned PipelineRun as its own."""
    pr, children = pipeline
    bare = _unsigned(pr)
    build = children[1]
    uid, pr_uid = build["metadata"]["uid"], pr["metadata"]["uid"]
    for key, value in build["metadata"]["annotations"].items():
        if key.startswith(PREFIX) and uid in key:
            bare["metadata"]["annotations"][key.replace(f"taskrun-{uid}", f"pipelinerun-{pr_uid}")] = value
    out = _verify_file(tmp_path, pub, {"pipelineRun": bare, "taskRuns": children})
    assert_rejected(out, 12, mentions="not about this pipelinerun", within=BOUND)


# -- hostile nesting -------------------------------------------------------------------------------------

def test_deeply_nested_run_file_is_malformed_input(tmp_path: Path, pub: str) -> None:
    out = _verify_file(tmp_path, pub, '{"metadata":' * 100_000 + "{}" + "}" * 100_000)
    assert_rejected(out, 4, mentions="nested deeper", within=BOUND)
    out = _verify_file(tmp_path, pub, "metadata: " + "[" * 50_000 + "]" * 50_000 + "\n", name="run.yaml")
    assert_rejected(out, 4, mentions="nested deeper", within=BOUND)


def test_deeply_nested_signature_annotation_fails_that_signature(tmp_path: Path, pub: str, taskrun) -> None:
    """A hostile envelope in signature-K is a signature that does not verify (12), never a crash (70)."""
    ann = taskrun["metadata"]["annotations"]
    key = next(k for k in ann if k.startswith(PREFIX + "signature-"))
    ann[key] = base64.b64encode(b'{"a":' * 100_000 + b"1" + b"}" * 100_000).decode()
    out = _verify_file(tmp_path, pub, taskrun)
    assert_rejected(out, 12, mentions="nested deeper", within=BOUND)
