"""The ``file`` backend never writes outside its directory, whatever a run is called.

Run names, namespaces and uids come from the run (a file, or an API object someone else made),
and the store directory may already hold symlinks someone planted. Each case signs through the
real CLI into a store directory that sits next to a ``bait`` directory, and checks: refused with
exit 8 on one line that names the problem, no traceback, in time, no file written outside the
store (the bait stays empty, the tree holds only what it held), and no payload or signature
written inside it either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from chainmail.demo import example_dir
from chainmail.errors import StorageError
from conftest import assert_rejected, chainmail, files_under

BOUND = 30.0
FILE_ONLY = ["--set", "artifacts.taskrun.storage=file", "--set", "artifacts.oci.storage=file",
             "--set", "artifacts.pipelinerun.storage=file", "--set", "chainmail.sign.verify-images-exist=false"]


def _run(name: str | None = None, namespace: str | None = None, uid: str | None = None) -> dict[str, Any]:
    run = json.loads((example_dir() / "taskrun.json").read_text())
    meta = run["metadata"]
    if name is not None:
        meta["name"] = name
    if namespace is not None:
        meta["namespace"] = namespace
    if uid is not None:
        meta["uid"] = uid
    return run


def _sign(tmp_path: Path, run: dict[str, Any], key: str) -> tuple[Any, Path]:
    """Sign ``run`` into ``tmp_path/deep/store``; returns the outcome and the store directory."""
    store = tmp_path / "deep" / "store"
    store.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    out = chainmail(["run", "--from-file", str(path), "--key", key, "--file-store", str(store), *FILE_ONLY],
                    timeout=60)
    return out, store


@pytest.fixture
def bait(tmp_path: Path) -> Path:
    path = tmp_path / "bait"
    path.mkdir()
    return path


def _assert_confined(tmp_path: Path, store: Path, before: set[Path]) -> None:
    """Nothing new outside the store but the run file, and no payload or signature written inside it."""
    outside = {p for p in files_under(tmp_path) if store not in p.parents}
    expected = {p for p in before if store not in p.parents} | {tmp_path / "run.json"}
    assert outside == expected, sorted(map(str, outside ^ expected))
    suffixes = (".payload", ".signature", ".pub", ".cert", ".chain")
    written = [p for p in files_under(store) if p.suffix in suffixes and not p.is_symlink()]
    assert written == []


@pytest.mark.parametrize("field,value", [
    ("name", "../../bait/owned"),
    ("name", "../../../escaped"),
    ("namespace", "../../bait"),
    ("uid", "../../../bait/x"),
    ("name", "/tmp/chainmail-absolute-name"),
    ("uid", "/etc/passwd"),
], ids=["name-dotdot", "name-above-tmp", "namespace-dotdot", "shortkey-dotdot", "name-absolute", "shortkey-absolute"])
def test_traversal_names_are_refused(tmp_path: Path, bait: Path, key: str, field: str, value: str) -> None:
    before = files_under(tmp_path)
    out, store = _sign(tmp_path, _run(**{field: value}), key)
    assert_rejected(out, StorageError.exit_code, mentions="plain file name", within=BOUND)
    assert files_under(bait) == set()
    assert not Path("/tmp/chainmail-absolute-name").exists()
    _assert_confined(tmp_path, store, before)


def test_symlinked_run_directory_is_refused(tmp_path: Path, bait: Path, key: str) -> None:
    run = _run()
    meta = run["metadata"]
    store = tmp_path / "deep" / "store"
    store.mkdir(parents=True)
    os.symlink(bait, store / f"taskrun-{meta['namespace']}-{meta['name']}")
    before = files_under(tmp_path)
    out, store = _sign(tmp_path, run, key)
    assert_rejected(out, StorageError.exit_code, mentions="outside", within=BOUND)
    assert files_under(bait) == set()
    _assert_confined(tmp_path, store, before)


def test_symlinked_payload_file_is_refused(tmp_path: Path, bait: Path, key: str) -> None:
    run = _run()
    meta = run["metadata"]
    run_dir = tmp_path / "deep" / "store" / f"taskrun-{meta['namespace']}-{meta['name']}"
    run_dir.mkdir(parents=True)
    target = bait / "keep.txt"
    target.write_text("untouched")
    os.symlink(target, run_dir / f"taskrun-{meta['uid']}.payload")
    before = files_under(tmp_path)
    out, store = _sign(tmp_path, run, key)
    assert_rejected(out, StorageError.exit_code, mentions="outside", within=BOUND)
    assert target.read_text() == "untouched"
    assert files_under(bait) == {target}
    _assert_confined(tmp_path, store, before)


def test_plain_names_still_sign(tmp_path: Path, key: str) -> None:
    """The control: the same command with the example's own names signs into the store."""
    out, store = _sign(tmp_path, _run(), key)
    assert out.code == 0, out.stderr
    assert any(p.suffix == ".signature" for p in files_under(store))
    assert all(store in p.parents for p in files_under(tmp_path) if p.name != "run.json")


def test_image_refs_with_dotdot_never_become_paths(tmp_path: Path, bait: Path, key: str) -> None:
    """An IMAGE_URL/IMAGE_DIGEST with ``../`` is not an image: it is skipped, and nothing lands outside."""
    run = _run()
    for result in run["status"]["results"]:
        if result["name"] == "IMAGE_DIGEST":
            result["value"] = "sha256:../../../bait/x"
        if result["name"] == "IMAGE_URL":
            result["value"] = "registry.example/../../bait"
    out, store = _sign(tmp_path, run, key)
    assert out.code == 0, out.stderr
    assert files_under(bait) == set()
    assert all(store in p.parents for p in files_under(tmp_path) if p.name != "run.json")
    assert [p.suffix for p in files_under(store) if p.suffix == ".signature"] == [".signature"]  # the run only
