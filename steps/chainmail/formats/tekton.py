"""``tekton``: the run's status as JSON, signed raw (the format OpenShift Pipelines documents).

Tekton Chains removed this format in 2022; chainmail keeps it for migrations. It is only
reachable through an explicit ``--format tekton`` (chains-config does not accept it).
"""

from __future__ import annotations

from typing import Any

from chainmail.formats._base import Formatter
from chainmail.formats._goval import go_json
from chainmail.formats._tekton import decode_run
from chainmail.models import Artifact, RunSnapshot

TEKTON_PAYLOAD_TYPE = "application/json"


class Tekton(Formatter):
    """``json.Marshal(run.Status)``: compact, Go's field order."""

    type = "tekton"
    payload_type = TEKTON_PAYLOAD_TYPE
    wrap = False
    kinds = frozenset({"taskrun", "pipelinerun"})

    def body(self, artifact: Artifact, snapshot: RunSnapshot, view: Any = None) -> bytes:
        obj = view.obj if view is not None else decode_run(snapshot.run, snapshot.kind)
        return go_json(obj["status"])
