"""verify without a registry: Chains' run annotations, the file store, and the claim checks."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest

from chainmail.context import Context
from chainmail.errors import InputError, NoMatchingSignatureError, NoSignatureError, VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE, RunSnapshot
from chainmail.verify import (
    PREDICATE_TYPES,
    check_simplesigning,
    check_statement,
    resolve_predicate_type,
    verify_file_store,
    verify_run,
)
from chainmail.verify.tlog import TlogCheck

#: These runs were signed without a transparency log (the fixtures predate it): as --insecure-ignore-tlog.
NO_TLOG = TlogCheck(ignore=True)
KEY_ID = "SHA256:yHmPkfSLBAYYd1fCfqLVYNH+Bo0NtuhBak9kXqPO7Po"
DIGEST = "sha256:188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb"


@pytest.fixture(scope="module")
def fixtures(shared: Path) -> Path:
    return shared / "fixtures"


@pytest.fixture(scope="module")
def pub(fixtures: Path) -> str:
    return (fixtures / "chains-run" / "cosign.pub").read_text()


@pytest.fixture(scope="module")
def other_pub(fixtures: Path) -> str:
    return (fixtures / "cosign-keys" / "ecdsa-p256-empty-password" / "cosign.pub").read_text()


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_predicate_type_shorthands() -> None:
    assert resolve_predicate_type("slsaprovenance") == "https://slsa.dev/provenance/v0.2"
    assert resolve_predicate_type("slsaprovenance02") == "https://slsa.dev/provenance/v0.2"
    assert resolve_predicate_type("slsaprovenance1") == "https://slsa.dev/provenance/v1"
    assert resolve_predicate_type("https://example.com/p/v1") == "https://example.com/p/v1"
    assert resolve_predicate_type(None) is None and resolve_predicate_type("") is None
    assert "custom" in PREDICATE_TYPES
    with pytest.raises(InputError):
        resolve_predicate_type("slsa")


def test_claim_checks() -> None:
    payload = json.dumps({"critical": {"identity": {"docker-reference": "r"},
                                       "image": {"docker-manifest-digest": DIGEST},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    assert check_simplesigning(payload, DIGEST)["critical"]["image"]["docker-manifest-digest"] == DIGEST
    with pytest.raises(VerificationError, match="not for image"):
        check_simplesigning(payload, "sha256:" + "0" * 64)
    with pytest.raises(VerificationError, match="critical.type"):
        check_simplesigning(payload.replace(b"cosign container", b"other"), DIGEST)
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
                            "subject": [{"name": "r", "digest": {"sha256": DIGEST[7:]}}], "predicate": {}}).encode()
    assert check_statement(INTOTO_PAYLOAD_TYPE, statement, DIGEST, "https://slsa.dev/provenance/v1")
    with pytest.raises(VerificationError, match="payloadType"):
        check_statement("text/plain", statement, DIGEST, None)
    with pytest.raises(VerificationError, match="no subject"):
        check_statement(INTOTO_PAYLOAD_TYPE, statement, "sha256:" + "1" * 64, None)
    with pytest.raises(VerificationError):
        check_statement(INTOTO_PAYLOAD_TYPE, statement, DIGEST, "https://slsa.dev/provenance/v0.2")


def test_verify_run_chains_taskrun(fixtures: Path, pub: str) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    verified = verify_run(run, [pub], Context(), tlog=NO_TLOG)
    assert len(verified) == 1
    v = verified[0]
    assert v.layout == "annotations" and v.ref == "taskrun/demo/build-app"
    assert v.payload_type == INTOTO_PAYLOAD_TYPE and v.key_id == KEY_ID
    assert v.statement is not None and v.predicate_type == "https://slsa.dev/provenance/v0.2"
    assert v.location.startswith("chains.tekton.dev/signature-taskrun-")
    assert json.loads(json.dumps(v.to_json()))["predicateType"] == v.predicate_type


def test_verify_run_pipelinerun_with_children(fixtures: Path, pub: str) -> None:
    fx = fixtures / "chains-pipelinerun"
    snap = RunSnapshot(_load(fx / "pipelinerun-after-chains.json"),
                       [_load(fx / f"taskrun-{n}-after-chains.json") for n in ("clone", "build", "scan")])
    verified = verify_run(snap, [pub], Context(), tlog=NO_TLOG)
    assert [v.ref.split("/")[0] for v in verified] == ["pipelinerun", "taskrun", "taskrun", "taskrun"]
    assert {v.predicate_type for v in verified} == {"https://slsa.dev/provenance/v1"}


def test_verify_run_rejects_tampering(fixtures: Path, pub: str, other_pub: str) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    with pytest.raises(NoMatchingSignatureError):
        verify_run(run, [other_pub], Context(), tlog=NO_TLOG)
    ann = run["metadata"]["annotations"]
    sig_key = next(k for k in ann if k.startswith("chains.tekton.dev/signature-"))
    pay_key = sig_key.replace("signature-", "payload-")
    # the payload annotation edited: it no longer matches the signed envelope
    edited = copy.deepcopy(run)
    statement = json.loads(base64.b64decode(ann[pay_key]))
    statement["predicate"]["builder"]["id"] = "https://evil.example"
    edited["metadata"]["annotations"][pay_key] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(NoMatchingSignatureError, match="differs"):
        verify_run(edited, [pub], Context(), tlog=NO_TLOG)
    # the envelope's payload edited
    envelope = json.loads(base64.b64decode(ann[sig_key]))
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    edited = copy.deepcopy(run)
    edited["metadata"]["annotations"][sig_key] = base64.b64encode(json.dumps(envelope).encode()).decode()
    with pytest.raises(NoMatchingSignatureError):
        verify_run(edited, [pub], Context(), tlog=NO_TLOG)
    # no annotations at all
    bare = copy.deepcopy(run)
    bare["metadata"]["annotations"] = {}
    with pytest.raises(NoSignatureError):
        verify_run(bare, [pub], Context(), tlog=NO_TLOG)
    # either key may verify
    assert len(verify_run(run, [other_pub, pub], Context(), tlog=NO_TLOG)) == 1


def test_verify_file_store_round_trip(tmp_path: Path, fixtures: Path, pub: str) -> None:
    """The file backend's layout, written from Chains' own signed payloads, verifies; an edit does not."""
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    ann = run["metadata"]["annotations"]
    sig_key = next(k for k in ann if k.startswith("chains.tekton.dev/signature-"))
    short = sig_key.removeprefix("chains.tekton.dev/signature-")
    run_dir = tmp_path / "taskrun-demo-build-app"
    run_dir.mkdir()
    (run_dir / f"{short}.signature").write_bytes(base64.b64decode(ann[sig_key]))
    (run_dir / f"{short}.payload").write_bytes(base64.b64decode(ann[sig_key.replace("signature-", "payload-")]))
    # an image signature, as the file backend writes it: base64 of the DER signature
    sig_manifest = json.loads((fixtures / "chains-run" / "sig-manifest.json").read_text())
    (run_dir / "188ae09dffb4.signature").write_text(
        sig_manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"])
    (run_dir / "188ae09dffb4.payload").write_bytes((fixtures / "chains-run" / "sig-layer0.json").read_bytes())
    verified = verify_file_store(tmp_path, [pub], Context())
    assert sorted(v.payload_type for v in verified) == sorted(
        [INTOTO_PAYLOAD_TYPE, "application/vnd.dev.cosign.simplesigning.v1+json"])
    image = next(v for v in verified if v.statement is None)
    assert image.ref == f"127.0.0.1:5000/demo/app@{DIGEST}" and image.layout == "file"
    (run_dir / "188ae09dffb4.payload").write_bytes(
        (fixtures / "chains-run" / "sig-layer0.json").read_bytes().replace(b"demo/app", b"demo/xyz"))
    with pytest.raises(NoMatchingSignatureError, match="1 of 2"):
        verify_file_store(tmp_path, [pub], Context())
    with pytest.raises(NoSignatureError):
        verify_file_store(_empty(tmp_path), [pub], Context())
    with pytest.raises(InputError):
        verify_file_store(tmp_path / "missing", [pub], Context())


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty-store"
    path.mkdir()
    return path


def test_keys_are_required(fixtures: Path) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    with pytest.raises(InputError):
        verify_run(run, [], Context(), tlog=NO_TLOG)


def test_key_sources_are_loaded(fixtures: Path) -> None:
    """A key directory or .pub path works as well as PEM text (through chainmail.signing.load_public_key)."""
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    assert verify_run(run, [str(fixtures / "chains-run" / "cosign.pub")], Context(), tlog=NO_TLOG)
    assert verify_run(run, [str(fixtures / "cosign-keys" / "ecdsa-p256-password")], Context(), tlog=NO_TLOG)


def test_cli_verify_run_from_cluster(kube_api, fixtures: Path, pub: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`chainmail verify run NAME -n NS` reads the run from the API (TaskRun first, then PipelineRun)."""
    from chainmail._cli import main

    monkeypatch.delenv("KUBECONFIG", raising=False)
    taskrun = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    pipelinerun = _load(fixtures / "chains-pipelinerun" / "pipelinerun-after-chains.json")
    for obj, kind in ((taskrun, "TaskRun"), (pipelinerun, "PipelineRun")):
        obj.setdefault("apiVersion", "tekton.dev/v1")
        obj.setdefault("kind", kind)
        kube_api.add(obj)
    kubeconfig = kube_api.kubeconfig(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(["verify", "run", *args, "--insecure-ignore-tlog", "--key", pub, "--kubeconfig", str(kubeconfig)])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = run("build-app", "-n", "demo")
    assert code == 0, err
    assert "taskrun/demo/build-app" in out
    code, out, err = run("release-run", "-n", "release")
    assert code == 0, err
    assert "pipelinerun/release/release-run" in out
    code, _out, err = run("release-run", "-n", "release", "--kind", "taskrun")
    assert code == 20, err  # NotFoundError
    code, _out, err = run("--from-file", str(fixtures / "chains-run" / "taskrun-after-chains.json"), "-o", "json")
    assert code == 0 and json.loads(_out)["layouts"] == {"annotations": 1}


def _rekey(run: dict, new_uid: str) -> dict:
    """The run with a new uid and Chains' annotation keys renamed to it (a replayed copy)."""
    out = copy.deepcopy(run)
    old_uid = out["metadata"]["uid"]
    out["metadata"]["uid"] = new_uid
    out["metadata"]["annotations"] = {k.replace(old_uid, new_uid): v for k, v in run["metadata"]["annotations"].items()}
    return out


def test_run_binding(fixtures: Path, pub: str) -> None:
    """Another run's genuine annotations pasted onto a run do not verify for it."""
    taskrun = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    moved = copy.deepcopy(taskrun)
    moved["metadata"]["uid"] = "0b1e55ed-0000-4000-8000-000000000001"  # keys still name the old uid
    with pytest.raises(NoMatchingSignatureError, match="names another run"):
        verify_run(moved, [pub], Context(), tlog=NO_TLOG)
    renamed = _rekey(taskrun, "0b1e55ed-0000-4000-8000-000000000001")
    renamed["status"]["startTime"] = "2020-01-01T00:00:00Z"  # SLSA v0.2: bound through the start time
    with pytest.raises(NoMatchingSignatureError, match="start time"):
        verify_run(renamed, [pub], Context(), tlog=NO_TLOG)
    renamed["status"]["startTime"] = taskrun["status"]["startTime"].replace("Z", "+00:00")  # same instant
    assert verify_run(renamed, [pub], Context(), tlog=NO_TLOG)
    renamed["status"]["completionTime"] = "2026-11-23T09:00:00Z"  # a TaskRun: bound through its finish too
    with pytest.raises(NoMatchingSignatureError, match="finish time"):
        verify_run(renamed, [pub], Context(), tlog=NO_TLOG)
    pipelinerun = _load(fixtures / "chains-pipelinerun" / "pipelinerun-after-chains.json")
    with pytest.raises(NoMatchingSignatureError, match="invocationId"):  # SLSA v1.0: bound through the uid
        verify_run(_rekey(pipelinerun, "0b1e55ed-0000-4000-8000-000000000002"), [pub], Context(), tlog=NO_TLOG)
    as_taskrun = copy.deepcopy(taskrun)
    ann = as_taskrun["metadata"]["annotations"]
    for key in [k for k in ann if "taskrun-" in k]:
        ann[key.replace("taskrun-", "pipelinerun-")] = ann.pop(key)
    with pytest.raises(NoMatchingSignatureError, match="for a pipelinerun"):
        verify_run(as_taskrun, [pub], Context(), tlog=NO_TLOG)


def test_malformed_and_emptied_annotations(fixtures: Path, pub: str) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    ann = run["metadata"]["annotations"]
    sig_key = next(k for k in ann if k.startswith("chains.tekton.dev/signature-"))
    emptied = copy.deepcopy(run)
    emptied["metadata"]["annotations"][sig_key.replace("signature-", "payload-")] = ""
    with pytest.raises(NoMatchingSignatureError, match="differs"):
        verify_run(emptied, [pub], Context(), tlog=NO_TLOG)
    for bad in (42, None, ["x"], {"a": 1}):
        broken = copy.deepcopy(run)
        broken["metadata"]["annotations"][sig_key] = bad
        with pytest.raises(NoMatchingSignatureError):
            verify_run(broken, [pub], Context(), tlog=NO_TLOG)
    odd = copy.deepcopy(run)
    odd["metadata"]["annotations"]["chains.tekton.dev/signature-whatever"] = ann[sig_key]
    odd["metadata"]["annotations"]["chains.tekton.dev/payload-whatever"] = ann[sig_key.replace("signature-",
                                                                                                "payload-")]
    with pytest.raises(NoMatchingSignatureError, match="unexpected signature key"):
        verify_run(odd, [pub], Context(), tlog=NO_TLOG)


def test_file_store_image_key_must_name_the_image(tmp_path: Path, fixtures: Path, pub: str) -> None:
    sig_manifest = json.loads((fixtures / "chains-run" / "sig-manifest.json").read_text())
    run_dir = tmp_path / "taskrun-demo-build-app"
    run_dir.mkdir()
    (run_dir / "000000000000.signature").write_text(
        sig_manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"])
    (run_dir / "000000000000.payload").write_bytes((fixtures / "chains-run" / "sig-layer0.json").read_bytes())
    with pytest.raises(NoMatchingSignatureError, match="does not name the signed image"):
        verify_file_store(tmp_path, [pub], Context())
    (run_dir / "000000000000.signature").rename(run_dir / "188ae09dffb4.signature")
    (run_dir / "000000000000.payload").rename(run_dir / "188ae09dffb4.payload")
    assert verify_file_store(tmp_path, [pub], Context())[0].ref.endswith(DIGEST)


def test_bundle_media_type_is_checked() -> None:
    from chainmail.verify import BUNDLE_MEDIA_TYPES, bundle_envelope

    env = {"payloadType": INTOTO_PAYLOAD_TYPE, "payload": "e30=", "signatures": []}
    for media_type in sorted(BUNDLE_MEDIA_TYPES):
        assert bundle_envelope({"mediaType": media_type, "dsseEnvelope": env})[1] == ""
    for bad in (None, "", "application/json", "APPLICATION/VND.DEV.SIGSTORE.BUNDLE.V0.3+JSON", 3):
        with pytest.raises(VerificationError, match="not a Sigstore bundle"):
            bundle_envelope({"mediaType": bad, "dsseEnvelope": env})


# -- verify run: the run's own attestation, children reported, never standing in ---------------------

def _pipeline(fixtures: Path) -> RunSnapshot:
    fx = fixtures / "chains-pipelinerun"
    return RunSnapshot(_load(fx / "pipelinerun-after-chains.json"),
                       [_load(fx / f"taskrun-{n}-after-chains.json") for n in ("clone", "build", "scan")])


def _without_own_signature(run: dict) -> dict:
    out = copy.deepcopy(run)
    ann = out["metadata"]["annotations"]
    for key in [k for k in ann if "pipelinerun-" in k or "taskrun-" in k]:
        del ann[key]
    return out


def test_pipelinerun_needs_its_own_signature(fixtures: Path, pub: str) -> None:
    """Verified children never stand in for the PipelineRun's own attestation."""
    snap = _pipeline(fixtures)
    unsigned = RunSnapshot(_without_own_signature(snap.run), snap.task_runs)
    with pytest.raises(NoSignatureError, match="no signature of its own.*3 child TaskRun"):
        verify_run(unsigned, [pub], Context(), tlog=NO_TLOG)
    failed = copy.deepcopy(unsigned.run)
    failed["metadata"]["annotations"]["chains.tekton.dev/signed"] = "failed"
    with pytest.raises(NoSignatureError, match="signed: failed"):
        verify_run(RunSnapshot(failed, snap.task_runs), [pub], Context(), tlog=NO_TLOG)
    # marked failed, even with a valid signature of its own: the signer said it did not finish
    failed_but_signed = copy.deepcopy(snap.run)
    failed_but_signed["metadata"]["annotations"]["chains.tekton.dev/signed"] = "failed"
    with pytest.raises(NoSignatureError, match="signed: failed"):
        verify_run(RunSnapshot(failed_but_signed, snap.task_runs), [pub], Context(), tlog=NO_TLOG)


def test_run_not_marked_signed_verifies_with_a_warning(fixtures: Path, pub: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    del run["metadata"]["annotations"]["chains.tekton.dev/signed"]
    with caplog.at_level("WARNING", "chainmail.verify"):
        assert len(verify_run(run, [pub], Context(), tlog=NO_TLOG)) == 1
    assert "not marked chains.tekton.dev/signed" in caplog.text


def test_run_without_uid_is_refused(fixtures: Path, pub: str) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    del run["metadata"]["uid"]
    with pytest.raises(InputError, match="no metadata.uid"):
        verify_run(run, [pub], Context(), tlog=NO_TLOG)
    snap = _pipeline(fixtures)
    child = copy.deepcopy(snap.task_runs[1])
    del child["metadata"]["uid"]
    with pytest.raises(NoMatchingSignatureError, match="no metadata.uid"):
        verify_run(RunSnapshot(snap.run, [snap.task_runs[0], child]), [pub], Context(), tlog=NO_TLOG)


def test_children_are_named_or_controlled_never_labelled(fixtures: Path, pub: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A TaskRun with only the pipelineRunUID label is not a child: it is left out, with a warning."""
    snap = _pipeline(fixtures)
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")  # a genuine, signed TaskRun
    run["metadata"]["namespace"] = snap.run["metadata"]["namespace"]
    run["metadata"]["labels"] = {"tekton.dev/pipelineRunUID": snap.run["metadata"]["uid"]}
    with caplog.at_level("WARNING", "chainmail.verify"):
        verified = verify_run(RunSnapshot(snap.run, [*snap.task_runs, run]), [pub], Context(), tlog=NO_TLOG)
    assert "taskrun/release/build-app" not in {v.ref for v in verified}
    assert "build-app is not a child" in caplog.text
    # controlled by the PipelineRun (ownerReference, controller: true, its uid): a child
    run["metadata"]["ownerReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": "x",
                                           "uid": snap.run["metadata"]["uid"], "controller": True}]
    verified = verify_run(RunSnapshot(snap.run, [*snap.task_runs, run]), [pub], Context(), tlog=NO_TLOG)
    assert "taskrun/release/build-app" in {v.ref for v in verified}


def test_verified_carries_the_signed_run(fixtures: Path, pub: str) -> None:
    """signed_run: what the signed statement records (SLSA v1.0: kind and uid; v0.2: kind only)."""
    snap = _pipeline(fixtures)
    verified = verify_run(snap, [pub], Context(), tlog=NO_TLOG)
    first = verified[0]
    assert first.signed_run is not None and first.signed_run.kind == "PipelineRun"
    assert first.signed_run.uid == snap.run["metadata"]["uid"]
    assert first.to_json()["signedRun"]["uid"] == first.signed_run.uid
    assert {v.signed_run.kind for v in verified[1:]} == {"TaskRun"}
    taskrun = verify_run(_load(fixtures / "chains-run" / "taskrun-after-chains.json"), [pub], Context(), tlog=NO_TLOG)[0]
    assert taskrun.signed_run is not None and (taskrun.signed_run.kind, taskrun.signed_run.uid) == ("TaskRun", "")


def test_child_statement_naming_another_pipelinerun_fails(fixtures: Path, pub: str) -> None:
    from chainmail.verify import SignedRun, Verified, check_run_binding

    item = Verified("taskrun/ns/x", "annotations", INTOTO_PAYLOAD_TYPE, b"{}",
                    {"predicate": {"buildType": "tekton.dev/v1/PipelineRun"}})
    with pytest.raises(VerificationError, match="about a PipelineRun"):
        check_run_binding("taskrun-u1", "TaskRun", "u1", item)
    item = Verified("taskrun/ns/x", "annotations", INTOTO_PAYLOAD_TYPE, b"{}",
                    {"predicate": {"buildType": "tekton.dev/v1/TaskRun",
                                   "invocation": {"environment": {"labels": {"tekton.dev/pipelineRunUID": "p9"}}},
                                   "metadata": {"buildInvocationId": "u1"}}})
    assert check_run_binding("taskrun-u1", "TaskRun", "u1", item) == SignedRun("TaskRun", "", "", "u1", "p9")
    with pytest.raises(VerificationError, match="invocationId 'u1'"):
        check_run_binding("taskrun-u2", "TaskRun", "", item)


def test_deep_nesting_is_a_failed_signature_not_a_crash(fixtures: Path, pub: str) -> None:
    run = _load(fixtures / "chains-run" / "taskrun-after-chains.json")
    ann = run["metadata"]["annotations"]
    sig_key = next(k for k in ann if k.startswith("chains.tekton.dev/signature-"))
    ann[sig_key] = base64.b64encode(b'{"a":' * 100_000 + b"1" + b"}" * 100_000).decode()
    with pytest.raises(NoMatchingSignatureError, match="nested deeper"):
        verify_run(run, [pub], Context(), tlog=NO_TLOG)


def test_a_raw_signature_starting_with_a_brace_is_not_taken_for_an_envelope() -> None:
    """About 1 in 256 raw RSA signatures start with ``{``; they are raw signatures, not DSSE envelopes."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from chainmail.verify.stored import verify_stored

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for n in range(5000):
        payload = f'{{"critical": {{}}, "n": {n}}}'.encode()
        signature = private.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        if signature[:1] == b"{":
            break
    else:
        pytest.fail("no signature starting with '{' in 5000 tries")
    verified = verify_stored([(pem, "k1")], payload, signature, "ref", "annotations", "here", "")
    assert verified.key_id == "k1" and verified.payload == payload
