"""The oci backend against a real registry: Chains' layout, appends, de-duplication, races, bundles."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import RegistryAuthError, StorageError
from chainmail.models import (
    INTOTO_PAYLOAD_TYPE,
    SIMPLESIGNING_PAYLOAD_TYPE,
    Artifact,
    Payload,
    RunSnapshot,
    SignedPayload,
)
from chainmail.storage import StoreSession
from chainmail.storage import oci as oci_mod
from chainmail.storage.oci import OciBackend
from doubles.registry import RegistryServer, push_chains_fixture, push_test_image

pytestmark = pytest.mark.registry

KEY_DIR_NAME = "ecdsa-p256-password"


@pytest.fixture(scope="module")
def fx(shared: Path) -> Path:
    return shared / "fixtures"


@pytest.fixture(scope="module")
def key_dir(fx: Path) -> Path:
    return fx / "cosign-keys" / KEY_DIR_NAME


@pytest.fixture(scope="module")
def run_snapshot(fx: Path) -> RunSnapshot:
    return RunSnapshot(json.loads((fx / "chains-run" / "taskrun-after-chains.json").read_text()))


def context(key_dir: Path, **config: str) -> Context:
    return Context(config=Config.from_mapping(config), key=str(key_dir))


_SIGNING: dict[str, Context] = {}


def sign(payloads: list[Payload], ctx: Context) -> list[SignedPayload]:
    """Sign with ``ctx.key`` through chainmail.signing (one decrypted key per directory for the module)."""
    from chainmail.signing import sign_payloads

    signing = _SIGNING.setdefault(str(ctx.key), Context(key=ctx.key))
    return sign_payloads(payloads, signing)


def sign_wrapped_simplesigning(payload: Payload, ctx: Context) -> SignedPayload:
    """What the sign step must produce for simple-signing payloads in sigstore-bundle mode: a DSSE envelope."""
    from chainmail.signing import dsse, load_signer

    signer = load_signer(str(ctx.key), _SIGNING.setdefault(str(ctx.key), Context(key=ctx.key)))
    envelope = dsse.envelope(SIMPLESIGNING_PAYLOAD_TYPE, payload.body, signer)
    return SignedPayload(payload, envelope, signer.key_id, signer.public_key_pem, signer.uri)


def store(signed: list[SignedPayload], ctx: Context, snapshot: RunSnapshot):
    return OciBackend(StoreSession(ctx, snapshot)).store(signed)


def image_payload(ref: str, snapshot: RunSnapshot, docker_reference: str | None = None) -> Payload:
    from chainmail.formats.simplesigning import simple_signing_body

    repo, digest = ref.split("@")
    body = simple_signing_body(docker_reference or repo, digest)
    return Payload(Artifact("oci", ref, digest[7:19], ref, snapshot.ref), "simplesigning",
                   SIMPLESIGNING_PAYLOAD_TYPE, body, False)


def statement_payload(subjects: list[str], snapshot: RunSnapshot, marker: str = "") -> Payload:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": s.split("@")[0], "digest": {"sha256": s.split("@")[1][7:]}} for s in subjects],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://tekton.dev/chains/v2/slsa",
                                          "externalParameters": {"marker": marker}},
                      "runDetails": {"builder": {"id": "https://tekton.dev/chains/v2"}}},
    }
    body = json.dumps(statement, separators=(",", ":")).encode()
    art = Artifact("taskrun", f"tekton.dev-v1-TaskRun-{snapshot.ref.uid}", f"taskrun-{snapshot.ref.uid}",
                   f"{snapshot.ref.namespace}/{snapshot.ref.name}", snapshot.ref)
    return Payload(art, "slsa/v2alpha4", INTOTO_PAYLOAD_TYPE, body, True, tuple(subjects))


def manifest(server: RegistryServer, repo: str, tag: str) -> dict:
    raw = server.get_manifest(repo, tag)
    assert raw is not None, f"{repo}:{tag} missing"
    return json.loads(raw)


def sig_tag(ref: str, suffix: str) -> str:
    return ref.split("@")[1].replace(":", "-") + (f".{suffix}" if suffix else "")


# -- Chains' layout ----------------------------------------------------------------------------------

def test_own_sig_is_byte_identical_to_chains(registry: RegistryServer, fx: Path, key_dir: Path,
                                             run_snapshot: RunSnapshot) -> None:
    """chainmail's formatter + signer + store give Chains' payload layer and config bytes for the fixture image."""
    from chainmail.formats import create_payloads

    ref = registry.push_image_from_fixture(fx / "chains-run", "own/app")
    ctx = context(key_dir, **{"artifacts.taskrun.format": "slsa/v1", "artifacts.taskrun.storage": "oci"})
    payloads = create_payloads(run_snapshot, ctx.config)
    # the run names 127.0.0.1:5000 (where Chains ran); store into the test registry under the same digest
    moved = [dataclasses.replace(p, artifact=dataclasses.replace(p.artifact, ref=ref) if p.artifact.kind == "oci"
                                 else p.artifact, subjects=tuple(ref for _ in p.subjects)) for p in payloads]
    refs = store(sign(moved, ctx), ctx, run_snapshot)
    assert {r.location.split(":")[-2].split(".")[-1][:3] for r in refs} == {"sig", "att"}

    chains_sig = json.loads((fx / "chains-run" / "sig-manifest.json").read_text())
    ours = manifest(registry, "own/app", sig_tag(ref, "sig"))
    assert ours["layers"][0]["digest"] == chains_sig["layers"][0]["digest"]
    assert ours["config"] == chains_sig["config"]
    assert registry.get_blob("own/app", ours["config"]["digest"]) == (fx / "chains-run" / "sig-config.json").read_bytes()
    assert {k: v for k, v in ours["layers"][0].items() if k != "annotations"} == \
        {k: v for k, v in chains_sig["layers"][0].items() if k != "annotations"}
    assert set(ours["layers"][0]["annotations"]) == set(chains_sig["layers"][0]["annotations"])

    chains_att = json.loads((fx / "chains-run" / "att-manifest.json").read_text())
    att = manifest(registry, "own/app", sig_tag(ref, "att"))
    assert att["mediaType"] == chains_att["mediaType"] and att["config"]["mediaType"] == chains_att["config"]["mediaType"]
    assert [layer["mediaType"] for layer in att["layers"]] == [layer["mediaType"] for layer in chains_att["layers"]]
    assert att["layers"][0]["annotations"] == chains_att["layers"][0]["annotations"]
    config = json.loads(registry.get_blob("own/app", att["config"]["digest"]))
    chains_config = json.loads((fx / "chains-run" / "att-config.json").read_text())
    assert list(config) == list(chains_config)
    assert config["rootfs"]["diff_ids"] == [att["layers"][0]["digest"]]
    envelope = json.loads(registry.get_blob("own/app", att["layers"][0]["digest"]))
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["signatures"][0]["keyid"] == "SHA256:yHmPkfSLBAYYd1fCfqLVYNH+Bo0NtuhBak9kXqPO7Po"


def test_append_dedupe_and_existing_chains_tag(registry: RegistryServer, fx: Path, key_dir: Path,
                                               run_snapshot: RunSnapshot) -> None:
    ref = push_chains_fixture(registry, fx / "chains-run", "append/app")
    chains_raw = registry.get_manifest("append/app", sig_tag(ref, "sig"))
    ctx = context(key_dir)
    payload = image_payload(ref, run_snapshot, "127.0.0.1:5000/demo/app")
    first = sign([payload], ctx)
    [stored] = store(first, ctx, run_snapshot)
    assert not stored.existing
    doc = manifest(registry, "append/app", sig_tag(ref, "sig"))
    assert len(doc["layers"]) == 2
    assert doc["layers"][0] == json.loads(chains_raw)["layers"][0]  # Chains' layer untouched
    assert registry.get_blob("append/app", doc["config"]["digest"]) == oci_mod.ggcr_config(
        [layer["digest"] for layer in doc["layers"]])
    assert stored.location.endswith("@" + registry_digest(registry, "append/app", sig_tag(ref, "sig")))

    # storing the very same signature again adds nothing
    [again] = store(first, ctx, run_snapshot)
    assert again.existing and again.location == stored.location
    assert len(manifest(registry, "append/app", sig_tag(ref, "sig"))["layers"]) == 2

    # signing is deterministic (RFC 6979): re-signing is a no-op too
    assert store(sign([payload], ctx), ctx, run_snapshot)[0].existing
    # a signature by another key is a new layer
    other = context(key_dir.parent / "ecdsa-p256-empty-password")
    [third] = store(sign([payload], other), other, run_snapshot)
    assert not third.existing
    assert len(manifest(registry, "append/app", sig_tag(ref, "sig"))["layers"]) == 3


def registry_digest(server: RegistryServer, repo: str, tag: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(server.get_manifest(repo, tag)).hexdigest()


def test_attestation_per_subject_and_repository_override(registry: RegistryServer, key_dir: Path,
                                                         run_snapshot: RunSnapshot) -> None:
    a = push_test_image(registry, "multi/a", "a")
    b = push_test_image(registry, "multi/b", "b")
    ctx = context(key_dir)
    refs = store(sign([statement_payload([a, b], run_snapshot)], ctx), ctx, run_snapshot)
    assert len(refs) == 2
    assert len(manifest(registry, "multi/a", sig_tag(a, "att"))["layers"]) == 1
    assert len(manifest(registry, "multi/b", sig_tag(b, "att"))["layers"]) == 1

    # no subjects: nothing is attached (as Chains)
    assert store(sign([statement_payload([], run_snapshot)], ctx), ctx, run_snapshot) == []

    # storage.oci.repository moves both tags
    moved = context(key_dir, **{"storage.oci.repository": f"{registry.host}/signatures/store"})
    refs = store(sign([image_payload(a, run_snapshot), statement_payload([a], run_snapshot)], moved), moved,
                 run_snapshot)
    assert all(r.location.startswith(f"{registry.host}/signatures/store:") for r in refs)
    assert manifest(registry, "signatures/store", sig_tag(a, "sig"))["layers"]
    assert manifest(registry, "signatures/store", sig_tag(a, "att"))["layers"]
    assert registry.get_manifest("multi/a", sig_tag(a, "sig")) is None


# -- concurrent writers ------------------------------------------------------------------------------

def _distinct_signatures(ref: str, n: int, ctx: Context, snapshot: RunSnapshot) -> list[SignedPayload]:
    return [sign([statement_payload([ref], snapshot, marker=str(i))], ctx)[0] for i in range(n)]


def _check_all_present(server: RegistryServer, repo: str, tag: str, signed: list[SignedPayload]) -> None:
    from chainmail._internal.encoding import sha256_digest

    doc = manifest(server, repo, tag)
    digests = [layer["digest"] for layer in doc["layers"]]
    assert len(digests) == len(set(digests)), "duplicate layers"
    assert sorted(digests) == sorted(sha256_digest(s.signature) for s in signed)
    config = json.loads(server.get_blob(repo, doc["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == digests and len(config["history"]) == len(digests)


def test_concurrent_threads(registry: RegistryServer, key_dir: Path, run_snapshot: RunSnapshot) -> None:
    ref = push_test_image(registry, "race/threads", "threads")
    ctx = context(key_dir)
    signed = _distinct_signatures(ref, 6, ctx, run_snapshot)
    threads = [threading.Thread(target=store, args=([s], ctx, run_snapshot)) for s in signed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_all_present(registry, "race/threads", sig_tag(ref, "att"), signed)


@contextmanager
def _no_process_lock():
    """Drop the in-process tag lock so threads race like separate processes do."""
    original = oci_mod._tag_lock

    @contextmanager
    def unlocked(ref, tag):
        yield

    oci_mod._tag_lock = unlocked
    try:
        yield
    finally:
        oci_mod._tag_lock = original


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_writers_without_shared_lock(registry: RegistryServer, key_dir: Path,
                                                run_snapshot: RunSnapshot, round_: int) -> None:
    """The cross-process protocol alone (re-check before PUT, read back after) keeps every layer."""
    ref = push_test_image(registry, "race/nolock", f"round-{round_}")
    ctx = context(key_dir)
    signed = _distinct_signatures(ref, 4, ctx, run_snapshot)
    barrier = threading.Barrier(len(signed))
    errors: list[BaseException] = []

    def writer(item: SignedPayload) -> None:
        own = Context(config=ctx.config, key=ctx.key)  # separate clients, like separate processes
        barrier.wait()
        try:
            store([item], own, run_snapshot)
        except BaseException as exc:
            errors.append(exc)

    with _no_process_lock():
        threads = [threading.Thread(target=writer, args=(s,)) for s in signed]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    _check_all_present(registry, "race/nolock", sig_tag(ref, "att"), signed)


_WRITER = textwrap.dedent("""
    import json, sys, time
    from chainmail.context import Context
    from chainmail.models import RunSnapshot, SignedPayload
    from chainmail.storage import StoreSession
    from chainmail.storage.oci import OciBackend
    doc = json.load(open(sys.argv[1]))
    snapshot = RunSnapshot(doc["run"])
    items = [SignedPayload.from_json(s) for s in doc["signed"]]
    ctx = Context()
    ctx.registry.head_manifest(items[0].payload.subjects[0])  # warm up before the start line
    while time.time() < doc["start"]:
        time.sleep(0.001)
    for item in items:
        OciBackend(StoreSession(ctx, snapshot)).store([item])
