"""Rekor v2 (``chainmail.transparency.rekor-version: "2"``) against a local Rekor v2 test log.

The log is tests/sigstore/rekor_v2.py: a real RFC 6962 tree, checkpoints signed with its own Ed25519 key,
entries built and canonicalized as rekor-tiles does (its docstring says which parts follow the specs and
which are the test's fault hook). It writes a trusted_root.json naming itself, passed as
``chainmail.transparency.trusted-root``.

Independent verifiers of chainmail's v2 output:
- @sigstore/verify (npm, sigstore-js) verifies the v0.3 bundle chainmail builds around the DSSE entry, and a
  messageSignature bundle the test builds around chainmail's hashedrekord entry: checkpoint with the trusted
  log key, inclusion proof, and the v0.0.2 body against the signature and digest.
- sigstore-python cannot verify these bundles with its public ``Verifier``: it verifies keyless bundles only
  (``Bundle`` requires a certificate) and requires an inclusion promise or an RFC 3161 timestamp, which a
  key-signed Rekor v2 bundle has neither of. Its log-entry check (``TransparencyLogEntry._verify``: Merkle
  inclusion + signed checkpoint, private API) is used on each entry instead, and its Rekor v2 models
  (``sigstore_models.rekor.v2.Entry``) parse each canonicalized body.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainmail.demo import example_dir
from chainmail.models import SignedPayload
from clirun import cli
from tooling import require_tool, shared_dir

_spec = importlib.util.spec_from_file_location("rekor_v2_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "rekor_v2.py")
assert _spec is not None and _spec.loader is not None
_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_module)
rekor_v2 = _module.rekor_v2
RekorV2Server = _module.RekorV2Server

TRANSPARENCY = "chains.tekton.dev/transparency"
EXAMPLE = example_dir() / "taskrun.json"
RUN = json.loads(EXAMPLE.read_text())
RUN_DIR = f"taskrun-{RUN['metadata']['namespace']}-{RUN['metadata']['name']}"
VERIFY_SCRIPT = Path(__file__).resolve().parents[1] / "sigstore" / "verify-bundle-rekor-v2.mjs"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _sets(server: RekorV2Server, store: Path, url: str | None = None, **extra: str) -> list[str]:
    values = {
        "transparency.enabled": "true",
        "transparency.url": url or server.url,
        "chainmail.transparency.rekor-version": "2",
        "chainmail.transparency.trusted-root": str(server.trusted_root),
        "chainmail.sign.verify-images-exist": "false",  # the example's images exist nowhere
        "chainmail.retry.deadline-seconds": "2",
        "artifacts.taskrun.storage": "file",
        "artifacts.oci.storage": "file",
        "chainmail.storage.file.directory": str(store),
        **extra,
    }
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def _run(server: RekorV2Server, key: str, tmp: Path, capsys: pytest.CaptureFixture[str], *more: str,
         url: str | None = None, **extra: str) -> tuple[int, str, Path, Path]:
    store, ws = tmp / "store", tmp / "ws"
    code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, "--workspace", str(ws), *more,
                        *_sets(server, store, url, **extra)], capsys)
    return code, err, store, ws


@pytest.fixture
def fresh_v2(tmp_path: Path) -> Iterator[RekorV2Server]:
    """An empty log of its own: the example run's (deterministic) signatures are new to it."""
    server = RekorV2Server(tmp_path)
    server.log.seed(3)
    try:
        yield server
    finally:
        server.close()


def _signed(ws: Path) -> list[dict[str, Any]]:
    return json.loads((ws / "signed.json").read_text())["signatures"]


def _annotations(store: Path) -> dict[str, str]:
    path = store / RUN_DIR / "annotations.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def module_key() -> str:
    """The shared cosign key directory (as conftest's ``key``, for module-scoped fixtures)."""
    path = shared_dir() / "fixtures" / "cosign-keys" / "ecdsa-p256-password"
    if not (path / "cosign.key").exists():
        require_tool("../shared", f"cosign test key not found at {path}")
    return str(path)


