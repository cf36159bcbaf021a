"""Attacks on image verification through what is stored next to the image: one bad layer never hides a
good one, and a valid signature only counts for what it binds.

The image and its genuine ``.sig``/``.att`` are Tekton Chains' own (``../shared/fixtures/chains-run``),
pushed into the real registry (Debian's ``docker-registry``); each case adds hostile content beside
them and runs ``chainmail verify image|attestation`` in a subprocess: exit 0 when a valid signature is
still there, else its cosign exit code (12), never a traceback or exit 70.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from adversarial.conftest import Outcome, assert_rejected, chainmail

pytestmark = pytest.mark.registry

BOUND = 30.0
DEEP = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
KEY_ID = "SHA256:yHmPkfSLBAYYd1fCfqLVYNH+Bo0NtuhBak9kXqPO7Po"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def fx(shared: Path) -> Path:
    return shared / "fixtures" / "chains-run"


@pytest.fixture(scope="module")
def pub(fx: Path) -> str:
    return str(fx / "cosign.pub")


@pytest.fixture(autouse=True)
def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "docker").mkdir(exist_ok=True)
    return {"DOCKER_CONFIG": str(tmp_path / "docker")}


def _image(registry: Any, fx: Path, repo: str) -> str:
    return registry.push_image_from_fixture(fx, repo)


def _push_tag(registry: Any, image: str, suffix: str, layers: list[tuple[bytes, dict[str, str]]],
              media_type: str) -> None:
    """A ``.sig``/``.att`` manifest with ``layers`` (blob, annotations), like cosign's."""
    repo = image.split("/", 1)[1].split("@")[0]
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest(b) for b, _ in layers]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                           "digest": digest(config)},
                "layers": [{"mediaType": media_type, "size": len(b), "digest": digest(b), "annotations": a}
                           for b, a in layers]}
    tag = image.split("@")[1].replace(":", "-") + f".{suffix}"
    registry.push_raw(repo, tag, json.dumps(manifest).encode(), [config, *(b for b, _ in layers)])


def _genuine_att(fx: Path) -> tuple[bytes, dict[str, str]]:
    doc = json.loads((fx / "att-manifest.json").read_text())
    return (fx / "att-layer0.json").read_bytes(), doc["layers"][0]["annotations"]


def _genuine_sig(fx: Path) -> tuple[bytes, dict[str, str]]:
    doc = json.loads((fx / "sig-manifest.json").read_text())
    return (fx / "sig-layer0.json").read_bytes(), doc["layers"][0]["annotations"]


def _attacker_sig(fx: Path, shared: Path, payload: bytes) -> tuple[bytes, dict[str, str]]:
    """``payload`` validly signed, by another key (the empty-password test key)."""
    from chainmail.context import Context
    from chainmail.signing import load_signer

    signer = load_signer(str(shared / "fixtures" / "cosign-keys" / "ecdsa-p256-empty-password"), Context())
    return payload, {"dev.cosignproject.cosign/signature": base64.b64encode(signer.sign(payload)).decode()}


def _verify(what: str, image: str, pub: str, env: dict[str, str], *args: str) -> Outcome:
    return chainmail(["verify", what, "--insecure-ignore-tlog", image, "--key", pub, *args], env=env, timeout=BOUND * 2)


def test_deep_layer_next_to_a_valid_attestation(registry, fx: Path, pub: str, _env) -> None:
    """Before: the junk layer raised RecursionError (exit 70) and the valid one was never checked."""
    image = _image(registry, fx, "adv/deep-att")
    _push_tag(registry, image, "att", [(DEEP, {}), _genuine_att(fx)], DSSE_TYPE)
    out = _verify("attestation", image, pub, _env, "-o", "json")
    assert out.code == 0, out.stderr
    assert "Traceback" not in out.stderr and out.seconds <= BOUND
    doc = json.loads(out.stdout)
    assert [v["location"].rsplit(" ", 1)[-1] for v in doc["verified"]] == ["1"]
    assert doc["verified"][0]["keyId"] == KEY_ID


