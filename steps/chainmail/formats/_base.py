"""The formatter interface and the in-toto statement encoding shared by the SLSA formats."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from chainmail._internal.encoding import compact_json
from chainmail.artifacts import Descriptors, parse_image
from chainmail.errors import InputError
from chainmail.models import INTOTO_PAYLOAD_TYPE, Artifact, Payload, RunSnapshot

if TYPE_CHECKING:
    from chainmail.config import Config
    from chainmail.formats.slsa._common import PipelineRunView, TaskRunView


class Formatter(ABC):
    """Turns one artifact of a run into the bytes to sign (Chains' ``Payloader``)."""

    #: The chains-config name (``slsa/v1``, ``simplesigning``, …).
    type: ClassVar[str]
    #: ``Payload.payload_type`` (the DSSE payloadType for wrapped formats).
    payload_type: ClassVar[str]
    #: True when the payload is signed inside a DSSE envelope.
    wrap: ClassVar[bool]
    #: Artifact kinds this format applies to.
    kinds: ClassVar[frozenset[str]]

    def __init__(self, config: Config, name: str | None = None) -> None:
        self.config = config
        #: The name it was asked for (``in-toto`` and ``slsa/v1`` share one class).
        self.name = name or self.type

    @abstractmethod
    def body(self, artifact: Artifact, snapshot: RunSnapshot, view: Any = None) -> bytes:
        """The payload bytes (deterministic for a given snapshot and config).

        ``view`` is an already decoded run to reuse (see :func:`chainmail.formats.slsa._common.load`).
        """

    def oci_subjects(self, body: bytes) -> tuple[str, ...]:
        """``repo@sha256:<hex>`` targets an OCI backend attaches this payload to."""
        return ()

    def payload(
        self, artifact: Artifact, snapshot: RunSnapshot, *, provisional: bool = False, view: Any = None
    ) -> Payload:
        """Format ``artifact`` of ``snapshot`` into a :class:`Payload`."""
        if artifact.kind not in self.kinds:
            raise InputError(f"format {self.name} does not apply to {artifact.kind} artifacts")
        body = self.body(artifact, snapshot, view)
        return Payload(
            artifact, self.name, self.payload_type, body, self.wrap, self.oci_subjects(body), provisional
        )


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def oci_targets(subjects: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """``name@sha256:<hex>`` of each subject with a sha256 digest whose name parses as an image."""
    out: dict[str, None] = {}
    for subject in subjects:
        hexpart = (subject.get("digest") or {}).get("sha256")
        if not hexpart:
            continue
        ref = f"{subject.get('name', '')}@sha256:{hexpart}"
        try:
            parse_image(ref)
        except ValueError:
            continue
        out[ref] = None
    return tuple(out)


class InTotoFormatter(Formatter):
    """A format that signs an in-toto Statement about the run (DSSE-wrapped)."""

    payload_type = INTOTO_PAYLOAD_TYPE
    wrap = True
    kinds = frozenset({"taskrun", "pipelinerun"})
    statement_type: ClassVar[str]
    predicate_type: ClassVar[str]

    @property
    def deep(self) -> bool:
        return self.config.bool("artifacts.pipelinerun.enable-deep-inspection")

    @property
    def builder_id(self) -> str:
        return self.config.get("builder.id")

    def view(self, snapshot: RunSnapshot) -> TaskRunView | PipelineRunView:
        from chainmail.formats.slsa._common import load

        return load(snapshot, deep=self.deep)

    @abstractmethod
    def subjects(self, view: TaskRunView | PipelineRunView) -> Descriptors:
        """The statement's subjects."""

    @abstractmethod
    def predicate(self, view: TaskRunView | PipelineRunView) -> dict[str, Any]:
        """The predicate (any key order; it is sorted when encoded)."""

    def statement(
        self, snapshot: RunSnapshot, view: TaskRunView | PipelineRunView | None = None
    ) -> dict[str, Any]:
        """The Statement as a JSON value, keys in protojson's order."""
        view = view or self.view(snapshot)
        doc: dict[str, Any] = {"_type": self.statement_type}
        subjects = []
        for name, digest in self.subjects(view):
            entry: dict[str, Any] = {}
            if name:
                entry["name"] = name
            if digest:
                entry["digest"] = dict(sorted(digest.items()))
            subjects.append(entry)
        if subjects:
            doc["subject"] = subjects
        doc["predicateType"] = self.predicate_type
        doc["predicate"] = _sorted(self.predicate(view))
        return doc

    def body(self, artifact: Artifact, snapshot: RunSnapshot, view: Any = None) -> bytes:
        return compact_json(self.statement(snapshot, view))

    def oci_subjects(self, body: bytes) -> tuple[str, ...]:
        return oci_targets(json.loads(body).get("subject") or [])
