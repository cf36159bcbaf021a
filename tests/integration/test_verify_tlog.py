"""Verification uses the transparency log, against the local Sigstore stack and a real registry.

Signatures are made and stored by chainmail with ``transparency.enabled: true`` (so each ``.sig``/``.att``
layer carries cosign's ``dev.sigstore.cosign/bundle`` and the run ``chains.tekton.dev/transparency``), then
``chainmail verify`` checks them with the stack's ``trusted_root.json``. Exit codes: 24 no entry, 25 the
entry is not this signature's, 26 bad SET or malformed entry, 27 bad inclusion proof, 28 unknown log,
7 Rekor unreachable, 2 conflicting flags.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chainmail.demo import example_dir
from clirun import cli
from doubles.registry import RegistryServer, push_test_image

_spec = importlib.util.spec_from_file_location("sigstore_stack_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "fixture.py")
assert _spec is not None and _spec.loader is not None
_stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_stack_module)
sigstore_stack = _stack_module.sigstore_stack
Stack = _stack_module.Stack

pytestmark = pytest.mark.registry

BUNDLE = "dev.sigstore.cosign/bundle"
TRANSPARENCY = "chains.tekton.dev/transparency"
RUN = json.loads((example_dir() / "taskrun.json").read_text())


@pytest.fixture(autouse=True)
def _no_ambient_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    monkeypatch.delenv("COSIGN_REPOSITORY", raising=False)


def sign_into(registry: RegistryServer, stack: Stack, key: str, repo: str, *, logged: bool = True,
              encoding: str = "dsse") -> str:
    """Push a test image and store chainmail's .sig and .att for it (logged in the stack's Rekor or not);
    ``encoding`` ``sigstore-bundle``: as Sigstore bundle referrers instead."""
    from test_oci_store import image_payload, statement_payload

    from chainmail.config import Config
    from chainmail.context import Context
    from chainmail.models import RunSnapshot
    from chainmail.signing import sign_payloads
    from chainmail.storage.oci import OciBackend
    from chainmail.store_session import StoreSession

    snapshot = RunSnapshot(RUN)
    ref = push_test_image(registry, repo, repo)
    ctx = Context(key=key, config=Config.from_mapping({
        "transparency.enabled": "true" if logged else "false", "transparency.url": stack.url,
        "chainmail.transparency.trusted-root": str(stack.trusted_root), "storage.oci.encoding-format": encoding}))
    image = image_payload(ref, snapshot)
    if encoding == "sigstore-bundle":  # bundles hold DSSE envelopes, simple-signing payloads too
        image = dataclasses.replace(image, wrap=True)
    signed = sign_payloads([image, statement_payload([ref], snapshot)], ctx)
    OciBackend(StoreSession(ctx, snapshot)).store(signed)
    return ref


def verify(capsys: pytest.CaptureFixture[str], what: str, ref: str, key: str, stack: Stack | None,
           *args: str) -> tuple[int, str]:
    root = ["--trusted-root", str(stack.trusted_root)] if stack is not None else []
    extra = ["--type", "slsaprovenance1"] if what == "attestation" else []
    code, _, err = cli(["verify", what, ref, "--key", str(Path(key) / "cosign.pub"), *extra, *root, *args,
                        "--set", "chainmail.retry.deadline-seconds=2"], capsys)
    assert "Traceback" not in err
    return code, err


def relayer(registry: RegistryServer, ref: str, suffix: str, change: Any) -> None:
    """Re-push the image's ``.sig``/``.att`` manifest with ``change(annotations)`` applied to its layer."""
    repo = ref.split("@")[0].split("/", 1)[1]
    tag = ref.split("@")[1].replace(":", "-") + f".{suffix}"
    doc = json.loads(registry.get_manifest(repo, tag) or b"{}")
    (layer,) = doc["layers"]
    change(layer["annotations"])
    blobs = [registry.get_blob(repo, doc["config"]["digest"]), registry.get_blob(repo, layer["digest"])]
    registry.push_raw(repo, tag, json.dumps(doc, separators=(",", ":")).encode(), blobs)


@pytest.fixture
def logged_ref(registry: RegistryServer, sigstore_stack: Stack, key: str) -> str:
    return sign_into(registry, sigstore_stack, key, "tlog/logged")


