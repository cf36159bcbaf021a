"""The parts of the catalog's yamllint rules that matter, without needing yamllint installed
(CI also runs yamllint itself, see .github/workflows/e2e.yaml): every file parses, no duplicate
keys, no tabs, no trailing spaces, a final newline; plus a look at the e2e workflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from catalog_support import CATALOG, REPO, UniqueKeyLoader, yaml_files

WORKFLOW = REPO / ".github" / "workflows" / "e2e.yaml"
FILES = [*yaml_files(), CATALOG, WORKFLOW]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_yaml_is_tidy(path: Path) -> None:
    text = path.read_text()
    list(yaml.load_all(text, Loader=UniqueKeyLoader))  # parses, no duplicate keys
    assert "\t" not in text, "tabs"
    trailing = [i for i, line in enumerate(text.splitlines(), 1) if line != line.rstrip()]
    assert trailing == [], f"trailing spaces on lines {trailing}"
    assert text.endswith("\n") and not text.endswith("\n\n"), "exactly one final newline"


def test_duplicate_keys_are_caught() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key 'a'"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=UniqueKeyLoader)


def test_e2e_workflow_covers_the_packaging() -> None:
    workflow = yaml.load(WORKFLOW.read_text(), Loader=UniqueKeyLoader)
    e2e = workflow["jobs"]["e2e"]
    text = WORKFLOW.read_text()
    assert "1.0.0" in " ".join(e2e["strategy"]["matrix"]["pipeline-version"]).replace("v", "")
    for needle in ("helm/kind-action@", "tektoncd/pipeline/releases/download", "tektoncd/triggers/releases/download",
                   "registry:2", "images/chainmail/Containerfile", "kind load docker-image",
                   "pipelines/build-and-sign/tests/run.yaml", "chainmail verify image", "chainmail verify attestation",
                   "cosign verify ", "cosign verify-attestation", "config-events", "cronjob/chainmail-sweep"):
        assert needle in text, needle
    for step in (s for job in workflow["jobs"].values() for s in job["steps"]):
        uses = step.get("uses")
        if uses:
            ref = uses.split("@", 1)[1]
            assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), f"pin {uses} to a commit"
