"""Byte-exact OCI documents of the oci backend, checked against Tekton Chains' real outputs."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from chainmail._internal.encoding import sha256_digest
from chainmail.errors import StorageError
from chainmail.models import (
    INTOTO_PAYLOAD_TYPE,
    SIMPLESIGNING_PAYLOAD_TYPE,
    Artifact,
    Payload,
    RunRef,
    SignedPayload,
)
from chainmail.storage import oci

OWNER = RunRef("TaskRun", "demo", "build-app", "a4ed85af-73f4-47f0-8e1a-1f8df6be4ac2")
IMAGE = "127.0.0.1:5000/demo/app@sha256:188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb"
PUB = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElSZICYD7eANIBAvqrRhGvZx2SMTn
xDxoQV1TmiyqtIDcnv0/WCHfvlWbN19j8maukJ/uGcOfhAW7GFiKfphxQw==
-----END PUBLIC KEY-----
"""


@pytest.fixture(scope="module")
def run_fx(shared: Path) -> Path:
    return shared / "fixtures" / "chains-run"


@pytest.fixture(scope="module")
def pr_fx(shared: Path) -> Path:
    return shared / "fixtures" / "chains-pipelinerun"


def _signed(body: bytes, signature: bytes, *, wrap: bool = False, subjects: tuple[str, ...] = (),
            tlog: dict | None = None, cert: str = "") -> SignedPayload:
    kind = "taskrun" if wrap else "oci"
    ptype = INTOTO_PAYLOAD_TYPE if wrap else SIMPLESIGNING_PAYLOAD_TYPE
    art = Artifact(kind, IMAGE if kind == "oci" else "tekton.dev-v1-TaskRun-uid", "k", IMAGE, OWNER)
    return SignedPayload(Payload(art, "f", ptype, body, wrap, subjects), signature, "kid", PUB, "file:///k",
                         cert=cert, tlog=tlog)


def test_ggcr_config_matches_chains(run_fx: Path, pr_fx: Path) -> None:
    sig = json.loads((run_fx / "sig-manifest.json").read_bytes())
    assert oci.ggcr_config([sig["layers"][0]["digest"]]) == (run_fx / "sig-config.json").read_bytes()
    att = json.loads((pr_fx / "att-manifest.json").read_bytes())
    two = oci.ggcr_config([layer["digest"] for layer in att["layers"]])
    assert two == (pr_fx / "att-config.json").read_bytes()
    # appending to a base keeps its history and adds one entry
    base = json.loads((run_fx / "sig-config.json").read_bytes())
    assert oci.ggcr_config([sig["layers"][0]["digest"], "sha256:" + "1" * 64], base) == oci.ggcr_config(
        [sig["layers"][0]["digest"], "sha256:" + "1" * 64])
    custom = {**base, "created": "2024-01-01T00:00:00Z", "history": [{"created": "2024-01-01T00:00:00Z",
                                                                       "created_by": "cosign"}]}
    out = json.loads(oci.ggcr_config([sig["layers"][0]["digest"], "sha256:" + "1" * 64], custom))
    assert out["created"] == "2024-01-01T00:00:00Z"
    assert out["history"] == [{"created": "2024-01-01T00:00:00Z", "created_by": "cosign"},
                              {"created": oci.ZERO_TIME}]


@pytest.mark.parametrize("fixture", ["chains-run/sig", "chains-run/att", "chains-pipelinerun/att"])
def test_manifest_bytes_match_chains(shared: Path, fixture: str) -> None:
    raw = (shared / "fixtures" / f"{fixture}-manifest.json").read_bytes()
    doc = json.loads(raw)
    # scramble key order: the writer must restore Go's field order
    layers = [dict(reversed(list(layer.items()))) for layer in doc["layers"]]
    config = dict(reversed(list(doc["config"].items())))
    assert oci.image_manifest(config, layers) == raw


def test_layer_for_simplesigning(run_fx: Path) -> None:
    body = (run_fx / "sig-layer0.json").read_bytes()
    der = base64.b64decode(json.loads((run_fx / "sig-manifest.json").read_bytes())["layers"][0]["annotations"][
        oci.ANN_SIGNATURE])
    blob, media_type, annotations = oci.layer_for(_signed(body, der))
    assert blob == body and media_type == oci.SIMPLESIGNING_LAYER
    assert annotations == json.loads((run_fx / "sig-manifest.json").read_bytes())["layers"][0]["annotations"]
    assert list(annotations) == sorted(annotations)


def test_layer_for_attestation(run_fx: Path) -> None:
    envelope = (run_fx / "att-layer0.json").read_bytes()
    statement = base64.b64decode(json.loads(envelope)["payload"])
    blob, media_type, annotations = oci.layer_for(_signed(statement, envelope, wrap=True, subjects=(IMAGE,)))
    assert blob == envelope and media_type == oci.DSSE_LAYER
    assert annotations == json.loads((run_fx / "att-manifest.json").read_bytes())["layers"][0]["annotations"]


