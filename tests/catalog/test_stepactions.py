"""The StepActions are generated from the Tasks (tasks/generate_stepactions.py) and must not drift."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import yaml
from catalog_support import REPO, STEPACTIONS, TASKS, catalog_image


def test_generated_files_are_up_to_date(generator: ModuleType) -> None:
    stale = [str(p.relative_to(REPO)) for p, content in generator.render().items()
             if not p.exists() or p.read_text() != content]
    assert stale == [], "StepActions drifted from the Tasks; run: python tasks/generate_stepactions.py"


def test_check_mode_reports_no_drift(generator: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert generator.main(["--check"]) == 0
    assert capsys.readouterr().err == ""


def test_check_mode_detects_drift(generator: ModuleType, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    files = generator.render()
    target = next(iter(files))
    copy = tmp_path / target.relative_to(REPO)
    copy.parent.mkdir(parents=True)
    copy.write_text(files[target].replace("chainmail", "chainmale", 1))
    monkeypatch.setattr(generator, "render", lambda: {copy: files[target]})
    monkeypatch.setattr(generator, "REPO", tmp_path)
    assert generator.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert copy.read_text() != files[target], "--check must not write"


def test_every_stepaction_directory_is_generated(generator: ModuleType) -> None:
    generated = {p.parent.name for p in generator.render()}
    on_disk = {p.name for p in STEPACTIONS.iterdir() if p.is_dir()}
    assert generated == on_disk == {s.name for s in generator.STEPACTIONS}


def _load(name: str) -> dict:
    return yaml.safe_load((STEPACTIONS / name / f"{name}.yaml").read_text())


def _task_script(name: str) -> str:
    return yaml.safe_load((TASKS / name / f"{name}.yaml").read_text())["spec"]["steps"][0]["script"]


@pytest.mark.parametrize(("name", "subcommand", "flags", "absent"), [
    ("chainmail-snapshot", "snapshot", ["--taskrun", "--pipelinerun", "--namespace", "--uid", "--workspace"],
     ["--key", "--config", "--results-dir", "--with-children"]),
    ("chainmail-format", "format", ["--config", "--configmap", "--workspace"], ["--key", "--taskrun", "--uid"]),
    # sign looks up each claimed image (registry credentials); store verifies with the operator's key
    ("chainmail-sign-payloads", "sign", ["--key", "--docker-config", "--config", "--workspace"], ["--results-dir"]),
    ("chainmail-store", "store", ["--key", "--docker-config", "--results-dir", "--workspace"], ["--taskrun"]),
])
def test_signing_stepactions_carry_only_their_flags(name: str, subcommand: str, flags: list[str],
                                                    absent: list[str]) -> None:
    script = _load(name)["spec"]["script"]
    assert f"set -- {subcommand}\n" in script
    for flag in flags:
        assert f" {flag} " in script, f"{name} lacks {flag}"
    for flag in absent:
        assert f" {flag} " not in script, f"{name} must not pass {flag}"


@pytest.mark.parametrize("name", ["chainmail-snapshot", "chainmail-format", "chainmail-sign-payloads",
                                  "chainmail-store"])
def test_stepaction_script_lines_come_from_the_task(name: str) -> None:
    """Derivation, not a copy that happens to match: every line exists in chainmail-sign's script."""
    source = _task_script("chainmail-sign").splitlines()
    for line in _load(name)["spec"]["script"].splitlines():
        if line.startswith("set -- ") and "$@" not in line:
            continue  # the subcommand line
        assert line in source, f"{name}: {line!r} is not in chainmail-sign's script"


def test_verify_stepaction_is_the_verify_task_step() -> None:
    task = yaml.safe_load((TASKS / "chainmail-verify" / "chainmail-verify.yaml").read_text())
    sa = _load("chainmail-verify")
    assert sa["spec"]["script"] == task["spec"]["steps"][0]["script"]
    assert sa["spec"]["securityContext"] == task["spec"]["steps"][0]["securityContext"]
    task_params = {p["name"] for p in task["spec"]["params"]}
    sa_params = {p["name"] for p in sa["spec"]["params"]}
    assert sa_params == task_params | {"PUBLIC_KEY_PATH", "POLICY_PATH", "DOCKERCONFIG_PATH", "SSL_CA_DIRECTORY_PATH"}


@pytest.mark.parametrize("name", ["chainmail-snapshot", "chainmail-format", "chainmail-sign-payloads",
                                  "chainmail-store", "chainmail-verify"])
def test_stepaction_shape(name: str) -> None:
    doc = _load(name)
    spec = doc["spec"]
    assert doc["apiVersion"] == "tekton.dev/v1beta1" and doc["kind"] == "StepAction"
    assert spec["image"] == "$(params.CHAINMAIL_IMAGE)"
    image = next(p for p in spec["params"] if p["name"] == "CHAINMAIL_IMAGE")
    assert image["default"] == catalog_image()
    env_values = [e.get("value", "") for e in spec["env"]]
    assert not any("$(workspaces." in v or "$(results." in v for v in env_values), \
        "StepActions have no workspaces or Task results"
    for p in spec["params"]:
        if p["name"].endswith("_PATH") and p["name"] != "OUTPUT_PATH":
            assert p.get("default") == "", f"{name}: optional workspace param {p['name']} needs an empty default"
    if name != "chainmail-verify":
        output = next(p for p in spec["params"] if p["name"] == "OUTPUT_PATH")
        assert "default" not in output, "the shared directory is required"
    header = (STEPACTIONS / name / f"{name}.yaml").read_text().splitlines()[0]
    assert header.startswith("# Generated by tasks/generate_stepactions.py")


def test_script_units_keep_if_blocks_whole(generator: ModuleType) -> None:
    script = "a\nif x; then\n  b\nelif y; then\n  c\nfi\nd\n"
    assert generator.script_units(script) == [["a"], ["if x; then", "  b", "elif y; then", "  c", "fi"], ["d"]]
    with pytest.raises(ValueError, match="unbalanced"):
        generator.script_units("if x; then\n  b\n")


def test_sync_image_pattern_matches_the_catalog_ref(generator: ModuleType) -> None:
    assert generator._PINNED.fullmatch(catalog_image())
