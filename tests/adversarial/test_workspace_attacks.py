"""Attacks on the workspace between the steps, and on what ``sign`` is willing to sign.

The attacker can write the shared workspace (another step in the same pod) but not the
Kubernetes API nor the signing key. Whatever they edit, and however carefully they recompute
the digests that chain the files together, ``sign`` must not sign a subject or source the run
did not produce, and ``store`` must not write a signature the operator's key did not make.
Each case runs the real CLI against the Kubernetes API double and the real registry, and checks
the exit code, the one-line error, the time bound, and that nothing was written: no
``signed.json``/``stored.json`` beyond what the case allows, no file in the store directory, no
``.sig``/``.att`` tag in the registry and no ``chains.tekton.dev/signed`` on the run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chainmail.errors import ImageNotFoundError, KeyMaterialError, RegistryUnreachableError, WorkspaceError
from conftest import assert_rejected, chainmail, files_under
from doubles.kube import KubeApiDouble, completed_taskrun
from doubles.registry import RegistryServer, push_test_image

pytestmark = pytest.mark.registry

NS = "team"
BOUND = 30.0
CONFIG = {
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "oci,file",
    "artifacts.oci.storage": "oci,file",
}


@dataclass
class World:
    api: KubeApiDouble
    registry: RegistryServer
    tmp: Path
    key: str
    kubeconfig: Path
    config: Path
    image: str
    evil_image: str
    name: str = "build"

    @property
    def ws(self) -> Path:
        return self.tmp / "ws"

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    def common(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig), "--config", str(self.config)]

    def step(self, name: str, *extra: str):
        args = {
            "snapshot": ["snapshot", "--taskrun", self.name, "-n", NS, "-w", str(self.ws),
                         "--kubeconfig", str(self.kubeconfig)],
            "format": ["format", "-w", str(self.ws), "--config", str(self.config)],
            "sign": ["sign", "-w", str(self.ws), "--key", self.key, *self.common()],
            "store": ["store", "-w", str(self.ws), "--key", self.key, "--file-store", str(self.store),
                      *self.common()],
        }[name]
        return chainmail([*args, *extra], timeout=60)

    def steps(self, *names: str) -> None:
        for name in names:
            out = self.step(name)
            assert out.code == 0, (name, out.stderr)

    def doc(self, name: str) -> dict[str, Any]:
        return json.loads((self.ws / name).read_text())

    def put(self, name: str, doc: dict[str, Any]) -> None:
        (self.ws / name).write_text(json.dumps(doc, indent=2))

    def digest(self, name: str) -> str:
        return "sha256:" + hashlib.sha256((self.ws / name).read_bytes()).hexdigest()

    def run_annotations(self) -> dict[str, str]:
        return self.api.annotations("taskruns", NS, self.name)

    def signature_tags(self) -> list[str]:
        """``.sig``/``.att`` tags of this world's image and the attacker's (the repos are shared)."""
        tags: list[str] = []
        for image in (self.image, self.evil_image):
            repo = image.split("/", 1)[1].split("@")[0]
            resp = self.registry.http.get(f"{self.registry.url}/v2/{repo}/tags/list")
            prefix = image.split("@")[1].replace(":", "-")
            tags += [t for t in (resp.json().get("tags") or []) if t.startswith(prefix)]
        return tags

    def assert_nothing_stored(self, *, marked_failed: bool = False) -> None:
        """No file in the store, no signature tag in the registry, no signature on the run."""
        assert not self.store.exists() or files_under(self.store) == set()
        assert self.signature_tags() == []
        notes = self.run_annotations()
        assert notes.get("chains.tekton.dev/signed") == ("failed" if marked_failed else None)
        assert not any(k.startswith("chains.tekton.dev/signature-") for k in notes)


@pytest.fixture
def world(kube_api: KubeApiDouble, registry: RegistryServer, tmp_path: Path, key: str) -> World:
    image = push_test_image(registry, "team/app", f"h3-{tmp_path.name}")
    evil = push_test_image(registry, "evil/app", f"h3-evil-{tmp_path.name}")
    url, digest = image.split("@")
    kube_api.add(completed_taskrun("build", NS, image=url, digest=digest))
    config = tmp_path / "chains-config.json"
    config.write_text(json.dumps(CONFIG))
    return World(kube_api, registry, tmp_path, key, kube_api.kubeconfig(tmp_path, namespace=NS), config,
                 image, evil)


def _payload(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in doc["payloads"] if p["artifact"]["kind"] == kind)


def _set_body(payload: dict[str, Any], body: bytes) -> None:
    payload["body"] = base64.b64encode(body).decode()
    payload["digest"] = "sha256:" + hashlib.sha256(body).hexdigest()


def _swap_image(run: dict[str, Any], image: str) -> None:
    url, digest = image.split("@")
    for result in run["status"]["results"]:
        if result["name"] == "IMAGE_URL":
            result["value"] = url
        if result["name"] == "IMAGE_DIGEST":
            result["value"] = digest


# -- snapshot.json edited after the snapshot step -----------------------------------------------------


def test_snapshot_edited_after_snapshot_step_is_not_signed(world: World) -> None:
    world.steps("snapshot")
    doc = world.doc("snapshot.json")
    _swap_image(doc["run"], world.evil_image)  # the attacker's image as the run's output
    world.put("snapshot.json", doc)
    world.steps("format")  # format believes the file: the payloads now name the attacker's image
    out = world.step("sign")
    assert_rejected(out, WorkspaceError.exit_code, mentions="payloads.json", within=BOUND)
    assert "the run in the cluster" in out.stderr
    assert not (world.ws / "signed.json").exists()
    world.assert_nothing_stored()


def test_snapshot_relabelled_as_a_file_is_not_trusted(world: World) -> None:
    world.steps("snapshot")
    doc = world.doc("snapshot.json")
    _swap_image(doc["run"], world.evil_image)
    doc["source"] = "file:/workspace/run.json"  # pretend the operator vouched for it
    world.put("snapshot.json", doc)
    world.steps("format")
    out = world.step("sign")
    assert_rejected(out, WorkspaceError.exit_code, mentions="not read from the cluster", within=BOUND)
    assert not (world.ws / "signed.json").exists()
    world.assert_nothing_stored()


def test_run_replaced_by_another_with_the_same_name_is_refused(world: World) -> None:
    world.steps("snapshot", "format")
    run = world.api.get("taskruns", NS, "build")
    world.api.delete("taskruns", NS, "build")
    run["metadata"]["uid"] = "00000000-0000-0000-0000-00000000beef"
    world.api.add(run)
    out = world.step("sign")
    assert_rejected(out, WorkspaceError.exit_code, mentions="has uid", within=BOUND)
    assert not (world.ws / "signed.json").exists()


# -- payloads.json edited after the format step, digests recomputed ----------------------------------


def test_payloads_with_an_attacker_subject_are_not_signed(world: World) -> None:
    world.steps("snapshot", "format")
    doc = world.doc("payloads.json")
    image = _payload(doc, "oci")
    evil_repo, evil_digest = world.evil_image.split("@")
    body = json.loads(base64.b64decode(image["body"]))
    body["critical"]["identity"]["docker-reference"] = evil_repo
    body["critical"]["image"]["docker-manifest-digest"] = evil_digest
    _set_body(image, json.dumps(body).encode())
    image["artifact"].update(fullKey=world.evil_image, ref=world.evil_image, shortKey=evil_digest[7:19])
    attestation = _payload(doc, "taskrun")
    statement = json.loads(base64.b64decode(attestation["body"]))
    statement["subject"] = [{"name": evil_repo, "digest": {"sha256": evil_digest[7:]}}]
    _set_body(attestation, json.dumps(statement).encode())
    attestation["subjects"] = [world.evil_image]
    world.put("payloads.json", doc)  # its input digest (of snapshot.json) still matches
    out = world.step("sign")
    assert_rejected(out, WorkspaceError.exit_code, mentions="payloads.json", within=BOUND)
    assert "tekton.dev-v1-TaskRun-" in out.stderr  # the first differing artifact is named
    assert not (world.ws / "signed.json").exists()
    world.assert_nothing_stored()


def test_payloads_with_an_attacker_source_are_not_signed(world: World) -> None:
    world.steps("snapshot", "format")
    doc = world.doc("payloads.json")
    attestation = _payload(doc, "taskrun")
    statement = json.loads(base64.b64decode(attestation["body"]))
    statement["predicate"]["invocation"]["configSource"] = {
        "uri": "git+https://github.com/acme/app", "digest": {"sha1": "0" * 40}, "entryPoint": "main"}
    statement["predicate"]["materials"] = [{"uri": "git+https://github.com/acme/app@main",
                                            "digest": {"sha1": "0" * 40}}]
    _set_body(attestation, json.dumps(statement).encode())
    world.put("payloads.json", doc)
    out = world.step("sign")
    assert_rejected(out, WorkspaceError.exit_code, mentions=attestation["artifact"]["fullKey"], within=BOUND)
    assert "body" in out.stderr
    assert not (world.ws / "signed.json").exists()


def test_run_workspace_ignores_planted_payloads(world: World) -> None:
    """``chainmail run --workspace`` only writes the step files: a planted payloads.json is overwritten."""
    world.ws.mkdir()
    (world.ws / "payloads.json").write_text('{"apiVersion": "chainmail.dev/v1alpha1", "kind": "Payloads"}')
    out = chainmail(["run", "--taskrun", "build", "-n", NS, "--key", world.key, "-w", str(world.ws),
                     "--file-store", str(world.store), *world.common()], timeout=60)
    assert out.code == 0, out.stderr
    subjects = {s for p in world.doc("payloads.json")["payloads"] for s in p["subjects"]}
    assert subjects == {world.image}


# -- signed.json edited after the sign step -------------------------------------------------------------


def _attacker_signed(world: World, *, claim_operator_key: bool) -> None:
    """Re-sign payloads.json with a key the attacker made; optionally name the operator's key in the file."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from chainmail.models import SignedPayload
    from chainmail.signing import dsse
    from chainmail.signing._signer import KeySigner
    from chainmail.workspace import Workspace

    ws = Workspace(world.ws)
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()), "sha256", "file:///attacker/cosign.key")
    real = world.doc("signed.json")["signatures"][0]
    items = []
    for p in ws.read_payloads():
        sig = dsse.envelope(p.payload_type, p.body, signer) if p.wrap else signer.sign(p.body)
        pub = real["publicKey"] if claim_operator_key else signer.public_key_pem
        kid = real["keyId"] if claim_operator_key else signer.key_id
        items.append(SignedPayload(p, sig, kid, pub, real["signer"]))
    ws.write_signed(items)  # chained to payloads.json like the real one


