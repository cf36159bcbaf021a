"""@sigstore/verify (npm, run offline with the machine's node) accepts chainmail's key-signed bundles.

The bundles come from chainmail's own bundle builder (``storage.oci.sigstore_bundle``) and, end to end,
from the oci backend in ``storage.oci.encoding-format: sigstore-bundle`` mode reading the referrer back
from the registry. ``tests/js/verify-bundle.mjs`` builds trust material from the production
``trusted_root.json`` embedded in sigstore-python with a key finder returning our PEM, and verifies with
no tlog/ctlog/timestamp thresholds (wire-formats §9). Tampered copies must be rejected.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.models import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE, RunSnapshot, SignedPayload
from tooling import require_tool

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "verify-bundle.mjs"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        require_tool("node", "not installed; @sigstore/verify cross-check skipped")
    if not (JS_DIR / "node_modules" / "@sigstore" / "verify").is_dir():
        npm = shutil.which("npm")
        reason = "npm is not installed"
        if npm is not None:
            try:
                done = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(JS_DIR)],
                                      capture_output=True, text=True, timeout=120)
                reason = f"npm install failed: {(done.stderr or done.stdout).strip()[-300:]}"
            except subprocess.TimeoutExpired:
                reason = "npm install timed out (offline?)"
        if not (JS_DIR / "node_modules" / "@sigstore" / "verify").is_dir():
            require_tool("tests/js/node_modules/@sigstore/verify", f"absent and could not be installed ({reason})")
    return exe


@pytest.fixture(scope="module")
def trusted_root() -> Path:
    pytest.importorskip("sigstore")
    from chainmail.verify.trusted_root import embedded_trusted_root_path

    path = embedded_trusted_root_path("production")
    if path is None:
        pytest.skip("sigstore-python's embedded production trusted_root.json not found")
    return path


@pytest.fixture(scope="module")
def fx(shared: Path) -> Path:
    return shared / "fixtures"


@pytest.fixture(scope="module")
def key_dir(fx: Path) -> Path:
    return fx / "cosign-keys" / "ecdsa-p256-password"


@pytest.fixture(scope="module")
def signed(fx: Path, key_dir: Path) -> list[SignedPayload]:
    """chainmail's SLSA v1.0 attestation and its image signature (DSSE-wrapped, as bundle mode needs)."""
    from chainmail.formats import create_payloads
    from chainmail.signing import dsse, load_signer, sign_payloads

    snapshot = RunSnapshot(json.loads((fx / "chains-run" / "taskrun-after-chains.json").read_text()))
    ctx = Context(config=Config.from_mapping({"artifacts.taskrun.format": "slsa/v2alpha4"}), key=str(key_dir))
    payloads = create_payloads(snapshot, ctx.config)
    att = sign_payloads([p for p in payloads if p.wrap], ctx)[0]
    image = next(p for p in payloads if not p.wrap)
    signer = load_signer(str(key_dir), ctx)
    wrapped = SignedPayload(image, dsse.envelope(SIMPLESIGNING_PAYLOAD_TYPE, image.body, signer), signer.key_id,
                            signer.public_key_pem, signer.uri)
    return [att, wrapped]


def run_js(node: str, tmp: Path, bundle: bytes | dict[str, Any], key_pem: str, root: Path) -> tuple[int, dict]:
    bundle_path = tmp / "bundle.json"
    bundle_path.write_bytes(bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode())
    key_path = tmp / "key.pem"
    key_path.write_text(key_pem)
    done = subprocess.run([node, str(SCRIPT), str(bundle_path), str(key_path), str(root)], capture_output=True,
                          text=True, timeout=60, cwd=JS_DIR)
    assert done.returncode in (0, 1), done.stderr or done.stdout
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_sigstore_js_accepts_chainmail_bundles(node: str, trusted_root: Path, signed: list[SignedPayload],
                                               tmp_path: Path) -> None:
    from chainmail.storage.oci import key_hint, sigstore_bundle

    for item, payload_type in zip(signed, (INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE), strict=True):
        bundle = sigstore_bundle(item)
        code, result = run_js(node, tmp_path, bundle, item.public_key, trusted_root)
        assert code == 0 and result["verified"], result
        assert result["mediaType"] == BUNDLE_TYPE and result["payloadType"] == payload_type
        # the key finder was asked with the bundle's hint, which is cosign's (sha256 of the SPKI)
        assert result["hints"] == [key_hint(item.public_key)]


