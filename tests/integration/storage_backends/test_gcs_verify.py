"""``chainmail verify run`` reading what a run stored in GCS (gcp-storage-emulator, as in test_gcs_backend).

Signed with ``artifacts.taskrun.storage=gcs``, the run verifies from the bucket (exit 0) with the same
binding rules as its annotations: a tampered object, or another run's genuine objects copied under this
run's prefix, exit 12; a run with nothing in the bucket exits 10.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from backend_cli import TASKRUN, sign_run
from test_gcs_backend import BUCKET, GCS, PREFIX, RUN, gcs  # noqa: F401 - gcs is the emulator fixture

from clirun import cli

OWN = f"{PREFIX}/taskrun-{RUN.uid}"


def _verify(capsys: pytest.CaptureFixture[str], key: str, run: Path, *extra: str) -> tuple[int, str, str]:
    args = ["verify", "run", "--insecure-ignore-tlog", "--from-file", str(run), "--key", str(Path(key, "cosign.pub")), *extra]
    for item in ("artifacts.taskrun.storage=gcs", f"storage.gcs.bucket={BUCKET}"):
        args += ["--set", item]
    return cli(args, capsys)


def _put(client: Any, name: str, data: bytes) -> None:
    client.bucket(BUCKET).blob(name).upload_from_string(data)


def _get(client: Any, name: str) -> bytes:
    return bytes(client.bucket(BUCKET).blob(name).download_as_bytes())


@pytest.fixture
def signed(gcs: Any, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:  # noqa: F811
    """The example TaskRun signed into the bucket (its attestation and its image's signature)."""
    code, _, err = sign_run(capsys, key, tmp_path / "ws", GCS)
    assert code == 0, err
    return gcs


def test_run_stored_in_gcs_verifies(signed: Any, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _verify(capsys, key, TASKRUN, "--output", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert {v["layout"] for v in doc["verified"]} == {"gcs"}
    assert len(doc["verified"]) == 2  # the TaskRun's attestation and its image's signature


def test_explicit_from_gcs_and_annotations(signed: Any, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _verify(capsys, key, TASKRUN, "--from", "gcs")
    assert code == 0, err
    # The run file has no signature annotations: read from annotations, it has no signature (10).
    code, _, err = _verify(capsys, key, TASKRUN, "--from", "annotations")
    assert code == 10, err
    code, _, err = _verify(capsys, key, TASKRUN, "--from", "s3")
    assert code == 4 and "--from 's3'" in err


def test_tampered_payload_exits_12(signed: Any, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(_get(signed, f"{OWN}.payload"))
    doc["predicate"]["builder"] = {"id": "https://evil.example/builder"}
    _put(signed, f"{OWN}.payload", json.dumps(doc).encode())
    code, _, err = _verify(capsys, key, TASKRUN)
    assert code == 12, err
    assert f"gs://{BUCKET}/{OWN}.signature" in err and "Traceback" not in err


def test_tampered_signature_exits_12(signed: Any, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    image = f"{PREFIX}/3b1f6a9c2d4e.signature"
    sig = bytearray(_get(signed, image))
    sig[-1] ^= 1
    _put(signed, image, bytes(sig))
    code, _, err = _verify(capsys, key, TASKRUN)
    assert code == 12, err


def _other_run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    run = json.loads(TASKRUN.read_text())
    other = copy.deepcopy(run)
    other["metadata"]["name"] = "another-build"
    other["metadata"]["uid"] = "0b0e4c1a-9d2f-4a61-8c3e-5f7a2d9e1b44"
    other["status"]["startTime"] = "2026-11-20T15:00:00Z"
    other["status"]["completionTime"] = "2026-11-20T15:01:00Z"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    return path, other


def test_another_runs_objects_copied_under_this_prefix_exit_12(signed: Any, key: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, other = _other_run(tmp_path)
    code, _, err = sign_run(capsys, key, tmp_path / "ws2", GCS, run=path)
    assert code == 0, err
    theirs = f"taskrun-shop-another-build/taskrun-{other['metadata']['uid']}"
    for suffix in ("payload", "signature", "cert", "chain"):
        _put(signed, f"{PREFIX}/taskrun-{other['metadata']['uid']}.{suffix}", _get(signed, f"{theirs}.{suffix}"))
    code, _, err = _verify(capsys, key, TASKRUN)
    assert code == 12, err
    assert other["metadata"]["uid"] in err
    # Renamed to this run's own key, the genuine signature is still bound to the other run.
    for suffix in ("payload", "signature"):
        _put(signed, f"{OWN}.{suffix}", _get(signed, f"{theirs}.{suffix}"))
    signed.bucket(BUCKET).blob(f"{PREFIX}/taskrun-{other['metadata']['uid']}.signature").delete()
    code, _, err = _verify(capsys, key, TASKRUN)
    assert code == 12, err
    # The other run itself verifies from the bucket.
    code, _, err = _verify(capsys, key, path)
    assert code == 0, err


def test_nothing_in_the_bucket_exits_10(gcs: Any, key: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, _, err = _verify(capsys, key, TASKRUN)
    assert code == 10, err
    assert "no signature of its own in the gcs bucket" in err
