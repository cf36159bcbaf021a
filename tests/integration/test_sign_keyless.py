"""Keyless signing end to end: ``signers.x509.fulcio.enabled`` against the local Sigstore stack and a real registry.

The stack (tests/sigstore/server.mjs) runs @sigstore/mock's real Fulcio handler: it issues a leaf for any
public key, with the token's ``sub`` as URI SAN and its ``iss`` in the OIDC issuer extensions, plus an
embedded SCT from its CT log. It decodes the JWT without checking its signature, audience or expiry (real
Fulcio does, and chainmail checks audience and expiry itself before asking), so the tokens here are
unsigned JWTs with the claims a projected Kubernetes service-account token carries.

Signed runs are then checked by three verifiers with the stack's trusted_root.json: ``chainmail verify``
(legacy ``.sig``/``.att`` layers and bundles), @sigstore/verify (tlog, SCT and timestamp thresholds of 1)
and sigstore-python's ``Verifier`` on the keyless Sigstore bundles.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from chainmail.demo import example_dir
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

pytestmark = pytest.mark.registry

TESTS = Path(__file__).resolve().parents[1]
JS_VERIFY = TESTS / "sigstore" / "verify-keyless-bundle.mjs"
ISSUER = "https://kubernetes.default.svc.cluster.local"
IDENTITY = "https://kubernetes.io/namespaces/tekton-chains/serviceaccounts/chainmail"
OTHER = "https://kubernetes.io/namespaces/evil/serviceaccounts/mallory"
RUN = json.loads((example_dir() / "taskrun.json").read_text())
A = "chains.tekton.dev/"


def jwt(**claims: Any) -> str:
    """An unsigned JWT shaped like a projected service-account token for audience sigstore."""
    now = int(time.time())
    body = {"iss": ISSUER, "sub": IDENTITY, "aud": ["sigstore"], "iat": now, "exp": now + 600,
            "kubernetes.io": {"namespace": "tekton-chains", "serviceaccount": {"name": "chainmail", "uid": "1"}}}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(body)}.c2lnbmF0dXJl"


@pytest.fixture(autouse=True)
def _no_ambient(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    for name in ("SIGSTORE_ID_TOKEN", "CHAINMAIL_KEY", "CHAINMAIL_SIGNING_SECRETS", "COSIGN_REPOSITORY",
                 "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "oidc-token"
    path.write_text(jwt() + "\n")
    return path


def run_for(image: str) -> dict[str, Any]:
    """The example TaskRun, with a fresh uid, building ``image`` (``host/repo@sha256:…``)."""
    run = copy.deepcopy(RUN)
    uid = str(uuid.uuid4())
    run["metadata"].update(uid=uid, name=f"build-{uid[:8]}")
    run["metadata"].pop("resourceVersion", None)
    repo, digest = image.split("@")
    run["status"]["results"] = [{"name": "IMAGE_DIGEST", "type": "string", "value": digest},
                                {"name": "IMAGE_URL", "type": "string", "value": repo}]
    return run


def keyless_sets(stack: Stack, token: Path, **extra: str) -> list[str]:
    values = {
        "signers.x509.fulcio.enabled": "true",
        "signers.x509.fulcio.address": stack.url,
        "signers.x509.identity.token.file": str(token),
        "transparency.enabled": "true",
        "transparency.url": stack.url,
        "chainmail.transparency.trusted-root": str(stack.trusted_root),
        "chainmail.retry.deadline-seconds": "2",
        "artifacts.taskrun.format": "slsa/v1",
        **extra,
    }
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), err
    assert "Traceback" not in err
    return lines[0]


def pem_cert(b64_pem: str) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(base64.b64decode(b64_pem))


def san(cert: Any) -> list[str]:
    from cryptography import x509

    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)


def need_sigstore_python() -> None:
    """sigstore-python (extra ``sigstore``) verifies keyless bundles; missing, skip locally, fail under CI."""
    if importlib.util.find_spec("sigstore") is None:
        require_tool("sigstore-python", "not installed: pip install 'chainmail[sigstore]'")


def verify_args(stack: Stack, identity: str = IDENTITY, issuer: str = ISSUER) -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
            "--trusted-root", str(stack.trusted_root)]


# -- sign + store to oci and tekton, then chainmail verify --------------------------------------------

def test_keyless_run_to_oci_and_tekton_verifies(sigstore_stack: Stack, registry: RegistryServer, kube_api: Any,
                                                token: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(registry, "keyless-sign/app", "keyless-sign")
    run = run_for(image)
    kube_api.add(run)
    ns, name, uid = run["metadata"]["namespace"], run["metadata"]["name"], run["metadata"]["uid"]
    code, _, err = cli(["run", "--taskrun", name, "--namespace", ns,
                        "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=ns)),
                        *keyless_sets(sigstore_stack, token, **{"artifacts.taskrun.storage": "tekton,oci",
                                                                 "artifacts.oci.storage": "tekton,oci"})], capsys)
    assert code == 0, err
    marks = kube_api.annotations("taskruns", ns, name)
    assert marks[A + "signed"] == "true"
    assert marks[A + "transparency"].startswith(f"{sigstore_stack.url}/api/v1/log/entries?logIndex=")
    short_image = image.split("@sha256:")[1][:12]
    for short in (f"taskrun-{uid}", short_image):
        leaf = pem_cert(marks[A + f"cert-{short}"])
        assert san(leaf) == [IDENTITY]
        chain = base64.b64decode(marks[A + f"chain-{short}"]).decode()
        assert chain.startswith("-----BEGIN CERTIFICATE-----\n") and chain.count("BEGIN CERTIFICATE") == 1
        from cryptography import x509

        assert leaf.issuer == x509.load_pem_x509_certificate(chain.encode()).subject  # the mock CA's root
    # one ephemeral key and certificate per run, for the attestation and the image signature alike
    assert marks[A + f"cert-taskrun-{uid}"] == marks[A + f"cert-{short_image}"]

    repo, digest = image.split("@")
    path = repo.split("/", 1)[1]
    for suffix in ("sig", "att"):
        manifest = json.loads(registry.get_manifest(path, digest.replace(":", "-") + f".{suffix}"))
        [layer] = manifest["layers"]
        notes = layer["annotations"]
        assert base64.b64encode(notes["dev.sigstore.cosign/certificate"].encode()).decode() == \
            marks[A + f"cert-{short_image}"]
        assert notes["dev.sigstore.cosign/chain"].count("BEGIN CERTIFICATE") == 1
        assert json.loads(notes["dev.sigstore.cosign/bundle"])["Payload"]["logIndex"] >= 0

    for command in ("image", "attestation"):
        code, out, err = cli(["verify", command, image, *verify_args(sigstore_stack), "-o", "json"], capsys)
        assert code == 0, err
        assert json.loads(out)["verified"][0]["keyId"] == IDENTITY
        code, _, err = cli(["verify", command, image, *verify_args(sigstore_stack, identity=OTHER)], capsys)
        assert code == 12, err
        assert "do not match" in one_error_line(err)
        code, _, err = cli(["verify", command, image, *verify_args(sigstore_stack, issuer="https://accounts.google.com")],
                           capsys)
        assert code == 12, err


# -- sigstore-bundle encoding: three verifiers ---------------------------------------------------------

def _bundles(registry: RegistryServer, image: str) -> dict[str, bytes]:
    """The referrer bundles of ``image`` (from the fallback tag), by predicate type."""
    repo, digest = image.split("@")
    path = repo.split("/", 1)[1]
    index = json.loads(registry.get_manifest(path, digest.replace(":", "-")))
    out = {}
    for entry in index["manifests"]:
        manifest = json.loads(registry.get_manifest(path, entry["digest"]))
        predicate = manifest["annotations"]["dev.sigstore.bundle.predicateType"]
        out[predicate] = registry.get_blob(path, manifest["layers"][0]["digest"])
    return out


@pytest.fixture
def bundled(sigstore_stack: Stack, registry: RegistryServer, token: Path, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, bytes]]:
    image = push_test_image(registry, "keyless-sign/bundled", f"bundled-{uuid.uuid4()}")
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(run_for(image)))
    code, _, err = cli(["run", "--from-file", str(run_file),
                        *keyless_sets(sigstore_stack, token, **{
                            "storage.oci.encoding-format": "sigstore-bundle",
                            "artifacts.taskrun.storage": "oci", "artifacts.oci.storage": "oci",
                            "chainmail.storage.file.directory": str(tmp_path / "store")})], capsys)
    assert code == 0, err
    bundles = _bundles(registry, image)
    assert len(bundles) == 2 and "https://sigstore.dev/cosign/sign/v1" in bundles, bundles.keys()
    return image, bundles


def test_chainmail_verify_accepts_keyless_bundles(bundled: tuple[str, dict[str, bytes]], sigstore_stack: Stack,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    need_sigstore_python()
    image, _ = bundled
    for command in ("image", "attestation"):
        code, out, err = cli(["verify", command, image, *verify_args(sigstore_stack), "-o", "json"], capsys)
        assert code == 0, err
        assert json.loads(out)["layouts"] == {"bundle-fallback-tag": 1}
        code, _, err = cli(["verify", command, image, *verify_args(sigstore_stack, identity=OTHER)], capsys)
        assert code == 12, err


def _tampered(bundle: bytes) -> dict[str, dict[str, Any]]:
    doc = json.loads(bundle)
    statement = base64.b64decode(doc["dsseEnvelope"]["payload"])
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-3] ^= 0x10
    cases: dict[str, dict[str, Any]] = {}
    edited = copy.deepcopy(doc)
    edited["dsseEnvelope"]["payload"] = base64.b64encode(statement.replace(b"sha256", b"sha257", 1)).decode()
    cases["payload edited"] = edited
    flipped = copy.deepcopy(doc)
    flipped["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    cases["signature flipped"] = flipped
    untimed = copy.deepcopy(doc)
    untimed["verificationMaterial"]["tlogEntries"] = []
    cases["no tlog entry"] = untimed
    moved = copy.deepcopy(doc)
    moved["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = str(
        int(moved["verificationMaterial"]["tlogEntries"][0]["integratedTime"]) + 3600)
    cases["tlog time moved"] = moved
    return cases


def test_sigstore_js_accepts_keyless_bundles_and_rejects_tampered(bundled: tuple[str, dict[str, bytes]],
                                                                   sigstore_stack: Stack, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        require_tool("node", "not installed; @sigstore/verify cross-check skipped")
    if not (TESTS / "js" / "node_modules" / "@sigstore" / "verify").is_dir():
        require_tool("tests/js/node_modules/@sigstore/verify", "absent: run `npm install --prefix tests/js`")

    def js(doc: bytes | dict[str, Any], identity: str = IDENTITY) -> tuple[int, dict[str, Any]]:
        path = tmp_path / "bundle.json"
        path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        done = subprocess.run([str(node), str(JS_VERIFY), str(path), str(sigstore_stack.trusted_root), identity,
                               ISSUER], capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 1), done.stderr or done.stdout
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

    _, bundles = bundled
    for predicate, bundle in bundles.items():
        code, result = js(bundle)
        assert code == 0 and result["verified"], (predicate, result)
        assert result["identity"]["subjectAlternativeName"] == IDENTITY
        code, result = js(bundle, identity=OTHER)
        assert code == 1, (predicate, result)
        for name, doc in _tampered(bundle).items():
            code, result = js(doc)
            assert code == 1 and not result["verified"], (predicate, name, result)


def test_sigstore_python_accepts_keyless_bundles_and_rejects_tampered(bundled: tuple[str, dict[str, bytes]],
                                                                      sigstore_stack: Stack) -> None:
    need_sigstore_python()
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(sigstore_stack.trusted_root)))
    image, bundles = bundled
    for predicate, bundle in bundles.items():
        payload_type, payload = verifier.verify_dsse(Bundle.from_json(bundle), Identity(identity=IDENTITY,
                                                                                       issuer=ISSUER))
        if predicate == "https://sigstore.dev/cosign/sign/v1":
            assert payload_type == "application/vnd.dev.cosign.simplesigning.v1+json"
            assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == image.split("@")[1]
        else:
            assert payload_type == "application/vnd.in-toto+json"
            assert json.loads(payload)["predicateType"] == predicate
        with pytest.raises(SigstoreError):
            verifier.verify_dsse(Bundle.from_json(bundle), Identity(identity=OTHER, issuer=ISSUER))
        for name, doc in _tampered(bundle).items():
            with pytest.raises((SigstoreError, ValueError)):
                verifier.verify_dsse(Bundle.from_json(json.dumps(doc)), Identity(identity=IDENTITY, issuer=ISSUER))
                pytest.fail(f"sigstore-python accepted a bundle with {name}")


# -- bad input: one line, its own exit code, the reason on the run, nothing stored ---------------------

def _expired() -> str:
    return jwt(iat=int(time.time()) - 4000, exp=int(time.time()) - 3400)


FAILURES = {
    # case: (token text or None for no file, extra settings, fault, exit code, words in the one line)
    "token file missing": (None, {}, None, 30, "does not exist"),
    "token expired": (_expired, {}, None, 31, "expired"),
    "wrong audience": (lambda: jwt(aud=["kubernetes.default.svc"]), {}, None, 31, "audience 'kubernetes.default.svc'"),
    "fulcio refuses": (jwt, {}, "status-400", 32, "refused the certificate request: HTTP 400"),
    "fulcio down": (jwt, {}, "status-500", 33, "kept failing: HTTP 500"),
    "fulcio unreachable": (jwt, {"signers.x509.fulcio.address": "DEAD"}, None, 33, "is unreachable"),
    "transparency off": (None, {"transparency.enabled": "false"}, None, 3, "needs a transparency log entry"),
    "unsupported provider": (jwt, {"signers.x509.fulcio.provider": "github-actions",
                                   "signers.x509.identity.token.file": ""}, None, 3, "'github-actions' is not supported"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_keyless_failures(case: str, sigstore_stack: Stack, registry: RegistryServer, dead_registry_host: str,
                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_token, extra, fault, exit_code, words = FAILURES[case]
    token = tmp_path / "oidc-token"
    secret = make_token() if make_token else ""
    if make_token:
        token.write_text(secret)
    extra = {k: (f"http://{dead_registry_host}" if v == "DEAD" else v) for k, v in extra.items()}
    image = push_test_image(registry, "keyless-sign/failing", f"failing-{case}")
    run = run_for(image)
    run_file, store = tmp_path / "run.json", tmp_path / "store"
    run_file.write_text(json.dumps(run))
    if fault:
        sigstore_stack.fault(fault)
    try:
        code, out, err = cli(["run", "--from-file", str(run_file),
                              *keyless_sets(sigstore_stack, token, **{
                                  "artifacts.taskrun.storage": "file,oci", "artifacts.oci.storage": "oci",
                                  "chainmail.storage.file.directory": str(store), **extra})], capsys)
    finally:
        if fault:
            sigstore_stack.fault(None)
    assert code == exit_code, err
    line = one_error_line(err)
    assert words in line, line
    marks = json.loads((store / f"taskrun-{run['metadata']['namespace']}-{run['metadata']['name']}" /
                        "annotations.json").read_text())
    assert marks[A + "signed"] == "failed" and marks[A + "retries"] == "1"
    assert words in marks["chainmail.dev/failure-reason"] or words[:40] in marks["chainmail.dev/failure-reason"]
    # nothing half-stored: no signature file, no .sig/.att tag, no payload annotation
    assert not list(store.rglob("*.signature"))
    assert not any(k.startswith((A + "payload-", A + "cert-")) for k in marks)
    repo, digest = image.split("@")
    for suffix in ("sig", "att"):
        assert registry.get_manifest(repo.split("/", 1)[1], digest.replace(":", "-") + f".{suffix}") is None
    if secret:  # the token never shows
        payload_part = secret.split(".")[1]
        assert payload_part not in err + out and payload_part not in json.dumps(marks)


# -- separate sign and store steps: store trusts only this workload's logged certificate -----------------

def test_store_step_checks_keyless_signatures(sigstore_stack: Stack, token: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``store`` (another step, reading signed.json) accepts this workload's keyless signatures only."""
    example = example_dir() / "taskrun.json"
    common = {"chainmail.sign.verify-images-exist": "false", "artifacts.taskrun.storage": "file",
              "artifacts.oci.storage": "file"}

    def sign(ws: Path, token_file: Path) -> None:
        code, _, err = cli(["run", "--from-file", str(example), "--workspace", str(ws),
                            *keyless_sets(sigstore_stack, token_file, **common,
                                          **{"chainmail.storage.file.directory": str(tmp_path / "first")})], capsys)
        assert code == 0, err

    def store(ws: Path, name: str) -> tuple[int, str]:
        code, _, err = cli(["store", "--workspace", str(ws), "--trust-file-snapshot",
                            *keyless_sets(sigstore_stack, token, **common,
                                          **{"chainmail.storage.file.directory": str(tmp_path / name)})], capsys)
        return code, err

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    sign(ours, token)
    code, err = store(ours, "genuine")
    assert code == 0, err
    assert list((tmp_path / "genuine").rglob("*.cert"))

    other = tmp_path / "other-token"
    other.write_text(jwt(sub=OTHER, **{"kubernetes.io": {"namespace": "evil", "serviceaccount": {"name": "mallory"}}}))
    sign(theirs, other)
    original = (ours / "signed.json").read_text()
    forged = json.loads(original)
    forged["signatures"] = json.loads((theirs / "signed.json").read_text())["signatures"]
    (ours / "signed.json").write_text(json.dumps(forged))
    code, err = store(ours, "forged")
    assert code == 16, err
    assert "not this workload's Fulcio certificate" in one_error_line(err)
    assert not list((tmp_path / "forged").rglob("*.signature"))

    unlogged = json.loads(original)
    unlogged["signatures"][0].pop("tlog")
    (ours / "signed.json").write_text(json.dumps(unlogged))
    code, err = store(ours, "unlogged")
    assert code == 16, err
    assert "no transparency log entry" in one_error_line(err)


