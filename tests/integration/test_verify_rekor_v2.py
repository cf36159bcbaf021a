"""``chainmail verify`` checks Rekor v2 entries: what chainmail logged in a v2 log verifies without
``--insecure-ignore-tlog``, and a lying or unknown log is refused with the log's exit codes.

The log is tests/sigstore/rekor_v2.py (a real RFC 6962 tree, checkpoints signed with its Ed25519 key).
Image side: a real registry, the sigstore-bundle layout (a v0.3 bundle's ``tlogEntries`` carries the entry
with its proof and checkpoint). Run side: the API double and ``tekton`` storage, where the run's
``chains.tekton.dev/transparency`` names the v2 entry, which ``verify run`` reads back from the log's tiles.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chainmail.demo import example_dir
from clirun import cli
from doubles.registry import push_test_image

_spec = importlib.util.spec_from_file_location("rekor_v2_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "rekor_v2.py")
assert _spec is not None and _spec.loader is not None
_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_module)
RekorV2Server = _module.RekorV2Server

pytestmark = pytest.mark.registry
TRANSPARENCY = "chains.tekton.dev/transparency"


@pytest.fixture
def log(tmp_path: Path) -> Any:
    (tmp_path / "log").mkdir()
    server = RekorV2Server(tmp_path / "log")
    server.log.seed(3)  # entries that are not ours come first
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def other_log(tmp_path: Path) -> Any:
    (tmp_path / "other").mkdir()
    server = RekorV2Server(tmp_path / "other")
    try:
        yield server
    finally:
        server.close()


def _sets(log: Any, **extra: str) -> list[str]:
    values = {"transparency.enabled": "true", "transparency.url": log.url,
              "chainmail.transparency.rekor-version": "2",
              "chainmail.transparency.trusted-root": str(log.trusted_root),
              "chainmail.retry.deadline-seconds": "2", **extra}
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def _run_for(image: str, name: str) -> dict[str, Any]:
    run = copy.deepcopy(json.loads((example_dir() / "taskrun.json").read_text()))
    run["metadata"].update(name=name, uid=f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}")
    run["metadata"].pop("resourceVersion", None)
    repo, digest = image.split("@")
    run["status"]["results"] = [{"name": "IMAGE_DIGEST", "type": "string", "value": digest},
                                {"name": "IMAGE_URL", "type": "string", "value": repo}]
    return run


def test_verify_image_checks_the_v2_entry_in_the_bundle(log: Any, other_log: Any, registry: Any, key: str,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    image = push_test_image(registry, "v2/app", "verify-v2")
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(_run_for(image, "build-v2")))
    code, _, err = cli(["run", "--from-file", str(run_file), "--key", key, "--workspace", str(tmp_path / "ws"),
                        *_sets(log, **{"artifacts.taskrun.storage": "oci", "artifacts.oci.storage": "oci",
                                       "storage.oci.encoding-format": "sigstore-bundle"})], capsys)
    assert code == 0, err
    pub = str(Path(key) / "cosign.pub")

    code, out, err = cli(["verify", "image", image, "--key", pub, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 0, err
    # a log the verifier does not trust: 28, never "verified"
    code, out, err = cli(["verify", "image", image, "--key", pub, "--trusted-root", str(other_log.trusted_root)],
                         capsys)
    assert code == 28, err
    assert "signed by no trusted log key" in err and "Traceback" not in err
    # the old behaviour stays reachable
    code, _, err = cli(["verify", "image", image, "--key", pub, "--insecure-ignore-tlog"], capsys)
    assert code == 0, err


def test_verify_run_reads_the_v2_entry_back_from_the_tiles(log: Any, kube_api: Any, key: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    run = _run_for("registry.example/v2/app@sha256:" + "ab" * 32, "build-run-v2")
    kube_api.add(run)
    kc = str(kube_api.kubeconfig(tmp_path))
    ns = run["metadata"]["namespace"]
    code, _, err = cli(["run", "--taskrun", "build-run-v2", "-n", ns, "--kubeconfig", kc, "--key", key,
                        *_sets(log, **{"artifacts.taskrun.storage": "tekton", "artifacts.oci.storage": "tekton",
                                       "chainmail.sign.verify-images-exist": "false"})], capsys)
    assert code == 0, err
    marks = kube_api.annotations("taskruns", ns, "build-run-v2")
    assert marks[TRANSPARENCY].startswith(f"{log.url}/api/v2/log/entries?logIndex=")
    pub = str(Path(key) / "cosign.pub")
    verify = ["verify", "run", "taskrun/build-run-v2", "-n", ns, "--kubeconfig", kc, "--key", pub]

    code, out, err = cli([*verify, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 0, err

    # the annotation names an entry of the same log that is not this run's: 25
    _annotate(kube_api, ns, "build-run-v2", f"{log.url}/api/v2/log/entries?logIndex=0")
    code, _, err = cli([*verify, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 25, err
    assert "does not bind" in err or "binds none" in err

    _annotate(kube_api, ns, "build-run-v2", marks[TRANSPARENCY])
    # the log's checkpoint comes signed by a key the trusted root does not name: 28
    log.fault("read-bad-checkpoint-sig")
    code, _, err = cli([*verify, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 28, err
    # the run's other entry (index 3; the seed took 0-2) verifies too, and its proof needs the hash of leaf 4,
    # which a lying hash tile spoils: 27
    _annotate(kube_api, ns, "build-run-v2", f"{log.url}/api/v2/log/entries?logIndex=3")
    code, _, err = cli([*verify, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 0, err
    log.fault("read-bad-tile")
    code, _, err = cli([*verify, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 27, err
    assert "Traceback" not in err
    # and after the lies, the truth verifies again
    code, _, err = cli([*verify, "--trusted-root", str(log.trusted_root)], capsys)
    assert code == 0, err


def _annotate(api: Any, namespace: str, name: str, value: str) -> None:
    obj = api.get("taskruns", namespace, name)
    obj["metadata"]["annotations"][TRANSPARENCY] = value
    api.add(obj)
