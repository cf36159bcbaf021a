"""sign and store re-derive what they act on: snapshot re-read, payloads re-formatted, images HEADed,
file-store paths confined, and annotations no longer importing storage."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chainmail._internal.files import confined
from chainmail.config import Config
from chainmail.context import Context
from chainmail.demo import example_dir
from chainmail.errors import ImageNotFoundError, RegistryUnreachableError, StorageError, WorkspaceError
from chainmail.image_check import claimed_images, require_images_exist
from chainmail.job import make_payloads
from chainmail.models import RunSnapshot
from chainmail.snapshot import from_file
from chainmail.workspace import Workspace
from chainmail.workspace_trust import (
    first_difference,
    format_options,
    signed_payloads_match,
    trusted_snapshot,
    verified_payloads,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Workspace, Context]:
    ws = Workspace(tmp_path)
    ctx = Context(config=Config.from_mapping({"artifacts.taskrun.format": "slsa/v1"}))
    snap = from_file(example_dir() / "taskrun.json")
    ws.write_snapshot(snap)
    ws.write_payloads(make_payloads(snap, ctx))
    return ws, ctx


# -- snapshot and payloads -------------------------------------------------------------------------


def test_a_file_snapshot_needs_someone_to_vouch(filled: tuple[Workspace, Context]) -> None:
    ws, ctx = filled
    with pytest.raises(WorkspaceError, match="not read from the cluster"):
        trusted_snapshot(ws, ctx)
    assert trusted_snapshot(ws, ctx, trust_file=True).ref.name


def test_untouched_payloads_are_what_chainmail_derives(filled: tuple[Workspace, Context]) -> None:
    ws, ctx = filled
    snap = trusted_snapshot(ws, ctx, trust_file=True)
    assert verified_payloads(ws, ctx, snap) == ws.read_payloads()


def test_format_options_come_back_from_the_payloads(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ctx = Context()
    snap = from_file(example_dir() / "taskrun.json")
    ws.write_snapshot(snap)
    ws.write_payloads(make_payloads(snap, ctx, ["slsa/v1", "slsa/v2alpha4"]))
    assert format_options(ws.read_payloads()) == (["slsa/v1", "slsa/v2alpha4"], False)
    assert verified_payloads(ws, ctx, snap) == ws.read_payloads()


def test_a_different_chains_config_at_sign_is_refused(filled: tuple[Workspace, Context]) -> None:
    ws, _ = filled
    other = Context(config=Config.from_mapping({"artifacts.taskrun.format": "slsa/v1",
                                                "builder.id": "https://evil.example/builder"}))
    with pytest.raises(WorkspaceError, match=r"payloads\.json does not hold what snapshot\.json formats to"):
        verified_payloads(ws, other, trusted_snapshot(ws, other, trust_file=True))


def test_first_difference_names_the_artifact_and_fields() -> None:
    snap = from_file(example_dir() / "taskrun.json")
    derived = make_payloads(snap, Context())
    changed = [derived[0], dataclasses.replace(derived[1], subjects=("x/y@sha256:" + "0" * 64,))]
    text = first_difference(derived, changed)
    assert derived[1].artifact.full_key in text and "subjects" in text
    assert "missing" in first_difference(derived, derived[:1])
    assert "one too many" in first_difference(derived[:1], derived)
    assert first_difference(derived, list(derived)) == ""


def test_signed_must_skip_exactly_the_kinds_without_a_signer() -> None:
    from chainmail.models import SignedPayload

    snap = from_file(example_dir() / "taskrun.json")
    ctx = Context(config=Config.from_mapping({"artifacts.oci.signer": "none", "artifacts.oci.storage": "oci"}))
    payloads = make_payloads(snap, Context())
    run_only = [SignedPayload(p, b"", "", "", "") for p in payloads if p.artifact.kind != "oci"]
    signed_payloads_match(run_only, payloads, ctx)
    with pytest.raises(WorkspaceError, match="signed.json does not carry"):
        signed_payloads_match(run_only, payloads, Context())


def test_reread_uses_the_api_and_checks_the_uid(kube_api, tmp_path: Path) -> None:
    from chainmail.snapshot import from_cluster
    from doubles.kube import completed_taskrun

    kube_api.add(completed_taskrun("build", "ci"))
    ctx = Context(kubeconfig=kube_api.kubeconfig(tmp_path, namespace="ci"))
    ws = Workspace(tmp_path / "ws")
    snap = from_cluster(ctx.kube, "TaskRun", "ci", "build")
    ws.write_snapshot(snap)
    ctx.kube.patch_merge("taskruns", "ci", "build",
                         {"metadata": {"annotations": {"chains.tekton.dev/signed": "failed",
                                                       "chainmail.dev/claim": "x/1"}}})
    live = trusted_snapshot(ws, ctx)  # Chains' and chainmail's own annotations do not change the payloads
    assert make_payloads(live, ctx) == make_payloads(snap, ctx)
    run = kube_api.get("taskruns", "ci", "build")
    kube_api.delete("taskruns", "ci", "build")
    run["metadata"]["uid"] = "another-uid"
    kube_api.add(run)
    with pytest.raises(WorkspaceError, match="has uid another-uid"):
        trusted_snapshot(ws, ctx)


# -- sign only what exists -------------------------------------------------------------------------


class FakeRegistry:
    def __init__(self, present: set[str], error: Exception | None = None) -> None:
        self.present, self.error, self.heads = present, error, 0

    def head_manifest(self, ref: Any) -> tuple[str, str, int] | None:
        self.heads += 1
        if self.error:
            raise self.error
        return (ref.digest, "application/vnd.oci.image.manifest.v1+json", 1) if str(ref) in self.present else None


def _image_ctx(registry: FakeRegistry, **config: str) -> Context:
    ctx = Context(config=Config.from_mapping(config))
    ctx.registry = registry  # type: ignore[assignment]
    return ctx


def test_every_claimed_image_is_headed_once() -> None:
    payloads = make_payloads(from_file(example_dir() / "taskrun.json"), Context())
    images = claimed_images(payloads)
    assert images and all("@sha256:" in i for i in images)
    registry = FakeRegistry(set(images))
    ctx = _image_ctx(registry)
    require_images_exist(payloads, ctx)
    require_images_exist(payloads, ctx)
    assert registry.heads == len(images)


def test_a_missing_image_refuses_the_run() -> None:
    payloads = make_payloads(from_file(example_dir() / "taskrun.json"), Context())
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        require_images_exist(payloads, _image_ctx(FakeRegistry(set())))


def test_the_check_can_be_turned_off() -> None:
    payloads = make_payloads(from_file(example_dir() / "taskrun.json"), Context())
    registry = FakeRegistry(set())
    require_images_exist(payloads, _image_ctx(registry, **{"chainmail.sign.verify-images-exist": "false"}))
    assert registry.heads == 0


def test_an_unreachable_registry_is_not_a_missing_image() -> None:
    payloads = make_payloads(from_file(example_dir() / "taskrun.json"), Context())
    with pytest.raises(RegistryUnreachableError):
        require_images_exist(payloads, _image_ctx(FakeRegistry(set(), RegistryUnreachableError("down"))))


def test_sign_run_marks_the_run_failed_for_a_missing_image(tmp_path: Path, key: str) -> None:
    import json

    from chainmail.job import sign_run

    ctx = _image_ctx(FakeRegistry(set()), **{"artifacts.taskrun.storage": "file", "artifacts.oci.storage": "file"})
    ctx.key, ctx.file_store = key, tmp_path
    snap = from_file(example_dir() / "taskrun.json")
    with pytest.raises(ImageNotFoundError):
        sign_run(snap, ctx)
    (marks,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    notes = json.loads(marks.read_text())
    assert notes["chains.tekton.dev/signed"] == "failed"
    assert "does not exist" in notes["chainmail.dev/failure-reason"]


# -- file-store confinement -----------------------------------------------------------------------


@pytest.mark.parametrize("part", ["../x", "a/b", "/abs", "..", ".", "", "a\\b", "nul\0"])
def test_confined_refuses_names_that_are_not_plain(tmp_path: Path, part: str) -> None:
    with pytest.raises(StorageError, match="plain file name"):
        confined(tmp_path, part)


def test_confined_refuses_symlinks_out_of_the_directory(tmp_path: Path) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    store.mkdir()
    outside.mkdir()
    os.symlink(outside, store / "run")
    os.symlink(outside / "missing", store / "dangling")
    with pytest.raises(StorageError, match="outside"):
        confined(store, "run", "x.payload")
    with pytest.raises(StorageError, match="outside"):
        confined(store, "dangling")
    assert confined(store, "fine", "x.payload") == store / "fine" / "x.payload"


def test_confined_allows_a_store_directory_that_is_itself_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    assert confined(tmp_path / "link", "run", "x") == tmp_path / "link" / "run" / "x"


# -- import direction ---------------------------------------------------------------------------------


def test_annotations_does_not_import_storage() -> None:
    code = ("import sys, chainmail.annotations, chainmail.store_session; "
            "print(any(m == 'chainmail.storage' or m.startswith('chainmail.storage.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "steps")})
    assert out.stdout.strip() == "False"
    tree = ast.parse((REPO / "steps" / "chainmail" / "annotations.py").read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m == "chainmail.storage" or m.startswith(("chainmail.storage.", "storage"))}


def test_store_session_is_still_importable_from_storage() -> None:
    from chainmail.storage import StoreSession
    from chainmail.store_session import StoreSession as Same

    assert StoreSession is Same


def test_an_api_snapshot_is_re_read_even_when_files_are_trusted(filled: tuple[Workspace, Context]) -> None:
    from chainmail.errors import NotFoundError

    class GoneKube:
        namespace, calls = "default", []

        def get(self, plural: str, namespace: str, name: str) -> dict:
            self.calls.append((plural, namespace, name))
            raise NotFoundError(f"{plural} {namespace}/{name} not found")

    ws, ctx = filled
    snap = ws.read_snapshot()
    ws.write_snapshot(RunSnapshot(snap.run, snap.task_runs, "api:https://kube.example"))
    ctx.kube = kube = GoneKube()  # type: ignore[assignment]
    with pytest.raises(NotFoundError):
        trusted_snapshot(ws, ctx, trust_file=True)
    assert kube.calls == [("taskruns", snap.ref.namespace, snap.ref.name)]