def test_only_a_deep_layer_is_no_matching_signature(registry, fx: Path, pub: str, _env) -> None:
    image = _image(registry, fx, "adv/deep-only")
    _push_tag(registry, image, "att", [(DEEP, {})], DSSE_TYPE)
    out = _verify("attestation", image, pub, _env)
    assert_rejected(out, 12, mentions="nested deeper", within=BOUND)


def test_deep_signature_manifest_is_a_failed_candidate(registry, fx: Path, pub: str, _env) -> None:
    """A ``.sig`` manifest nested 5,000 deep (the registry stores it; Python's parser would recurse)."""
    image = _image(registry, fx, "adv/deep-manifest")
    repo = image.split("/", 1)[1].split("@")[0]
    config = b"{}"
    manifest = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
                b'{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"'
                + digest(config).encode() + b'"},"layers":[],"junk":' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    registry.push_raw(repo, image.split("@")[1].replace(":", "-") + ".sig", manifest, [config],
                      media_type="application/vnd.oci.image.manifest.v1+json")
    out = _verify("image", image, pub, _env)
    assert_rejected(out, 12, mentions="nested deeper", within=BOUND)


def test_deep_bundle_referrer_next_to_a_valid_attestation(registry, fx: Path, pub: str, _env) -> None:
    """A bundle referrer (fallback index tag) whose bundle is nested 100,000 deep; the .att still counts."""
    from chainmail._internal.registry import Reference
    from chainmail.context import Context
    from chainmail.storage.oci import push_bundle

    image = _image(registry, fx, "adv/deep-bundle")
    _push_tag(registry, image, "att", [_genuine_att(fx)], DSSE_TYPE)
    push_bundle(Context().registry, Reference.parse(image), DEEP, "https://slsa.dev/provenance/v0.2")
    out = _verify("attestation", image, pub, _env, "-o", "json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["layouts"] == {"legacy-att": 1}
    only_bundle = _image(registry, fx, "adv/deep-bundle-only")
    push_bundle(Context().registry, Reference.parse(only_bundle), DEEP, "https://slsa.dev/provenance/v0.2")
    assert_rejected(_verify("attestation", only_bundle, pub, _env), 12, mentions="sigstore bundle",
                    within=BOUND)


def test_attacker_signed_layer_shadows_nothing(registry, fx: Path, shared: Path, pub: str, _env) -> None:
    """A valid signature by another key, first in ``.sig``: it is skipped, the genuine one verifies."""
    image = _image(registry, fx, "adv/shadow")
    payload = (fx / "sig-layer0.json").read_bytes().replace(b"demo/app", b"demo/evil")
    _push_tag(registry, image, "sig", [_attacker_sig(fx, shared, payload), _genuine_sig(fx)],
              "application/vnd.dev.cosign.simplesigning.v1+json")
    out = _verify("image", image, pub, _env, "-o", "json")
    assert out.code == 0, out.stderr
    verified = json.loads(out.stdout)["verified"]
    assert len(verified) == 1 and verified[0]["keyId"] == KEY_ID
    assert verified[0]["location"].endswith("layer 1")


def test_only_an_attacker_signature_is_no_matching_signature(registry, fx: Path, shared: Path, pub: str,
                                                             _env) -> None:
    image = _image(registry, fx, "adv/attacker-only")
    _push_tag(registry, image, "sig", [_attacker_sig(fx, shared, (fx / "sig-layer0.json").read_bytes())],
              "application/vnd.dev.cosign.simplesigning.v1+json")
    assert_rejected(_verify("image", image, pub, _env), 12, mentions="does not verify", within=BOUND)


def test_genuine_attestation_of_another_image(registry, fx: Path, pub: str, _env) -> None:
    """Image A's genuine ``.att`` copied to image B: the signature verifies, the subject is A's."""
    from doubles.registry import push_test_image

    other = push_test_image(registry, "adv/other", "adv-other")
    _push_tag(registry, other, "att", [_genuine_att(fx)], DSSE_TYPE)
    _push_tag(registry, other, "sig", [_genuine_sig(fx)], "application/vnd.dev.cosign.simplesigning.v1+json")
    assert_rejected(_verify("attestation", other, pub, _env), 12, mentions="no subject", within=BOUND)
    assert_rejected(_verify("image", other, pub, _env), 12, mentions="signature is for", within=BOUND)
