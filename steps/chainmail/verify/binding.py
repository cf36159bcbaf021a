"""Is a verified payload about *this* run (or image)? The run identity a signed statement records, and
the checks that bind a stored signature to the run it was found on.

Where Chains' formats put the run's identity:

- SLSA v1.0 (``slsa/v2alpha2…4``): the uid in ``runDetails.metadata.invocationId`` (``invocationID``);
  the kind by the shape of ``buildDefinition.externalParameters.runSpec``; the run's labels (a child's
  ``tekton.dev/pipelineRunUID``) in ``internalParameters.labels`` for build type ``slsa-tekton``, whose
  PipelineRun statements also embed the children (``resolvedDependencies`` named ``pipelineTask``),
  whose controller owner reference names the PipelineRun and whose namespace is its namespace.
- SLSA v0.2 (``slsa/v1``, ``in-toto``): the kind at the end of ``buildType`` (``tekton.dev/v1/TaskRun``),
  labels in ``invocation.environment.labels``, start time in ``metadata.buildStartedOn``; the uid only
  when a producer sets ``metadata.buildInvocationId`` (Chains does not). Such statements are bound
  through the signature key and the start time.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import VerificationError
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE
from chainmail.verify.claims import signed_image_digest
from chainmail.verify.model import SignedRun, Verified

RUN_KEY_PREFIXES = {"taskrun": "TaskRun", "pipelinerun": "PipelineRun"}
PARENT_UID_LABEL = "tekton.dev/pipelineRunUID"


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _kind_of_spec(run_spec: dict[str, Any]) -> str:
    if "pipelineRef" in run_spec or "pipelineSpec" in run_spec:
        return "PipelineRun"
    if "taskRef" in run_spec or "taskSpec" in run_spec:
        return "TaskRun"
    return ""


def _embedded_children(dependencies: object) -> list[dict[str, Any]]:
    """The child TaskRuns a ``slsa-tekton`` PipelineRun statement embeds (``pipelineTask`` content)."""
    out = []
    for dep in dependencies if isinstance(dependencies, list) else []:
        content = _dict(dep).get("content")
        if _dict(dep).get("name") != "pipelineTask" or not isinstance(content, str):
            continue
        try:
            child = load_json(base64.b64decode(content, validate=True))
        except (ValueError, binascii.Error):
            continue
        if isinstance(child, dict):
            out.append(child)
    return out


def _owner_of(children: list[dict[str, Any]], uid: str) -> tuple[str, str]:
    """``(namespace, name)`` of the PipelineRun ``uid`` as its embedded children's controller reference says."""
    found = set()
    for child in children:
        metadata = _dict(child.get("metadata"))
        for ref in metadata.get("ownerReferences") or []:
            ref = _dict(ref)
            if ref.get("controller") is True and ref.get("kind") == "PipelineRun" and ref.get("uid") == uid:
                found.add((_str(metadata.get("namespace")), _str(ref.get("name"))))
    return found.pop() if len(found) == 1 else ("", "")


def signed_run_of(statement: dict[str, Any]) -> SignedRun:
    """The run identity the signed ``statement`` records ("" for what it does not record)."""
    predicate = _dict(statement.get("predicate"))
    if "runDetails" in predicate or "buildDefinition" in predicate:
        metadata = _dict(_dict(predicate.get("runDetails")).get("metadata"))
        definition = _dict(predicate.get("buildDefinition"))
        uid = _str(metadata.get("invocationId")) or _str(metadata.get("invocationID"))
        kind = _kind_of_spec(_dict(_dict(definition.get("externalParameters")).get("runSpec")))
        labels = _dict(_dict(definition.get("internalParameters")).get("labels"))
        namespace, name = ("", "")
        if uid and kind == "PipelineRun":
            namespace, name = _owner_of(_embedded_children(definition.get("resolvedDependencies")), uid)
    else:
        uid = _str(_dict(predicate.get("metadata")).get("buildInvocationId"))
        build_type = _str(predicate.get("buildType"))
        kind = next((k for k in ("TaskRun", "PipelineRun") if build_type.endswith("/" + k)), "")
        labels = _dict(_dict(_dict(predicate.get("invocation")).get("environment")).get("labels"))
        namespace, name = ("", "")
    return SignedRun(kind, namespace, name, uid, _str(labels.get(PARENT_UID_LABEL)))


