"""`chainmail verify image/attestation --certificate-identity … --certificate-oidc-issuer … --trusted-root FILE`.

Keyless ``.sig`` and ``.att`` layers (leaf in ``dev.sigstore.cosign/certificate``, intermediates in
``…/chain``, optionally a Rekor SET in ``…/bundle``) are written by chainmail's own oci backend into the
test registry, signed with leaves from a local CA standing in for Fulcio (``tests/doubles/fulcio.py``);
the trusted root passed with ``--trusted-root`` names that CA and the fake Rekor and CT log keys. Keyless
Sigstore bundles (SCT, inclusion proof, checkpoint) are attached as referrers and go through
sigstore-python.

Exit codes: 0 verified, 12 wrong identity/issuer/CA/expired, 13 only key-signed (certificate-less)
signatures, 4 bad flags, 3 malformed policy or unusable trusted root.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ConfigError, InputError, NoCertificateError, NoMatchingSignatureError
from chainmail.models import (
    INTOTO_PAYLOAD_TYPE,
    SIMPLESIGNING_PAYLOAD_TYPE,
    Artifact,
    Payload,
    RunRef,
    RunSnapshot,
    SignedPayload,
)
from clirun import cli
from doubles.fulcio import GITHUB, WORKFLOW, LocalFulcio, b64, pem, sign, spki
from doubles.registry import RegistryServer, push_test_image

pytestmark = pytest.mark.registry

SLSA_V1 = "https://slsa.dev/provenance/v1"
OWNER = RunRef("TaskRun", "demo", "build", "0b1e55ed-0000-4000-8000-00000000c0de")
#: When the "old" signatures were made: their 10-minute certificates are long expired now.
LONG_AGO = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.delenv("COSIGN_REPOSITORY", raising=False)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


# -- signing and storing, as a keyless Chains/cosign would -------------------------------------------

def _store(items: list[SignedPayload], *, bundle: bool = False) -> None:
    from chainmail.storage import StoreSession
    from chainmail.storage.oci import OciBackend

    config = {"storage.oci.encoding-format": "sigstore-bundle"} if bundle else {}
    snapshot = RunSnapshot({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                            "metadata": {"name": OWNER.name, "namespace": OWNER.namespace, "uid": OWNER.uid}})
    OciBackend(StoreSession(Context(config=Config.from_mapping(config)), snapshot)).store(items)


def simple_signing(ref: str) -> bytes:
    from chainmail.formats.simplesigning import simple_signing_body

    return simple_signing_body(*ref.split("@"))


def signature_item(ref: str, key: Any, cert_pem: str = "", chain: str = "",
                   tlog: Any = None, *, dsse: bool = False) -> SignedPayload:
    """A simple-signing payload for ``ref`` signed with ``key`` (keyless when ``cert_pem`` is given);
    ``dsse``: in a DSSE envelope, as the sigstore-bundle encoding stores it."""
    from chainmail.signing.dsse import pae

    digest = ref.split("@")[1]
    body = simple_signing(ref)
    payload = Payload(Artifact("oci", ref, digest[7:19], ref, OWNER), "simplesigning", SIMPLESIGNING_PAYLOAD_TYPE,
                      body, False)
    signature = sign(key, body)
    if dsse:
        signature = json.dumps({"payloadType": SIMPLESIGNING_PAYLOAD_TYPE, "payload": b64(body), "signatures": [
            {"keyid": "", "sig": b64(sign(key, pae(SIMPLESIGNING_PAYLOAD_TYPE, body)))}]}).encode()
    entry = tlog(body, signature) if tlog else None
    return SignedPayload(payload, signature, "", pem_public(key), "fulcio" if cert_pem else "key", cert_pem, chain,
                         entry)


def slsa_statement(ref: str) -> bytes:
    repo, digest = ref.split("@")
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": repo, "digest": {"sha256": digest[7:]}}],
                       "predicateType": SLSA_V1,
                       "predicate": {"buildDefinition": {"buildType": "https://tekton.dev/chains/v2/slsa"},
                                     "runDetails": {"builder": {"id": "https://chainmail.test"}}}},
                      separators=(",", ":")).encode()


def attestation_item(ref: str, key: Any, cert_pem: str = "", chain: str = "",
                     tlog: Any = None) -> SignedPayload:
    """An in-toto SLSA v1 statement about ``ref`` in a DSSE envelope signed with ``key``."""
    from chainmail.signing.dsse import pae

    statement = slsa_statement(ref)
    sig = sign(key, pae(INTOTO_PAYLOAD_TYPE, statement))
    envelope = json.dumps({"payloadType": INTOTO_PAYLOAD_TYPE, "payload": b64(statement),
                           "signatures": [{"keyid": "", "sig": b64(sig)}]}, separators=(",", ":")).encode()
    payload = Payload(Artifact("taskrun", f"taskrun-{OWNER.uid}", f"taskrun-{OWNER.uid}",
                               f"{OWNER.namespace}/{OWNER.name}", OWNER), "slsa/v1", INTOTO_PAYLOAD_TYPE,
                      statement, True, subjects=(ref,))
    entry = tlog(statement, sig) if tlog else None
    return SignedPayload(payload, envelope, "", pem_public(key), "fulcio" if cert_pem else "key", cert_pem, chain,
                         entry)


def pem_public(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign_keyless(fulcio: LocalFulcio, ref: str, *, chain: bool = True, **leaf: Any) -> None:
    """A keyless ``.sig`` and ``.att`` for ``ref`` (one fresh leaf each; no Rekor entry)."""
    items = []
    for make in (signature_item, attestation_item):
        cert, key = fulcio.leaf(**leaf)
        items.append(make(ref, key, pem(cert), fulcio.chain_pem() if chain else ""))
    _store(items)


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fulcio() -> LocalFulcio:
    return LocalFulcio.create()


@pytest.fixture(scope="module")
def root_file(fulcio: LocalFulcio, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fulcio.write_trusted_root(tmp_path_factory.mktemp("keyless") / "trusted_root.json")


@pytest.fixture(scope="module")
def keyless_image(registry: RegistryServer, fulcio: LocalFulcio) -> str:
    ref = push_test_image(registry, "keyless/app", "keyless")
    sign_keyless(fulcio, ref)
    return ref


@pytest.fixture(scope="module")
def key_signed(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An image with a key-signed ``.sig`` and ``.att`` (no certificate), and the key's cosign.pub."""
    ref = push_test_image(registry, "keyless/key-signed", "key-signed")
    key = ec.generate_private_key(ec.SECP256R1())
    _store([signature_item(ref, key), attestation_item(ref, key)])
    pub = tmp_path_factory.mktemp("key") / "cosign.pub"
    pub.write_text(pem_public(key))
    return ref, pub


