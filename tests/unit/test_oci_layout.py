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
from chainmail.storage.run_credentials import secret_docker_configs

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
    assert secret_docker_configs({".dockerconfigjson": cfg}) == [json.loads(cfg)]
    obj = {"kind": "Secret", "type": "kubernetes.io/dockercfg",
           "data": {".dockercfg": base64.b64encode(b'{"reg.example":{"auth":"YTpi"}}').decode()}}
    assert secret_docker_configs(obj) == [{"reg.example": {"auth": "YTpi"}}]
    assert secret_docker_configs({"token": b"abc"}) == []
    assert secret_docker_configs({".dockerconfigjson": b"not json"}) == []


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


# -- round trips: what the hot path sends (counted, never timed) -------------------------------------

class _CountingClient:
    """Wraps a ``RegistryClient``; records ``(method, kind)`` of every API call (kind: tag, blob, upload …)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        original = inner.call  # type: ignore[attr-defined]

        def call(method: str, ref: object, path: str, **kwargs: object) -> object:
            url = str(kwargs.get("url") or path)
            params = kwargs.get("params") or {}
            if "uploads" in url:
                kind = "upload+mount" if "mount" in params else "upload"  # type: ignore[operator]
            elif "blobs/" in url:
                kind = "blob"
            elif "manifests/sha256:" in url:
                kind = "manifest"
            elif "manifests/" in url:
                kind = "tag"
            else:
                kind = url
            self.calls.append((method, kind))
            return original(method, ref, path, **kwargs)

        inner.call = call  # type: ignore[attr-defined]

    def take(self) -> list[tuple[str, str]]:
        out, self.calls = self.calls, []
        return out


def _layer(n: int) -> tuple[bytes, str, dict[str, str]]:
    return f'{{"n":{n}}}'.encode(), oci.DSSE_LAYER, {oci.ANN_SIGNATURE: "", oci.ANN_CERT: "", oci.ANN_CHAIN: ""}


def test_a_fresh_tag_costs_two_requests_per_blob_one_read_and_one_put(registry) -> None:
    from chainmail._internal.registry import Reference, RegistryClient

    counted = _CountingClient(RegistryClient())
    client = counted.inner
    repo = Reference.parse(f"{registry.host}/trips/fresh")
    blob, media, annotations = _layer(1)
    written = oci.append_layer(client, repo, "sha256-" + "1" * 64 + ".att", blob, media, annotations)  # type: ignore[arg-type]
    assert not written.existed
    # layer and one-layer config: a mount-or-start POST and a PUT each; then GET (404) and PUT, no re-check
    assert counted.take() == [("POST", "upload+mount"), ("PUT", "upload"), ("POST", "upload+mount"),
                              ("PUT", "upload"), ("GET", "tag"), ("PUT", "tag")]
    # the same write again: the client knows both blobs, the read finds our layer
    again = oci.append_layer(client, repo, written.tag, blob, media, annotations)  # type: ignore[arg-type]
    assert again.existed and counted.take() == [("GET", "tag")]
    # a fresh client: the registry answers the mounts with 201 (stored), one request each
    counted2 = _CountingClient(RegistryClient())
    oci.append_layer(counted2.inner, repo, written.tag, blob, media, annotations)  # type: ignore[arg-type]
    assert counted2.take() == [("POST", "upload+mount"), ("POST", "upload+mount"), ("GET", "tag")]


def test_appending_to_an_existing_tag_re_checks_it_before_the_put(registry) -> None:
    from chainmail._internal.registry import Reference, RegistryClient

    counted = _CountingClient(RegistryClient())
    client = counted.inner
    repo = Reference.parse(f"{registry.host}/trips/append")
    tag = "sha256-" + "2" * 64 + ".att"
    first = oci.append_layer(client, repo, tag, *_layer(1))  # type: ignore[arg-type]
    counted.take()
    second = oci.append_layer(client, repo, tag, *_layer(2))  # type: ignore[arg-type]
    calls = counted.take()
    # uploads, then the read, the merged config's upload, the HEAD re-check, the PUT
    assert calls[-5:] == [("GET", "tag"), ("POST", "upload+mount"), ("PUT", "upload"), ("HEAD", "tag"),
                          ("PUT", "tag")]
    doc = json.loads(registry.get_manifest("trips/append", tag))
    assert [x["digest"] for x in doc["layers"]] == [sha256_digest(_layer(1)[0]), sha256_digest(_layer(2)[0])]
    assert second.digest != first.digest
    # settle reads each write back once
    oci.settle(client, [second])  # type: ignore[arg-type]
    assert counted.take() == [("HEAD", "tag")]


def test_push_blob_falls_back_to_a_plain_upload_when_the_mount_is_refused(tmp_path: Path) -> None:
    from chainmail._internal.http import RetryPolicy
    from chainmail._internal.registry import RegistryClient
    from doubles.hostile import HostileServer, reply

    server = HostileServer(max_lifetime=60)
    try:
        server.on("/v2/demo/blobs/uploads/", reply(202, b"", {"Location": "/v2/demo/blobs/uploads/u1"}),
                  method="POST")
        digest = sha256_digest(b"layer")
        server.on(f"/v2/demo/blobs/uploads/?mount={digest.replace(':', '%3A')}&from=demo", reply(400),
                  method="POST")
        server.on("/v2/demo/blobs/uploads/u1", reply(201), method="PUT", prefix=True)
        client = RegistryClient(retry=RetryPolicy(deadline=2.0, attempt_limit=2.0))
        assert client.push_blob(f"{server.host}/demo", b"layer")["digest"] == digest
        assert [(s.method, s.path.split("?")[0]) for s in server.seen] == [
            ("POST", "/v2/demo/blobs/uploads/"), ("POST", "/v2/demo/blobs/uploads/"),
            ("PUT", "/v2/demo/blobs/uploads/u1")]
        assert "mount=" in server.seen[0].path and "mount=" not in server.seen[1].path
    finally:
        server.close()


def test_request_counts_by_host_and_method(registry) -> None:
    from chainmail._internal import http
    from chainmail._internal.registry import RegistryClient

    http.reset_request_counts()
    image = f"{registry.host}/trips/count@" + registry_image_digest(registry)
    client = RegistryClient()
    assert client.head_manifest(image) is not None
    # a digest's answer is kept for the process: another client asks nothing
    assert RegistryClient().head_manifest(image) is not None
    assert http.request_counts() == {registry.host.lower(): {"HEAD": 1}}


def registry_image_digest(registry) -> str:
    from doubles.registry import push_test_image

    return push_test_image(registry, "trips/count", "count").split("@", 1)[1]
