"""`chainmail verify` on bad input: one clear line on stderr and a distinct exit code per kind of failure.

Codes (cosign's where it has one): 10 no signatures, 11 image/tag missing, 12 nothing verifies, 13 keyless
policy on a signature without a certificate, 3 malformed policy file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import (
    ConfigError,
    NoCertificateError,
    NoMatchingSignatureError,
    NoSignatureError,
    TagNotFoundError,
)
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE, Artifact, Payload, RunRef, SignedPayload
from chainmail.verify.tlog import TlogCheck
from clirun import cli
from doubles.registry import RegistryServer, push_test_image

pytestmark = pytest.mark.registry

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
KEYLESS = ["--certificate-identity", "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
           "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com"]


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.delenv("COSIGN_REPOSITORY", raising=False)


@pytest.fixture(scope="module")
def keys(shared: Path) -> dict[str, Path]:
    base = shared / "fixtures" / "cosign-keys"
    return {"dir": base / "ecdsa-p256-password", "pub": base / "ecdsa-p256-password" / "cosign.pub",
            "other": base / "ecdsa-p256-empty-password" / "cosign.pub"}


def one_error_line(err: str) -> str:
    """The error, checked to be a single ``Error:`` line (plus at most a ``Hint:`` line), no traceback."""
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


def sign_and_store(ref: str, key_dir: Path, *, bundle: bool) -> None:
    """chainmail's sign + oci store of the image's simple-signing payload (legacy .sig, or a bundle referrer)."""
    from chainmail.formats.simplesigning import simple_signing_body
    from chainmail.models import RunSnapshot
    from chainmail.signing import dsse, load_signer
    from chainmail.storage import StoreSession
    from chainmail.storage.oci import OciBackend

    config = {"storage.oci.encoding-format": "sigstore-bundle"} if bundle else {}
    ctx = Context(config=Config.from_mapping(config), key=str(key_dir))
    signer = load_signer(str(key_dir), ctx)
    repo, digest = ref.split("@")
    owner = RunRef("TaskRun", "demo", "build", "0b1e55ed-0000-4000-8000-000000000002")
    payload = Payload(Artifact("oci", ref, digest[7:19], ref, owner), "simplesigning", SIMPLESIGNING_PAYLOAD_TYPE,
                      simple_signing_body(repo, digest), False)
    signature = dsse.envelope(SIMPLESIGNING_PAYLOAD_TYPE, payload.body, signer) if bundle \
        else signer.sign(payload.body)
    snapshot = RunSnapshot({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                            "metadata": {"name": "build", "namespace": "demo", "uid": owner.uid}})
    OciBackend(StoreSession(ctx, snapshot)).store([SignedPayload(payload, signature, signer.key_id,
                                                                 signer.public_key_pem, signer.uri)])


@pytest.fixture(scope="module")
def signed_image(registry: RegistryServer, keys: dict[str, Path]) -> str:
    ref = push_test_image(registry, "errors/signed", "signed")
    sign_and_store(ref, keys["dir"], bundle=False)
    return ref


# -- the cases ---------------------------------------------------------------------------------------

def test_image_without_signatures(registry: RegistryServer, keys: dict[str, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bare = push_test_image(registry, "errors/unsigned", "unsigned")
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, bare, "--key", str(keys["pub"])], capsys)
        assert code == NoSignatureError.exit_code == 10, err
        line = one_error_line(err)
        assert "no signatures found" in line or "no attestations found" in line
        assert bare.split("@")[1] in line


def test_image_tag_missing(registry: RegistryServer, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for ref in (f"{registry.host}/errors/nothing:v1", f"{registry.host}/errors/nothing@sha256:" + "ab" * 32):
        code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", str(keys["pub"])], capsys)
        assert code == TagNotFoundError.exit_code == 11, err
        assert "not found" in one_error_line(err)


def test_wrong_key(signed_image: str, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", signed_image, "--key", str(keys["other"])], capsys)
    assert code == NoMatchingSignatureError.exit_code == 12, err
    line = one_error_line(err)
    assert "does not verify" in line and signed_image.split("@")[1] in line
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", signed_image, "--key", str(keys["pub"])], capsys)
    assert code == 0, err


def test_keyless_policy_on_a_key_signed_signature(signed_image: str, keys: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A key-signed signature has no certificate: an identity policy cannot hold (13)."""
    from chainmail.storage.oci import sigstore_bundle
    from chainmail.verify import verify_image
    from chainmail.verify.certificates import check_identity
    from chainmail.verify.sigstore_bundle import verify_keyless_bundle

    # library level: what the CLI will call for each verified layer
    [found] = verify_image(signed_image, [keys["pub"].read_text()], Context(), tlog=TlogCheck(ignore=True))
    assert found.cert == ""
    with pytest.raises(NoCertificateError) as info:
        check_identity(found.cert, "", identity=KEYLESS[1], issuer=KEYLESS[3])
    assert info.value.exit_code == 13
    # a key-signed Sigstore bundle (chainmail's builder) under an identity policy
    from chainmail.signing import dsse, load_signer

    signer = load_signer(str(keys["dir"]), Context())
    item = SignedPayload(Payload(Artifact("oci", signed_image, "x", signed_image,
                                          RunRef("TaskRun", "demo", "b", "u")), "simplesigning",
                                 SIMPLESIGNING_PAYLOAD_TYPE, b"{}", False),
                         dsse.envelope(SIMPLESIGNING_PAYLOAD_TYPE, b"{}", signer), signer.key_id, signer.public_key_pem,
                         signer.uri)
    with pytest.raises(NoCertificateError):
        verify_keyless_bundle(sigstore_bundle(item), None, identity=KEYLESS[1], issuer=KEYLESS[3])
    # and at the CLI level
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", signed_image, *KEYLESS], capsys)
    assert code == NoCertificateError.exit_code == 13, err
    assert "certificate" in one_error_line(err)


