"""``slsa/v2alpha4``: v2alpha3 plus StepActions and the build-artifact / byproduct split."""

from __future__ import annotations

from typing import Any

from chainmail.artifacts import Descriptors
from chainmail.formats.slsa._common import (
    PipelineRunView,
    TaskRunView,
    results_without_build_artifacts,
    subjects_v2alpha4,
)
from chainmail.formats.slsa.v2alpha3 import Slsa1Formatter


def taskrun_byproducts(tr: TaskRunView) -> list[dict[str, Any]]:
    """Task results, then step results, that are not build artifacts or image hints."""
    return results_without_build_artifacts(f"taskRunResults/{tr.name}", tr.results) + (
        results_without_build_artifacts(f"stepResults/{tr.name}", tr.step_results)
    )


class SlsaV2Alpha4(Slsa1Formatter):
    """SLSA 1.0 provenance whose subjects are build artifacts only; other results are byproducts."""

    type = "slsa/v2alpha4"
    step_actions = True

    def subjects(self, view: TaskRunView | PipelineRunView) -> Descriptors:
        return subjects_v2alpha4(view, deep=self.deep)

    def byproducts(self, view: TaskRunView | PipelineRunView) -> list[dict[str, Any]]:
        if isinstance(view, TaskRunView):
            return taskrun_byproducts(view)
        out = results_without_build_artifacts(f"pipelineRunResults/{view.name}", view.results)
        if self.deep:
            for tr in view.executed():
                out += taskrun_byproducts(tr)
        return out