@pytest.mark.parametrize("claim_operator_key", [False, True], ids=["attacker-key-named", "operator-key-named"])
def test_signed_json_resigned_with_an_attacker_key_is_not_stored(world: World, claim_operator_key: bool) -> None:
    world.steps("snapshot", "format", "sign")
    _attacker_signed(world, claim_operator_key=claim_operator_key)
    out = world.step("store")
    mention = "does not verify" if claim_operator_key else "not the configured signing key"
    assert_rejected(out, WorkspaceError.exit_code, mentions=mention, within=BOUND)
    assert not (world.ws / "stored.json").exists()
    world.assert_nothing_stored()


def test_signed_json_with_payloads_swapped_between_artifacts_is_not_stored(world: World) -> None:
    world.steps("snapshot", "format", "sign")
    doc = world.doc("signed.json")
    first, second = doc["signatures"]
    first["payload"], second["payload"] = second["payload"], first["payload"]
    world.put("signed.json", doc)
    out = world.step("store")
    assert_rejected(out, WorkspaceError.exit_code, mentions="signed.json", within=BOUND)
    world.assert_nothing_stored()


def test_payloads_and_signed_rewritten_together_are_not_stored(world: World) -> None:
    """Edit payloads.json after sign (digests recomputed), then chain a signed.json to it: store re-derives."""
    world.steps("snapshot", "format", "sign")
    doc = world.doc("payloads.json")
    image = _payload(doc, "oci")
    image["artifact"]["owner"]["name"] = "someone-elses-run"  # where the annotations would land
    world.put("payloads.json", doc)
    signed = world.doc("signed.json")
    for item in signed["signatures"]:
        if item["payload"]["artifact"]["kind"] == "oci":
            item["payload"]["artifact"]["owner"]["name"] = "someone-elses-run"
    signed["input"]["digest"] = world.digest("payloads.json")
    world.put("signed.json", signed)
    out = world.step("store")
    assert_rejected(out, WorkspaceError.exit_code, mentions="payloads.json", within=BOUND)
    assert "artifact" in out.stderr
    world.assert_nothing_stored()


