"""``transparency.enabled`` asks for a Rekor entry; until uploads exist, asking is refused, never skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainmail.demo import example_dir
from clirun import cli


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "manual"])
def test_transparency_requested_is_refused_before_signing(value: str, key: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code, out, err = cli(["run", "--from-file", str(example_dir() / "taskrun.json"), "--key", key,
                          "--set", f"transparency.enabled={value}",
                          "--set", "artifacts.taskrun.storage=file", "--set", "artifacts.oci.storage=file",
                          "--set", f"chainmail.storage.file.directory={store}"], capsys)
    assert code == 3, err
    assert "transparency.enabled" in err and "nothing was signed" in err
    # the run records why (its failure reason), but no payload or signature was written
    assert not list(store.rglob("*.signature")) and not list(store.rglob("*.payload"))


def test_transparency_off_signs(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code, _, err = cli(["run", "--from-file", str(example_dir() / "taskrun.json"), "--key", key,
                        "--set", "transparency.enabled=false",
                        "--set", "chainmail.sign.verify-images-exist=false",  # the example's images exist nowhere
                        "--set", "artifacts.taskrun.storage=file", "--set", "artifacts.oci.storage=file",
                        "--set", f"chainmail.storage.file.directory={store}"], capsys)
    assert code == 0, err
    assert any(store.rglob("*.signature"))
