"""`chainmail verify` against a real registry holding Tekton Chains' own outputs, and tampered copies.

Exit codes follow cosign: 10 no signatures, 11 image missing, 12 nothing verifies, 14 policy failed;
17 registry refused credentials, 18 registry unreachable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest

from chainmail.errors import (
    NoMatchingSignatureError,
    NoSignatureError,
    PolicyViolationError,
    RegistryAuthError,
    RegistryUnreachableError,
    TagNotFoundError,
)
from chainmail.verify.tlog import TlogCheck
from clirun import cli
from doubles.registry import RegistryServer, push_chains_fixture, push_test_image

pytestmark = pytest.mark.registry

SIG_ANNOTATION = "dev.cosignproject.cosign/signature"


@pytest.fixture(autouse=True)
def _no_ambient_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    monkeypatch.delenv("COSIGN_REPOSITORY", raising=False)


@pytest.fixture(scope="module")
def fx(shared: Path) -> Path:
    return shared / "fixtures"


@pytest.fixture(scope="module")
def pub(fx: Path) -> str:
    return str(fx / "chains-run" / "cosign.pub")


@pytest.fixture(scope="module")
def other_pub(fx: Path) -> str:
    return str(fx / "cosign-keys" / "ecdsa-p256-empty-password" / "cosign.pub")


@pytest.fixture(scope="module")
def chains_image(registry: RegistryServer, fx: Path) -> str:
    return push_chains_fixture(registry, fx / "chains-run", "chains/app")


@pytest.fixture(scope="module")
def chains_pipeline_image(registry: RegistryServer, fx: Path) -> str:
    return push_chains_fixture(registry, fx / "chains-pipelinerun", "chains/release")


def tag_of(ref: str, suffix: str) -> str:
    return ref.split("@")[1].replace(":", "-") + f".{suffix}"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_sig_variant(server: RegistryServer, fx: Path, repo: str, tag: str, *, layer: bytes | None = None,
                     signature: str | None = None, kind: str = "sig") -> None:
    """Push Chains' .sig/.att manifest with a changed layer blob and/or signature annotation."""
    doc = json.loads((fx / f"{kind}-manifest.json").read_text())
    blob = layer if layer is not None else (fx / f"{kind}-layer0.json").read_bytes()
    doc["layers"][0]["digest"], doc["layers"][0]["size"] = digest(blob), len(blob)
    if signature is not None:
        doc["layers"][0]["annotations"][SIG_ANNOTATION] = signature
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [digest(blob)]}, "config": {}},
                        separators=(",", ":")).encode()
    doc["config"]["digest"], doc["config"]["size"] = digest(config), len(config)
    server.push_raw(repo, tag, json.dumps(doc, separators=(",", ":")).encode(), [config, blob])


# -- Chains' real outputs verify -------------------------------------------------------------------