def test_registry_without_referrers_api_uses_the_fallback_tag(registry: RegistryServer, keys: dict[str, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Debian's registry has no referrers API: bundles are found through the sha256-<hex> index; without
    it (or with a dangling entry) verification fails with a clear line."""
    assert registry.http.get(f"{registry.url}/v2/errors/bundled/referrers/sha256:{'0' * 64}").status_code == 404
    ref = push_test_image(registry, "errors/bundled", "bundled")
    sign_and_store(ref, keys["dir"], bundle=True)
    code, out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", str(keys["pub"]), "-o", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["layouts"] == {"bundle-fallback-tag": 1}

    # the fallback index lists a referrer that is gone: 12, naming it
    dangling = push_test_image(registry, "errors/dangling", "dangling")
    sign_and_store(dangling, keys["dir"], bundle=True)
    tag = dangling.split("@")[1].replace(":", "-")
    [entry] = json.loads(registry.get_manifest("errors/dangling", tag))["manifests"]
    resp = registry.http.delete(f"{registry.url}/v2/errors/dangling/manifests/{entry['digest']}")
    assert resp.status_code == 202, resp.text
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", dangling, "--key", str(keys["pub"])], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    line = one_error_line(err)
    assert "referrer manifest is missing" in line and entry["digest"] in line

    # neither a .sig tag nor a fallback index: nothing stored (10)
    bare = push_test_image(registry, "errors/bundled", "no-bundle")
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", bare, "--key", str(keys["pub"])], capsys)
    assert code == NoSignatureError.exit_code, err
    one_error_line(err)


def _bundle_variant(registry: RegistryServer, keys: dict[str, Path], repo: str, seed: str,
                    edit_bundle: Any = None, edit_layer: Any = None) -> str:
    """A chainmail bundle referrer, re-pushed with an edited bundle JSON or layer descriptor."""
    ref = push_test_image(registry, repo, seed)
    sign_and_store(ref, keys["dir"], bundle=True)
    tag = ref.split("@")[1].replace(":", "-")
    index = json.loads(registry.get_manifest(repo, tag))
    referrer = json.loads(registry.get_manifest(repo, index["manifests"][0]["digest"]))
    bundle = json.loads(registry.get_blob(repo, referrer["layers"][0]["digest"]))
    if edit_bundle:
        edit_bundle(bundle)
    raw = json.dumps(bundle, separators=(",", ":")).encode()
    from doubles.registry import digest_of

    referrer["layers"][0].update(digest=digest_of(raw), size=len(raw))
    if edit_layer:
        edit_layer(referrer["layers"][0])
    manifest = json.dumps(referrer, separators=(",", ":")).encode()
    digest = registry.push_raw(repo, digest_of(manifest), manifest, [raw])
    index["manifests"][0].update(digest=digest, size=len(manifest))
    registry.push_raw(repo, tag, json.dumps(index, separators=(",", ":")).encode())
    return ref


def test_bundle_layer_with_the_wrong_media_type(registry: RegistryServer, keys: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ref = _bundle_variant(registry, keys, "errors/layer-type", "layer-type",
                          edit_layer=lambda layer: layer.update(mediaType="application/json"))
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", str(keys["pub"])], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    assert "no Sigstore bundle layer" in one_error_line(err)


def test_bundle_json_with_the_wrong_media_type(registry: RegistryServer, keys: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ref = _bundle_variant(registry, keys, "errors/bundle-type", "bundle-type",
                          edit_bundle=lambda b: b.update(mediaType="application/json"))
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, "--key", str(keys["pub"])], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    line = one_error_line(err)
    assert "not a Sigstore bundle" in line and "application/json" in line


@pytest.mark.parametrize("text, expected", [
    ("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: [\n", "YAML error"),
    ("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: []}\n", "no rules"),
    ("apiVersion: v0\nkind: Policy\nmetadata: {name: p}\nspec: {rules: [{name: a, expression: 'true', "
     "message: m}]}\n", "apiVersion"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_malformed_policy_file(signed_image: str, keys: dict[str, Path], tmp_path: Path, text: str, expected: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", signed_image, "--key", str(keys["pub"]), "--policy", str(policy)],
                          capsys)
    assert code == ConfigError.exit_code == 3, err
    line = one_error_line(err)
    assert expected in line and str(policy) in line
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", signed_image, "--key", str(keys["pub"]), "--policy",
                           str(tmp_path / "missing.yaml")], capsys)
    assert code == 3 and "cannot read" in one_error_line(err)


def test_exit_codes_are_distinct() -> None:
    codes = [NoSignatureError.exit_code, TagNotFoundError.exit_code, NoMatchingSignatureError.exit_code,
             NoCertificateError.exit_code, ConfigError.exit_code]
    assert codes == [10, 11, 12, 13, 3] and len(set(codes)) == len(codes)
