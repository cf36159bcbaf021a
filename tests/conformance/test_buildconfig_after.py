"""``slsa/v1`` ``predicate.buildConfig.tasks[].after`` for finally tasks and tasks around skipped or failed ones.

The cases in ``cases/`` are chainmail's own (public, made up); their expected output was written from a
reading of Chains' ``pkg/chains/formats/slsa/v1/pipelinerun/pipelinerun.go`` (``buildConfig``):

- ``after`` starts as the pipeline task's declared ``runAfter``, then gets each task whose *result* the task
  references (``v1.PipelineTaskResultRefs``: params, matrix, when, embedded steps), without repeats;
- a **finally** task left with no ``after`` gets exactly one name: the last *regular* task, in
  ``pipelineSpec.tasks`` order, that has at least one TaskRun. A skipped task (no TaskRun) never becomes that
  name (Chains ``continue``\\ s before updating it); a failed one does. No regular TaskRun at all: no ``after``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.formats import get_formatter, run_artifact
from chainmail.models import RunSnapshot

CASES = Path(__file__).parent / "cases"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "expected-slsa-v1-buildconfig.json").exists())


def _build_config(case: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    path = CASES / case
    doc = json.loads((path / "input.json").read_text())
    snapshot = RunSnapshot(doc["pipelineRun"], doc["taskRuns"])
    config = Config.from_mapping(json.loads((path / "config.json").read_text()))
    payload = get_formatter("slsa/v1", config).payload(run_artifact(snapshot), snapshot)
    got = json.loads(payload.body)["predicate"]["buildConfig"]["tasks"]
    return got, json.loads((path / "expected-slsa-v1-buildconfig.json").read_text())["tasks"]


def test_cases_exist() -> None:
    assert set(NAMES) >= {"pipelinerun-finally-after-skipped", "pipelinerun-failed-child", "pipelinerun-finally-only"}


@pytest.mark.parametrize("case", NAMES)
def test_after_name_and_status(case: str) -> None:
    got, expected = _build_config(case)
    picked = [{k: t[k] for k in ("name", "after", "status") if k in t} for t in got]
    assert picked == expected


@pytest.mark.parametrize("case", NAMES)
def test_empty_after_is_omitted(case: str) -> None:
    """Go's ``omitempty``: a task with nothing before it has no ``after`` key, never ``[]`` or ``null``."""
    got, _ = _build_config(case)
    assert all(t.get("after") for t in got if "after" in t)
