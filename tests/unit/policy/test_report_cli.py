"""`chainmail report image|run`, with verification replaced by a stand-in.

The commands call ``chainmail.verify.verify_attestation`` / ``verify_run`` and
``chainmail.signing.load_public_key``; these tests put fakes for those modules in
``sys.modules`` so they check only what the report commands add: argument handling, policy
evaluation, output and exit codes.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from chainmail._cli import main
from chainmail.models import RunSnapshot

IMAGE = "127.0.0.1:5000/demo/app@sha256:188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb"


class Calls:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, chains_run_verified, shared: Path) -> Calls:
    calls = Calls()
    verify = types.ModuleType("chainmail.verify")
    signing = types.ModuleType("chainmail.signing")

    def verify_attestation(ref: str, public_keys: list[Any], ctx: Any, predicate_type: str | None = None,
                           **_: Any) -> list:
        calls.log.append(("verify_attestation", (ref, public_keys, predicate_type)))
        return [chains_run_verified]

    def verify_run(snap: RunSnapshot, public_keys: list[Any], ctx: Any, **_: Any) -> list:
        calls.log.append(("verify_run", (snap.ref.name, public_keys)))
        return [chains_run_verified]

    def load_public_key(source: str, ctx: Any) -> str:
        calls.log.append(("load_public_key", source))
        return f"pub:{source}"

    verify.verify_attestation = verify_attestation  # type: ignore[attr-defined]
    verify.verify_run = verify_run  # type: ignore[attr-defined]
    signing.load_public_key = load_public_key  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "chainmail.verify", verify)
    monkeypatch.setitem(sys.modules, "chainmail.signing", signing)

    run = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())

    def take_snapshot(ctx: Any, taskrun: str | None, pipelinerun: str | None, from_file: Path | None,
                      namespace: str | None, uid: str | None) -> RunSnapshot:
        calls.log.append(("take_snapshot", (taskrun, pipelinerun, from_file, namespace)))
        if pipelinerun == "missing" or taskrun == "missing":
            from chainmail.errors import NotFoundError

            raise NotFoundError(f"{'TaskRun' if taskrun else 'PipelineRun'} missing not found")
        if from_file is not None:
            return RunSnapshot(json.loads(Path(from_file).read_text()))
        if pipelinerun:
            return RunSnapshot({**run, "kind": "PipelineRun", "metadata": {**run["metadata"], "name": pipelinerun}})
        return RunSnapshot({**run, "metadata": {**run["metadata"], "name": taskrun}})

    monkeypatch.setattr("chainmail._cli.steps.take_snapshot", take_snapshot)
    return calls


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


def test_report_image_markdown_to_stdout(fakes: Calls, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["report", "image", IMAGE, "--key", "cosign.pub", "--type", "slsaprovenance"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("## chainmail provenance report: PASS\n")
    assert f"### TaskRun provenance: `{IMAGE}`" in out
    assert fakes.log == [("load_public_key", "cosign.pub"),
                         ("verify_attestation", (IMAGE, ["pub:cosign.pub"], "slsaprovenance"))]


def test_report_image_html_to_file_with_policy(fakes: Calls, tmp_path: Path, examples: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "report.html"
    code = run_cli(["report", "image", IMAGE, "-k", "a.pub", "-k", "b.pub", "--format", "html",
                    "--policy", str(examples / "step-images-pinned.yaml"), "--out", str(out_file)])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == ""
    assert "report written to" in captured.err and "policy step-images-pinned passed" in captured.err
    page = out_file.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "step-images-pinned" in page
    assert fakes.log[-1][1][1] == ["pub:a.pub", "pub:b.pub"]


def test_policy_violation_exits_14_after_writing_the_report(fakes: Calls, examples: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["report", "image", IMAGE, "--key", "k.pub", "--policy", str(examples / "slsa-v1-only.yaml")])
    captured = capsys.readouterr()
    assert code == 14
    assert "## chainmail provenance report: FAIL" in captured.out
    assert captured.err.strip() == (
        "Error: policy slsa-v1-only: 2 rule(s) failed: predicate-types, statement-v1")
    assert run_cli(["report", "image", IMAGE, "--key", "k.pub", "--exit-zero", "--format", "json",
                    "--policy", str(examples / "slsa-v1-only.yaml")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is False and doc["policy"]["policy"] == "slsa-v1-only"


def test_bad_policy_fails_before_verifying(fakes: Calls, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: b}\n"
                   "spec:\n  rules:\n    - {name: r, expression: 'a ==', message: m}\n")
    assert run_cli(["report", "image", IMAGE, "--key", "k.pub", "--policy", str(bad)]) == 3
    assert "rule 'r': CEL syntax error at 1:3" in capsys.readouterr().err
    assert fakes.log == []


def test_key_is_required(fakes: Calls, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["report", "image", IMAGE]) == 2
    assert "--key" in capsys.readouterr().err


def test_report_run_from_file(fakes: Calls, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared / "fixtures" / "chains-run" / "taskrun-after-chains.json"
    assert run_cli(["report", "run", "--from-file", str(path), "--key", "cosign.pub"]) == 0
    out = capsys.readouterr().out
    assert "Run: `TaskRun demo/build-app`" in out
    assert ("take_snapshot", (None, None, path, None)) in fakes.log
    assert fakes.log[-1][0] == "verify_run"


@pytest.mark.parametrize(("arg", "existing", "expected", "code"), [
    ("taskrun/build-1", [], [("build-1", None, None, "ci")], 0),
    ("pr/release-1", [], [(None, "release-1", None, "ci")], 0),
    ("build-2", ["TaskRun"], [("build-2", None, None, "ci")], 0),
    ("release-2", ["PipelineRun"], [(None, "release-2", None, "ci")], 0),
    ("missing", [], [], 20),  # NotFoundError: neither kind has it
    ("both", ["TaskRun", "PipelineRun"], [], 2),  # ambiguous: a usage error
])
def test_report_run_by_name(fakes: Calls, monkeypatch: pytest.MonkeyPatch, arg: str, existing: list[str],
                            expected: list, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A kind prefix picks the kind; a bare NAME is looked up as both kinds and must name only one."""
    lookups: list[tuple[str, str]] = []

    def kinds_named(ctx: Any, namespace: str, name: str) -> list[str]:
        lookups.append((namespace, name))
        return existing

    monkeypatch.setattr("chainmail._cli.run_arg.kinds_named", kinds_named)
    assert run_cli(["report", "run", arg, "-n", "ci", "--key", "cosign.pub"]) == code
    assert [c[1] for c in fakes.log if c[0] == "take_snapshot"] == expected
    assert lookups == ([] if "/" in arg else [("ci", arg)])
    if code == 2:
        assert "taskrun/both or pipelinerun/both" in capsys.readouterr().err


