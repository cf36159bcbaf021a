"""chainmail's Rekor client and `chainmail tlog` against the local Sigstore stack (tests/sigstore/server.mjs).

The stack's log signs with @sigstore/mock's transparency log (real SETs) and keeps a real RFC 6962
tree, so every entry here comes back with a SET, a multi-leaf inclusion proof and a signed
checkpoint, all checked with the trusted_root.json the stack wrote. Entries are signed with the
shared cosign test key through chainmail's signer API.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chainmail._internal.http import RetryPolicy
from chainmail.context import Context
from chainmail.errors import TransparencyError
from chainmail.signing import Signer, dsse, load_signer
from chainmail.transparency import (
    RekorClient,
    kinds,
    load_log_keys,
    log_envelope,
    log_signature,
    transparency_annotation,
)
from clirun import cli
from tooling import require_tool, shared_dir

_spec = importlib.util.spec_from_file_location("sigstore_stack_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "fixture.py")
assert _spec is not None and _spec.loader is not None
_stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_stack_module)
sigstore_stack = _stack_module.sigstore_stack
Stack = _stack_module.Stack

SUBJECT = "ab" * 32


@pytest.fixture(scope="module")
def signer() -> Signer:
    path = shared_dir() / "fixtures" / "cosign-keys" / "ecdsa-p256-password"
    if not (path / "cosign.key").exists():
        require_tool("../shared", f"cosign test key not found at {path}")
    return load_signer(str(path), Context())


@pytest.fixture
def rekor(sigstore_stack: Stack) -> RekorClient:
    return RekorClient(sigstore_stack.url, keys=load_log_keys(sigstore_stack.trusted_root),
                       retry=RetryPolicy(deadline=2.0))


def statement(subject: str = SUBJECT, note: str = "") -> bytes:
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": "registry.local/app", "digest": {"sha256": subject}}],
                       "predicateType": "https://slsa.dev/provenance/v1", "predicate": {"note": note}}).encode()


def test_hashedrekord_is_logged_verified_and_bound(rekor: RekorClient, signer: Signer) -> None:
    payload = b"simple-signing payload 1"
    signature = signer.sign(payload)
    entry = log_signature(rekor, payload, signature, signer.public_key_pem)
    spec = entry.spec
    assert entry.kind == "hashedrekord"
    assert spec["data"]["hash"]["value"] == hashlib.sha256(payload).hexdigest()
    assert base64.b64decode(spec["signature"]["content"]) == signature
    assert entry.set and entry.proof is not None and entry.proof.checkpoint
    assert transparency_annotation(rekor.url, entry) == f"{rekor.url}/api/v1/log/entries?logIndex={entry.log_index}"
    bundle = entry.cosign_bundle()
    assert bundle["Payload"]["logIndex"] == entry.log_index
    assert base64.b64decode(bundle["SignedEntryTimestamp"]) == entry.set


def test_logging_the_same_signature_again_returns_the_existing_entry(rekor: RekorClient, signer: Signer) -> None:
    payload = b"simple-signing payload 2"
    signature = signer.sign(payload)
    first = log_signature(rekor, payload, signature, signer.public_key_pem)
    again = log_signature(rekor, payload, signature, signer.public_key_pem)  # HTTP 409 -> GET
    assert (again.uuid, again.log_index, again.body) == (first.uuid, first.log_index, first.body)


def test_dsse_entry_is_logged_as_real_rekor_stores_it(rekor: RekorClient, signer: Signer) -> None:
    env = dsse.envelope("application/vnd.in-toto+json", statement(), signer)
    entry = log_envelope(rekor, env, signer.public_key_pem)
    assert entry.kind == "dsse"
    assert set(entry.spec) == {"envelopeHash", "payloadHash", "signatures"}
    assert entry.spec["payloadHash"]["value"] == hashlib.sha256(statement()).hexdigest()
    assert entry.spec["envelopeHash"]["value"] == hashlib.sha256(env).hexdigest()
    assert entry.uuid in rekor.search(sha256=SUBJECT)  # in-toto subjects are indexed
    assert entry.uuid in rekor.search(sha256=hashlib.sha256(statement()).hexdigest())


def test_get_by_uuid_and_index_and_search_by_key(rekor: RekorClient, signer: Signer) -> None:
    payload = b"simple-signing payload 3"
    logged = log_signature(rekor, payload, signer.sign(payload), signer.public_key_pem)
    by_uuid = rekor.get(uuid=logged.uuid)
    by_index = rekor.get(log_index=logged.log_index)
    assert by_uuid.body == by_index.body == logged.body
    assert by_uuid.proof is not None and by_uuid.proof.tree_size >= 3 and by_uuid.proof.hashes
    assert rekor.search(sha256="sha256:" + hashlib.sha256(payload).hexdigest()) == [logged.uuid]
    assert logged.uuid in rekor.search(public_key_pem=signer.public_key_pem)
    assert rekor.search(sha256="00" * 32) == []


@pytest.mark.parametrize(("fault", "message"), [
    ("bad-set", r"signed entry timestamp \(SET\) does not verify"),
    ("bad-body", r"signed entry timestamp \(SET\) does not verify"),
    ("bad-proof", "inclusion proof does not lead to the root hash"),
    ("other-entry", "is for another (payload|signature)"),
    ("status-400", "HTTP 400: fault injected"),
])
def test_a_lying_or_failing_log_is_a_transparency_error(sigstore_stack: Stack, rekor: RekorClient, signer: Signer,
                                                        fault: str, message: str) -> None:
    log_signature(rekor, b"an earlier entry", signer.sign(b"an earlier entry"), signer.public_key_pem)
    payload = f"payload for {fault}".encode()
    sigstore_stack.fault(fault)
    with pytest.raises(TransparencyError, match=message) as caught:
        log_signature(rekor, payload, signer.sign(payload), signer.public_key_pem)
    assert caught.value.exit_code == 7 and "\n" not in str(caught.value)


def test_an_entry_from_a_log_we_do_not_trust_is_rejected(sigstore_stack: Stack, signer: Signer,
                                                         tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    stranger = tmp_path / "other.pub"
    stranger.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rekor = RekorClient(sigstore_stack.url, keys=load_log_keys(stranger), retry=RetryPolicy(deadline=1.0))
    with pytest.raises(TransparencyError, match="not a trusted log"):
        rekor.upload(kinds.hashedrekord(b"x", signer.sign(b"x"), signer.public_key_pem))


def test_the_stack_rejects_a_dsse_entry_whose_signature_does_not_verify(rekor: RekorClient, signer: Signer) -> None:
    env = json.loads(dsse.envelope("application/vnd.in-toto+json", statement(note="x"), signer))
    env["payload"] = base64.b64encode(statement(note="y")).decode()
    with pytest.raises(TransparencyError, match="HTTP 400"):
        rekor.upload(kinds.dsse(json.dumps(env), [signer.public_key_pem]))


# -- the CLI ---------------------------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], stack: Stack, *args: str) -> tuple[int, str, str]:
    return cli(["tlog", *args, "--rekor-url", stack.url, "--trusted-root", str(stack.trusted_root),
                "--set", "chainmail.retry.deadline-seconds=2"], capsys)


@pytest.fixture
def logged(rekor: RekorClient, signer: Signer) -> dict[str, Any]:
    """One hashedrekord and one dsse entry, for the CLI tests."""
    payload = b"simple-signing payload for the CLI"
    env = dsse.envelope("application/vnd.in-toto+json", statement("cd" * 32, "cli"), signer)
    return {"payload": payload, "envelope": env,
            "hashed": log_signature(rekor, payload, signer.sign(payload), signer.public_key_pem),
            "dsse": log_envelope(rekor, env, signer.public_key_pem)}


def test_cli_search_by_sha_artifact_and_key(capsys: pytest.CaptureFixture[str], sigstore_stack: Stack,
                                            logged: dict[str, Any], tmp_path: Path, signer: Signer) -> None:
    code, out, err = _run(capsys, sigstore_stack, "search", "--sha", "sha256:" + "cd" * 32)
    assert (code, out.split(), err) == (0, [logged["dsse"].uuid], "")
    artifact = tmp_path / "payload"
    artifact.write_bytes(logged["payload"])
    code, out, _ = _run(capsys, sigstore_stack, "search", "--artifact", str(artifact), "--format", "json")
    assert code == 0 and json.loads(out) == [logged["hashed"].uuid]
    pub = tmp_path / "cosign.pub"
    pub.write_text(signer.public_key_pem)
    code, out, _ = _run(capsys, sigstore_stack, "search", "--public-key", str(pub))
    assert code == 0 and {logged["hashed"].uuid, logged["dsse"].uuid} <= set(out.split())
    code, out, err = _run(capsys, sigstore_stack, "search", "--sha", "ef" * 32)
    assert (code, out, err.strip()) == (0, "", "no matching entries found")


def test_cli_get_prints_verified_entries_like_rekor_cli(capsys: pytest.CaptureFixture[str], sigstore_stack: Stack,
                                                        logged: dict[str, Any]) -> None:
    hashed = logged["hashed"]
    code, out, err = _run(capsys, sigstore_stack, "get", "--uuid", hashed.uuid, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["UUID"], doc["LogIndex"], doc["LogID"]) == (hashed.uuid, hashed.log_index, hashed.log_id)
    assert doc["Body"]["HashedRekordObj"]["data"]["hash"]["value"] == hashlib.sha256(logged["payload"]).hexdigest()
    code, out, _ = _run(capsys, sigstore_stack, "get", "--log-index", str(hashed.log_index))
    assert code == 0 and f"UUID: {hashed.uuid}" in out and "Verified: SET, inclusion proof" in out


def test_cli_attestation_of_a_dsse_entry_needs_and_checks_the_envelope(
        capsys: pytest.CaptureFixture[str], sigstore_stack: Stack, logged: dict[str, Any], tmp_path: Path,
        signer: Signer) -> None:
    uuid = logged["dsse"].uuid
    code, out, err = _run(capsys, sigstore_stack, "get", "--uuid", uuid, "--attestation")
    assert code == 4 and out == "" and "has no stored attestation" in err and "--envelope" in err
    env = tmp_path / "envelope.b64"
    env.write_text(base64.b64encode(logged["envelope"]).decode())  # as in Chains' signature annotation
    code, out, err = _run(capsys, sigstore_stack, "get", "--uuid", uuid, "--attestation", "--envelope", str(env))
    assert code == 0, err
    assert json.loads(out)["subject"][0]["digest"]["sha256"] == "cd" * 32
    code, out, _ = _run(capsys, sigstore_stack, "get", "--uuid", uuid, "--format", "json", "--envelope", str(env))
    assert json.loads(base64.b64decode(json.loads(out)["Attestation"]))["predicate"] == {"note": "cli"}
    other = tmp_path / "other.json"
    other.write_bytes(dsse.envelope("application/vnd.in-toto+json", b"{}", signer))
    code, out, err = _run(capsys, sigstore_stack, "get", "--uuid", uuid, "--attestation", "--envelope", str(other))
    assert (code, out) == (7, "") and "another payload" in err and err.count("\n") == 1


@pytest.mark.parametrize(("fault", "args", "message"), [
    (None, ["get", "--uuid", "ab" * 32], "HTTP 404"),
    (None, ["get", "--uuid", "not-a-uuid"], "is not a Rekor entry UUID"),
    (None, ["get", "--log-index", "999999999"], "HTTP 404"),
    ("bad-set", ["get", "--log-index", "{index}"], r"signed entry timestamp \(SET\) does not verify"),
    ("bad-proof", ["get", "--log-index", "{index}"], "inclusion proof does not lead"),
    ("other-entry", ["get", "--uuid", "{uuid}"], "answered with entry"),
])
def test_cli_failures_exit_7_with_one_line(capsys: pytest.CaptureFixture[str], sigstore_stack: Stack,
                                           logged: dict[str, Any], fault: str | None, args: list[str],
                                           message: str) -> None:
    entry = logged["hashed"]
    args = [a.format(index=entry.log_index, uuid=entry.uuid) for a in args]
    if fault:
        sigstore_stack.fault(fault)
    code, out, err = _run(capsys, sigstore_stack, *args)
    assert (code, out) == (7, "")
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_cli_rekor_down_is_exit_7_after_bounded_retries(capsys: pytest.CaptureFixture[str], sigstore_stack: Stack) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    code, out, err = cli(["tlog", "get", "--log-index", "1", "--rekor-url", f"http://127.0.0.1:{port}",
                          "--trusted-root", str(sigstore_stack.trusted_root),
                          "--set", "chainmail.retry.deadline-seconds=1"], capsys)
    assert (code, out) == (7, "")
    assert "unreachable" in err and err.count("\n") == 1 and "Traceback" not in err
    assert time.monotonic() - started < 15


def test_cli_rekor_url_defaults_to_chains_config(capsys: pytest.CaptureFixture[str], sigstore_stack: Stack,
                                                 logged: dict[str, Any]) -> None:
    code, out, err = cli(["tlog", "get", "--log-index", str(logged["hashed"].log_index),
                          "--set", f"transparency.url={sigstore_stack.url}",
                          "--trusted-root", str(sigstore_stack.trusted_root)], capsys)
    assert code == 0, err
    assert f"UUID: {logged['hashed'].uuid}" in out


# -- @sigstore/verify (npm) with tlog threshold 1 ---------------------------------------------------------

VERIFY_SCRIPT = Path(__file__).resolve().parents[1] / "sigstore" / "verify-bundle-tlog.mjs"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _sigstore_js(tmp_path: Path, stack: Stack, bundle: dict[str, Any], pem: str,
                 artifact: bytes | None = None) -> dict[str, Any]:
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None or not (VERIFY_SCRIPT.parents[1] / "js" / "node_modules" / "@sigstore" / "verify").is_dir():
        require_tool("node + @sigstore/verify", "run `npm install --prefix tests/js`")
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    (tmp_path / "key.pem").write_text(pem)
    args = [node, str(VERIFY_SCRIPT), str(tmp_path / "bundle.json"), str(tmp_path / "key.pem"),
            str(stack.trusted_root)]
    if artifact is not None:
        (tmp_path / "artifact").write_bytes(artifact)
        args.append(str(tmp_path / "artifact"))
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _dsse_bundle(env: bytes, entry_tlog: dict[str, Any], pem: str) -> dict[str, Any]:
    from chainmail.signing.keys import key_hint

    parsed = dsse.parse(env)
    hint = key_hint(pem)
    return {"mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": [entry_tlog]},
            "dsseEnvelope": {"payload": base64.b64encode(parsed["payload"]).decode(),
                             "payloadType": parsed["payloadType"],
                             "signatures": [{"sig": base64.b64encode(parsed["signatures"][0]["sig"]).decode(),
                                             "keyid": hint}]}}


def test_sigstore_js_accepts_a_dsse_bundle_with_our_tlog_entry(rekor: RekorClient, signer: Signer,
                                                               sigstore_stack: Stack, tmp_path: Path) -> None:
    env = dsse.envelope("application/vnd.in-toto+json", statement(note="sigstore-js"), signer)
    entry = log_envelope(rekor, env, signer.public_key_pem)
    bundle = _dsse_bundle(env, entry.bundle_tlog_entry(), signer.public_key_pem)
    result = _sigstore_js(tmp_path, sigstore_stack, bundle, signer.public_key_pem)
    assert result == {"verified": True, "tlogEntries": 1, "keyless": False}, result

    tampered = json.loads(json.dumps(bundle))
    promise = tampered["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    raw = bytearray(base64.b64decode(promise["signedEntryTimestamp"]))
    raw[-1] ^= 1
    promise["signedEntryTimestamp"] = base64.b64encode(bytes(raw)).decode()
    result = _sigstore_js(tmp_path, sigstore_stack, tampered, signer.public_key_pem)
    assert (result["verified"], result["code"]) == (False, "TLOG_INCLUSION_PROMISE_ERROR"), result

    other_env = dsse.envelope("application/vnd.in-toto+json", statement(note="another"), signer)
    other = log_envelope(rekor, other_env, signer.public_key_pem)
    mixed = _dsse_bundle(env, other.bundle_tlog_entry(), signer.public_key_pem)
    result = _sigstore_js(tmp_path, sigstore_stack, mixed, signer.public_key_pem)
    assert (result["verified"], result["code"]) == (False, "TLOG_BODY_ERROR"), result


def test_sigstore_js_accepts_a_message_signature_bundle_with_our_hashedrekord(
        rekor: RekorClient, signer: Signer, sigstore_stack: Stack, tmp_path: Path) -> None:
    from chainmail.signing.keys import key_hint

    blob = b"a blob signed like cosign sign-blob"
    signature = signer.sign(blob)
    entry = log_signature(rekor, blob, signature, signer.public_key_pem)
    bundle = {"mediaType": BUNDLE_V03,
              "verificationMaterial": {"publicKey": {"hint": key_hint(signer.public_key_pem)},
                                       "tlogEntries": [entry.bundle_tlog_entry()]},
              "messageSignature": {"messageDigest": {"algorithm": "SHA2_256",
                                                     "digest": base64.b64encode(hashlib.sha256(blob).digest()).decode()},
                                   "signature": base64.b64encode(signature).decode()}}
    assert _sigstore_js(tmp_path, sigstore_stack, bundle, signer.public_key_pem, blob)["verified"] is True
    assert _sigstore_js(tmp_path, sigstore_stack, bundle, signer.public_key_pem, blob + b"!")["verified"] is False



def test_a_log_answering_5xx_is_retried_then_exit_7(capsys: pytest.CaptureFixture[str], sigstore_stack: Stack,
                                                    logged: dict[str, Any]) -> None:
    sigstore_stack.fault("status-500")
    try:
        started = time.monotonic()
        code, out, err = cli(["tlog", "get", "--log-index", str(logged["hashed"].log_index),
                              "--rekor-url", sigstore_stack.url, "--trusted-root", str(sigstore_stack.trusted_root),
                              "--set", "chainmail.retry.deadline-seconds=1"], capsys)
        assert (code, out) == (7, "") and "HTTP 500" in err and err.count("\n") == 1
        assert time.monotonic() - started < 15
    finally:
        sigstore_stack.fault(None)
    code, _, err = _run(capsys, sigstore_stack, "get", "--log-index", str(logged["hashed"].log_index))
    assert code == 0, err