def test_chains_image_signature_verifies(chains_image: str, pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["verify", "image", "--insecure-ignore-tlog", chains_image, "--key", pub], capsys)
    assert code == 0, err
    assert "legacy-sig" in out and "legacy-sig (1)" in err
    # by tag, with JSON output
    code, out, err = cli(["verify", "image", "--insecure-ignore-tlog", chains_image.split("@")[0] + ":latest", "--key", pub, "-o", "json"],
                         capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layouts"] == {"legacy-sig": 1}
    payload = doc["verified"][0]["payload"]
    assert payload["critical"]["image"]["docker-manifest-digest"] == chains_image.split("@")[1]
    assert doc["verified"][0]["keyId"] == "SHA256:yHmPkfSLBAYYd1fCfqLVYNH+Bo0NtuhBak9kXqPO7Po"


def test_chains_attestation_verifies(chains_image: str, pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", pub, "--type", "slsaprovenance"], capsys)
    assert code == 0, err
    assert "https://slsa.dev/provenance/v0.2" in out and "legacy-att" in out


def test_chains_two_layer_att_verifies(chains_pipeline_image: str, pub: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_pipeline_image, "--key", pub, "--type", "slsaprovenance1",
                          "--output", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layouts"] == {"legacy-att": 2}
    kinds = sorted(v["statement"]["predicate"]["buildDefinition"]["buildType"] for v in doc["verified"])
    assert len(kinds) == 2
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", chains_pipeline_image, "--key", pub], capsys)
    assert code == 0, err


def test_library_api_returns_verified_payloads(chains_image: str, pub: str) -> None:
    from chainmail.context import Context
    from chainmail.verify import verify_attestation, verify_image

    [sig] = verify_image(chains_image, [Path(pub).read_text()], Context(), tlog=TlogCheck(ignore=True))
    assert sig.layout == "legacy-sig" and sig.statement is None and sig.ref == chains_image
    [att] = verify_attestation(chains_image, [Path(pub).read_text()], Context(), "slsaprovenance02",
                               tlog=TlogCheck(ignore=True))
    assert att.payload_type == "application/vnd.in-toto+json" and att.statement is not None
    assert att.statement["subject"][0]["digest"]["sha256"] == chains_image.split("@")[1][7:]


# -- tampered copies are rejected -------------------------------------------------------------------

def test_other_key_is_rejected(chains_image: str, other_pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", chains_image, "--key", other_pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", other_pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err


def test_either_key_may_verify(chains_image: str, pub: str, other_pub: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", chains_image, "--key", other_pub, "--key", pub], capsys)
    assert code == 0, err


def test_flipped_signature_byte(registry: RegistryServer, fx: Path, pub: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    ref = registry.push_image_from_fixture(fx / "chains-run", "tamper/flip")
    chains = json.loads((fx / "chains-run" / "sig-manifest.json").read_text())
    der = bytearray(base64.b64decode(chains["layers"][0]["annotations"][SIG_ANNOTATION]))
    der[-5] ^= 0x01
    push_sig_variant(registry, fx / "chains-run", "tamper/flip", tag_of(ref, "sig"),
                     signature=base64.b64encode(bytes(der)).decode())
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    assert "does not verify" in err


def test_edited_payload(registry: RegistryServer, fx: Path, pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    ref = registry.push_image_from_fixture(fx / "chains-run", "tamper/payload")
    edited = (fx / "chains-run" / "sig-layer0.json").read_bytes().replace(b"demo/app", b"demo/evil")
    push_sig_variant(registry, fx / "chains-run", "tamper/payload", tag_of(ref, "sig"), layer=edited)
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err


def test_signature_for_another_image(registry: RegistryServer, fx: Path, pub: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Chains' valid .sig and .att copied under a different image's tags: the digest/subject claims fail."""
    other = push_test_image(registry, "tamper/other", "other")
    push_sig_variant(registry, fx / "chains-run", "tamper/other", tag_of(other, "sig"))
    envelope = (fx / "chains-run" / "att-layer0.json").read_bytes()
    push_sig_variant(registry, fx / "chains-run", "tamper/other", tag_of(other, "att"), layer=envelope, kind="att")
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", other, "--key", pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    assert "not for image" in err
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", other, "--key", pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    assert "no subject" in err


def test_tampered_envelope(registry: RegistryServer, fx: Path, pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    ref = registry.push_image_from_fixture(fx / "chains-run", "tamper/envelope")
    envelope = json.loads((fx / "chains-run" / "att-layer0.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["builder"]["id"] = "https://evil.example/builder"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    push_sig_variant(registry, fx / "chains-run", "tamper/envelope", tag_of(ref, "att"),
                     layer=json.dumps(envelope).encode(), kind="att")
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", ref, "--key", pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err


def test_wrong_predicate_type(chains_image: str, pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", pub, "--type", "slsaprovenance1"], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    assert "predicate type https://slsa.dev/provenance/v1" in err and "v0.2" in err
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", pub, "--type", "https://x.example/p"],
                          capsys)
    assert code == NoMatchingSignatureError.exit_code


def test_missing_image_and_missing_signatures(registry: RegistryServer, pub: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", f"{registry.host}/nothing/here:latest", "--key", pub], capsys)
    assert code == TagNotFoundError.exit_code, err
    bare = push_test_image(registry, "unsigned/app", "unsigned")
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", bare, "--key", pub], capsys)
    assert code == NoSignatureError.exit_code, err
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", bare, "--key", pub], capsys)
    assert code == NoSignatureError.exit_code, err


# -- chainmail's own bundles ------------------------------------------------------------------------

def test_bundle_layout_verifies(registry: RegistryServer, fx: Path, pub: str, other_pub: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Sigstore bundles written by the oci backend verify through the fallback-tag layout."""
    from test_oci_store import (
        context,
        image_payload,
        sign,
        sign_wrapped_simplesigning,
        statement_payload,
        store,
    )

    from chainmail.models import RunSnapshot

    snapshot = RunSnapshot(json.loads((fx / "chains-run" / "taskrun-after-chains.json").read_text()))
    ref = push_test_image(registry, "bundle/verify", "verify")
    key_dir = fx / "cosign-keys" / "ecdsa-p256-password"
    ctx = context(key_dir, **{"storage.oci.encoding-format": "sigstore-bundle"})
    store([*sign([statement_payload([ref], snapshot)], ctx), sign_wrapped_simplesigning(image_payload(ref, snapshot),
                                                                                       ctx)], ctx, snapshot)
    code, out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub], capsys)
    assert code == 0, err
    assert "bundle-fallback-tag" in out
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", ref, "--key", pub, "--type", "slsaprovenance1", "-o", "json"],
                         capsys)
    assert code == 0, err
    assert json.loads(out)["layouts"] == {"bundle-fallback-tag": 1}
    code, _out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", ref, "--key", other_pub], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    # both layouts at once: legacy tags written next to the bundles
    legacy = context(key_dir)
    store(sign([statement_payload([ref], snapshot, marker="legacy")], legacy), legacy, snapshot)
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", ref, "--key", pub, "-o", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["layouts"] == {"legacy-att": 1, "bundle-fallback-tag": 1}


# -- policy -------------------------------------------------------------------------------------------

def test_policy_gate(chains_image: str, pub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("celpy")
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: good}\nspec:\n  rules:\n"
                    "    - name: builder\n      expression: builder == 'https://tekton.dev/chains/v2'\n"
                    "      message: built by Chains\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("name: good", "name: bad").replace("chains/v2'", "chains/v9'"))
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", pub, "--policy", str(good)], capsys)
    assert code == 0, err
    assert "PASS builder" in out
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", pub, "--policy", str(bad)], capsys)
    assert code == PolicyViolationError.exit_code, err
    assert "FAIL builder" in out
    code, out, _err = cli(["verify", "attestation", "--insecure-ignore-tlog", chains_image, "--key", pub, "--policy", str(bad), "-o", "json"],
                          capsys)
    assert code == PolicyViolationError.exit_code and json.loads(out)["policy"]["passed"] is False


# -- registry failures --------------------------------------------------------------------------------

def test_registry_401_is_an_auth_error(auth_registry: RegistryServer, fx: Path, pub: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ref = push_chains_fixture(auth_registry, fx / "chains-run", "private/app")
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub], capsys)
    assert code == RegistryAuthError.exit_code, err
    assert auth_registry.host in err and "private/app" in err
    wrong = auth_registry.docker_config(tmp_path / "wrong", password="not-it")
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub, "--docker-config", str(wrong)], capsys)
    assert code == RegistryAuthError.exit_code and "not-it" not in err
    right = auth_registry.docker_config(tmp_path / "right")
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub, "--docker-config", str(right.parent)], capsys)
    assert code == 0, err


