"""chainmail verifies attestations that sigstore-js (@sigstore/sign) signed keylessly, against the local stack.

The reverse of the cross-checks in test_sign_keyless.py: a third-party signer makes the bundle and
chainmail judges it. ``tests/sigstore/sign-with-sigstore-js.mjs`` signs an in-toto statement (SLSA
provenance v1 predicate, subject = the pushed image's repository and digest) with @sigstore/sign's
public API — ``DSSEBundleBuilder`` over a ``FulcioSigner`` and a ``RekorWitness`` (a ``dsse`` entry) —
and prints a v0.3 bundle. The test attaches that bundle's bytes, unchanged, to the image as an OCI
referrer with chainmail's own storage code (``storage.oci.push_bundle``, artifactType
``application/vnd.dev.sigstore.bundle.v0.3+json``; on Debian's docker-registry, through the
``sha256-<hex>`` fallback index), then runs ``chainmail verify attestation --type slsaprovenance1``
with the stack's trusted_root.json.

A sigstore-js bundle differs from chainmail's own in ways the bundle spec allows: its DSSE signature
has no ``keyid`` member, its ``verificationMaterial`` carries an empty ``timestampVerificationData``,
and, being protobuf JSON, it leaves out fields at their default — an entry (or inclusion proof) at
``logIndex`` 0 and a proof with no ``hashes`` (the first entry of the stack's log, a one-leaf tree).
sigstore-python requires those members, so chainmail rejected such a genuine bundle ("failed to load
bundle: … Field required") until it filled the defaults in (``sigstore_bundle.with_proto_defaults``).
Its dsse Rekor request sends the certificate's PEM on one base64 line; real Rekor stores the verifier
re-encoded as canonical PEM, and the stack now does too (it stored it as sent, and sigstore-python then
found "log entry signatures do not match bundle"). With the builder's ``certificateChain`` option the
bundle is v0.2 with ``x509CertificateChain``: it verified, but chainmail named the signer "unknown"
until ``bundles.bundle_envelope`` read the chain's leaf. That bundle goes through the same referrer
layout (artifactType and layer media type v0.3, chainmail's layout); chainmail reads the version from
the bundle's own ``mediaType``.

Only DSSE bundles are covered. sigstore-js's *message-signature* bundles
(``MessageSignatureBundleBuilder``) are not built here: chainmail accepts no message-signature bundle
as an image signature or attestation (``verify/bundles.py`` refuses them as "unsupported bundle
content (message signature)"): its image signatures and attestations are DSSE bundles only (cosign's
``sign/v1`` statement, or an in-toto statement), and a message signature carries no predicate type.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from clirun import cli
from doubles.registry import RegistryServer, push_test_image
from tooling import require_tool

_spec = importlib.util.spec_from_file_location("sigstore_stack_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "fixture.py")
assert _spec is not None and _spec.loader is not None
_stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_stack_module)
sigstore_stack = _stack_module.sigstore_stack
Stack = _stack_module.Stack

# the same token shape, identities and checks as the keyless signing tests
from test_sign_keyless import (  # noqa: E402
    IDENTITY,
    ISSUER,
    OTHER,
    _no_ambient,  # noqa: F401  (autouse: no ambient token, key or docker config)
    jwt,
    need_sigstore_python,
    one_error_line,
    verify_args,
)

pytestmark = pytest.mark.registry

TESTS = Path(__file__).resolve().parents[1]
JS_SIGN = TESTS / "sigstore" / "sign-with-sigstore-js.mjs"
SLSA_V1 = "https://slsa.dev/provenance/v1"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


@pytest.fixture(scope="module")
def node() -> str:
    """node with @sigstore/sign installed (missing: skip locally, fail under CI)."""
    exe = shutil.which("node")
    if exe is None:
        require_tool("node", "not installed; sigstore-js signing skipped")
    if not (TESTS / "js" / "node_modules" / "@sigstore" / "sign").is_dir():
        require_tool("tests/js/node_modules/@sigstore/sign", "absent: run `npm install --prefix tests/js`")
    return str(exe)


def statement_for(image: str) -> dict[str, Any]:
    """An in-toto v1 statement with a SLSA provenance v1 predicate whose subject is ``image``."""
    repo, digest = image.split("@")
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repo, "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicateType": SLSA_V1,
        "predicate": {
            "buildDefinition": {"buildType": "https://example.com/sigstore-js-interop/v1",
                                "externalParameters": {"image": repo}},
            "runDetails": {"builder": {"id": "https://example.com/builders/sigstore-js"},
                           "metadata": {"invocationId": str(uuid.uuid4())}},
        },
    }


def sign_with_js(node: str, stack: Stack, statement: dict[str, Any], tmp_path: Path,
                 subject: str = IDENTITY, chain: bool = False) -> bytes:
    """The bundle sigstore-js prints for ``statement``, signed keyless as ``subject`` (v0.2 chain form: ``chain``)."""
    token = tmp_path / f"token-{uuid.uuid4().hex[:8]}"
    token.write_text(jwt(sub=subject) + "\n")
    path = tmp_path / f"statement-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(statement))
    done = subprocess.run([node, str(JS_SIGN), stack.url, str(token), str(path),
                           *(["--certificate-chain"] if chain else [])], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().encode()


def attach(image: str, bundle: bytes) -> str:
    """Attach ``bundle`` (raw bytes) to ``image`` as chainmail's oci backend stores bundles; the referrer digest."""
    from chainmail._internal.registry import Reference
    from chainmail.context import Context
    from chainmail.storage.oci import push_bundle

    digest, existed, _ = push_bundle(Context().registry, Reference.parse(image), bundle, SLSA_V1)
    assert not existed
    return digest