@pytest.fixture(scope="module")
def logged(rekor_v2: RekorV2Server, module_key: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One successful key-signed run against the v2 log: its workspace and store."""
    tmp = tmp_path_factory.mktemp("v2-run")
    store, ws = tmp / "store", tmp / "ws"
    code = _main_exit(["run", "--from-file", str(EXAMPLE), "--key", module_key, "--workspace", str(ws),
                       *_sets(rekor_v2, store)])
    assert code == 0
    return {"store": store, "ws": ws, "signed": _signed(ws)}


def _main_exit(argv: list[str]) -> int:
    """``chainmail ARGV`` in-process for a module-scoped fixture (no capsys there)."""
    from chainmail._cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# -- happy path ---------------------------------------------------------------------------------------------

def test_every_signature_is_a_verified_v2_entry_and_the_run_is_annotated(logged: dict[str, Any],
                                                                         rekor_v2: RekorV2Server) -> None:
    signed = logged["signed"]
    assert {s["payload"]["wrap"] for s in signed} == {True, False}  # an attestation and image signatures
    indexes = []
    for item in signed:
        tlog = item["tlog"]
        kind = "dsse" if item["payload"]["wrap"] else "hashedrekord"
        assert tlog["kindVersion"] == {"kind": kind, "version": "0.0.2"}
        assert "inclusionPromise" not in tlog and "integratedTime" not in tlog  # Rekor v2: no SET, no time
        assert base64.b64decode(tlog["logId"]["keyId"]) == rekor_v2.log.log_id
        body = base64.b64decode(tlog["canonicalizedBody"])
        assert body in rekor_v2.log.bodies  # exactly what the log holds
        indexes.append(int(tlog["logIndex"]))
    marks = _annotations(logged["store"])
    assert marks[TRANSPARENCY] in {f"{rekor_v2.url}/api/v2/log/entries?logIndex={i}" for i in indexes}
    assert marks["chains.tekton.dev/signed"] == "true"


def test_store_from_the_workspace_rechecks_the_v2_entries(logged: dict[str, Any], rekor_v2: RekorV2Server, key: str,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(logged["ws"], ws)
    store = tmp_path / "store"
    code, _, err = cli(["store", "--workspace", str(ws), "--key", key, "--trust-file-snapshot",
                        *_sets(rekor_v2, store)], capsys)
    assert code == 0, err

    doc = json.loads((ws / "signed.json").read_text())  # a stored entry that binds another signature
    first, second = doc["signatures"][0], doc["signatures"][1]
    first["tlog"], second["tlog"] = second["tlog"], first["tlog"]
    (ws / "signed.json").write_text(json.dumps(doc))
    code, _, err = cli(["store", "--workspace", str(ws), "--key", key, "--trust-file-snapshot",
                        *_sets(rekor_v2, tmp_path / "s2")], capsys)
    assert code == 16, err
    assert "transparency log entry is not to be trusted" in err


def test_no_cosign_bundle_annotation_for_v2_entries_but_the_bundle_carries_the_proof(logged: dict[str, Any]) -> None:
    from chainmail.storage.oci import ANN_REKOR_BUNDLE, layer_for, sigstore_bundle

    for doc in logged["signed"]:
        item = SignedPayload.from_json(doc)
        if not item.payload.wrap and item.signature[:1] == b"{":
            continue
        _, _, annotations = layer_for(item)
        assert ANN_REKOR_BUNDLE not in annotations  # SET-based, v1 only
        if item.payload.wrap:
            bundle = json.loads(sigstore_bundle(item))
            assert bundle["verificationMaterial"]["tlogEntries"] == [doc["tlog"]]


# -- independent verifiers ----------------------------------------------------------------------------------

def _sigstore_js(tmp_path: Path, root: Path, bundle: dict[str, Any], pem: str,
                 artifact: bytes | None = None) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (VERIFY_SCRIPT.parents[1] / "js" / "node_modules" / "@sigstore" / "verify").is_dir():
        require_tool("node + @sigstore/verify", "run `npm install --prefix tests/js`")
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    (tmp_path / "key.pem").write_text(pem)
    args = [node, str(VERIFY_SCRIPT), str(tmp_path / "bundle.json"), str(tmp_path / "key.pem"), str(root)]
    if artifact is not None:
        (tmp_path / "artifact").write_bytes(artifact)
        args.append(str(tmp_path / "artifact"))
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _item(logged: dict[str, Any], wrap: bool) -> SignedPayload:
    return SignedPayload.from_json(next(s for s in logged["signed"] if s["payload"]["wrap"] is wrap))


def test_sigstore_js_verifies_chainmails_dsse_bundle_with_the_v2_entry(logged: dict[str, Any],
                                                                         rekor_v2: RekorV2Server,
                                                                         tmp_path: Path) -> None:
    from chainmail.storage.oci import sigstore_bundle

    item = _item(logged, True)
    bundle = json.loads(sigstore_bundle(item))
    result = _sigstore_js(tmp_path, rekor_v2.trusted_root, bundle, item.public_key)
    assert result == {"verified": True, "tlogEntries": 1, "kind": "dsse", "version": "0.0.2"}, result

    tampered = json.loads(json.dumps(bundle))  # one flipped bit in the checkpoint signature
    proof = tampered["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    text, sig_line = proof["checkpoint"]["envelope"].split("\n\n")
    blob = bytearray(base64.b64decode(sig_line.rsplit(" ", 1)[1]))
    blob[-1] ^= 1
    proof["checkpoint"]["envelope"] = f"{text}\n\n{sig_line.rsplit(' ', 1)[0]} {base64.b64encode(bytes(blob)).decode()}\n"
    result = _sigstore_js(tmp_path, rekor_v2.trusted_root, tampered, item.public_key)
    assert (result["verified"], result["code"]) == (False, "TLOG_INCLUSION_PROOF_ERROR"), result


def test_sigstore_js_verifies_chainmails_hashedrekord_entry(logged: dict[str, Any], rekor_v2: RekorV2Server,
                                                            tmp_path: Path) -> None:
    from chainmail.signing.keys import key_hint

    item = _item(logged, False)
    digest = hashlib.sha256(item.payload.body).digest()
    bundle = {"mediaType": BUNDLE_V03,  # the test's wrapping of chainmail's signature and entry
              "verificationMaterial": {"publicKey": {"hint": key_hint(item.public_key)}, "tlogEntries": [item.tlog]},
              "messageSignature": {"messageDigest": {"algorithm": "SHA2_256",
                                                     "digest": base64.b64encode(digest).decode()},
                                   "signature": base64.b64encode(item.signature).decode()}}
    result = _sigstore_js(tmp_path, rekor_v2.trusted_root, bundle, item.public_key, item.payload.body)
    assert result == {"verified": True, "tlogEntries": 1, "kind": "hashedrekord", "version": "0.0.2"}, result
    result = _sigstore_js(tmp_path, rekor_v2.trusted_root, bundle, item.public_key, item.payload.body + b"!")
    assert result["verified"] is False


def test_sigstore_python_checks_each_entrys_proof_checkpoint_and_body(logged: dict[str, Any],
                                                                       rekor_v2: RekorV2Server) -> None:
    from sigstore._internal.trust import Keyring
    from sigstore.errors import VerificationError
    from sigstore.models import TransparencyLogEntry
    from sigstore_models.common import v1 as common_v1
    from sigstore_models.rekor import v2 as rekor_v2_models
    from sigstore_models.rekor.v1 import TransparencyLogEntry as InnerEntry

    root = json.loads(rekor_v2.trusted_root.read_text())
    public_key = common_v1.PublicKey.from_json(json.dumps(root["tlogs"][0]["publicKey"]))
    keyring = Keyring([public_key])
    for doc in logged["signed"]:
        entry = TransparencyLogEntry(InnerEntry.from_dict(doc["tlog"]))
        entry._verify(keyring)  # Merkle inclusion + signed checkpoint
        body = rekor_v2_models.entry.Entry.from_json(base64.b64decode(doc["tlog"]["canonicalizedBody"]))
        assert body.api_version == "0.0.2"
        spec = body.spec.hashed_rekord_v002 or body.spec.dsse_v002
        assert spec is not None

        bad = json.loads(json.dumps(doc["tlog"]))  # another body: its leaf is not in the tree
        bad["canonicalizedBody"] = base64.b64encode(base64.b64decode(bad["canonicalizedBody"]) + b" ").decode()
        with pytest.raises(VerificationError):
            TransparencyLogEntry(InnerEntry.from_dict(bad))._verify(keyring)


@pytest.mark.registry
def test_the_oci_backend_stores_a_bundle_with_the_v2_entry_that_sigstore_js_verifies(
        logged: dict[str, Any], rekor_v2: RekorV2Server, key: str, registry: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: sign (logging in Rekor v2), store as an OCI referrer (sigstore-bundle mode), read back, verify."""
    import dataclasses

    from chainmail.config import Config
    from chainmail.context import Context
    from chainmail.models import RunSnapshot
    from chainmail.signing import sign_payloads
    from chainmail.storage import StoreSession
    from chainmail.storage.oci import OciBackend
    from doubles.registry import push_test_image

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    ref = push_test_image(registry, "rekor-v2/app", "rekor-v2")
    digest = ref.split("@")[1]
    att = _item(logged, True)
    statement = json.loads(att.payload.body)
    statement["subject"] = [{"name": ref.split("@")[0], "digest": {"sha256": digest[7:]}}]
    payload = dataclasses.replace(att.payload, body=json.dumps(statement, separators=(",", ":")).encode(),
                                  subjects=(ref,))
    ctx = Context(config=Config.from_mapping({
        "storage.oci.encoding-format": "sigstore-bundle", "transparency.enabled": "true",
        "transparency.url": rekor_v2.url, "chainmail.transparency.rekor-version": "2",
        "chainmail.transparency.trusted-root": str(rekor_v2.trusted_root)}), key=key)
    snapshot = RunSnapshot({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                            "metadata": {"name": "x", "namespace": "demo", "uid": att.payload.artifact.owner.uid}})
    [item] = sign_payloads([payload], ctx)
    assert item.tlog is not None and item.tlog["kindVersion"] == {"kind": "dsse", "version": "0.0.2"}
    [stored] = OciBackend(StoreSession(ctx, snapshot)).store([item])
    index = json.loads(registry.get_manifest("rekor-v2/app", digest.replace(":", "-")))
    [entry] = index["manifests"]
    referrer = json.loads(registry.get_manifest("rekor-v2/app", entry["digest"]))
    assert stored.location.endswith(entry["digest"])
    bundle = json.loads(registry.get_blob("rekor-v2/app", referrer["layers"][0]["digest"]))
    assert bundle["verificationMaterial"]["tlogEntries"] == [item.tlog]
    result = _sigstore_js(tmp_path, rekor_v2.trusted_root, bundle, item.public_key)
    assert result["verified"] is True, result


# -- a lying, failing or unknown log ------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "message"), [
    ("bad-checkpoint-sig", "does not verify with the trusted log key"),
    ("bad-root", "does not lead to the checkpoint's root hash"),
    ("bad-hashes", "does not lead to the checkpoint's root hash"),
    ("other-entry", "is for another|entry, not (dsse|hashedrekord)"),  # the previous entry: maybe another kind
    ("unknown-key", "signed by no trusted log key"),
    ("status-400", "HTTP 400"),
])
def test_a_lying_log_fails_the_run_with_exit_7_and_stores_nothing(fault: str, message: str, fresh_v2: RekorV2Server,
                                                                  key: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fresh_v2.fault(fault)
    try:
        code, err, store, _ = _run(fresh_v2, key, tmp_path, capsys)
    finally:
        fresh_v2.fault(None)
    assert code == 7, err
    assert re.search(message, err) and "Traceback" not in err
    assert _annotations(store)["chains.tekton.dev/signed"] == "failed"
    assert not list(store.rglob("*.signature")) and not list(store.rglob("*.payload"))


def test_a_log_answering_5xx_is_retried_then_exit_7(fresh_v2: RekorV2Server, key: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fresh_v2.fault("status-500")
    try:
        code, err, _, _ = _run(fresh_v2, key, tmp_path, capsys)
    finally:
        fresh_v2.fault(None)
    assert code == 7, err
    assert "unreachable" in err or "HTTP 500" in err


def test_a_log_that_is_down_is_exit_7_after_bounded_retries(rekor_v2: RekorV2Server, key: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = json.loads(rekor_v2.trusted_root.read_text())
    root["tlogs"][0]["baseUrl"] = f"http://127.0.0.1:{port}"
    (tmp_path / "root.json").write_text(json.dumps(root))
    code, err, _, _ = _run(rekor_v2, key, tmp_path, capsys, url=f"http://127.0.0.1:{port}",
                           **{"chainmail.transparency.trusted-root": str(tmp_path / "root.json")})
    assert code == 7, err
    assert "is unreachable" in err


def test_signing_the_same_run_again_reads_the_entries_back_from_the_tiles(logged: dict[str, Any],
                                                                         rekor_v2: RekorV2Server, key: str,
                                                                         tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # chainmail's ECDSA signatures are deterministic: the same run logs the same entries, which Rekor v2
    # answers with 409 and their index; chainmail reads them back (checkpoint, entry bundle, hash tiles).
    before = len(rekor_v2.log.bodies)
    store, ws = tmp_path / "store", tmp_path / "ws"
    code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, "--workspace", str(ws),
                        *_sets(rekor_v2, store)], capsys)
    assert code == 0, err
    assert len(rekor_v2.log.bodies) == before  # nothing new logged
    again = {s["tlog"]["canonicalizedBody"]: s["tlog"] for s in _signed(ws)}
    for item in logged["signed"]:
        tlog = again[item["tlog"]["canonicalizedBody"]]
        assert tlog["logIndex"] == item["tlog"]["logIndex"]
        assert tlog["kindVersion"] == item["tlog"]["kindVersion"]
        assert int(tlog["inclusionProof"]["treeSize"]) == before  # proved against the current checkpoint


@pytest.mark.parametrize(("fault", "message"), [
    ("read-bad-checkpoint-sig", "signed by no trusted log key"),
    ("read-bad-tile", "does not lead to the checkpoint's root hash"),
])
def test_a_lying_read_back_is_exit_7(fault: str, message: str, logged: dict[str, Any], rekor_v2: RekorV2Server,
                                     key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rekor_v2.fault(fault)
    try:
        code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--key", key, "--workspace", str(tmp_path / "ws"),
                            *_sets(rekor_v2, tmp_path / "store")], capsys)
    finally:
        rekor_v2.fault(None)
    assert code == 7, err
    assert message in err


# -- configuration ------------------------------------------------------------------------------------------

def test_an_unknown_rekor_version_is_exit_3(rekor_v2: RekorV2Server, key: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _, _ = _run(rekor_v2, key, tmp_path, capsys, **{"chainmail.transparency.rekor-version": "3"})
    assert code == 3, err
    assert "chainmail.transparency.rekor-version" in err


def test_a_v2_log_the_trusted_root_does_not_name_is_exit_3(rekor_v2: RekorV2Server, key: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err, store, _ = _run(rekor_v2, key, tmp_path, capsys, url="http://127.0.0.1:9")
    assert code == 3, err
    assert "does not name" in err
    assert not list(store.rglob("*.signature"))


def test_keyless_with_rekor_v2_is_refused_with_exit_3(rekor_v2: RekorV2Server, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("not-used")
    store, ws = tmp_path / "store", tmp_path / "ws"
    code, _, err = cli(["run", "--from-file", str(EXAMPLE), "--workspace", str(ws),
                        *_sets(rekor_v2, store, **{"signers.x509.fulcio.enabled": "true",
                                                   "signers.x509.identity.token.file": str(token),
                                                   "artifacts.taskrun.signer": "x509"})], capsys)
    assert code == 3, err
    assert "TSA client" in err
    assert len(rekor_v2.log.bodies) == len(set(rekor_v2.log.bodies))  # nothing new was logged for it