def test_layer_for_rejects_wrapped_simplesigning(run_fx: Path) -> None:
    body = (run_fx / "sig-layer0.json").read_bytes()
    with pytest.raises(StorageError, match="sigstore-bundle"):
        oci.layer_for(_signed(body, b'{"payloadType":"x","payload":"","signatures":[]}'))


REKOR = {"24296fb24b8ad77a": {
    "body": base64.b64encode(json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {}}).encode()).decode(),
    "integratedTime": 1700000000, "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
    "logIndex": 42, "verification": {"signedEntryTimestamp": "TUVVQ0lR", "inclusionProof": {
        "logIndex": 7, "treeSize": 8, "rootHash": "aa" * 32, "hashes": ["bb" * 32], "checkpoint": "note\n"}}}}


def test_rekor_bundle_annotation_and_tlog_entry() -> None:
    value = oci.rekor_bundle_annotation(REKOR)
    assert value is not None and value.startswith('{"SignedEntryTimestamp":"TUVVQ0lR","Payload":{"body":')
    assert json.loads(value)["Payload"]["logIndex"] == 42
    _blob, _mt, annotations = oci.layer_for(_signed(b"{}", b"\x30\x01", tlog=REKOR))
    assert list(annotations) == sorted(annotations) and oci.ANN_REKOR_BUNDLE in annotations
    entry = oci.tlog_entry(REKOR)
    assert entry is not None
    assert entry["logIndex"] == "42" and entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.1"}
    assert base64.b64decode(entry["logId"]["keyId"]).hex() == REKOR["24296fb24b8ad77a"]["logID"]
    assert entry["inclusionProof"]["treeSize"] == "8"
    assert oci.tlog_entry(None) is None and oci.rekor_bundle_annotation({}) is None


def test_sigstore_bundle_key_based(run_fx: Path) -> None:
    envelope = (run_fx / "att-layer0.json").read_bytes()
    statement = base64.b64decode(json.loads(envelope)["payload"])
    bundle = json.loads(oci.sigstore_bundle(_signed(statement, envelope, wrap=True, subjects=(IMAGE,))))
    assert bundle["mediaType"] == oci.BUNDLE_TYPE
    der = base64.b64decode("".join(PUB.strip().splitlines()[1:-1]))
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}, "tlogEntries": []}
    env = json.loads(envelope)
    assert bundle["dsseEnvelope"]["payload"] == env["payload"]
    assert bundle["dsseEnvelope"]["signatures"][0]["sig"] == env["signatures"][0]["sig"]
    assert oci.bundle_predicate_type(_signed(statement, envelope, wrap=True)) == "https://slsa.dev/provenance/v0.2"
    body = (run_fx / "sig-layer0.json").read_bytes()
    assert oci.bundle_predicate_type(_signed(body, b"\x30")) == oci.SIGN_PREDICATE


def test_sigstore_bundle_needs_an_envelope(run_fx: Path) -> None:
    body = (run_fx / "sig-layer0.json").read_bytes()
    with pytest.raises(StorageError) as info:
        oci.sigstore_bundle(_signed(body, b"\x30\x45\x02"))
    assert "DSSE" in str(info.value) and info.value.hint


def test_signature_tag() -> None:
    digest = IMAGE.split("@")[1]
    assert oci.signature_tag(digest, "sig") == "sha256-" + digest[7:] + ".sig"
    assert oci.signature_tag(digest, "") == "sha256-" + digest[7:]


def test_secret_docker_configs() -> None:
    cfg = json.dumps({"auths": {"reg.example": {"auth": "YTpi"}}}).encode()
    assert oci.secret_docker_configs({".dockerconfigjson": cfg}) == [json.loads(cfg)]
    obj = {"kind": "Secret", "type": "kubernetes.io/dockercfg",
           "data": {".dockercfg": base64.b64encode(b'{"reg.example":{"auth":"YTpi"}}').decode()}}
    assert oci.secret_docker_configs(obj) == [{"reg.example": {"auth": "YTpi"}}]
    assert oci.secret_docker_configs({"token": b"abc"}) == []
    assert oci.secret_docker_configs({".dockerconfigjson": b"not json"}) == []


def test_service_account_of() -> None:
    assert oci.service_account_of({"spec": {"serviceAccountName": "builder"}}) == "builder"
    assert oci.service_account_of({"spec": {"taskRunTemplate": {"serviceAccountName": "pr-sa"}}}) == "pr-sa"
    assert oci.service_account_of({}) == "default"


def test_go_descriptor_order() -> None:
    desc = {"annotations": {"b": "1", "a": "2"}, "digest": "sha256:x", "extra": 1, "size": 3, "mediaType": "m"}
    out = oci.go_descriptor(desc)
    assert list(out) == ["mediaType", "size", "digest", "annotations", "extra"]
    assert list(out["annotations"]) == ["a", "b"]
    assert sha256_digest(b"{}") == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