def _same_time(a: object, b: object) -> bool:
    try:
        return datetime.fromisoformat(str(a).replace("Z", "+00:00")) == datetime.fromisoformat(
            str(b).replace("Z", "+00:00"))
    except ValueError:
        return str(a) == str(b)


def _times(statement: dict[str, Any]) -> tuple[object, object]:
    """The signed start and finish times (SLSA v1.0 ``startedOn``/``finishedOn``, v0.2 ``build…On``)."""
    predicate = _dict(statement.get("predicate"))
    details = predicate.get("runDetails")
    metadata = _dict(details.get("metadata")) if isinstance(details, dict) else _dict(predicate.get("metadata"))
    return (metadata.get("startedOn", metadata.get("buildStartedOn")),
            metadata.get("finishedOn", metadata.get("buildFinishedOn")))


def is_image_key(short_key: str) -> bool:
    """Chains' ShortKey of an image: the first 12 hex digits of its digest."""
    return len(short_key) == 12 and all(c in "0123456789abcdef" for c in short_key)


def check_run_binding(short_key: str, run_kind: str, uid: str, item: Verified, started: str = "",
                      finished: str = "") -> SignedRun | None:
    """The ``<key>`` of ``signature-<key>`` must name what was signed, so another run's genuine
    annotations pasted onto this run do not verify; returns the signed run identity (None for images).

    ``taskrun-<uid>``/``pipelinerun-<uid>``: this run's kind and uid (``uid`` "" when the caller does
    not know it, as for the file store), an in-toto statement whose recorded kind and uid (see
    :func:`signed_run_of`) are the key's, and whose start time (SLSA v0.2 ``metadata.buildStartedOn``,
    v1.0 ``runDetails.metadata.startedOn``) is the run's ``status.startTime`` — and, for a TaskRun, whose
    finish time is its ``status.completionTime`` (a provisional PipelineRun attestation predates its
    finish, so a PipelineRun's is not compared). SLSA v0.2 statements record no uid: the times are what
    binds them. An image key (12 hex): a simple-signing payload whose image digest starts with it
    (Chains' ShortKey).
    """
    prefix, sep, rest = short_key.partition("-")
    if sep and prefix in RUN_KEY_PREFIXES:
        if prefix != run_kind.lower():
            raise VerificationError(f"key {short_key} is for a {prefix}, not for this {run_kind}")
        if uid and rest != uid:
            raise VerificationError(f"key {short_key} names another run (this run's uid is {uid})")
        if item.statement is None:
            raise VerificationError(f"key {short_key} holds {item.payload_type}, not a run attestation")
        signed = signed_run_of(item.statement)
        if signed.kind and signed.kind != RUN_KEY_PREFIXES[prefix]:
            raise VerificationError(f"the statement is about a {signed.kind}, not about this {run_kind}")
        if signed.uid and signed.uid != rest:
            raise VerificationError(f"the statement's invocationId {signed.uid!r} is not this run's uid {rest}")
        signed_start, signed_finish = _times(item.statement)
        if started and signed_start is not None and not _same_time(signed_start, started):
            raise VerificationError(f"the statement's start time {signed_start} is not this run's "
                                    f"status.startTime {started}")
        if finished and prefix == "taskrun" and signed_finish is not None and not _same_time(signed_finish,
                                                                                             finished):
            raise VerificationError(f"the statement's finish time {signed_finish} is not this run's "
                                    f"status.completionTime {finished}")
        return signed
    if is_image_key(short_key):
        digest = signed_image_digest(item.payload) if item.payload_type == SIMPLESIGNING_PAYLOAD_TYPE else ""
        if not digest.startswith(f"sha256:{short_key}"):
            raise VerificationError(f"key {short_key} does not name the signed image ({digest or 'no image'})")
        return None
    raise VerificationError(f"unexpected signature key {short_key!r} (Chains writes taskrun-<uid>, "
                            "pipelinerun-<uid> or a 12-hex image key)")
