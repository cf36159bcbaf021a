"""``transparency.enabled`` logs every signature in Rekor, as Chains does, against the local Sigstore stack.

The stack (tests/sigstore/server.mjs) answers with real SETs, inclusion proofs and checkpoints; entries
are checked with the trusted_root.json it wrote, passed as ``chainmail.transparency.trusted-root``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chainmail._internal.http import RetryPolicy
from chainmail.demo import example_dir
from chainmail.transparency import LogEntry, RekorClient, load_log_keys
from clirun import cli

_spec = importlib.util.spec_from_file_location("sigstore_stack_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "fixture.py")
assert _spec is not None and _spec.loader is not None
_stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_stack_module)
sigstore_stack = _stack_module.sigstore_stack
Stack = _stack_module.Stack

TRANSPARENCY = "chains.tekton.dev/transparency"
EXAMPLE = example_dir() / "taskrun.json"
RUN = json.loads(EXAMPLE.read_text())
RUN_DIR = f"taskrun-{RUN['metadata']['namespace']}-{RUN['metadata']['name']}"


def _sets(stack: Stack, store: Path, mode: str = "true", url: str | None = None) -> list[str]:
    values = {
        "transparency.enabled": mode,
        "transparency.url": url or stack.url,
        "chainmail.transparency.trusted-root": str(stack.trusted_root),
        "chainmail.sign.verify-images-exist": "false",  # the example's images exist nowhere
        "chainmail.retry.deadline-seconds": "2",
        "artifacts.taskrun.storage": "file",
        "artifacts.oci.storage": "file",
        "chainmail.storage.file.directory": str(store),
    }
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def _annotations(store: Path) -> dict[str, str]:
    path = store / RUN_DIR / "annotations.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _rekor(stack: Stack) -> RekorClient:
    return RekorClient(stack.url, keys=load_log_keys(stack.trusted_root), retry=RetryPolicy(deadline=2.0))


def _signed(ws: Path) -> list[dict[str, Any]]:
    return json.loads((ws / "signed.json").read_text())["signatures"]


def test_enabled_logs_every_signature_and_annotates_the_run(sigstore_stack: Stack, key: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    store, ws = tmp_path / "store", tmp_path / "ws"
    code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, "--workspace", str(ws),
                        *_sets(sigstore_stack, store)], capsys)
    assert code == 0, err
    signed = _signed(ws)
    assert {s["payload"]["wrap"] for s in signed} == {True, False}  # an attestation and image signatures
    rekor = _rekor(sigstore_stack)
    indexes = []
    for item in signed:
        entry = LogEntry.from_response(item["tlog"])
        body = base64.b64decode(item["payload"]["body"])
        assert entry.kind == ("dsse" if item["payload"]["wrap"] else "hashedrekord")
        # the log holds it: a search by the payload digest finds this very entry
        assert entry.uuid.lower() in rekor.search(sha256=hashlib.sha256(body).hexdigest())
        indexes.append(entry.log_index)
    assert _annotations(store)[TRANSPARENCY] in {
        f"{sigstore_stack.url}/api/v1/log/entries?logIndex={i}" for i in indexes}
    assert _annotations(store)["chains.tekton.dev/signed"] == "true"


def test_manual_uploads_only_for_annotated_runs(sigstore_stack: Stack, key: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plain, ws_plain = tmp_path / "plain", tmp_path / "ws-plain"
    code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, "--workspace", str(ws_plain),
                        *_sets(sigstore_stack, plain, "manual")], capsys)
    assert code == 0, err
    assert all("tlog" not in s for s in _signed(ws_plain))
    assert TRANSPARENCY not in _annotations(plain)

    run = copy.deepcopy(RUN)
    run["metadata"]["annotations"]["chains.tekton.dev/transparency-upload"] = "true"
    annotated = tmp_path / "annotated.json"
    annotated.write_text(json.dumps(run))
    store, ws = tmp_path / "store", tmp_path / "ws"
    code, _, err = cli(["run", "--from-file", str(annotated), "--key", key, "--workspace", str(ws),
                        *_sets(sigstore_stack, store, "manual")], capsys)
    assert code == 0, err
    assert all(s.get("tlog") for s in _signed(ws))
    assert _annotations(store)[TRANSPARENCY].startswith(f"{sigstore_stack.url}/api/v1/log/entries?logIndex=")


def test_rekor_down_fails_the_run_and_stores_nothing(sigstore_stack: Stack, key: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    sigstore_stack.fault("status-500")
    try:
        code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, *_sets(sigstore_stack, store)],
                           capsys)
    finally:
        sigstore_stack.fault(None)
    assert code == 7, err
    assert "transparency log" in err and "Traceback" not in err
    marks = _annotations(store)
    assert marks["chains.tekton.dev/signed"] == "failed"
    assert "transparency log" in marks["chainmail.dev/failure-reason"]
    assert not list(store.rglob("*.signature")) and not list(store.rglob("*.payload"))


def test_run_on_the_cluster_gets_the_transparency_annotation(sigstore_stack: Stack, key: str, kube_api: Any,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    run = copy.deepcopy(RUN)
    run["metadata"].pop("resourceVersion", None)
    kube_api.add(run)
    ns, name = run["metadata"]["namespace"], run["metadata"]["name"]
    code, _, err = cli(["run", "--taskrun", name, "--namespace", ns, "--key", key,
                        "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=ns)),
                        *_sets(sigstore_stack, tmp_path / "store"),
                        "--set", "artifacts.taskrun.storage=tekton", "--set", "artifacts.oci.storage=tekton"], capsys)
    assert code == 0, err
    marks = kube_api.annotations("taskruns", ns, name)
    assert marks["chains.tekton.dev/signed"] == "true"
    index = int(marks[TRANSPARENCY].split("?logIndex=", 1)[1])
    assert marks[TRANSPARENCY] == f"{sigstore_stack.url}/api/v1/log/entries?logIndex={index}"
    entry = _rekor(sigstore_stack).get(log_index=index)
    assert entry.kind in ("dsse", "hashedrekord")


# ------------------------------------------------------------------ the store step trusts only checked entries


@pytest.fixture
def logged_workspace(sigstore_stack: Stack, key: str, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> Path:
    ws = tmp_path / "ws"
    code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, "--workspace", str(ws),
                        *_sets(sigstore_stack, tmp_path / "first")], capsys)
    assert code == 0, err
    return ws


def _store(stack: Stack, key: str, ws: Path, store: Path, capsys: pytest.CaptureFixture[str],
           mode: str = "true") -> tuple[int, str]:
    code, _, err = cli(["store", "--workspace", str(ws), "--key", key, "--trust-file-snapshot",
                        *_sets(stack, store, mode)], capsys)
    return code, err


def test_store_accepts_genuine_entries(sigstore_stack: Stack, key: str, logged_workspace: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code, err = _store(sigstore_stack, key, logged_workspace, store, capsys)
    assert code == 0, err
    assert any(store.rglob("*.signature"))
    assert _annotations(store)[TRANSPARENCY].startswith(sigstore_stack.url)


def _tamper(ws: Path, change: Any) -> None:
    doc = json.loads((ws / "signed.json").read_text())
    change(doc["signatures"])
    (ws / "signed.json").write_text(json.dumps(doc))


def _other_kind(signed: list[dict[str, Any]]) -> None:
    """A genuine, log-signed entry, but the attestation's (dsse) on the image signature."""
    image = next(s for s in signed if not s["payload"]["wrap"])
    image["tlog"] = next(s for s in signed if s["payload"]["wrap"])["tlog"]