def keyless(root: Path, identity: str = WORKFLOW, issuer: str = GITHUB) -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer, "--trusted-root", str(root)]


# -- accept ------------------------------------------------------------------------------------------

def test_right_identity_verifies_signature_and_attestation(keyless_image: str, root_file: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["verify", "image", "--insecure-ignore-tlog", keyless_image, *keyless(root_file), "-o", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layouts"] == {"legacy-sig": 1}
    [item] = doc["verified"]
    assert item["keyId"] == WORKFLOW and "BEGIN CERTIFICATE" in item["cert"]
    assert item["payload"]["critical"]["image"]["docker-manifest-digest"] == keyless_image.split("@")[1]

    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", keyless_image, *keyless(root_file), "--type", "slsaprovenance1",
                          "-o", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layouts"] == {"legacy-att": 1}
    assert doc["verified"][0]["predicateType"] == SLSA_V1 and doc["verified"][0]["keyId"] == WORKFLOW


def test_regexps_match_like_cosign(keyless_image: str, root_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, keyless_image, "--trusted-root", str(root_file),
                               "--certificate-identity-regexp", r"^https://github\.com/acme/app/",
                               "--certificate-oidc-issuer-regexp", r"^https://token\.actions\."], capsys)
        assert code == 0, err
        code, _out, err = cli(["verify", command, keyless_image, "--trusted-root", str(root_file),
                               "--certificate-identity-regexp", r"^https://github\.com/evil/",
                               "--certificate-oidc-issuer", GITHUB], capsys)
        assert code == NoMatchingSignatureError.exit_code == 12, err
        assert "do not match" in one_error_line(err)


def test_the_chain_annotation_is_optional(registry: RegistryServer, fulcio: LocalFulcio, root_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The trusted root supplies the intermediate, as cosign's --certificate-chain is optional."""
    ref = push_test_image(registry, "keyless/no-chain", "no-chain")
    sign_keyless(fulcio, ref, chain=False)
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, *keyless(root_file)], capsys)
        assert code == 0, err


