"""`chainmail policy nodes`: containers-policy.json(5), containers-registries.d(5), MachineConfig, Butane and
ClusterImagePolicy output.

The files are checked against the rules of the man pages and of the code that parses them
(containers/image ``signature/policy_config.go``: strict JSON, exactly one of keyPath/keyData,
``docker/registries_d.go``), and the ClusterImagePolicy scope against the CEL rules of OpenShift's
``ImageScope`` type.

No Debian tool can evaluate a ``sigstoreSigned`` requirement against a signed image: skopeo, podman
and buildah all use Debian's golang-github-containers-image, whose ``disable-sigstore.patch`` makes
``prSigstoreSigned.isSignatureAccepted`` return "Debian-local change: sigstore disabled" (read in the
5.23.1-4 source, and that string is in the bookworm binaries podman 4.3.1, buildah 1.28.2 and skopeo
1.9.3). So :func:`evaluate` below re-implements what that function does
upstream (signature over the simple-signing layer, manifest digest, ``signedIdentity``) and runs the
generated policy against the image Tekton Chains signed in ``shared/fixtures/chains-run``.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chainmail.errors import InputError, KeyMaterialError
from chainmail.nodepolicy import FORMATS, NodePolicy, check_scope
from clirun import cli

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
IMAGE_DIGEST = "sha256:188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb"

# ---------------------------------------------------------------- rules from the man pages

_REQUIREMENT_KEYS = {
    "insecureAcceptAnything": {"type"},
    "reject": {"type"},
    "signedBy": {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"},
    "sigstoreSigned": {"type", "keyPath", "keyData", "fulcio", "rekorPublicKeyPath", "rekorPublicKeyData",
                       "signedIdentity"},
}
_IDENTITY_TYPES = {"matchExact", "matchRepoDigestOrExact", "matchRepository", "exactReference",
                   "exactRepository", "remapIdentity"}
_REGISTRIES_D_SCOPE_KEYS = {"lookaside", "lookaside-staging", "sigstore", "sigstore-staging",
                            "use-sigstore-attachments"}
# OpenShift ImageScope (config/v1 types_image_policy.go) CEL rules, as regular expressions.
_CIP_HOST_OR_LOCALHOST = re.compile(r"^(?:[^/]*\.[^/]*|localhost(?::\d+)?)(?:/|$)")
_CIP_SCOPE = re.compile(
    r"^((((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*"
    r"[a-zA-Z0-9]))+(?::[0-9]+)?)|(localhost(?::[0-9]+)?))(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)"
    r"(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}))?$")


def check_policy_json(doc: dict[str, Any]) -> None:
    """containers-policy.json(5): the parser rejects unknown or missing fields (ParanoidUnmarshalJSONObject)."""
    assert set(doc) <= {"default", "transports"}
    assert isinstance(doc["default"], list) and doc["default"], "default must be a non-empty list"
    for transport, scopes in doc.get("transports", {}).items():
        assert transport in {"docker", "atomic", "containers-storage", "dir", "docker-archive", "docker-daemon",
                             "oci", "oci-archive", "sif", "tarball"}
        for scope, requirements in scopes.items():
            if transport == "docker":
                assert "://" not in scope and not scope.endswith("/")
            assert isinstance(requirements, list) and requirements
            for req in requirements:
                kind = req["type"]
                assert set(req) <= _REQUIREMENT_KEYS[kind], f"unknown field in {kind}"
                if kind == "sigstoreSigned":
                    assert ("keyPath" in req) != ("keyData" in req), "exactly one of keyPath and keyData"
                    if "keyPath" in req:
                        assert req["keyPath"].startswith("/")
                    else:
                        assert base64.b64decode(req["keyData"], validate=True).startswith(b"-----BEGIN PUBLIC KEY")
                    assert req["signedIdentity"]["type"] in _IDENTITY_TYPES


def check_registries_d(doc: dict[str, Any]) -> None:
    """containers-registries.d(5): ``docker`` maps scopes to settings; unknown keys are errors."""
    assert set(doc) <= {"default-docker", "docker"}
    for scope, settings in doc["docker"].items():
        assert "://" not in scope and "@" not in scope
        assert set(settings) <= _REGISTRIES_D_SCOPE_KEYS
        assert settings["use-sigstore-attachments"] is True


# ---------------------------------------------------------------- a sigstoreSigned evaluator


def _repo(ref: str) -> str:
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    return name


def requirements_for(policy: dict[str, Any], ref: str) -> list[dict[str, Any]]:
    """The most specific ``docker`` scope for ``ref`` (exact, repository, namespaces, host), else default."""
    scopes = policy["transports"].get("docker", {})
    candidates = [ref]
    name = _repo(ref)
    while name:
        candidates.append(name)
        name = name.rsplit("/", 1)[0] if "/" in name else ""
    host = _repo(ref).split("/")[0].split(":")[0]
    parts = host.split(".")
    candidates += ["*." + ".".join(parts[i:]) for i in range(1, len(parts))]
    for candidate in candidates:
        if candidate in scopes:
            return scopes[candidate]
    return policy["default"]


def _identity_matches(rule: dict[str, Any], image_ref: str, signed_ref: str) -> bool:
    if rule["type"] == "matchRepository":
        return _repo(image_ref) == _repo(signed_ref)
    if rule["type"] == "matchRepoDigestOrExact":
        if "@" in image_ref:
            return _repo(image_ref) == _repo(signed_ref)
        return image_ref == signed_ref  # a tag pull needs the tag in the signed reference
    raise AssertionError(f"rule {rule['type']} not modelled")


def evaluate(policy: dict[str, Any], image_ref: str, manifest_digest: str,
             signatures: list[tuple[bytes, str]], key_files: dict[str, bytes]) -> bool:
    """Would the policy accept the image? ``signatures`` = (simple-signing layer, base64 signature)."""
    for req in requirements_for(policy, image_ref):
        if req["type"] == "insecureAcceptAnything":
            continue
        if req["type"] != "sigstoreSigned":
            return False
        pem = base64.b64decode(req["keyData"]) if "keyData" in req else key_files[req["keyPath"]]
        key = serialization.load_pem_public_key(pem)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        accepted = False
        for payload, signature in signatures:
            try:
                key.verify(base64.b64decode(signature), payload, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            critical = json.loads(payload)["critical"]
            if critical["type"] != "cosign container image signature":
                continue
            if critical["image"]["docker-manifest-digest"] != manifest_digest:
                continue
            if _identity_matches(req["signedIdentity"], image_ref, critical["identity"]["docker-reference"]):
                accepted = True
        if not accepted:
            return False
    return True


@pytest.fixture
def chains_run(shared: Path) -> dict[str, Any]:
    run = shared / "fixtures" / "chains-run"
    manifest = json.loads((run / "sig-manifest.json").read_text())
    layer = manifest["layers"][0]
    assert layer["mediaType"] == SIMPLESIGNING
    return {
        "pub": (run / "cosign.pub").read_text(),
        "pub_path": run / "cosign.pub",
        "signatures": [((run / "sig-layer0.json").read_bytes(), layer["annotations"]["dev.cosignproject.cosign/signature"])],
    }


# ---------------------------------------------------------------- tests


def test_policy_accepts_what_chains_signed_and_nothing_else(chains_run: dict[str, Any]) -> None:
    policy = NodePolicy.create(chains_run["pub"], "127.0.0.1:5000/demo")
    doc = json.loads(policy.policy_json())
    check_policy_json(doc)
    keys = {policy.key_path: chains_run["pub"].encode()}
    sigs = chains_run["signatures"]
    by_digest = f"127.0.0.1:5000/demo/app@{IMAGE_DIGEST}"
    assert evaluate(doc, by_digest, IMAGE_DIGEST, sigs, keys)
    assert evaluate(doc, "127.0.0.1:5000/demo/app:latest", IMAGE_DIGEST, sigs, keys)  # tag pulls work
    assert not evaluate(doc, by_digest, "sha256:" + "0" * 64, sigs, keys)  # another image
    assert not evaluate(doc, f"127.0.0.1:5000/demo/other@{IMAGE_DIGEST}", IMAGE_DIGEST, sigs, keys)  # moved
    assert not evaluate(doc, by_digest, IMAGE_DIGEST, [], keys)  # unsigned
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not evaluate(doc, by_digest, IMAGE_DIGEST, sigs, {policy.key_path: other})  # wrong key
    assert evaluate(doc, "quay.io/other/app:1", IMAGE_DIGEST, [], keys)  # outside the scope: node default


def test_match_repo_digest_or_exact_rejects_tag_pulls(chains_run: dict[str, Any]) -> None:
    """Why matchRepository is the default: the signed reference carries no tag."""
    policy = NodePolicy.create(chains_run["pub"], "127.0.0.1:5000/demo/app", match="matchRepoDigestOrExact",
                               key_data=True)
    doc = json.loads(policy.policy_json())
    check_policy_json(doc)
    assert evaluate(doc, f"127.0.0.1:5000/demo/app@{IMAGE_DIGEST}", IMAGE_DIGEST, chains_run["signatures"], {})
    assert not evaluate(doc, "127.0.0.1:5000/demo/app:latest", IMAGE_DIGEST, chains_run["signatures"], {})


def test_registries_d_and_node_files(chains_run: dict[str, Any]) -> None:
    policy = NodePolicy.create(chains_run["pub"], "quay.io/acme", name="acme")
    check_registries_d(yaml.safe_load(policy.registries_d()))
    assert [path for path, _ in policy.files()] == [
        "/etc/containers/policy.json", "/etc/containers/registries.d/acme.yaml", "/etc/pki/containers/acme.pub"]
    inline = NodePolicy.create(chains_run["pub"], "quay.io/acme", key_data=True)
    assert [path for path, _ in inline.files()] == [
        "/etc/containers/policy.json", "/etc/containers/registries.d/chainmail.yaml"]


def test_machineconfig_and_butane_carry_the_same_files(chains_run: dict[str, Any]) -> None:
    policy = NodePolicy.create(chains_run["pub"], "quay.io/acme/app", role="infra")
    mc = yaml.safe_load(policy.machineconfig())
    assert mc["apiVersion"] == "machineconfiguration.openshift.io/v1" and mc["kind"] == "MachineConfig"
    assert mc["metadata"]["labels"] == {"machineconfiguration.openshift.io/role": "infra"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", mc["metadata"]["name"])
    assert mc["spec"]["config"]["ignition"]["version"] == "3.2.0"
    files = {}
    for entry in mc["spec"]["config"]["storage"]["files"]:
        assert entry["mode"] == 0o644 and entry["overwrite"] is True
        prefix, _, data = entry["contents"]["source"].partition(";base64,")
        assert prefix.startswith("data:")
        files[entry["path"]] = base64.b64decode(data).decode()
    assert files == dict(policy.files())
    check_policy_json(json.loads(files["/etc/containers/policy.json"]))
    check_registries_d(yaml.safe_load(files["/etc/containers/registries.d/chainmail.yaml"]))

    butane = yaml.safe_load(policy.butane())
    assert butane["variant"] == "openshift" and re.fullmatch(r"4\.\d+\.0", butane["version"])
    assert butane["metadata"] == mc["metadata"]
    assert {f["path"]: f["contents"]["inline"] for f in butane["storage"]["files"]} == files


@pytest.mark.parametrize("api_version", ["v1", "v1alpha1"])
def test_clusterimagepolicy(chains_run: dict[str, Any], api_version: str) -> None:
    policy = NodePolicy.create(chains_run["pub"], "*.apps.example.com")
    doc = yaml.safe_load(policy.clusterimagepolicy(api_version))
    assert doc["apiVersion"] == f"config.openshift.io/{api_version}" and doc["kind"] == "ClusterImagePolicy"
    root = doc["spec"]["policy"]["rootOfTrust"]
    assert root == {"policyType": "PublicKey", "publicKey": {"keyData": root["publicKey"]["keyData"]}}
    assert base64.b64decode(root["publicKey"]["keyData"]).decode() == chains_run["pub"].strip() + "\n"
    assert doc["spec"]["policy"]["signedIdentity"] == {"matchPolicy": "MatchRepository"}
    assert doc["spec"]["scopes"] == ["*.apps.example.com"]


@pytest.mark.parametrize("scope", ["quay.io", "quay.io/acme", "quay.io/acme/app", "127.0.0.1:5000/demo",
                                   "localhost:5000/x", "registry.example.com:8443/a/b-c/d_e", "docker.io/library/x"])
def test_valid_scopes_pass_the_clusterimagepolicy_rules(scope: str) -> None:
    assert check_scope(scope) == scope
    assert _CIP_HOST_OR_LOCALHOST.match(scope) and _CIP_SCOPE.match(scope)


@pytest.mark.parametrize(("scope", "why"), [
    ("https://quay.io/acme", "scheme"), ("quay.io/acme/app:latest", "tag or digest"),
    (f"quay.io/acme/app@{IMAGE_DIGEST}", "tag or digest"), ("busybox", "registry host"),
    ("docker.io/busybox", "docker.io/library/busybox"), ("quay.io/Acme", "lower-case"),
    ("*.example.com/app", "wildcard"), ("quay.*.io", "wildcard"),
])
def test_invalid_scopes_are_refused(scope: str, why: str) -> None:
    with pytest.raises(InputError, match=re.escape(why)):
        check_scope(scope)


def test_cli_formats(chains_run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = str(chains_run["pub_path"])
    for fmt in FORMATS:
        code, out, err = cli(["policy", "nodes", "--key", key, "--scope", "quay.io/acme", "--format", fmt], capsys)
        assert code == 0 and err == "" and out
    code, out, _ = cli(["policy", "nodes", "--key", key, "--scope", "quay.io/acme", "--key-data"], capsys)
    req = json.loads(out)["transports"]["docker"]["quay.io/acme"][0]
    assert "keyData" in req and "keyPath" not in req
    target = tmp_path / "mc.yaml"
    code, out, err = cli(["policy", "nodes", "--key", key, "--scope", "quay.io/acme", "-f", "machineconfig",
                          "--out", str(target)], capsys)
    assert code == 0 and out == "" and str(target) in err
    assert yaml.safe_load(target.read_text())["kind"] == "MachineConfig"


def test_cli_key_from_a_key_directory(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["policy", "nodes", "--key", key, "--scope", "quay.io/acme", "--key-data"], capsys)
    assert code == 0
    data = json.loads(out)["transports"]["docker"]["quay.io/acme"][0]["keyData"]
    assert base64.b64decode(data).decode().strip() == (Path(key) / "cosign.pub").read_text().strip()


@pytest.mark.parametrize(("args", "code", "text"), [
    (["--scope", "quay.io/acme:1"], InputError.exit_code, "--scope"),
    (["--format", "json"], InputError.exit_code, "--format"),
    (["--match", "matchExact"], InputError.exit_code, "--match"),
    (["--name", "Bad_Name"], InputError.exit_code, "--name"),
    (["-f", "clusterimagepolicy", "--api-version", "v2"], InputError.exit_code, "--api-version"),
])
def test_cli_errors_are_one_line(chains_run: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                 args: list[str], code: int, text: str) -> None:
    base = ["policy", "nodes", "--key", str(chains_run["pub_path"]), "--scope", "quay.io/acme"]
    got, out, err = cli(base + args, capsys)
    assert got == code and out == "" and text in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["policy", "nodes", "--key", str(tmp_path / "none.pub"), "--scope", "quay.io/a"], capsys)
    assert code == KeyMaterialError.exit_code and len(err.strip().splitlines()) == 1
