"""``transparency.enabled`` asks for a Rekor entry: when the log cannot be used, nothing is signed or stored.

Uploads themselves are tested against the local Sigstore stack in
tests/integration/test_transparency_upload.py; here the log is unreachable or misconfigured.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from chainmail.demo import example_dir
from clirun import cli

RUN = json.loads((example_dir() / "taskrun.json").read_text())


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _run(key: str, store: Path, capsys: pytest.CaptureFixture[str], *sets: str) -> tuple[int, str]:
    args = ["run", "--from-file", str(example_dir() / "taskrun.json"), "--key", key,
            "--set", "chainmail.sign.verify-images-exist=false",  # the example's images exist nowhere
            "--set", "chainmail.retry.deadline-seconds=1",
            "--set", "artifacts.taskrun.storage=file", "--set", "artifacts.oci.storage=file",
            "--set", f"chainmail.storage.file.directory={store}"]
    for item in sets:
        args += ["--set", item]
    code, _, err = cli(args, capsys)
    return code, err


def _marks(store: Path) -> dict[str, str]:
    path = store / f"taskrun-{RUN['metadata']['namespace']}-{RUN['metadata']['name']}" / "annotations.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_unreachable_log_fails_the_run_and_stores_nothing(key: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code, err = _run(key, store, capsys, "transparency.enabled=true", f"transparency.url={_closed_port_url()}")
    assert code == 7, err
    assert "transparency log" in err and "unreachable" in err and "Traceback" not in err
    assert not list(store.rglob("*.signature")) and not list(store.rglob("*.payload"))
    marks = _marks(store)
    assert marks["chains.tekton.dev/signed"] == "failed"
    assert "transparency log" in marks["chainmail.dev/failure-reason"]


@pytest.mark.parametrize("value", ["TRUE", "1"])
def test_a_truthy_spelling_chains_reads_as_off_is_refused(value: str, key: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Chains uploads nothing for these; chainmail refuses them rather than guess either way."""
    store = tmp_path / "store"
    code, err = _run(key, store, capsys, f"transparency.enabled={value}", f"transparency.url={_closed_port_url()}")
    assert code == 3, err
    assert "transparency.enabled" in err and "ambiguous" in err and "Traceback" not in err
    assert not list(store.rglob("*.signature"))


def test_a_log_url_that_is_not_http_is_refused_before_signing(key: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code, err = _run(key, store, capsys, "transparency.enabled=true", "transparency.url=ftp://rekor.example")
    assert code == 3, err
    assert "transparency.url" in err and "nothing was signed" in err
    assert not list(store.rglob("*.signature"))


def test_manual_without_the_run_annotation_does_not_upload(key: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The log is unreachable, so any upload attempt would fail the run: this one is signed without one."""
    store = tmp_path / "store"
    code, err = _run(key, store, capsys, "transparency.enabled=manual", f"transparency.url={_closed_port_url()}")
    assert code == 0, err
    assert any(store.rglob("*.signature"))
    assert "chains.tekton.dev/transparency" not in _marks(store)


def test_manual_with_the_run_annotation_uploads(key: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = json.loads(json.dumps(RUN))
    run["metadata"]["annotations"]["chains.tekton.dev/transparency-upload"] = "true"
    path = tmp_path / "annotated.json"
    path.write_text(json.dumps(run))
    store = tmp_path / "store"
    code, _, err = cli(["run", "--from-file", str(path), "--key", key,
                        "--set", "chainmail.sign.verify-images-exist=false",
                        "--set", "chainmail.retry.deadline-seconds=1",
                        "--set", "transparency.enabled=manual", "--set", f"transparency.url={_closed_port_url()}",
                        "--set", "artifacts.taskrun.storage=file", "--set", "artifacts.oci.storage=file",
                        "--set", f"chainmail.storage.file.directory={store}"], capsys)
    assert code == 7, err  # it tried: the log is unreachable
    assert not list(store.rglob("*.signature"))


def test_transparency_off_signs(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    code, err = _run(key, store, capsys, "transparency.enabled=false")
    assert code == 0, err
    assert any(store.rglob("*.signature"))


def test_a_log_entry_without_log_keys_to_check_it_is_refused(key: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``check_signatures`` given bare public keys (no trusted log keys) never takes a ``tlog`` on trust."""
    from dataclasses import replace

    from chainmail.context import Context
    from chainmail.errors import WorkspaceError
    from chainmail.signing import load_public_key
    from chainmail.storage import check_signatures
    from chainmail.workspace import Workspace

    ws = tmp_path / "ws"
    code, _, err = cli(["run", "--from-file", str(example_dir() / "taskrun.json"), "--key", key, "--workspace",
                        str(ws), "--set", "chainmail.sign.verify-images-exist=false",
                        "--set", "artifacts.taskrun.storage=file", "--set", "artifacts.oci.storage=file",
                        "--set", f"chainmail.storage.file.directory={tmp_path / 'store'}"], capsys)
    assert code == 0, err
    signed = Workspace(ws).read_signed()
    pub = load_public_key(str(Path(key) / "cosign.pub"), Context())
    keys = {"taskrun": pub, "oci": pub}
    check_signatures(signed, keys)  # as signed: accepted
    with pytest.raises(WorkspaceError, match="log entry that cannot be checked"):
        check_signatures([replace(signed[0], tlog={"00" * 32: {"body": ""}})], keys)
