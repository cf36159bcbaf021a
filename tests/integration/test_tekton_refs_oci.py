"""Refs mode pointing into a registry: ``tekton,oci`` storage with ``chainmail.storage.tekton.mode: refs``.

A TaskRun naming an image in the registry double is signed from a file; its annotations (in the file store)
hold only digests and the ``.att``/``.sig`` manifests; ``verify run`` finds the layers whose blobs match the
digests and verifies them. A TaskRun naming no image has nothing in the registry to point to: refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clirun import cli
from doubles.registry import push_test_image

pytestmark = pytest.mark.registry

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["chainmail.retry.deadline-seconds=3", "artifacts.taskrun.storage=tekton,oci",
            "artifacts.oci.storage=tekton,oci", "chainmail.storage.tekton.mode=refs"]


def _run_file(tmp_path: Path, image: str | None) -> tuple[Path, dict[str, Any]]:
    run = json.loads((REPO / "examples" / "taskrun.json").read_text())
    if image is None:
        run["status"]["results"] = []
    else:
        repo, digest = image.split("@")
        run["status"]["results"] = [{"name": "IMAGE_URL", "type": "string", "value": repo},
                                    {"name": "IMAGE_DIGEST", "type": "string", "value": digest}]
    path = tmp_path / "taskrun.json"
    path.write_text(json.dumps(run))
    return path, run


def _sets(tmp_path: Path) -> list[str]:
    items = [*SETTINGS, f"chainmail.storage.file.directory={tmp_path / 'store'}"]
    return [arg for item in items for arg in ("--set", item)]


def test_refs_to_oci_verify(registry: Any, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(registry, "refs/app", "refs-oci")
    path, run = _run_file(tmp_path, image)
    code, _, err = cli(["run", "--from-file", str(path), "--key", key, "-w", str(tmp_path / "ws"), *_sets(tmp_path)],
                       capsys)
    assert code == 0, err
    md = run["metadata"]
    notes = json.loads((tmp_path / "store" / f"taskrun-{md['namespace']}-{md['name']}" / "annotations.json")
                       .read_text())
    own = f"taskrun-{md['uid']}"
    (stored,) = json.loads(notes[f"chainmail.dev/stored-{own}"])
    assert stored["backend"] == "oci" and ".att@sha256:" in stored["location"]
    assert not [k for k in notes if k.startswith("chains.tekton.dev/payload-")]
    run["metadata"]["annotations"].update(notes)
    path.write_text(json.dumps(run))
    code, out, err = cli(["verify", "run", "--insecure-ignore-tlog", "--from-file", str(path), "--key", str(Path(key, "cosign.pub")),
                          "-o", "json", *_sets(tmp_path)], capsys)
    assert code == 0, err
    verified = json.loads(out)["verified"]
    assert sorted(v["location"].split("@")[0][-3:] for v in verified) == ["att", "sig"]
    assert all(v["location"].startswith("oci ") for v in verified)
    assert {v["layout"] for v in verified} == {"refs"}


def test_refs_to_oci_without_an_image_is_refused(registry: Any, key: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _run_file(tmp_path, None)
    code, _, err = cli(["run", "--from-file", str(path), "--key", key, "-w", str(tmp_path / "ws"), *_sets(tmp_path)],
                       capsys)
    assert code == 8, err
    assert "no other backend of artifacts.taskrun.storage stored" in err, err
