"""sweep and finally against the Kubernetes API double, with storage ``tekton`` and a real cosign key.

"Signed once" is checked on the wire: the double logs every PATCH, and a run is signed
once when exactly one successful PATCH set ``chains.tekton.dev/signed: "true"`` on it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from chainmail import annotations as ann
from chainmail._internal.http import RetryPolicy
from chainmail._internal.kube import KubeClient
from chainmail.config import Config
from chainmail.context import Context
from chainmail.finally_ import sign_so_far
from chainmail.sweep import Sweeper, SweepOptions, sweep
from clirun import cli as _main
from doubles.kube import KubeApiDouble, completed_taskrun, pipelinerun_with_children, running_taskrun

TEKTON_ONLY = {
    "artifacts.taskrun.storage": "tekton",
    "artifacts.pipelinerun.storage": "tekton",
    "artifacts.oci.storage": "tekton",
    # No registry here: the runs' images (registry.example/…) were never pushed anywhere.
    "chainmail.sign.verify-images-exist": "false",
}


def make_ctx(api: KubeApiDouble, tmp_path: Path, key: str, name: str = "kubeconfig", **config: str) -> Context:
    ctx = Context(config=Config.from_mapping({**TEKTON_ONLY, **config}), key=key)
    ctx.kube = KubeClient.from_environment(api.kubeconfig(tmp_path, name=name),
                                           retry=RetryPolicy(deadline=10, initial_backoff=0.01, max_backoff=0.1))
    return ctx


def envelope_keyid(api: KubeApiDouble, ns: str, name: str) -> str:
    obj = api.get("taskruns", ns, name)
    uid = obj["metadata"]["uid"]
    env = json.loads(base64.b64decode(ann.annotations_of(obj)[ann.signature_key(f"taskrun-{uid}")]))
    return env["signatures"][0]["keyid"]


def test_sweep_signs_the_unsigned_140_of_200_once(kube_api, tmp_path, key):
    for i in range(200):
        ns = f"team-{i % 4}"
        notes = {ann.SIGNED: "true"} if i % 10 < 3 else {}
        kube_api.add(completed_taskrun(f"build-{i:03d}", ns, annotations=notes))
    already = {k for k, o in kube_api.objects.items() if ann.is_signed(o)}
    assert len(already) == 60
    ctx = make_ctx(kube_api, tmp_path, key)

    report = sweep(ctx, SweepOptions(concurrency=4, page=50))
    assert report.signed == 140 and not report.failed
    assert report.skipped == Counter({"already signed": 60})
    writes = kube_api.signed_writes()
    assert len(writes) == 140 and set(writes.values()) == {1}
    assert not already & set(writes)
    for obj in kube_api.objects.values():
        if obj.get("kind") != "TaskRun":  # the watcher's ServiceAccounts live here too
            continue
        notes = ann.annotations_of(obj)
        assert notes[ann.SIGNED] == "true"
        assert ann.CLAIM not in notes
    # Each signed TaskRun carries its attestation and its image signature, Chains' keys.
    sample = kube_api.get("taskruns", "team-1", "build-005")
    uid = sample["metadata"]["uid"]
    notes = ann.annotations_of(sample)
    for key_fn in (ann.payload_key, ann.signature_key, ann.cert_key, ann.chain_key):
        assert key_fn(f"taskrun-{uid}") in notes
    assert sum(1 for k in notes if k.startswith(ann.PREFIX + "signature-")) == 2
    # No repeated reads: one list per page, one claim and one mark per signed run.
    gets = [r for r in kube_api.request_log if r.method == "GET" and r.key]
    assert gets == []

    kube_api.request_log.clear()
    again = sweep(ctx, SweepOptions(concurrency=4, page=50))
    assert again.signed == 0 and again.skipped == Counter({"already signed": 200})
    assert kube_api.writes() == []


def test_two_concurrent_sweeps_sign_each_run_once(kube_api, tmp_path, key):
    for i in range(60):
        kube_api.add(completed_taskrun(f"run-{i:02d}", "shared"))
    pr, children = pipelinerun_with_children("release", "shared", tasks=("clone", "build"))
    for obj in (pr, *children):
        kube_api.add(obj)
    kube_api.delay = 0.001
    ctxs = [make_ctx(kube_api, tmp_path, key, name=f"kc-{i}") for i in range(2)]
    reports = [None, None]
    start = threading.Barrier(2)

    def go(i: int) -> None:
        start.wait()
        reports[i] = sweep(ctxs[i], SweepOptions(namespace="shared", concurrency=4, page=10))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in reports)
    assert not reports[0].failed and not reports[1].failed
    assert reports[0].signed + reports[1].signed == 63
    writes = kube_api.signed_writes()
    assert len(writes) == 63 and set(writes.values()) == {1}
    conflicts = [r for r in kube_api.request_log if r.status == 409]
    skipped = reports[0].skipped + reports[1].skipped
    assert set(skipped) <= {"already signed", "claimed by another signer",
                            "waiting for 2 child TaskRun(s) to be signed",
                            "waiting for 1 child TaskRun(s) to be signed"}
    assert conflicts or skipped  # they did race


def test_pipelinerun_waits_for_its_children(kube_api, tmp_path, key):
    pr, children = pipelinerun_with_children("release", "ci", tasks=("clone", "build", "scan"))
    children[1]["metadata"]["annotations"][ann.SIGNED] = "failed"  # failed for good: no longer blocks
    for obj in (pr, *children):
        kube_api.add(obj)
    ctx = make_ctx(kube_api, tmp_path, key)

    only_prs = sweep(ctx, SweepOptions(kinds=("PipelineRun",)))
    assert only_prs.signed == 0
    assert only_prs.skipped == Counter({"waiting for 2 child TaskRun(s) to be signed": 1})

    report = sweep(ctx, SweepOptions())
    assert report.signed == 3  # two children, then the PipelineRun
    order = [r.key[2] for r in kube_api.writes()
             if ((r.body or {}).get("metadata") or {}).get("annotations", {}).get(ann.SIGNED) == "true"]
    assert order[-1] == "release"
    pr_notes = kube_api.annotations("pipelineruns", "ci", "release")
    assert pr_notes[ann.SIGNED] == "true"
    assert ann.payload_key(f"pipelinerun-{pr['metadata']['uid']}") in pr_notes


def test_retry_failed_skip_label_since_and_leases(kube_api, tmp_path, key):
    now = time.time()
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3 * 86400))
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    kube_api.add(completed_taskrun("failed-once", finished=recent,
                                   annotations={ann.SIGNED: "failed", ann.RETRIES: "1"}))
    kube_api.add(completed_taskrun("failed-often", finished=recent,
                                   annotations={ann.SIGNED: "failed", ann.RETRIES: "5"}))
    kube_api.add(completed_taskrun("opted-out", finished=recent, labels={ann.SKIP_LABEL: "true"}))
    kube_api.add(completed_taskrun("too-old", finished=old))
    kube_api.add(completed_taskrun("crashed-claim", finished=recent,
                                   annotations={ann.CLAIM: f"dead-signer/{int(now) - 3600}"}))
    kube_api.add(completed_taskrun("live-claim", finished=recent,
                                   annotations={ann.CLAIM: f"busy-signer/{int(now)}"}))
    kube_api.add(running_taskrun("still-running"))
    kube_api.add(completed_taskrun("did-fail", finished=recent, succeeded=False))
    ctx = make_ctx(kube_api, tmp_path, key, **{"chainmail.sign-successful-only": "true"})

    report = sweep(ctx, SweepOptions(retry_failed=True, since=86400))
    assert report.signed == 2
    assert kube_api.signed_writes().keys() == {("taskruns", "default", "failed-once"),
                                              ("taskruns", "default", "crashed-claim")}
    assert report.skipped == Counter({
        "failed too often (chainmail.retry.max-failed-attempts)": 1,
        f"labelled {ann.SKIP_LABEL}=true": 1,
        "finished before --since": 1,
        "claimed by another signer": 1,
        "not finished": 1,
        "did not succeed (chainmail.sign-successful-only is set)": 1,
    })
    assert ann.annotations_of(kube_api.get("taskruns", "default", "live-claim"))[ann.CLAIM].startswith("busy")
    assert ann.retries(kube_api.get("taskruns", "default", "failed-once")) == 1  # success leaves retries alone


def test_a_run_deleted_mid_sweep_does_not_stop_it(kube_api, tmp_path, key):
    for i in range(10):
        kube_api.add(completed_taskrun(f"run-{i}"))
    patches: Counter[str] = Counter()

    def delete_some(method, path, query):
        if method != "PATCH":
            return
        name = path.rsplit("/", 1)[-1]
        patches[name] += 1
        if name == "run-3" and patches[name] == 1:  # gone before the claim lands
            kube_api.delete("taskruns", "default", name)
        if name == "run-7" and patches[name] == 2:  # gone while it was being signed
            kube_api.delete("taskruns", "default", name)

    kube_api.hooks.append(delete_some)
    report = sweep(make_ctx(kube_api, tmp_path, key), SweepOptions(concurrency=3))
    assert report.signed == 8 and not report.failed
    assert report.skipped == Counter({"deleted before it was signed": 1, "deleted while it was signed": 1})


def test_namespace_keys(kube_api, tmp_path, key, shared):
    other = str(shared / "fixtures" / "cosign-keys" / "ecdsa-p256-empty-password")
    kube_api.add(completed_taskrun("a", "team-a"))
    kube_api.add(completed_taskrun("b", "team-b"))
    ctx = make_ctx(kube_api, tmp_path, key)
    report = sweep(ctx, SweepOptions(namespace_keys={"team-b": other}))
    assert report.signed == 2
    assert envelope_keyid(kube_api, "team-a", "a") != envelope_keyid(kube_api, "team-b", "b")


def test_watched_namespaces_limit_what_sweep_signs(kube_api, tmp_path, key):
    for ns in ("team-a", "team-b", "team-c"):
        kube_api.add(completed_taskrun("build", ns))
    ctx = make_ctx(kube_api, tmp_path, key, **{"chainmail.namespaces": "team-a, team-c"})
    report = sweep(ctx, SweepOptions())
    assert report.signed == 2
    assert {ns for ns in ("team-a", "team-b", "team-c")
            if ann.is_signed(kube_api.get("taskruns", ns, "build"))} == {"team-a", "team-c"}
    lists = [r for r in kube_api.request_log if r.method == "GET" and r.path.endswith("/taskruns")]
    assert sorted(r.path for r in lists) == ["/apis/tekton.dev/v1/namespaces/team-a/taskruns",
                                             "/apis/tekton.dev/v1/namespaces/team-c/taskruns"]
    # a namespace named with -n but not watched (the watcher's per-event sweep) is left to others
    report = sweep(ctx, SweepOptions(namespace="team-b"))
    assert report.signed == 0 and report.skipped == Counter({"namespace not in chainmail.namespaces": 1})


def test_watched_namespaces_must_be_namespace_names(kube_api, tmp_path, key, capsys):
    code, _, err = _main(["sweep", "-A", "--kubeconfig", str(kube_api.kubeconfig(tmp_path)), "--key", key,
                          *_sets(), "--set", "chainmail.namespaces=team-a,Team_B"], capsys)
    assert code == 3
    assert err.strip() == "Error: chainmail.namespaces: 'Team_B' is not a namespace name"


def test_failures_are_reported_and_the_rest_finish(kube_api, tmp_path, key):
    for i in range(5):
        kube_api.add(completed_taskrun(f"run-{i}"))
    kube_api.fail_next(1, 403, method="PATCH", path_contains="/taskruns/run-2")
    report = sweep(make_ctx(kube_api, tmp_path, key), SweepOptions())
    assert report.signed == 4
    assert [run for run, _ in report.failed] == ["TaskRun default/run-2"]
    assert "HTTP 403" in report.failed[0][1]


def test_max_runs(kube_api, tmp_path, key):
    for i in range(6):
        kube_api.add(completed_taskrun(f"run-{i}"))
    report = sweep(make_ctx(kube_api, tmp_path, key), SweepOptions(max_runs=4, concurrency=2))
    assert report.signed == 4 and report.skipped == Counter({"over --max-runs": 2})


# ------------------------------------------------------------------ finally


def test_finally_signs_children_and_a_provisional_pipelinerun(kube_api, tmp_path, key):
    pr, children = pipelinerun_with_children("release", "ci", tasks=("clone", "build"), finished=False,
                                             finally_tasks=("sign",))
    children[-1] = running_taskrun(children[-1]["metadata"]["name"], "ci",
                                   labels=children[-1]["metadata"]["labels"])  # the signer itself
    for obj in (pr, *children):
        kube_api.add(obj)
    ctx = make_ctx(kube_api, tmp_path, key)

    report = sign_so_far(ctx, "release", "ci", pr["metadata"]["uid"])
    assert report.children == {"release-clone": "signed", "release-build": "signed"}
    assert report.outcome == "provisional" and not report.failed
    notes = kube_api.annotations("pipelineruns", "ci", "release")
    assert notes[ann.PROVISIONAL_SIGNED] == "true"
    assert ann.SIGNED not in notes
    assert ann.payload_key(f"pipelinerun-{pr['metadata']['uid']}") in notes
    assert ann.SIGNED not in kube_api.annotations("taskruns", "ci", "release-sign")

    # Later the run finishes; a sweep signs the final PipelineRun (and the finally TaskRun), not the children.
    with kube_api.lock:
        obj = kube_api.objects[("pipelineruns", "ci", "release")]
        obj["status"]["conditions"] = [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]
        obj["status"]["completionTime"] = "2026-11-23T08:01:00Z"
        sign = kube_api.objects[("taskruns", "ci", "release-sign")]
        sign["status"] = completed_taskrun("release-sign", "ci")["status"]
    kube_api.request_log.clear()
    final = sweep(ctx, SweepOptions(namespace="ci"))
    assert final.signed == 2
    assert set(kube_api.signed_writes()) == {("taskruns", "ci", "release-sign"), ("pipelineruns", "ci", "release")}


def test_finally_checks_the_uid(kube_api, tmp_path, key):
    pr, _ = pipelinerun_with_children("release", "ci", finished=False)
    kube_api.add(pr)
    from chainmail.errors import InputError

    with pytest.raises(InputError, match="not the run that started this task"):
        sign_so_far(make_ctx(kube_api, tmp_path, key), "release", "ci", "some-other-uid")


def test_finally_does_not_resign_and_shares_claims(kube_api, tmp_path, key):
    pr, children = pipelinerun_with_children("release", "ci", tasks=("a", "b"), finished=False)
    children[0]["metadata"]["annotations"][ann.SIGNED] = "true"
    children[1]["metadata"]["annotations"][ann.CLAIM] = f"watcher/{int(time.time())}"
    for obj in (pr, *children):
        kube_api.add(obj)
    report = sign_so_far(make_ctx(kube_api, tmp_path, key), "release", "ci")
    assert report.children == {"release-a": "skipped: already signed",
                               "release-b": "skipped: claimed by another signer"}
    assert report.outcome == "provisional"


# ------------------------------------------------------------------ CLI


def _sets() -> list[str]:
    return [arg for k, v in TEKTON_ONLY.items() for arg in ("--set", f"{k}={v}")]


def test_cli_sweep_json_and_exit_code(kube_api, tmp_path, key, capsys, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    for i in range(3):
        kube_api.add(completed_taskrun(f"run-{i}", "ci"))
    kube_api.fail_next(1, 403, method="PATCH", path_contains="/taskruns/run-1")
    kc = kube_api.kubeconfig(tmp_path)
    code, out, err = _main(["sweep", "-n", "ci", "--kubeconfig", str(kc), "--key", key, *_sets(), "-o", "json"],
                           capsys)
    assert code == 8
    doc = json.loads(out)
    assert doc["signed"] == 2 and doc["failed"][0]["run"] == "TaskRun ci/run-1"
    assert err.startswith("Error: 1 run(s) could not be signed")
    code, out, _ = _main(["sweep", "-A", "--kubeconfig", str(kc), "--key", key, *_sets(), "--retry-failed"],
                         capsys)
    assert code == 0
    assert out.startswith("sweep: 1 signed, 2 skipped, 0 failed")


def test_cli_finally(kube_api, tmp_path, key, capsys, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    pr, children = pipelinerun_with_children("release", "ci", tasks=("build",), finished=False)
    for obj in (pr, *children):
        kube_api.add(obj)
    kc = kube_api.kubeconfig(tmp_path)
    code, out, err = _main(["finally", "--pipelinerun", "release", "-n", "ci", "--uid", pr["metadata"]["uid"],
                            "--kubeconfig", str(kc), "--key", key, *_sets()], capsys)
    assert code == 0, err
    assert out.splitlines() == ["TaskRun release-build: signed", "PipelineRun ci/release: provisional"]


def test_sweeper_reuses_listed_objects(kube_api, tmp_path, key):
    """The hot path: list, claim (PATCH), mark (PATCH); no GET of a run it already has."""
    for i in range(5):
        kube_api.add(completed_taskrun(f"run-{i}"))
    kube_api.request_log.clear()
    Sweeper(make_ctx(kube_api, tmp_path, key), SweepOptions(kinds=("TaskRun",))).run()
    methods = Counter(r.method for r in kube_api.request_log)
    assert methods == Counter({"PATCH": 10, "GET": 1})


def test_children_of_a_pipelinerun_are_signed_side_by_side_then_the_pipelinerun(kube_api, tmp_path, key):
    from chainmail.job import CHILD_CONCURRENCY, sign_with_children
    from chainmail.snapshot import from_cluster

    pr, children = pipelinerun_with_children("wide", "ci", tasks=tuple(f"t{i}" for i in range(8)))
    for child in children:
        kube_api.add(child)
    kube_api.add(pr)
    in_flight, peak, order = [0], [0], []
    lock = threading.Lock()

    def slow_patch(method: str, path: str, query: dict[str, str]) -> None:
        if method != "PATCH":
            return
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            order.append(path.rsplit("/", 2)[-2])
        time.sleep(0.05)  # a PATCH as slow as a busy API server's, so that overlap shows
        with lock:
            in_flight[0] -= 1

    kube_api.hooks.append(slow_patch)
    ctx = make_ctx(kube_api, tmp_path, key)
    results = sign_with_children(from_cluster(ctx.kube, "PipelineRun", "ci", "wide"), ctx)
    assert [r.snapshot.ref.name for r in results] == [*(c["metadata"]["name"] for c in children), "wide"]
    assert all(not r.skipped for r in results)
    assert 2 <= peak[0] <= CHILD_CONCURRENCY
    # every child's PATCHes come before the PipelineRun's first
    first_pr = order.index("pipelineruns")
    assert "taskruns" not in order[first_pr:]