def test_registry_down_is_unreachable(dead_registry_host: str, pub: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", f"{dead_registry_host}/app:latest", "--key", pub,
                           "--set", "chainmail.retry.deadline-seconds=1"], capsys)
    assert code == RegistryUnreachableError.exit_code, err
    assert dead_registry_host in err
    assert time.monotonic() - started < 10


def test_store_to_dead_registry(dead_registry_host: str, fx: Path) -> None:
    from test_oci_store import context, image_payload, sign, store

    from chainmail.config import Config
    from chainmail.models import RunSnapshot

    snapshot = RunSnapshot(json.loads((fx / "chains-run" / "taskrun-after-chains.json").read_text()))
    ref = f"{dead_registry_host}/app@sha256:" + "ab" * 32
    ctx = context(fx / "cosign-keys" / "ecdsa-p256-password")
    ctx.config = Config.from_mapping({"chainmail.retry.deadline-seconds": "1"})
    with pytest.raises(RegistryUnreachableError):
        store(sign([image_payload(ref, snapshot)], ctx), ctx, snapshot)


# (a list or a number here is refused by the registry itself; test_mutations covers those in memory)
@pytest.mark.parametrize("annotations", [{SIG_ANNOTATION: None}, {SIG_ANNOTATION: "%%% not base64"}, {}, None])
def test_malformed_sig_layers_fail_cleanly(registry: RegistryServer, fx: Path, pub: str, annotations: object,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed stored form is a verification failure (exit 12), never a crash (exit 70)."""
    ref = registry.push_image_from_fixture(fx / "chains-run", "tamper/malformed")
    doc = json.loads((fx / "chains-run" / "sig-manifest.json").read_text())
    doc["layers"][0]["annotations"] = annotations
    registry.push_raw("tamper/malformed", tag_of(ref, "sig"), json.dumps(doc).encode(),
                      [(fx / "chains-run" / "sig-config.json").read_bytes(),
                       (fx / "chains-run" / "sig-layer0.json").read_bytes()])
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", pub], capsys)
    assert code in (NoMatchingSignatureError.exit_code, NoSignatureError.exit_code), err
    assert "internal error" not in err
