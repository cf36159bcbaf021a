"""``chainmail.storage.tekton.mode``: the key, the per-kind refusal and how references are recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ConfigError
from chainmail.models import RunSnapshot, StoredRef
from chainmail.storage import StoreSession
from chainmail.storage.tekton import TektonBackend, check_refs, ref_holders, refs_mode


def _ctx(**values: str) -> Context:
    return Context(config=Config.from_mapping(values))


def test_default_is_full_and_refs_is_accepted() -> None:
    assert not refs_mode(_ctx())
    assert refs_mode(_ctx(**{"chainmail.storage.tekton.mode": " refs "}))


def test_bad_mode_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"chainmail.storage.tekton.mode: invalid value 'pointers'"):
        Config.from_mapping({"chainmail.storage.tekton.mode": "pointers"})


def test_refs_needs_a_holder_for_each_kind_stored_in_tekton() -> None:
    ctx = _ctx(**{"chainmail.storage.tekton.mode": "refs", "artifacts.taskrun.storage": "tekton,gcs",
                  "artifacts.pipelinerun.storage": "tekton,docdb"})
    check_refs(ctx, {"taskrun"})  # gcs holds it
    with pytest.raises(ConfigError, match=r"artifacts.pipelinerun.storage \(tekton,docdb\) names no backend") as info:
        check_refs(ctx, {"taskrun", "pipelinerun"})
    assert "add oci, gcs or file" in (info.value.hint or "")
    check_refs(_ctx(**{"artifacts.pipelinerun.storage": "tekton"}), {"pipelinerun"})  # full mode: nothing to check


def test_oci_bundles_cannot_be_pointed_to() -> None:
    ctx = _ctx(**{"artifacts.taskrun.storage": "tekton,oci", "storage.oci.encoding-format": "sigstore-bundle"})
    assert ref_holders(ctx, "taskrun") == []
    assert ref_holders(_ctx(**{"artifacts.taskrun.storage": "tekton,oci"}), "taskrun") == ["oci"]


def test_pointers_are_relative_to_the_file_store_and_carry_no_credentials(tmp_path: Path) -> None:
    ctx = _ctx(**{"chainmail.storage.file.directory": str(tmp_path)})
    backend = TektonBackend(StoreSession(ctx, RunSnapshot({"kind": "TaskRun", "metadata": {"name": "a"}})))
    file_ref = StoredRef("file", "k", str(tmp_path / "taskrun-ns-a" / "taskrun-u.signature"))
    assert backend._pointer(file_ref) == {"backend": "file", "location": "taskrun-ns-a/taskrun-u.signature"}
    docdb = StoredRef("docdb", "k", "mongo://user:secret@db.example/chains/signed#taskrun-u")
    assert backend._pointer(docdb) == {"backend": "docdb", "location": "mongo://db.example/chains/signed#taskrun-u"}


def test_docdb_holds_references_only_on_dynamodb() -> None:
    dynamo = _ctx(**{"artifacts.taskrun.storage": "tekton,docdb", "storage.docdb.url": "dynamodb://t?partition_key=Name"})
    assert ref_holders(dynamo, "taskrun") == ["docdb"]
    mongo = _ctx(**{"artifacts.taskrun.storage": "tekton,docdb", "storage.docdb.url": "mongo://db/coll",
                    "chainmail.storage.tekton.mode": "refs"})
    assert ref_holders(mongo, "taskrun") == []
    with pytest.raises(ConfigError, match="names no backend that holds the payload"):
        check_refs(mongo, {"taskrun"})


def test_verify_skips_what_this_configuration_cannot_read(tmp_path: Path) -> None:
    from chainmail.verify.refs import readable_here

    bare = _ctx(**{"chainmail.storage.file.directory": str(tmp_path / "absent")})
    assert [b for b in ("oci", "gcs", "file", "docdb", "grafeas") if readable_here(b, bare)] == ["oci"]
    full = _ctx(**{"chainmail.storage.file.directory": str(tmp_path), "storage.gcs.bucket": "b",
                   "storage.docdb.url": "dynamodb://t?partition_key=Name"})
    assert [b for b in ("oci", "gcs", "file", "docdb", "grafeas") if readable_here(b, full)] == [
        "oci", "gcs", "file", "docdb"]
