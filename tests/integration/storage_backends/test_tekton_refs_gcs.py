"""Refs mode pointing into GCS: ``tekton,gcs`` storage with ``chainmail.storage.tekton.mode: refs``.

The run's annotations (written to the file store: the run is read from a file) hold only digests and the
``gs://`` objects; ``verify run`` fetches them from the bucket (gcp-storage-emulator), checks both digests and
the signatures: the TaskRun's attestation and its image's simple-signing signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backend_cli import TASKRUN, sign_run
from test_gcs_backend import BUCKET, PREFIX, RUN, gcs  # noqa: F401 - gcs is the emulator fixture

from clirun import cli

SETTINGS = ["artifacts.taskrun.storage=tekton,gcs", "artifacts.oci.storage=tekton,gcs", f"storage.gcs.bucket={BUCKET}",
            "chainmail.storage.tekton.mode=refs"]


def _signed_run(capsys: pytest.CaptureFixture[str], key: str, tmp_path: Path) -> Path:
    """Sign the example TaskRun, then give it the annotations chainmail wrote (as a cluster would hold them)."""
    code, _, err = sign_run(capsys, key, tmp_path / "ws", SETTINGS)
    assert code == 0, err
    notes = json.loads((tmp_path / "file-store" / f"taskrun-{RUN.namespace}-{RUN.name}" / "annotations.json")
                       .read_text())
    run = json.loads(TASKRUN.read_text())
    run["metadata"].setdefault("annotations", {}).update(notes)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    return path


def _verify(capsys: pytest.CaptureFixture[str], key: str, run: Path) -> tuple[int, str, str]:
    args = ["verify", "run", "--insecure-ignore-tlog", "--from-file", str(run), "--key", str(Path(key, "cosign.pub")), "-o", "json"]
    for item in SETTINGS:
        args += ["--set", item]
    return cli(args, capsys)


def test_refs_to_gcs_verify(gcs: Any, key: str, tmp_path: Path,  # noqa: F811
                            capsys: pytest.CaptureFixture[str]) -> None:
    run = _signed_run(capsys, key, tmp_path)
    notes = json.loads(run.read_text())["metadata"]["annotations"]
    own = f"taskrun-{RUN.uid}"
    assert not [k for k in notes if k.startswith(("chains.tekton.dev/payload-", "chains.tekton.dev/signature-"))]
    assert json.loads(notes[f"chainmail.dev/stored-{own}"]) == [
        {"backend": "gcs", "location": f"gs://{BUCKET}/{PREFIX}/{own}.signature"}]
    code, out, err = _verify(capsys, key, run)
    assert code == 0, err
    verified = json.loads(out)["verified"]
    assert len(verified) == 2 and {v["layout"] for v in verified} == {"refs"}
    assert {v["payloadType"] for v in verified} == {"application/vnd.in-toto+json",
                                                    "application/vnd.dev.cosign.simplesigning.v1+json"}


def test_refs_to_a_tampered_gcs_object_fail(gcs: Any, key: str, tmp_path: Path,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = _signed_run(capsys, key, tmp_path)
    blob = gcs.bucket(BUCKET).blob(f"{PREFIX}/taskrun-{RUN.uid}.payload")
    blob.upload_from_string(blob.download_as_bytes().replace(b"frontend", b"backdoor"))
    code, _, err = _verify(capsys, key, run)
    assert code == 12, err
    assert "not the annotated" in err, err
