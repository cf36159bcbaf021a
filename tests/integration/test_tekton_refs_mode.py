"""``chainmail.storage.tekton.mode: refs``: the run keeps only digests and references (tektoncd/chains#1076).

The example PipelineRun and its TaskRuns are signed in the Kubernetes API double with ``tekton,file`` storage:
in refs mode no ``chains.tekton.dev/payload-``/``signature-`` annotation is written, only
``chainmail.dev/payload-digest-K``, ``signature-digest-K`` and ``stored-K`` pointing into the file store;
``verify run`` reads them back and checks digests and signatures. A PipelineRun too big for ``full`` signs in
``refs``; ``refs`` with nothing else to point to is refused before anything is signed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from clirun import cli

REPO = Path(__file__).resolve().parents[2]
PIPELINERUN = REPO / "examples" / "pipelinerun.json"
CHAINS = "chainmail.dev/"
PREFIX = "chains.tekton.dev/"


@pytest.fixture(autouse=True)
def _no_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)


def _load(param_bytes: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = json.loads(PIPELINERUN.read_text())
    run = copy.deepcopy(doc["pipelineRun"])
    if param_bytes:
        run["spec"]["params"].append({"name": "notes", "value": "n" * param_bytes})
    children = [copy.deepcopy(tr) for tr in doc["taskRuns"]]
    for obj in (run, *children):
        obj["metadata"].pop("resourceVersion", None)
    return run, children


def _sets(tmp_path: Path, mode: str, storage: str = "tekton,file") -> list[str]:
    items = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3",
             f"artifacts.pipelinerun.storage={storage}", f"artifacts.taskrun.storage={storage}",
             f"artifacts.oci.storage={storage}", "artifacts.pipelinerun.format=slsa/v1",
             "artifacts.taskrun.format=slsa/v1", f"chainmail.storage.tekton.mode={mode}",
             f"chainmail.storage.file.directory={tmp_path / 'store'}"]
    return [arg for item in items for arg in ("--set", item)]


def _sign(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, mode: str,
          param_bytes: int = 0, storage: str = "tekton,file") -> tuple[int, str, dict[str, Any]]:
    run, children = _load(param_bytes)
    for obj in (run, *children):
        kube_api.add(obj)
    md = run["metadata"]
    code, _, err = cli(["run", "--pipelinerun", md["name"], "--namespace", md["namespace"], "--key", key,
                        "--kubeconfig", str(kube_api.kubeconfig(tmp_path, namespace=md["namespace"])),
                        "--workspace", str(tmp_path / "ws"), "--with-children", *_sets(tmp_path, mode, storage)],
                       capsys)
    return code, err, run


def _verify(kube_api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str,
            run: dict[str, Any]) -> tuple[int, str, str]:
    md = run["metadata"]
    return cli(["verify", "run", "--insecure-ignore-tlog", f"pipelinerun/{md['name']}", "-n", md["namespace"], "--key",
                str(Path(key, "cosign.pub")), "--kubeconfig", str(kube_api.kubeconfig(tmp_path)), "--output", "json",
                *_sets(tmp_path, "refs")], capsys)


def _notes(kube_api: Any, run: dict[str, Any]) -> dict[str, str]:
    return kube_api.annotations("pipelineruns", run["metadata"]["namespace"], run["metadata"]["name"])


def test_refs_mode_writes_only_digests_and_references(kube_api: Any, tmp_path: Path, key: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs")
    assert code == 0, err
    notes = _notes(kube_api, run)
    short = f"pipelinerun-{run['metadata']['uid']}"
    assert notes[PREFIX + "signed"] == "true"
    assert not [k for k in notes if k.startswith((PREFIX + "payload-", PREFIX + "signature-", PREFIX + "cert-"))]
    stored = json.loads(notes[CHAINS + f"stored-{short}"])
    ns, name = run["metadata"]["namespace"], run["metadata"]["name"]
    assert stored == [{"backend": "file", "location": f"pipelinerun-{ns}-{name}/{short}.signature"}]
    payload = (tmp_path / "store" / f"pipelinerun-{ns}-{name}" / f"{short}.payload").read_bytes()
    import hashlib

    assert notes[CHAINS + f"payload-digest-{short}"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert notes[CHAINS + f"signature-digest-{short}"].startswith("sha256:")
    # The children too (--with-children): references on each TaskRun, nothing inline.
    children = [obj for (plural, _, _), obj in kube_api.objects.items() if plural == "taskruns"]
    assert len(children) == 2
    for child in children:
        child_notes = child["metadata"]["annotations"]
        assert child_notes[PREFIX + "signed"] == "true"
        assert CHAINS + f"stored-taskrun-{child['metadata']['uid']}" in child_notes
        assert not [k for k in child_notes if k.startswith((PREFIX + "payload-", PREFIX + "signature-"))]


def test_refs_mode_run_verifies_from_the_file_store(kube_api: Any, tmp_path: Path, key: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs")
    assert code == 0, err
    code, out, err = _verify(kube_api, tmp_path, capsys, key, run)
    assert code == 0, err
    verified = json.loads(out)["verified"]
    assert {v["layout"] for v in verified} == {"refs"}
    kinds = {v["ref"].split("/")[0] for v in verified}
    assert kinds >= {"pipelinerun", "taskrun"}
    assert any(v["location"].startswith("file pipelinerun-") for v in verified)


def test_tampered_payload_fails_its_digest(kube_api: Any, tmp_path: Path, key: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs")
    assert code == 0, err
    md = run["metadata"]
    path = tmp_path / "store" / f"pipelinerun-{md['namespace']}-{md['name']}" / f"pipelinerun-{md['uid']}.payload"
    path.write_bytes(path.read_bytes().replace(b"build-and-push", b"build-and-pwn"))
    code, _, err = _verify(kube_api, tmp_path, capsys, key, run)
    assert code == 12, err
    assert "payload" in err and "not the annotated" in err, err


def test_reference_to_another_path_is_refused(kube_api: Any, tmp_path: Path, key: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs")
    assert code == 0, err
    md = run["metadata"]
    short = f"pipelinerun-{md['uid']}"
    stored = json.dumps([{"backend": "file", "location": "../../etc/passwd"}])
    kube_api.objects[("pipelineruns", md["namespace"], md["name"])]["metadata"]["annotations"][
        CHAINS + f"stored-{short}"] = stored
    code, _, err = _verify(kube_api, tmp_path, capsys, key, run)
    assert code == 12, err
    assert "not to this run's own" in err, err


def test_too_big_for_full_signs_in_refs(kube_api: Any, tmp_path: Path, key: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """300 KiB of params: ``full`` is refused before the patch (exit 23); ``refs`` signs and verifies."""
    (tmp_path / "full").mkdir()
    code, err, _ = _sign(kube_api, tmp_path / "full", capsys, key, "full", 300 * 1024)
    assert code == 23, err
    kube_api.objects.clear()
    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs", 300 * 1024)
    assert code == 0, err
    notes = _notes(kube_api, run)
    assert notes[PREFIX + "signed"] == "true"
    assert sum(len(k) + len(v) for k, v in notes.items()) < 16 * 1024
    code, _, err = _verify(kube_api, tmp_path, capsys, key, run)
    assert code == 0, err


def test_refs_without_another_backend_is_refused(kube_api: Any, tmp_path: Path, key: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs", storage="tekton")
    assert code == 3, err
    assert "chainmail.storage.tekton.mode: refs" in err and "names no backend that holds the payload" in err, err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err
    assert PREFIX + "signed" not in _notes(kube_api, run) or _notes(kube_api, run)[PREFIX + "signed"] != "true"



def test_a_forged_reference_list_is_bounded(kube_api: Any, tmp_path: Path, key: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Thousands of locations in one annotation: at most 32 are looked at, and a forged one fails."""
    from chainmail.verify import refs

    code, err, run = _sign(kube_api, tmp_path, capsys, key, "refs")
    assert code == 0, err
    md = run["metadata"]
    short = f"pipelinerun-{md['uid']}"
    many = [{"backend": "file", "location": f"elsewhere/{i}.signature"} for i in range(5000)]
    notes = kube_api.objects[("pipelineruns", md["namespace"], md["name"])]["metadata"]["annotations"]
    notes[CHAINS + f"stored-{short}"] = json.dumps(many)
    assert len(refs._pointers(notes, short)) == refs.MAX_POINTERS
    code, _, err = _verify(kube_api, tmp_path, capsys, key, run)
    assert code == 12, err
    assert "not to this run's own" in err, err