def test_sigstore_js_rejects_tampered_copies(node: str, trusted_root: Path, signed: list[SignedPayload],
                                             tmp_path: Path, fx: Path) -> None:
    from chainmail.storage.oci import sigstore_bundle

    item = signed[0]
    genuine = json.loads(sigstore_bundle(item))
    statement = json.loads(base64.b64decode(genuine["dsseEnvelope"]["payload"]))
    edited = copy.deepcopy(statement)
    edited["subject"][0]["digest"]["sha256"] = "0" * 64
    sig = bytearray(base64.b64decode(genuine["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-3] ^= 0x10

    def variant(**changes: Any) -> dict[str, Any]:
        doc = copy.deepcopy(genuine)
        for path, value in changes.items():
            *parents, last = path.split("__")
            target = doc
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            target[last] = value
        return doc

    cases = {
        "payload edited": variant(dsseEnvelope__payload=b64(json.dumps(edited).encode())),
        "payload re-serialized": variant(dsseEnvelope__payload=b64(json.dumps(statement).encode())),
        "payloadType edited": variant(dsseEnvelope__payloadType="application/json"),
        "signature bit flipped": variant(dsseEnvelope__signatures__0__sig=b64(bytes(sig))),
        "no signatures": variant(dsseEnvelope__signatures=[]),
        "mediaType garbage": variant(mediaType="application/json"),
        "mediaType empty": variant(mediaType=""),
        "mediaType upper-case": variant(mediaType=BUNDLE_TYPE.upper()),
        "mediaType missing": {k: v for k, v in genuine.items() if k != "mediaType"},
    }
    for name, doc in cases.items():
        code, result = run_js(node, tmp_path, doc, item.public_key, trusted_root)
        assert code == 1 and not result["verified"], (name, result)
    other_pub = (fx / "cosign-keys" / "ecdsa-p256-empty-password" / "cosign.pub").read_text()
    code, result = run_js(node, tmp_path, genuine, other_pub, trusted_root)
    assert code == 1 and result["stage"] == "verify", result
    # the bundle format's known versions are accepted (the content is the same; noted, not tampering)
    for media_type in ("application/vnd.dev.sigstore.bundle+json;version=0.2",
                       "application/vnd.dev.sigstore.bundle+json;version=0.3"):
        code, result = run_js(node, tmp_path, variant(mediaType=media_type), item.public_key, trusted_root)
        assert code == 0, (media_type, result)
    # like cosign, a signature's keyid is not what binds it to the key: an edited keyid still verifies
    code, result = run_js(node, tmp_path, variant(dsseEnvelope__signatures__0__keyid="not-our-key"), item.public_key,
                          trusted_root)
    assert code == 0, result


@pytest.mark.registry
def test_sigstore_js_accepts_the_stored_referrer(node: str, trusted_root: Path, signed: list[SignedPayload],
                                                 registry: Any, tmp_path: Path, key_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the oci backend (sigstore-bundle mode) stores it, the bytes read back from the registry verify."""
    import dataclasses

    from chainmail.storage import StoreSession
    from chainmail.storage.oci import OciBackend
    from doubles.registry import push_test_image

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    ref = push_test_image(registry, "sigstore-js/app", "sigstore-js")
    digest = ref.split("@")[1]
    att = signed[0]
    statement = json.loads(att.payload.body)
    statement["subject"] = [{"name": ref.split("@")[0], "digest": {"sha256": digest[7:]}}]
    from chainmail.signing import sign_payloads

    ctx = Context(config=Config.from_mapping({"storage.oci.encoding-format": "sigstore-bundle"}), key=str(key_dir))
    payload = dataclasses.replace(att.payload, body=json.dumps(statement, separators=(",", ":")).encode(),
                                  subjects=(ref,))
    snapshot = RunSnapshot({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                            "metadata": {"name": "x", "namespace": "demo", "uid": att.payload.artifact.owner.uid}})
    [stored] = OciBackend(StoreSession(ctx, snapshot)).store(sign_payloads([payload], ctx))
    index = json.loads(registry.get_manifest("sigstore-js/app", digest.replace(":", "-")))
    [entry] = index["manifests"]
    referrer = json.loads(registry.get_manifest("sigstore-js/app", entry["digest"]))
    assert stored.location.endswith(entry["digest"])
    bundle = registry.get_blob("sigstore-js/app", referrer["layers"][0]["digest"])
    code, result = run_js(node, tmp_path, bundle, att.public_key, trusted_root)
    assert code == 0 and result["verified"], result
