"""``slsa/v2alpha3``: in-toto Statement v1 with a SLSA 1.0 provenance predicate."""

from __future__ import annotations

from typing import Any

from chainmail.artifacts import Descriptors
from chainmail.formats._base import InTotoFormatter
from chainmail.formats.slsa._common import (
    SLSA_BUILD_TYPE,
    PipelineRunView,
    TaskRunView,
    byproduct,
    pipelinerun_dependencies,
    slsa1_predicate,
    subjects_v1,
    taskrun_dependencies,
)


class Slsa1Formatter(InTotoFormatter):
    """What v2alpha3 and v2alpha4 share: Statement v1, SLSA 1.0, ``builddefinition.buildtype``."""

    statement_type = "https://in-toto.io/Statement/v1"
    predicate_type = "https://slsa.dev/provenance/v1"
    #: Whether StepAction results and remote StepActions count (v2alpha4).
    step_actions = False

    @property
    def build_type(self) -> str:
        return self.config.get("builddefinition.buildtype") or SLSA_BUILD_TYPE

    def dependencies(self, view: TaskRunView | PipelineRunView) -> list[dict[str, Any]]:
        if isinstance(view, PipelineRunView):
            return pipelinerun_dependencies(
                view, deep=self.deep, step_actions=self.step_actions, build_type=self.build_type
            )
        return taskrun_dependencies(view, step_actions=self.step_actions)

    def byproducts(self, view: TaskRunView | PipelineRunView) -> list[dict[str, Any]]:
        prefix = "pipelineRunResults" if isinstance(view, PipelineRunView) else "taskRunResults"
        return [byproduct(f"{prefix}/{r.name}", r.value) for r in view.results]

    def predicate(self, view: TaskRunView | PipelineRunView) -> dict[str, Any]:
        return slsa1_predicate(
            view,
            builder_id=self.builder_id,
            build_type=self.build_type,
            dependencies=self.dependencies(view),
            byproducts=self.byproducts(view),
        )


class SlsaV2Alpha3(Slsa1Formatter):
    """SLSA 1.0 provenance; subjects as slsa/v1, every result a byproduct."""

    type = "slsa/v2alpha3"

    def subjects(self, view: TaskRunView | PipelineRunView) -> Descriptors:
        return subjects_v1(view, deep=self.deep)