def test_signed_json_edited_after_store_breaks_the_chain(world: World) -> None:
    world.steps("snapshot", "format", "sign", "store")
    stored_before = (world.ws / "stored.json").read_bytes()
    doc = world.doc("signed.json")
    doc["signatures"] = doc["signatures"][:1]
    world.put("signed.json", doc)
    from chainmail.workspace import Workspace

    with pytest.raises(WorkspaceError, match="changed after stored.json"):
        Workspace(world.ws).read_stored()
    out = world.step("store")
    assert_rejected(out, WorkspaceError.exit_code, mentions="missing", within=BOUND)
    assert (world.ws / "stored.json").read_bytes() == stored_before


# -- sign only what exists ---------------------------------------------------------------------------


def test_a_run_naming_an_image_that_does_not_exist_is_not_signed(world: World) -> None:
    url = world.image.split("@")[0]
    ghost = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    world.api.add(completed_taskrun("ghost", NS, image=url, digest=ghost))
    out = chainmail(["run", "--taskrun", "ghost", "-n", NS, "--key", world.key, "--file-store", str(world.store),
                     *world.common()], timeout=60)
    assert_rejected(out, ImageNotFoundError.exit_code, mentions="does not exist", within=BOUND)
    assert ghost in out.stderr
    notes = world.api.annotations("taskruns", NS, "ghost")
    assert notes["chains.tekton.dev/signed"] == "failed"
    assert "does not exist" in notes["chainmail.dev/failure-reason"]
    assert not any(k.startswith("chains.tekton.dev/signature-") for k in notes)
    world.assert_nothing_stored()