def test_report_run_needs_exactly_one_source(fakes: Calls, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["report", "run", "--key", "cosign.pub"]) == 4
    assert "name exactly one run" in capsys.readouterr().err
    assert run_cli(["report", "run", "deployment/x", "--key", "cosign.pub"]) == 4


# --------------------------------------------------------------------------- with the real verify


def test_report_run_from_file_with_real_verification(shared: Path, examples: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The real Chains-signed PipelineRun and its children, verified with chainmail.verify."""
    base = shared / "fixtures" / "chains-pipelinerun"
    bundle = {"pipelineRun": json.loads((base / "pipelinerun-after-chains.json").read_text()),
              "taskRuns": [json.loads((base / f"taskrun-{n}-after-chains.json").read_text())
                           for n in ("clone", "build", "scan")]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(bundle))
    code = run_cli(["report", "run", "--insecure-ignore-tlog", "--from-file", str(path), "--key", str(base / "cosign.pub"),
                    "--policy", str(examples / "step-images-pinned.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "**4 attestation(s), 0 signature(s) verified; policy step-images-pinned passed (8/8 checks)**" in out
    assert [line for line in out.splitlines() if line.startswith("### ")] == [
        "### PipelineRun provenance: `pipelinerun/release/release-run`",
        "### TaskRun provenance: `taskrun/release/release-run-clone`",
        "### TaskRun provenance: `taskrun/release/release-run-build`",
        "### TaskRun provenance: `taskrun/release/release-run-scan`",
        "### Policy `step-images-pinned`: passed",
    ]
    assert "| Source | `https://github.com/acme/app @ 9999999999999999999999999999999999999999 (main)` |" in out


def test_report_run_with_the_wrong_key_fails(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = shared / "fixtures" / "chains-run" / "taskrun-after-chains.json"
    other_key = shared / "fixtures" / "cosign-keys" / "ecdsa-p256-empty-password" / "cosign.pub"
    code = run_cli(["report", "run", "--insecure-ignore-tlog", "--from-file", str(run), "--key", str(other_key)])
    captured = capsys.readouterr()
    assert code == 12  # NoMatchingSignatureError: nothing reported for an unverified run
    assert captured.out == ""