""")


def test_concurrent_processes(registry: RegistryServer, key_dir: Path, run_snapshot: RunSnapshot,
                              tmp_path: Path) -> None:
    """Two chainmail processes appending to the same tags at the same moment lose nothing."""
    refs = [push_test_image(registry, "race/procs", f"proc-{i}") for i in range(3)]
    ctx = context(key_dir)
    per_writer = [[sign([statement_payload([r], run_snapshot, marker=f"w{w}")], ctx)[0] for r in refs]
                  for w in range(2)]
    start = time.time() + 2.0
    procs = []
    for w, items in enumerate(per_writer):
        path = tmp_path / f"writer-{w}.json"
        path.write_text(json.dumps({"run": run_snapshot.run, "start": start,
                                    "signed": [s.to_json() for s in items]}))
        procs.append(subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
    for i, r in enumerate(refs):
        _check_all_present(registry, "race/procs", sig_tag(r, "att"), [per_writer[0][i], per_writer[1][i]])


# -- sigstore-bundle encoding ------------------------------------------------------------------------

def test_bundle_mode_writes_referrer_and_fallback_index(registry: RegistryServer, key_dir: Path,
                                                        run_snapshot: RunSnapshot) -> None:
    ref = push_test_image(registry, "bundle/app", "bundle")
    ctx = context(key_dir, **{"storage.oci.encoding-format": "sigstore-bundle"})
    att = sign([statement_payload([ref], run_snapshot)], ctx)
    img = sign_wrapped_simplesigning(image_payload(ref, run_snapshot), ctx)
    refs = store([*att, img], ctx, run_snapshot)
    assert len(refs) == 2 and not any(r.existing for r in refs)

    index = manifest(registry, "bundle/app", sig_tag(ref, ""))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    entries = index["manifests"]
    assert [e["digest"] for e in entries] == sorted(e["digest"] for e in entries)
    assert {e["artifactType"] for e in entries} == {oci_mod.BUNDLE_TYPE}
    predicates = {e["annotations"]["dev.sigstore.bundle.predicateType"] for e in entries}
    assert predicates == {"https://slsa.dev/provenance/v1", oci_mod.SIGN_PREDICATE}
    for entry in entries:
        referrer = manifest(registry, "bundle/app", entry["digest"])
        assert referrer["artifactType"] == oci_mod.BUNDLE_TYPE
        assert referrer["config"]["mediaType"] == oci_mod.EMPTY_CONFIG and referrer["config"]["size"] == 2
        assert referrer["subject"]["digest"] == ref.split("@")[1]
        assert referrer["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
        bundle = json.loads(registry.get_blob("bundle/app", referrer["layers"][0]["digest"]))
        assert bundle["mediaType"] == oci_mod.BUNDLE_TYPE and "publicKey" in bundle["verificationMaterial"]
    # no legacy tags in bundle mode
    assert registry.get_manifest("bundle/app", sig_tag(ref, "sig")) is None
    # storing again: nothing new
    again = store([*att, img], ctx, run_snapshot)
    assert all(r.existing for r in again)
    assert len(manifest(registry, "bundle/app", sig_tag(ref, ""))["manifests"]) == 2


def test_bundle_mode_rejects_raw_simplesigning(registry: RegistryServer, key_dir: Path,
                                               run_snapshot: RunSnapshot) -> None:
    ref = push_test_image(registry, "bundle/raw", "raw")
    ctx = context(key_dir, **{"storage.oci.encoding-format": "sigstore-bundle"})
    with pytest.raises(StorageError, match="DSSE"):
        store(sign([image_payload(ref, run_snapshot)], ctx), ctx, run_snapshot)


# -- independent reader ------------------------------------------------------------------------------

def test_oras_reads_back_our_manifests(registry: RegistryServer, key_dir: Path, run_snapshot: RunSnapshot) -> None:
    oras_provider = pytest.importorskip("oras.provider")
    ref = push_test_image(registry, "oras/app", "oras")
    ctx = context(key_dir)
    signed = sign([image_payload(ref, run_snapshot), statement_payload([ref], run_snapshot)], ctx)
    store(signed, ctx, run_snapshot)
    bundle_ctx = context(key_dir, **{"storage.oci.encoding-format": "sigstore-bundle"})
    store(sign([statement_payload([ref], run_snapshot, marker="b")], bundle_ctx), bundle_ctx, run_snapshot)

    reader = oras_provider.Registry(hostname=registry.host, insecure=True)
    container = reader.get_container(f"{registry.host}/oras/app:{sig_tag(ref, 'sig')}")
    sig = reader.get_manifest(container)
    layer = sig["layers"][0]
    assert layer["mediaType"] == oci_mod.SIMPLESIGNING_LAYER
    assert reader.get_blob(container, layer["digest"]).content == signed[0].payload.body
    assert base64.b64decode(layer["annotations"][oci_mod.ANN_SIGNATURE]) == signed[0].signature
    att = reader.get_manifest(reader.get_container(f"{registry.host}/oras/app:{sig_tag(ref, 'att')}"))
    assert reader.get_blob(container, att["layers"][0]["digest"]).content == signed[1].signature
    index = reader.get_manifest(reader.get_container(f"{registry.host}/oras/app:{sig_tag(ref, '')}"),
                                allowed_media_type=["application/vnd.oci.image.index.v1+json"])
    referrer = reader.get_manifest(reader.get_container(f"{registry.host}/oras/app@{index['manifests'][0]['digest']}"))
    assert referrer["subject"]["digest"] == ref.split("@")[1]


# -- credentials -------------------------------------------------------------------------------------

class _FakeKube:
    """Just what the oci backend asks: the run's service account and its secrets (decoded data)."""

    def __init__(self, server: RegistryServer) -> None:
        user, password = server.auth or ("", "")
        self.config = json.dumps({"auths": {server.host: {"username": user, "password": password}}}).encode()
        self.calls: list[tuple[str, str, str]] = []

    def get_service_account(self, namespace: str, name: str) -> dict:
        self.calls.append(("sa", namespace, name))
        return {"metadata": {"name": name}, "imagePullSecrets": [{"name": "regcred"}],
                "secrets": [{"name": "default-token"}]}

    def get_secret_object(self, namespace: str, name: str) -> dict:
        self.calls.append(("secret", namespace, name))
        if name == "regcred":
            return {"type": "kubernetes.io/dockerconfigjson",
                    "data": {".dockerconfigjson": base64.b64encode(self.config).decode()}}
        return {"type": "kubernetes.io/service-account-token", "data": {"token": "dA=="}}