def test_sign_step_refuses_a_missing_image_too(world: World) -> None:
    url = world.image.split("@")[0]
    ghost = "sha256:" + hashlib.sha256(b"never pushed either").hexdigest()
    world.api.add(completed_taskrun("ghost-steps", NS, image=url, digest=ghost))
    world.name = "ghost-steps"
    world.steps("snapshot", "format")
    out = world.step("sign")
    assert_rejected(out, ImageNotFoundError.exit_code, mentions=f"{url}@{ghost}", within=BOUND)
    assert not (world.ws / "signed.json").exists()
    world.assert_nothing_stored()


def test_missing_image_check_can_be_turned_off(world: World) -> None:
    url = world.image.split("@")[0]
    ghost = "sha256:" + hashlib.sha256(b"air gapped").hexdigest()
    world.api.add(completed_taskrun("airgap", NS, image=url, digest=ghost))
    out = chainmail(["run", "--taskrun", "airgap", "-n", NS, "--key", world.key, "--file-store", str(world.store),
                     "--kubeconfig", str(world.kubeconfig), "--set", "artifacts.taskrun.storage=file",
                     "--set", "artifacts.oci.storage=file", "--set", "chainmail.sign.verify-images-exist=false"],
                    timeout=60)
    assert out.code == 0, out.stderr
    assert any(p.name.startswith(ghost[7:19]) for p in files_under(world.store))


def test_unreachable_registry_is_not_reported_as_a_missing_image(world: World, dead_registry_host: str) -> None:
    ghost = "sha256:" + hashlib.sha256(b"somewhere").hexdigest()
    world.api.add(completed_taskrun("offline", NS, image=f"{dead_registry_host}/team/app", digest=ghost))
    out = chainmail(["run", "--taskrun", "offline", "-n", NS, "--key", world.key, "--file-store", str(world.store),
                     *world.common(), "--set", "chainmail.retry.deadline-seconds=2"], timeout=60)
    assert_rejected(out, RegistryUnreachableError.exit_code, mentions="unreachable", within=BOUND)
    reason = world.api.annotations("taskruns", NS, "offline")["chainmail.dev/failure-reason"]
    assert "unreachable" in reason and "does not exist" not in reason


# -- passwords that are not text ------------------------------------------------------------------------


def _key_without_password_file(world: World) -> Path:
    keys = world.tmp / "keys"
    keys.mkdir()
    shutil.copy(Path(world.key) / "cosign.key", keys / "cosign.key")
    return keys


def test_non_utf8_cosign_password_env_is_a_key_error(world: World) -> None:
    keys = _key_without_password_file(world)
    world.steps("snapshot", "format")
    out = chainmail(["sign", "-w", str(world.ws), "--key", str(keys), *world.common()],
                    env={"COSIGN_PASSWORD": "s3cret\udcff"}, timeout=60)
    assert_rejected(out, KeyMaterialError.exit_code, mentions="COSIGN_PASSWORD is not valid UTF-8", within=BOUND)
    assert not (world.ws / "signed.json").exists()


def test_non_utf8_password_file_is_a_key_error(world: World) -> None:
    keys = _key_without_password_file(world)
    (keys / "cosign.password").write_bytes(b"s3cret\xff\n")
    out = chainmail(["run", "--taskrun", "build", "-n", NS, "--key", str(keys), "--file-store", str(world.store),
                     *world.common()], timeout=60)
    assert_rejected(out, KeyMaterialError.exit_code, mentions="not valid UTF-8", within=BOUND)
    world.assert_nothing_stored(marked_failed=True)