def test_fulcio_outage_is_retried_then_reported(sigstore_stack: Stack) -> None:
    """5xx from Fulcio is retried with backoff until the deadline, like every other outage; 4xx is not."""
    from chainmail._internal.http import RetryPolicy
    from chainmail.errors import FulcioRefusedError, FulcioUnreachableError
    from chainmail.signing._fulcio import certify

    policy = RetryPolicy(deadline=1.0, initial_backoff=0.05, max_backoff=0.2)
    sigstore_stack.fault("status-500")
    try:
        with pytest.raises(FulcioUnreachableError, match="kept failing: HTTP 500"):
            certify(sigstore_stack.url, jwt(), retry=policy, trusted_root=str(sigstore_stack.trusted_root))
    finally:
        sigstore_stack.fault(None)
    assert policy.retries >= 1
    refused = RetryPolicy(deadline=1.0)
    sigstore_stack.fault("status-400")
    with pytest.raises(FulcioRefusedError, match="fault injected by the test"):
        certify(sigstore_stack.url, jwt(), retry=refused, trusted_root=str(sigstore_stack.trusted_root))
    assert refused.retries == 0
    # and once Fulcio is back, the same call succeeds
    signer = certify(sigstore_stack.url, jwt(), retry=RetryPolicy(deadline=1.0),
                     trusted_root=str(sigstore_stack.trusted_root))
    assert "BEGIN CERTIFICATE" in signer.cert and signer.chain.count("BEGIN CERTIFICATE") == 1


def test_a_certificate_from_an_untrusted_fulcio_is_not_used(sigstore_stack: Stack) -> None:
    """The mock's CA is not in Sigstore's production root: the issued certificate is refused (exit 6)."""
    need_sigstore_python()  # the embedded production trusted root
    from chainmail.errors import SigningError
    from chainmail.signing._fulcio import certify

    with pytest.raises(SigningError, match="cannot trust .*does not chain to a trusted Fulcio root") as info:
        certify(sigstore_stack.url, jwt(), trusted_root="production")
    assert type(info.value) is SigningError and info.value.exit_code == 6
    assert "chainmail.transparency.trusted-root" in (info.value.hint or "")
