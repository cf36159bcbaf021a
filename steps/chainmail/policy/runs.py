"""Which run a statement is about, from the **signed** statement only.

Chains' statements name a run sparsely. SLSA v1.0 records its uid (``runDetails.metadata.invocationId``);
with buildType ``slsa-tekton`` a PipelineRun's statement embeds its child TaskRuns, whose
``metadata.namespace`` and controller owner reference (a PipelineRun with that uid) give the run's
namespace and name. SLSA v0.2 records none of them (``metadata.buildInvocationId`` is read when a
producer sets it). What the statement does not say stays ``""``: the run object a statement was found
on (its annotations, or a ``--from-file`` JSON) is not signed, so it is never a source of identity.

``chainmail.verify`` records the same identity on each ``Verified`` (``signed_run``);
:func:`run_identity` prefers it and falls back to :func:`signed_run_identity` for other callers.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.policy._shapes import as_dict, as_list, as_str

_RUN_REF = re.compile(r"(?i)(?:(taskrun|pipelinerun)[/ ])?([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([-a-z0-9.]+)")


def run_of_ref(ref: str) -> tuple[str, str, str] | None:
    """``(kind, namespace, name)`` of a run reference (``taskrun/ns/name``, ``ns/name``); None for images.

    For display only: a reference is where a statement was found, not what it says.
    """
    match = _RUN_REF.fullmatch(ref.strip())
    if match is None or "@" in ref:
        return None
    kind = {"taskrun": "TaskRun", "pipelinerun": "PipelineRun"}.get((match.group(1) or "").lower(), "")
    return kind, match.group(2), match.group(4)


def signed_run_identity(predicate: dict[str, Any]) -> dict[str, str]:
    """``{name, namespace, uid}`` of the run, as far as the signed predicate records it."""
    details = as_dict(predicate.get("runDetails"))
    if details or "buildDefinition" in predicate:
        metadata = as_dict(details.get("metadata"))
        uid = as_str(metadata.get("invocationId")) or as_str(metadata.get("invocationID"))
        deps = as_list(as_dict(predicate.get("buildDefinition")).get("resolvedDependencies"))
        children = [c for c in (_embedded_run(as_dict(d)) for d in deps) if c is not None]
        namespace, name = _from_children(children, uid)
        return {"name": name, "namespace": namespace, "uid": uid}
    uid = as_str(as_dict(predicate.get("metadata")).get("buildInvocationId"))
    return {"name": "", "namespace": "", "uid": uid}


def run_identity(item: Any, predicate: dict[str, Any]) -> dict[str, str]:
    """``{name, namespace, uid}``: verification's ``signed_run`` when the item has one, else from ``predicate``."""
    signed = getattr(item, "signed_run", None)
    if signed is not None:
        return {key: as_str(getattr(signed, key, "")) for key in ("name", "namespace", "uid")}
    return signed_run_identity(predicate)


def _embedded_run(dep: dict[str, Any]) -> dict[str, Any] | None:
    """The child TaskRun a ``slsa-tekton`` ``pipelineTask`` dependency carries in ``content``."""
    content = dep.get("content")
    if dep.get("name") != "pipelineTask" or not isinstance(content, str) or not content:
        return None
    try:
        run = load_json(base64.b64decode(content, validate=True))
    except (ValueError, binascii.Error):
        return None
    return run if isinstance(run, dict) else None


def _from_children(children: list[dict[str, Any]], uid: str) -> tuple[str, str]:
    """``(namespace, name)`` of the PipelineRun ``uid``, as its children's controller owner reference says."""
    found: set[tuple[str, str]] = set()
    for child in children:
        metadata = as_dict(child.get("metadata"))
        for ref in as_list(metadata.get("ownerReferences")):
            ref = as_dict(ref)
            if ref.get("controller") is True and ref.get("kind") == "PipelineRun" and ref.get("uid") == uid:
                found.add((as_str(metadata.get("namespace")), as_str(ref.get("name"))))
    return found.pop() if uid and len(found) == 1 else ("", "")