def test_logged_signature_and_attestation_verify(logged_ref: str, sigstore_stack: Stack, key: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for what in ("image", "attestation"):
        code, err = verify(capsys, what, logged_ref, key, sigstore_stack)
        assert code == 0, err
    # the log keys may also come from chains-config, as for signing
    code, err = verify(capsys, "image", logged_ref, key, None, "--set",
                       f"chainmail.transparency.trusted-root={sigstore_stack.trusted_root}")
    assert code == 0, err


def test_unlogged_fails_unless_the_log_is_ignored(registry: RegistryServer, sigstore_stack: Stack, key: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ref = sign_into(registry, sigstore_stack, key, "tlog/unlogged", logged=False)
    for what in ("image", "attestation"):
        code, err = verify(capsys, what, ref, key, sigstore_stack)
        assert code == 24, err
        assert "no transparency log entry" in err and len(err.strip().splitlines()) == 1
        code, err = verify(capsys, what, ref, key, sigstore_stack, "--insecure-ignore-tlog")
        assert code == 0, err


def test_key_based_bundles_carry_their_log_entry(
        registry: RegistryServer, sigstore_stack: Stack, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    ref = sign_into(registry, sigstore_stack, key, "tlog/bundles", encoding="sigstore-bundle")
    for what in ("image", "attestation"):
        code, err = verify(capsys, what, ref, key, sigstore_stack)
        assert code == 0, err
        assert "bundle-" in err  # the layouts line: it was the bundle that verified
    unlogged = sign_into(registry, sigstore_stack, key, "tlog/bundles-unlogged", logged=False,
                         encoding="sigstore-bundle")
    for what in ("image", "attestation"):
        code, err = verify(capsys, what, unlogged, key, sigstore_stack)
        assert code == 24, err
        code, err = verify(capsys, what, unlogged, key, sigstore_stack, "--insecure-ignore-tlog")
        assert code == 0, err


def test_a_log_key_not_in_the_trusted_root_is_rejected(logged_ref: str, key: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    stranger = tmp_path / "other-log.pub"
    stranger.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, err = verify(capsys, "image", logged_ref, key, None, "--trusted-root", str(stranger))
    assert code == 28, err
    assert "not a trusted log" in err
    # the production root does not know the local log either
    code, err = verify(capsys, "attestation", logged_ref, key, None)
    assert code == 28, err


def test_tampered_set_is_rejected(registry: RegistryServer, sigstore_stack: Stack, key: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    ref = sign_into(registry, sigstore_stack, key, "tlog/badset")

    def spoil(annotations: dict[str, str]) -> None:
        bundle = json.loads(annotations[BUNDLE])
        set_ = bytearray(base64.b64decode(bundle["SignedEntryTimestamp"]))
        set_[-1] ^= 1
        bundle["SignedEntryTimestamp"] = base64.b64encode(bytes(set_)).decode()
        annotations[BUNDLE] = json.dumps(bundle)

    relayer(registry, ref, "sig", spoil)
    code, err = verify(capsys, "image", ref, key, sigstore_stack)
    assert code == 26, err
    assert "signed entry timestamp (SET) does not verify" in err

    relayer(registry, ref, "att", lambda a: a.update({BUNDLE: '{"SignedEntryTimestamp": 1}'}))
    code, err = verify(capsys, "attestation", ref, key, sigstore_stack)
    assert code == 26, err
    assert "malformed" in err


def test_an_entry_for_another_signature_is_rejected(registry: RegistryServer, sigstore_stack: Stack, key: str,
                                                    logged_ref: str, capsys: pytest.CaptureFixture[str]) -> None:
    ref = sign_into(registry, sigstore_stack, key, "tlog/swapped")
    logged_repo = logged_ref.split("@")[0].split("/", 1)[1]
    for suffix, what in (("sig", "image"), ("att", "attestation")):
        # the (genuine, logged) entry of the other image's signature, pasted onto this one
        tag = logged_ref.split("@")[1].replace(":", "-") + f".{suffix}"
        other = json.loads(registry.get_manifest(logged_repo, tag) or b"{}")["layers"][0]
        relayer(registry, ref, suffix, lambda a, other=other: a.update({BUNDLE: other["annotations"][BUNDLE]}))
        code, err = verify(capsys, what, ref, key, sigstore_stack)
        assert code == 25, err
        assert "does not bind this signature" in err


def test_rekor_url_finds_the_entry_a_signature_does_not_carry(registry: RegistryServer, sigstore_stack: Stack,
                                                              key: str, capsys: pytest.CaptureFixture[str]) -> None:
    ref = sign_into(registry, sigstore_stack, key, "tlog/lookup")
    for suffix in ("sig", "att"):
        relayer(registry, ref, suffix, lambda a: a.pop(BUNDLE))
    for what in ("image", "attestation"):
        code, err = verify(capsys, what, ref, key, sigstore_stack)
        assert code == 24, err
        code, err = verify(capsys, what, ref, key, sigstore_stack, "--rekor-url", sigstore_stack.url)
        assert code == 0, err
    # never logged: the log has no entry for it
    unlogged = sign_into(registry, sigstore_stack, key, "tlog/lookup-unlogged", logged=False)
    code, err = verify(capsys, "image", unlogged, key, sigstore_stack, "--rekor-url", sigstore_stack.url)
    assert code == 24, err
    assert "no entry of transparency log" in err


def test_rekor_unreachable_and_conflicting_flags(registry: RegistryServer, sigstore_stack: Stack, key: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    unlogged = sign_into(registry, sigstore_stack, key, "tlog/down", logged=False)
    sigstore_stack.fault("status-500")
    try:
        code, err = verify(capsys, "image", unlogged, key, sigstore_stack, "--rekor-url", sigstore_stack.url)
    finally:
        sigstore_stack.fault(None)
    assert code == 7, err
    assert "transparency log" in err and len(err.strip().splitlines()) == 1
    code, err = verify(capsys, "image", unlogged, key, sigstore_stack, "--rekor-url", sigstore_stack.url,
                       "--insecure-ignore-tlog")
    assert code == 2, err
    assert "contradict" in err


# -- verify run: the chains.tekton.dev/transparency entry -------------------------------------------------


@pytest.fixture
def signed_run(sigstore_stack: Stack, key: str, kube_api: Any, tmp_path: Path) -> dict[str, Any]:
    """The example TaskRun signed on the (double) cluster with tekton storage and the log on."""
    tmp = tmp_path / "signed-run"
    tmp.mkdir()
    run = copy.deepcopy(RUN)
    run["metadata"].pop("resourceVersion", None)
    run["metadata"]["name"] = "tlog-verify-run"
    kube_api.add(run)
    ns, name = run["metadata"]["namespace"], run["metadata"]["name"]
    sets = {"transparency.enabled": "true", "transparency.url": sigstore_stack.url,
            "chainmail.transparency.trusted-root": str(sigstore_stack.trusted_root),
            "chainmail.sign.verify-images-exist": "false", "chainmail.retry.deadline-seconds": "2",
            "artifacts.taskrun.storage": "tekton", "artifacts.oci.storage": "tekton"}
    from chainmail._cli import main

    args = ["run", "--taskrun", name, "--namespace", ns, "--key", key,
            "--kubeconfig", str(kube_api.kubeconfig(tmp, namespace=ns))]
    args += [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None)
    obj = kube_api.get("taskruns", ns, name)
    assert obj is not None and TRANSPARENCY in obj["metadata"]["annotations"]
    return obj


def verify_run_file(capsys: pytest.CaptureFixture[str], run: dict[str, Any], key: str, stack: Stack,
                    tmp_path: Path, *args: str) -> tuple[int, str]:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    code, _, err = cli(["verify", "run", "--from-file", str(path), "--key", str(Path(key) / "cosign.pub"),
                        "--trusted-root", str(stack.trusted_root), *args,
                        "--set", "chainmail.retry.deadline-seconds=2"], capsys)
    assert "Traceback" not in err
    return code, err


def test_verify_run_checks_its_transparency_entry(signed_run: dict[str, Any], sigstore_stack: Stack, key: str,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = verify_run_file(capsys, signed_run, key, sigstore_stack, tmp_path)
    assert code == 0, err

    unlogged = copy.deepcopy(signed_run)
    del unlogged["metadata"]["annotations"][TRANSPARENCY]
    code, err = verify_run_file(capsys, unlogged, key, sigstore_stack, tmp_path)
    assert code == 24, err
    assert TRANSPARENCY in err
    code, err = verify_run_file(capsys, unlogged, key, sigstore_stack, tmp_path, "--insecure-ignore-tlog")
    assert code == 0, err
    code, err = verify_run_file(capsys, unlogged, key, sigstore_stack, tmp_path, "--rekor-url", sigstore_stack.url)
    assert code == 0, err


def test_verify_run_rejects_an_entry_of_another_signature_or_a_bad_proof(
        signed_run: dict[str, Any], sigstore_stack: Stack, key: str, logged_ref: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from chainmail._internal.http import RetryPolicy
    from chainmail.context import Context
    from chainmail.signing import load_signer
    from chainmail.transparency import RekorClient, load_log_keys, log_signature

    signer = load_signer(key, Context())
    rekor = RekorClient(sigstore_stack.url, keys=load_log_keys(sigstore_stack.trusted_root),
                        retry=RetryPolicy(deadline=2.0))
    other = log_signature(rekor, b"another payload", signer.sign(b"another payload"), signer.public_key_pem)
    swapped = copy.deepcopy(signed_run)
    swapped["metadata"]["annotations"][TRANSPARENCY] = (f"{sigstore_stack.url}/api/v1/log/entries"
                                                        f"?logIndex={other.log_index}")
    code, err = verify_run_file(capsys, swapped, key, sigstore_stack, tmp_path)
    assert code == 25, err
    assert "binds none" in err or "does not bind" in err

    sigstore_stack.fault("bad-proof")
    try:
        code, err = verify_run_file(capsys, signed_run, key, sigstore_stack, tmp_path)
    finally:
        sigstore_stack.fault(None)
    assert code == 27, err
    assert "inclusion proof" in err

    malformed = copy.deepcopy(signed_run)
    malformed["metadata"]["annotations"][TRANSPARENCY] = "logIndex=3"
    code, err = verify_run_file(capsys, malformed, key, sigstore_stack, tmp_path)
    assert code == 26, err