def _forge_set(signed: list[dict[str, Any]]) -> None:
    """The entry's time changed: its SET no longer verifies with the log key."""
    ((uuid, item),) = signed[0]["tlog"].items()
    item["integratedTime"] += 1


def _strip(signed: list[dict[str, Any]]) -> None:
    signed[0].pop("tlog")


@pytest.mark.parametrize(("change", "said"), [(_other_kind, "not hashedrekord"), (_forge_set, "signed entry timestamp"),
                                              (_strip, "no transparency log entry")])
def test_store_refuses_forged_or_missing_entries(sigstore_stack: Stack, key: str, logged_workspace: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 change: Any, said: str) -> None:
    _tamper(logged_workspace, change)
    store = tmp_path / "store"
    code, err = _store(sigstore_stack, key, logged_workspace, store, capsys)
    assert code == 16, err
    assert said in err and "Traceback" not in err
    assert not list(store.rglob("*.signature"))


def test_store_refuses_an_entry_from_an_untrusted_log(sigstore_stack: Stack, key: str, logged_workspace: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the default (production) trusted root, the local log's entries are not trusted."""
    store = tmp_path / "store"
    code, _, err = cli(["store", "--workspace", str(logged_workspace), "--key", key, "--trust-file-snapshot",
                        *_sets(sigstore_stack, store), "--set", "chainmail.transparency.trusted-root="], capsys)
    assert code == 16, err
    assert "not a trusted log" in err
    assert not list(store.rglob("*.signature"))


def test_store_refuses_a_genuine_entry_for_another_signature(sigstore_stack: Stack, key: str,
                                                             logged_workspace: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An attacker logs their own signature over the same payload and attaches that entry: refused."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from chainmail.transparency import log_signature

    attacker = ec.generate_private_key(ec.SECP256R1())
    pem = attacker.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def attach(signed: list[dict[str, Any]]) -> None:
        image = next(s for s in signed if not s["payload"]["wrap"])
        body = base64.b64decode(image["payload"]["body"])
        entry = log_signature(_rekor(sigstore_stack), body, attacker.sign(body, ec.ECDSA(hashes.SHA256())), pem)
        image["tlog"] = entry.to_json()

    _tamper(logged_workspace, attach)
    store = tmp_path / "store"
    code, err = _store(sigstore_stack, key, logged_workspace, store, capsys)
    assert code == 16, err
    assert "is for another signature" in err
    assert not list(store.rglob("*.signature"))


# ------------------------------------------------------------------ oci: the cosign bundle annotation


def test_oci_layers_carry_the_cosign_bundle_and_still_verify(sigstore_stack: Stack, key: str, registry: Any,
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from test_oci_store import image_payload, statement_payload

    from chainmail.config import Config
    from chainmail.context import Context
    from chainmail.models import RunSnapshot
    from chainmail.signing import sign_payloads
    from chainmail.storage.oci import OciBackend
    from chainmail.store_session import StoreSession
    from doubles.registry import push_test_image

    snapshot = RunSnapshot(RUN)
    ref = push_test_image(registry, "tlog/app", "tlog")
    ctx = Context(key=key, config=Config.from_mapping({
        "transparency.enabled": "true", "transparency.url": sigstore_stack.url,
        "chainmail.transparency.trusted-root": str(sigstore_stack.trusted_root)}))
    signed = sign_payloads([image_payload(ref, snapshot), statement_payload([ref], snapshot)], ctx)
    OciBackend(StoreSession(ctx, snapshot)).store(signed)

    repo, digest = ref.split("@")
    tag = digest.replace(":", "-")
    for suffix, item in (("sig", signed[0]), ("att", signed[1])):
        raw = registry.get_manifest(repo.split("/", 1)[1], f"{tag}.{suffix}")
        assert raw is not None
        (layer,) = json.loads(raw)["layers"]
        bundle = json.loads(layer["annotations"]["dev.sigstore.cosign/bundle"])
        entry = LogEntry.from_response(item.tlog)
        assert bundle == {"SignedEntryTimestamp": base64.b64encode(entry.set).decode(),
                          "Payload": {"body": base64.b64encode(entry.body).decode(),
                                      "integratedTime": entry.integrated_time,
                                      "logIndex": entry.log_index, "logID": entry.log_id}}

    pub = str(Path(key) / "cosign.pub")
    code, _, err = cli(["verify", "image", ref, "--key", pub, "--trusted-root", str(sigstore_stack.trusted_root)],
                       capsys)
    assert code == 0, err