def test_an_expired_certificate_verifies_at_its_rekor_time(registry: RegistryServer, fulcio: LocalFulcio,
                                                           root_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``dev.sigstore.cosign/bundle`` the chain is checked at the logged time; without it, now (expired)."""
    logged = push_test_image(registry, "keyless/logged", "logged")
    unlogged = push_test_image(registry, "keyless/unlogged", "unlogged")
    start = LONG_AGO - timedelta(minutes=1)
    for ref, with_tlog in ((logged, True), (unlogged, False)):
        sig_cert, sig_key = fulcio.leaf(start=start)
        att_cert, att_key = fulcio.leaf(start=start)
        _store([
            signature_item(ref, sig_key, pem(sig_cert), fulcio.chain_pem(), tlog=(
                lambda body, sig, c=sig_cert: fulcio.rekor_entry(c, body, sig, when=LONG_AGO)) if with_tlog else None),
            attestation_item(ref, att_key, pem(att_cert), fulcio.chain_pem(), tlog=(
                lambda body, sig, c=att_cert: fulcio.rekor_entry(c, body, sig, when=LONG_AGO, kind="dsse"))
                if with_tlog else None),
        ])
    layer = json.loads(registry.get_manifest("keyless/logged", logged.split("@")[1].replace(":", "-") + ".sig"))
    assert "dev.sigstore.cosign/bundle" in layer["layers"][0]["annotations"]
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, logged, *keyless(root_file)], capsys)
        assert code == 0, err
        code, _out, err = cli(["verify", command, unlogged, *keyless(root_file)], capsys)
        assert code == NoMatchingSignatureError.exit_code, err
        assert "does not chain" in one_error_line(err)


# -- reject ------------------------------------------------------------------------------------------

def test_wrong_identity(keyless_image: str, root_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, keyless_image,
                               *keyless(root_file, identity=WORKFLOW.replace("acme", "evil"))], capsys)
        assert code == NoMatchingSignatureError.exit_code == 12, err
        line = one_error_line(err)
        assert "do not match" in line and keyless_image.split("@")[1] in line


def test_wrong_issuer(keyless_image: str, root_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, keyless_image,
                               *keyless(root_file, issuer="https://accounts.google.com")], capsys)
        assert code == NoMatchingSignatureError.exit_code == 12, err
        assert "issuer" in one_error_line(err)


def test_a_certificate_from_another_ca(registry: RegistryServer, root_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A leaf with the right identity from a CA the trusted root does not name (its chain annotation and all)."""
    rogue = LocalFulcio.create(name="rogue")
    ref = push_test_image(registry, "keyless/rogue", "rogue")
    sign_keyless(rogue, ref)
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, *keyless(root_file)], capsys)
        assert code == NoMatchingSignatureError.exit_code, err
        assert "does not chain to a trusted Fulcio root" in one_error_line(err)


def test_a_key_signed_image_has_no_certificate(key_signed: tuple[str, Path], root_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ref, pub = key_signed
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, "--key", str(pub), "--insecure-ignore-tlog"], capsys)
        assert code == 0, err  # a genuine signature, made with a key (never logged)
        code, _out, err = cli(["verify", command, ref, *keyless(root_file)], capsys)
        assert code == NoCertificateError.exit_code == 13, err
        line = one_error_line(err)
        assert "certificate" in line and ref.split("@")[1] in line
        assert "--key" in err  # the hint


def test_key_signed_and_wrong_identity_together_is_a_mismatch(registry: RegistryServer, fulcio: LocalFulcio,
                                                              root_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """13 only when *every* signature lacks a certificate; a keyless one for someone else makes it 12."""
    ref = push_test_image(registry, "keyless/mixed", "mixed")
    key = ec.generate_private_key(ec.SECP256R1())
    _store([signature_item(ref, key), attestation_item(ref, key)])
    sign_keyless(fulcio, ref, uri="https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main")
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, *keyless(root_file)], capsys)
        assert code == NoMatchingSignatureError.exit_code, err
        assert "none of the 2" in one_error_line(err)
    # one good keyless signature among them is enough (cosign's rule)
    sign_keyless(fulcio, ref)
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, *keyless(root_file)], capsys)
        assert code == 0, err


