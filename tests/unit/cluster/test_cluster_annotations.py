"""annotations.flush (one merge patch per run, conflicts, file mode) and the tekton backend."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from chainmail import annotations as ann
from chainmail.context import Context
from chainmail.errors import NotFoundError
from chainmail.models import Artifact, Payload, RunRef, RunSnapshot, SignedPayload
from chainmail.storage import StoreSession
from chainmail.storage.tekton import TektonBackend
from doubles.kube import completed_taskrun


def _ctx(kube) -> Context:
    ctx = Context()
    ctx.kube = kube
    return ctx


def _session(kube_api, kube, run) -> StoreSession:
    stored = kube_api.add(run)
    return StoreSession(_ctx(kube), RunSnapshot(stored, [], kube.source))


def test_success_is_one_patch_and_keeps_foreign_annotations(kube_api, kube):
    run = completed_taskrun("build", annotations={"team": "a", ann.CLAIM: "me/1", ann.FAILURE_REASON: "old",
                                                   ann.RETRIES: "2"})
    session = _session(kube_api, kube, run)
    session.annotate(session.snapshot.ref, {ann.payload_key("taskrun-x"): "cGF5bG9hZA=="})
    kube_api.request_log.clear()
    ann.flush(session, signed=True)
    assert [r.method for r in kube_api.request_log] == ["PATCH"]
    assert "resourceVersion" not in kube_api.request_log[0].body["metadata"]
    assert kube_api.annotations("taskruns", "default", "build") == {
        "team": "a", ann.RETRIES: "2", ann.SIGNED: "true", ann.payload_key("taskrun-x"): "cGF5bG9hZA=="}
    assert ann.is_signed(kube_api.get("taskruns", "default", "build"))


def test_failure_increments_retries_with_a_precondition(kube_api, kube):
    session = _session(kube_api, kube, completed_taskrun("build", annotations={ann.RETRIES: "1"}))
    ann.flush(session, signed=False, reason="registry said no: Authorization: Bearer abc.def password=hunter2")
    notes = kube_api.annotations("taskruns", "default", "build")
    assert notes[ann.SIGNED] == "failed" and notes[ann.RETRIES] == "2"
    assert "hunter2" not in notes[ann.FAILURE_REASON] and "abc.def" not in notes[ann.FAILURE_REASON]
    assert notes[ann.FAILURE_REASON].startswith("registry said no")
    assert kube_api.writes()[0].body["metadata"]["resourceVersion"] == session.snapshot.resource_version
    obj = kube_api.get("taskruns", "default", "build")
    assert ann.is_failed(obj) and ann.is_reconciled(obj) and ann.retries(obj) == 2


def test_failure_survives_conflicts(kube_api, kube):
    session = _session(kube_api, kube, completed_taskrun("build", annotations={ann.RETRIES: "1"}))
    bumped = threading.Event()

    def someone_else_writes(method, path, query):
        if method == "PATCH" and not bumped.is_set():
            bumped.set()
            with kube_api.lock:
                obj = kube_api.objects[("taskruns", "default", "build")]
                obj["metadata"]["annotations"][ann.RETRIES] = "3"
                obj["metadata"]["annotations"]["other"] = "writer"
                obj["metadata"]["resourceVersion"] = kube_api.next_rv()

    kube_api.hooks.append(someone_else_writes)
    ann.flush(session, signed=False, reason="boom")
    assert [r.status for r in kube_api.request_log if r.method == "PATCH"] == [409, 200]
    notes = kube_api.annotations("taskruns", "default", "build")
    assert notes[ann.RETRIES] == "4" and notes["other"] == "writer"


def test_failure_on_a_deleted_run_does_not_raise(kube_api, kube, caplog):
    session = _session(kube_api, kube, completed_taskrun("build"))
    kube_api.delete("taskruns", "default", "build")
    ann.flush(session, signed=False, reason="boom")
    assert "could not mark TaskRun default/build as failed" in caplog.text
    with pytest.raises(NotFoundError):
        ann.flush(session, signed=True)


def test_provisional_never_sets_signed(kube_api, kube):
    session = _session(kube_api, kube, completed_taskrun("build"))
    ann.flush(session, signed=True, provisional=True)
    notes = kube_api.annotations("taskruns", "default", "build")
    assert notes == {ann.PROVISIONAL_SIGNED: "true"}


def test_file_mode_writes_annotations_json(tmp_path):
    ctx = Context(file_store=tmp_path / "store")
    run = completed_taskrun("build", "demo", annotations={ann.RETRIES: "2"})
    session = StoreSession(ctx, RunSnapshot(run, [], "file:/tmp/run.json"))
    session.annotate(session.snapshot.ref, {ann.signature_key("taskrun-u"): "c2ln"})
    ann.flush(session, signed=False, reason="no key")
    path = tmp_path / "store" / "taskrun-demo-build" / "annotations.json"
    first = json.loads(path.read_text())
    assert first == {ann.FAILURE_REASON: "no key", ann.RETRIES: "3", ann.SIGNED: "failed",
                     ann.signature_key("taskrun-u"): "c2ln"}
    ann.flush(StoreSession(ctx, session.snapshot), signed=False, reason="still no key")
    assert json.loads(path.read_text())[ann.RETRIES] == "4"
    ann.flush(StoreSession(ctx, session.snapshot), signed=True)
    done = json.loads(path.read_text())
    assert done[ann.SIGNED] == "true" and ann.FAILURE_REASON not in done
    assert not ctx.has_kube


def test_short_reason():
    text = ann.short_reason("word " * 200)
    assert len(text) == ann.MAX_REASON and text.endswith("…")
    assert ann.short_reason("a\n  b\tc") == "a b c"
    pem = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----"
    assert ann.short_reason(f"bad key {pem} here") == "bad key [PEM] here"
    assert ann.short_reason("push https://bob:pa55@reg.example/v2/ failed") == "push https://***@reg.example/v2/ failed"
    assert "eyJ" not in ann.short_reason("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig rejected")


def test_state_patch():
    assert ann.state_patch({}, signed=True) == {ann.CLAIM: None, ann.SIGNED: "true", ann.FAILURE_REASON: None}
    assert ann.state_patch({ann.RETRIES: "x"}, signed=False, reason="r") == {
        ann.CLAIM: None, ann.SIGNED: "failed", ann.RETRIES: "1", ann.FAILURE_REASON: "r"}


# ------------------------------------------------------------------ tekton backend


def _fixture_signed(run: dict) -> tuple[SignedPayload, dict[str, str]]:
    meta = run["metadata"]
    short = f"taskrun-{meta['uid']}"
    notes = meta["annotations"]
    owner = RunRef("TaskRun", meta["namespace"], meta["name"], meta["uid"])
    art = Artifact("taskrun", f"tekton.dev-v1-TaskRun-{meta['uid']}", short, f"{owner.namespace}/{owner.name}",
                   owner)
    body = base64.b64decode(notes[ann.payload_key(short)])
    envelope = base64.b64decode(notes[ann.signature_key(short)])
    payload = Payload(art, "slsa/v1", "application/vnd.in-toto+json", body, True)
    signed = SignedPayload(payload, envelope, "SHA256:x", "", "file:cosign.key")
    chains = {k: v for k, v in notes.items() if k.startswith(ann.PREFIX) and k != ann.SIGNED}
    return signed, chains


def test_tekton_backend_matches_chains(shared, kube_api, kube):
    after = json.loads((shared / "fixtures/chains-run/taskrun-after-chains.json").read_text())
    signed, chains = _fixture_signed(after)
    before = json.loads(json.dumps(after))
    before["metadata"]["annotations"] = {k: v for k, v in after["metadata"]["annotations"].items()
                                         if not k.startswith(ann.PREFIX)}
    session = _session(kube_api, kube, before)
    refs = TektonBackend(session).store([signed])
    assert session.annotations == {signed.payload.artifact.owner: chains}
    short = signed.payload.artifact.short_key
    assert refs[0].backend == "tekton"
    assert refs[0].location == f"demo/build-app:chains.tekton.dev/signature-{short}"
    assert refs[0].artifact == signed.payload.artifact.full_key
    ann.flush(session, signed=True)
    assert kube_api.annotations("taskruns", "demo", "build-app") == after["metadata"]["annotations"]


def test_tekton_backend_cert_chain_and_size_limit(kube_api, kube):
    session = _session(kube_api, kube, completed_taskrun("build"))
    ref = session.snapshot.ref
    art = Artifact("oci", "reg/app@sha256:" + "a" * 64, "a" * 12, "reg/app@sha256:" + "a" * 64, ref)
    payload = Payload(art, "simplesigning", "application/vnd.dev.cosign.simplesigning.v1+json", b"{}", False)
    pem = "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"
    TektonBackend(session).store([SignedPayload(payload, b"\x30\x01", "k", "", "fulcio", cert=pem, chain=pem)])
    pending = session.annotations[ref]
    assert base64.b64decode(pending[ann.cert_key("a" * 12)]).decode() == pem
    assert pending[ann.signature_key("a" * 12)] == "MAE="
    big = Payload(art, "simplesigning", "x", b"x" * (300 * 1024), False)
    from chainmail.errors import StorageError

    with pytest.raises(StorageError, match="Kubernetes allows 262144") as err:
        TektonBackend(session).store([SignedPayload(big, b"s", "k", "", "file")])
    assert "oci or file" in err.value.diagnostics()
