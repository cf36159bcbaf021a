"""The ``format`` step: what Tekton Chains would sign for a run, in every Chains payload format.

Example::

    from chainmail.formats import create_payloads

    for payload in create_payloads(snapshot, config):
        print(payload.artifact.short_key, payload.format, payload.digest)

A TaskRun yields its attestation in ``artifacts.taskrun.format`` plus one
``simplesigning`` payload per type-hinted image; a PipelineRun yields only its
attestation (Chains never signs images from PipelineRuns). Bodies are deterministic:
the same snapshot and config give byte-identical payloads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any, Literal

from chainmail.artifacts import image_artifact, oci_images, warnings_once
from chainmail.errors import ConfigError, InputError
from chainmail.formats._base import Formatter, InTotoFormatter
from chainmail.formats.simplesigning import SimpleSigning
from chainmail.formats.slsa import InTotoIte6, SlsaV2Alpha3, SlsaV2Alpha4
from chainmail.formats.tekton import Tekton
from chainmail.models import INTOTO_PAYLOAD_TYPE, Artifact, Payload, RunSnapshot

if TYPE_CHECKING:
    from chainmail.config import Config

__all__ = [
    "FORMATTER_FOR_TYPE",
    "Formatter",
    "InTotoFormatter",
    "artifact_uris",
    "create_payloads",
    "get_formatter",
    "run_artifact",
]

log = logging.getLogger("chainmail.formats")

#: Every payload format by its chains-config name. ``in-toto`` and ``slsa/v1`` are one format.
FORMATTER_FOR_TYPE: dict[str, type[Formatter]] = {
    "in-toto": InTotoIte6,
    "slsa/v1": InTotoIte6,
    "slsa/v2alpha3": SlsaV2Alpha3,
    "slsa/v2alpha4": SlsaV2Alpha4,
    "simplesigning": SimpleSigning,
    "tekton": Tekton,
}

#: The format that signs images; the others sign runs.
IMAGE_FORMAT = "simplesigning"


def _run_kind(snapshot: RunSnapshot) -> Literal["taskrun", "pipelinerun"]:
    return "taskrun" if snapshot.kind == "TaskRun" else "pipelinerun"


def get_formatter(name: str, config: Config) -> Formatter:
    """The formatter registered as ``name``; ConfigError naming the known ones otherwise."""
    cls = FORMATTER_FOR_TYPE.get(name)
    if cls is None:
        raise ConfigError(f"unknown payload format '{name}'; expected one of {', '.join(FORMATTER_FOR_TYPE)}")
    return cls(config, name)


def run_artifact(snapshot: RunSnapshot) -> Artifact:
    """The run as a signable artifact.

    FullKey ``<group>-<version>-<Kind>-<uid>``, ShortKey ``<kind>-<uid>`` (Chains' keys).
    """
    ref = snapshot.ref
    api_version = snapshot.run.get("apiVersion") or "tekton.dev/v1"
    group, _, version = api_version.rpartition("/")
    kind = _run_kind(snapshot)
    return Artifact(
        kind,
        f"{group}-{version}-{ref.kind}-{ref.uid}",
        f"{kind}-{ref.uid}",
        f"{ref.namespace}/{ref.name}",
        ref,
    )


def _run_formats(snapshot: RunSnapshot, config: Config, formats: list[str] | None) -> list[str]:
    kind = _run_kind(snapshot)
    names = list(dict.fromkeys(formats)) if formats else [config.format(kind)]
    for name in names:
        if name == IMAGE_FORMAT:
            raise ConfigError(
                f"'{IMAGE_FORMAT}' signs images, not runs; image signatures follow artifacts.oci.* "
                "(set artifacts.oci.signer to none to turn them off)"
            )
        get_formatter(name, config)  # validates the name
    return names


def create_payloads(
    snapshot: RunSnapshot,
    config: Config,
    formats: list[str] | None = None,
    *,
    provisional: bool = False,
) -> list[Payload]:
    """Everything Chains would sign for this run, as unsigned payloads.

    - the run attestation, in ``artifacts.<kind>.format`` (or each of ``formats``, which
      overrides the run format(s), e.g. ``["slsa/v1", "slsa/v2alpha4"]`` for a migration
      comparison), unless ``artifacts.<kind>`` is disabled (signer ``none`` or no storage);
    - for a TaskRun, one ``simplesigning`` payload per type-hinted image, unless
      ``artifacts.oci`` is disabled.

    ``provisional`` is passed through to every payload (a PipelineRun formatted by its own
    finally task while still running). A run without a status is an InputError; so is a
    PipelineRun whose child TaskRuns are missing from the snapshot under deep inspection.
    """
    with warnings_once():
        return _create(_as_chains_sees_it(snapshot), config, formats, provisional)


#: Annotations chainmail itself writes on runs (claims, failure reasons, provisional marks).
OWN_ANNOTATION_PREFIX = "chainmail.dev/"


def _without_own_annotations(obj: dict[str, Any]) -> dict[str, Any]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if not any(k.startswith(OWN_ANNOTATION_PREFIX) for k in annotations):
        return obj
    kept = {k: v for k, v in annotations.items() if not k.startswith(OWN_ANNOTATION_PREFIX)}
    return {**obj, "metadata": {**obj["metadata"], "annotations": kept}}


def _as_chains_sees_it(snapshot: RunSnapshot) -> RunSnapshot:
    """Drop chainmail's own bookkeeping annotations, so provenance equals what Chains would emit."""
    run = _without_own_annotations(snapshot.run)
    children = [_without_own_annotations(t) for t in snapshot.task_runs]
    if run is snapshot.run and all(a is b for a, b in zip(children, snapshot.task_runs, strict=True)):
        return snapshot
    return RunSnapshot(run, children, snapshot.source)


def _create(
    snapshot: RunSnapshot, config: Config, formats: list[str] | None, provisional: bool
) -> list[Payload]:
    """The body of :func:`create_payloads`."""
    from chainmail.formats._tekton import require_status
    from chainmail.formats.slsa._common import load

    kind = _run_kind(snapshot)
    names = _run_formats(snapshot, config, formats)
    require_status(snapshot.run, snapshot.kind)
    view = load(snapshot, deep=config.bool("artifacts.pipelinerun.enable-deep-inspection"))
    payloads: list[Payload] = []
    if config.enabled(kind):
        artifact = run_artifact(snapshot)
        for name in names:
            formatter = get_formatter(name, config)
            payloads.append(formatter.payload(artifact, snapshot, provisional=provisional, view=view))
    else:
        log.info("artifacts.%s is disabled (signer none or no storage); no %s attestation", kind, kind)
    if kind == "taskrun" and config.enabled("oci"):
        signer = get_formatter(config.format("oci"), config)
        # In sigstore-bundle mode an image signature travels as a DSSE envelope whose
        # payloadType is the simple-signing type (what Chains and cosign v3 write).
        bundle = config.get("storage.oci.encoding-format") == "sigstore-bundle"
        for image in oci_images(view.results):
            payload = signer.payload(image_artifact(image, snapshot.ref), snapshot, provisional=provisional)
            payloads.append(dataclasses.replace(payload, wrap=True) if bundle else payload)
    return payloads


def artifact_uris(payload: Payload) -> list[str]:
    """``name@alg:hex`` for each subject digest of an in-toto payload (Chains' RetrieveAllArtifactURIs)."""
    if payload.payload_type != INTOTO_PAYLOAD_TYPE:
        raise InputError(f"artifact URIs exist only for in-toto payloads, not {payload.format}")
    statement: dict[str, Any] = json.loads(payload.body)
    return [
        f"{subject.get('name', '')}@{alg}:{value}"
        for subject in statement.get("subject") or []
        for alg, value in sorted((subject.get("digest") or {}).items())
    ]