def test_malformed_policy_on_an_unsigned_image(registry: RegistryServer, root_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The policy file is read before anything is verified: 3, not 10, although nothing is stored."""
    bare = push_test_image(registry, "keyless/unsigned", "unsigned")
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: [\n")
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, bare, *keyless(root_file), "--policy", str(policy)], capsys)
        assert code == ConfigError.exit_code == 3, err
        assert str(policy) in one_error_line(err)
        code, _out, err = cli(["verify", command, bare, *keyless(root_file)], capsys)
        assert code == 10, err


# -- keyless Sigstore bundles (sigstore-python) --------------------------------------------------------

def attach_keyless_bundles(fulcio: LocalFulcio, ref: str, **leaf: Any) -> None:
    """A keyless signature bundle (simple-signing in DSSE) and a SLSA v1 attestation bundle, as referrers."""
    from chainmail._internal.encoding import compact_json
    from chainmail._internal.registry import Reference, RegistryClient
    from chainmail.storage.oci import push_bundle
    from chainmail.verify import SIGN_PREDICATE

    client, image = RegistryClient(), Reference.parse(ref)
    push_bundle(client, image, compact_json(fulcio.keyless_bundle(SIMPLESIGNING_PAYLOAD_TYPE, simple_signing(ref),
                                                                  **leaf)), SIGN_PREDICATE)
    push_bundle(client, image, compact_json(fulcio.keyless_bundle(INTOTO_PAYLOAD_TYPE, slsa_statement(ref), **leaf)),
                SLSA_V1)


def test_keyless_bundles(registry: RegistryServer, fulcio: LocalFulcio, root_file: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sigstore")
    ref = push_test_image(registry, "keyless/bundled", "bundled")
    attach_keyless_bundles(fulcio, ref)
    code, out, err = cli(["verify", "image", "--insecure-ignore-tlog", ref, *keyless(root_file), "-o", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layouts"] == {"bundle-fallback-tag": 1}  # Debian's registry has no referrers API
    assert doc["verified"][0]["keyId"] == WORKFLOW and doc["verified"][0]["cert"]
    code, out, err = cli(["verify", "attestation", "--insecure-ignore-tlog", ref, *keyless(root_file), "--type", "slsaprovenance1",
                          "-o", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["verified"][0]["predicateType"] == SLSA_V1
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, *keyless(root_file, identity=WORKFLOW + "-evil")], capsys)
        assert code == NoMatchingSignatureError.exit_code, err
        assert "do not match" in one_error_line(err)
        code, _out, err = cli(["verify", command, ref, *keyless(root_file, issuer="https://accounts.google.com")],
                              capsys)
        assert code == NoMatchingSignatureError.exit_code, err


def test_key_signed_bundles_have_no_certificate(registry: RegistryServer, root_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sigstore")
    ref = push_test_image(registry, "keyless/key-bundled", "key-bundled")
    key = ec.generate_private_key(ec.SECP256R1())
    _store([signature_item(ref, key, dsse=True), attestation_item(ref, key)], bundle=True)
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, ref, *keyless(root_file)], capsys)
        assert code == NoCertificateError.exit_code, err
        assert "certificate" in one_error_line(err)


# -- flags, checked before the registry is asked anything ---------------------------------------------

@pytest.mark.parametrize("flags, expected", [
    (["--key", "cosign.pub", "--certificate-identity", WORKFLOW, "--certificate-oidc-issuer", GITHUB], "not both"),
    ([], "pass --key, or --certificate-identity and --certificate-oidc-issuer"),
    (["--certificate-identity", WORKFLOW], "--certificate-oidc-issuer"),
    (["--certificate-oidc-issuer", GITHUB], "--certificate-identity"),
    (["--certificate-identity", WORKFLOW, "--certificate-identity-regexp", "x", "--certificate-oidc-issuer", GITHUB],
     "mutually exclusive"),
    (["--certificate-identity-regexp", "(", "--certificate-oidc-issuer", GITHUB], "not a valid regular expression"),
])
def test_bad_flag_combinations(dead_registry_host: str, flags: list[str], expected: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("image", "attestation"):
        code, _out, err = cli(["verify", command, f"{dead_registry_host}/app:latest", *flags], capsys)
        assert code == InputError.exit_code == 4, err
        assert expected in one_error_line(err)


def test_unusable_trusted_root(dead_registry_host: str, tmp_path: Path, fulcio: LocalFulcio,
                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "trusted_root.json"
    bad.write_text(json.dumps({**fulcio.trusted_root(), "mediaType": "application/json"}))
    for root, expected in ((tmp_path / "missing.json", "cannot read"), (bad, "mediaType")):
        code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", f"{dead_registry_host}/app:latest", *keyless(root)], capsys)
        assert code == ConfigError.exit_code == 3, err
        assert expected in one_error_line(err)


def test_the_production_root_does_not_trust_the_local_ca(keyless_image: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sigstore")  # the embedded production trusted root
    code, _out, err = cli(["verify", "image", "--insecure-ignore-tlog", keyless_image, "--certificate-identity", WORKFLOW,
                           "--certificate-oidc-issuer", GITHUB], capsys)
    assert code == NoMatchingSignatureError.exit_code, err
    assert "does not chain" in one_error_line(err)


def test_trusted_root_helpers_agree(fulcio: LocalFulcio) -> None:
    """The double's trusted root loads as chainmail reads one (its Rekor key id is the SPKI hash)."""
    import hashlib

    from chainmail.verify.trusted_root import TrustedRoot

    loaded = TrustedRoot.from_json(json.dumps(fulcio.trusted_root()), "local fulcio")
    assert [t.key_id for t in loaded.tlogs] == [hashlib.sha256(spki(fulcio.log_key.public_key())).digest()]
    assert loaded.fulcio_pool(datetime.now(UTC))[0] == [fulcio.root]