def test_auth_registry_needs_credentials(auth_registry: RegistryServer, key_dir: Path, run_snapshot: RunSnapshot,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    ref = push_test_image(auth_registry, "auth/app", "auth")
    signed = sign([image_payload(ref, run_snapshot)], context(key_dir))
    with pytest.raises(RegistryAuthError) as info:
        store(signed, context(key_dir), run_snapshot)
    assert auth_registry.host in str(info.value) and auth_registry.auth[1] not in info.value.diagnostics()

    # the run's service account pull secret (Chains' k8schain)
    ctx = context(key_dir)
    kube = _FakeKube(auth_registry)
    ctx.kube = kube
    [stored] = store(signed, ctx, run_snapshot)
    assert ("sa", "demo", "default") in kube.calls and ("secret", "demo", "regcred") in kube.calls
    assert not stored.existing

    # a docker config file
    cfg = auth_registry.docker_config(tmp_path / "docker")
    with_config = Context(config=Config(), key=str(key_dir), docker_config=cfg.parent)
    [again] = store(signed, with_config, run_snapshot)
    assert again.existing


def test_settle_re_adds_a_dropped_layer(registry: RegistryServer, key_dir: Path, run_snapshot: RunSnapshot) -> None:
    """A writer that read the tag before our PUT overwrites it after: the read-back puts our layer back."""
    from chainmail._internal.registry import Reference, RegistryClient

    ref = push_test_image(registry, "race/settle", "settle")
    ctx = context(key_dir)
    ours, theirs = _distinct_signatures(ref, 2, ctx, run_snapshot)
    client = RegistryClient()
    repo = Reference.parse(ref).with_tag("")
    tag = sig_tag(ref, "att")
    blob, media_type, annotations = oci_mod.layer_for(ours)
    written = oci_mod.append_layer(client, repo, tag, blob, media_type, annotations)
    assert not written.existed
    # the other writer's manifest, built from the empty tag it had read, lands after ours
    other_blob, _, other_annotations = oci_mod.layer_for(theirs)
    layer = {**client.push_blob(repo, other_blob, media_type), "annotations": other_annotations}
    config = client.push_blob(repo, oci_mod.ggcr_config([layer["digest"]]), oci_mod.OCI_CONFIG)
    client.put_manifest(repo, tag, oci_mod.image_manifest(config, [layer]), oci_mod.OCI_MANIFEST)
    [final] = oci_mod.settle(client, [written])
    assert final.digest != written.digest
    _check_all_present(registry, "race/settle", tag, [theirs, ours])
    # nothing to do when the tag still holds our write
    assert oci_mod.settle(client, [final]) == [final]