def verify(image: str, stack: Stack, capsys: pytest.CaptureFixture[str], *extra: str,
           identity: str = IDENTITY, issuer: str = ISSUER) -> tuple[int, str, str]:
    return cli(["verify", "attestation", image, "--type", "slsaprovenance1",
                *verify_args(stack, identity=identity, issuer=issuer), *extra], capsys)


@pytest.fixture
def js_signed(node: str, sigstore_stack: Stack, registry: RegistryServer, tmp_path: Path) -> tuple[str, bytes]:
    """A fresh image and sigstore-js's bundle over a SLSA v1 statement for it (not attached yet)."""
    need_sigstore_python()
    image = push_test_image(registry, "sigstore-js/app", f"js-{uuid.uuid4()}")
    return image, sign_with_js(node, sigstore_stack, statement_for(image), tmp_path)


def test_sigstore_js_bundle_is_what_the_spec_says(js_signed: tuple[str, bytes]) -> None:
    """The bundle under test is a keyless v0.3 DSSE bundle with one dsse tlog entry (not chainmail's bytes)."""
    image, raw = js_signed
    bundle = json.loads(raw)
    assert bundle["mediaType"] == BUNDLE_V03
    material = bundle["verificationMaterial"]
    assert set(material["certificate"]) == {"rawBytes"} and "x509CertificateChain" not in material
    [entry] = material["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert entry["inclusionPromise"]["signedEntryTimestamp"] and entry["inclusionProof"]["checkpoint"]["envelope"]
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert [set(s) for s in env["signatures"]] == [{"sig"}]  # no keyid, unlike chainmail's bundles
    statement = json.loads(base64.b64decode(env["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == image.split("@sha256:")[1]


def test_chainmail_verifies_sigstore_js_bundle(js_signed: tuple[str, bytes], sigstore_stack: Stack,
                                               registry: RegistryServer, capsys: pytest.CaptureFixture[str]) -> None:
    image, bundle = js_signed
    referrer = attach(image, bundle)
    repo, digest = image.split("@")
    stored = json.loads(registry.get_manifest(repo.split("/", 1)[1], referrer))
    assert stored["artifactType"] == BUNDLE_V03 and stored["subject"]["digest"] == digest
    assert registry.get_blob(repo.split("/", 1)[1], stored["layers"][0]["digest"]) == bundle  # raw bytes

    code, out, err = verify(image, sigstore_stack, capsys, "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["layouts"] == {"bundle-fallback-tag": 1}
    [verified] = result["verified"]
    assert verified["keyId"] == IDENTITY

    # another identity or issuer asked for: the same bundle is refused (12, one line)
    code, _, err = verify(image, sigstore_stack, capsys, identity=OTHER)
    assert code == 12, err
    assert "do not match" in one_error_line(err)
    code, _, err = verify(image, sigstore_stack, capsys, issuer="https://accounts.google.com")
    assert code == 12, err
    assert f"certificate issuer '{ISSUER}' does not match" in one_error_line(err)
    # another predicate type asked for: verified, but not of that type (12)
    code, _, err = cli(["verify", "attestation", image, "--type", "slsaprovenance02", *verify_args(sigstore_stack)],
                       capsys)
    assert code == 12, err
    assert f"no verified attestation has predicate type https://slsa.dev/provenance/v0.2 (found {SLSA_V1})" in \
        one_error_line(err)


def _flip_payload(bundle: dict[str, Any], **_: Any) -> dict[str, Any]:
    """One byte of the statement changed (its predicate, so the subject still names the image)."""
    payload = bytearray(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    at = payload.index(b"sigstore-js")
    payload[at] ^= 0x01
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    return bundle


def _swap_signature(bundle: dict[str, Any], *, other: dict[str, Any], **_: Any) -> dict[str, Any]:
    """The signature of another sigstore-js bundle (same identity, another statement) in its place."""
    bundle["dsseEnvelope"]["signatures"] = copy.deepcopy(other["dsseEnvelope"]["signatures"])
    return bundle


def _other_identity(bundle: dict[str, Any], *, mallory: dict[str, Any], **_: Any) -> dict[str, Any]:
    """A genuine bundle for the same statement, but signed by another workload's identity."""
    return mallory


#: case: (tamper, words in the one error line after "keyless Sigstore bundle did not verify: ")
TAMPERED = {
    "payload byte flipped": (_flip_payload, "DSSE: invalid signature"),
    "signature swapped": (_swap_signature, "DSSE: invalid signature"),
    "another identity": (_other_identity, f"certificate identities ['{OTHER}'] do not match '{IDENTITY}'"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_chainmail_rejects_tampered_sigstore_js_bundle(case: str, js_signed: tuple[str, bytes], node: str,
                                                       sigstore_stack: Stack, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    image, raw = js_signed
    statement = statement_for(image)
    other = json.loads(sign_with_js(node, sigstore_stack, statement, tmp_path))  # another invocationId
    mallory = json.loads(sign_with_js(node, sigstore_stack, json.loads(base64.b64decode(
        json.loads(raw)["dsseEnvelope"]["payload"])), tmp_path, subject=OTHER))
    tamper, words = TAMPERED[case]
    attach(image, json.dumps(tamper(json.loads(raw), other=other, mallory=mallory)).encode())
    code, out, err = verify(image, sigstore_stack, capsys)
    assert code == 12, (case, out, err)
    line = one_error_line(err)
    assert f"keyless Sigstore bundle did not verify: {words}" in line, line
    assert line.startswith(f"Error: none of the 1 attestations for {image} verified: "), line


def test_chainmail_rejects_sigstore_js_bundle_for_another_image(js_signed: tuple[str, bytes],
                                                                 registry: RegistryServer, sigstore_stack: Stack,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A genuine sigstore-js bundle whose statement names image A, attached to image B: refused for B."""
    _, bundle = js_signed
    elsewhere = push_test_image(registry, "sigstore-js/app", f"js-other-{uuid.uuid4()}")
    attach(elsewhere, bundle)
    code, _, err = verify(elsewhere, sigstore_stack, capsys)
    assert code == 12, err
    assert "no subject of the statement has digest" in one_error_line(err)


def test_chainmail_verifies_sigstore_js_certificate_chain_bundle(node: str, sigstore_stack: Stack,
                                                                  registry: RegistryServer, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """sigstore-js's ``certificateChain`` option: a v0.2 bundle whose leaf is in ``x509CertificateChain``."""
    need_sigstore_python()
    image = push_test_image(registry, "sigstore-js/app", f"js-chain-{uuid.uuid4()}")
    bundle = sign_with_js(node, sigstore_stack, statement_for(image), tmp_path, chain=True)
    doc = json.loads(bundle)
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle+json;version=0.2"
    assert "certificate" not in doc["verificationMaterial"]
    assert len(doc["verificationMaterial"]["x509CertificateChain"]["certificates"]) >= 1
    attach(image, bundle)
    code, out, err = verify(image, sigstore_stack, capsys, "-o", "json")
    assert code == 0, err
    [verified] = json.loads(out)["verified"]
    assert verified["keyId"] == IDENTITY  # the leaf's SAN, read from the chain
    code, _, err = verify(image, sigstore_stack, capsys, identity=OTHER)
    assert code == 12, err
    assert "do not match" in one_error_line(err)
