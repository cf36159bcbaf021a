"""Run-level verification (``chainmail verify run``): is *this* run signed, by its own attestation?

A run verifies only with a valid ``chains.tekton.dev/signature-<kind>-<uid>`` of its own, bound to it
(:func:`~chainmail.verify.binding.check_run_binding`: the key names its kind and uid, the statement's
recorded kind, uid and start time are the run's). A PipelineRun's child TaskRuns are verified and
reported too, but never stand in for the PipelineRun's own attestation. A child is a TaskRun named in
the PipelineRun's ``status.childReferences`` or controlled by it (an ownerReference with
``controller: true`` and its uid), in its namespace — never one that merely carries the
``tekton.dev/pipelineRunUID`` label, which anyone who can create a TaskRun can set.

Every stored signature on the run and its children must verify (chainmail's and Chains' own records).
They are read from the runs' annotations, or through a :data:`Reader` (the ``gcs`` bucket:
:mod:`chainmail.verify.gcs_store`), with the same binding rules.
Outcomes: :class:`InputError` (4) for a run object without ``metadata.uid`` (nothing to bind to);
:class:`NoMatchingSignatureError` (12) when a stored signature does not verify or is bound to another
run; :class:`NoSignatureError` (10) when the run has no signature of its own, or is marked
``chains.tekton.dev/signed: failed``. A run not marked ``signed: "true"`` (a provisional PipelineRun
attestation, a run signed by hand) verifies with a warning saying so.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chainmail.errors import (
    Error,
    InputError,
    NoMatchingSignatureError,
    NoSignatureError,
    VerificationError,
)
from chainmail.models import RunSnapshot
from chainmail.snapshot import is_child
from chainmail.verify.binding import check_run_binding
from chainmail.verify.keys import Key, load_keys
from chainmail.verify.model import Verified
from chainmail.verify.refs import RefsReader
from chainmail.verify.run_annotations import (
    FAILURE_REASON,
    PROVISIONAL_SIGNED,
    SIGNATURE_PREFIX,
    SIGNED,
    signature_keys,
    verify_annotation,
)
from chainmail.verify.search import MALFORMED

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.verify.tlog import TlogCheck

log = logging.getLogger("chainmail.verify")


@dataclass(frozen=True)
class RunObject:
    """A run as found (its metadata is not signed: only ``uid`` is bound, through the signature key)."""

    kind: str
    namespace: str
    name: str
    uid: str
    started: str
    finished: str
    annotations: dict[str, Any]
    obj: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"

    @property
    def own_key(self) -> str:
        return f"{self.kind.lower()}-{self.uid}"


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def run_object(obj: object, kind: str | None = None) -> RunObject:
    """``obj`` as a :class:`RunObject`; :class:`InputError` when it is not a run with a uid."""
    if not isinstance(obj, dict):
        raise InputError("verify run: expected a TaskRun or PipelineRun object")
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    kind = kind or RunSnapshot(obj).kind
    ref = f"{kind.lower()}/{_text(metadata, 'namespace')}/{_text(metadata, 'name')}"
    uid = _text(metadata, "uid")
    if not uid:
        raise InputError(f"{ref} has no metadata.uid: a run's signatures are bound to its uid, so it cannot be "
                         "verified (read the run from the cluster, or give the file as kubectl get -o json wrote it)")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InputError(f"{ref}: metadata.annotations is not an object")
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    return RunObject(kind, _text(metadata, "namespace"), _text(metadata, "name"), uid,
                     _text(status, "startTime"), _text(status, "completionTime"), annotations, obj)


def _snapshot_parts(snapshot_or_obj: RunSnapshot | dict[str, Any]) -> tuple[Any, list[Any]]:
    if isinstance(snapshot_or_obj, RunSnapshot):
        return snapshot_or_obj.run, list(snapshot_or_obj.task_runs)
    if isinstance(snapshot_or_obj, dict) and "pipelineRun" in snapshot_or_obj:
        return snapshot_or_obj["pipelineRun"], list(snapshot_or_obj.get("taskRuns") or [])
    if isinstance(snapshot_or_obj, dict) and isinstance(snapshot_or_obj.get("run"), dict):
        return snapshot_or_obj["run"], list(snapshot_or_obj.get("taskRuns") or [])
    if isinstance(snapshot_or_obj, dict):
        return snapshot_or_obj, []
    raise InputError("verify run: expected a run object or a snapshot")


#: One stored signature of a run, not yet verified: (short key, where it was found, the verification).
Entry = tuple[str, str, Callable[[], Verified]]
#: Where a run's stored signatures are read from (``None``: its own annotations).
Reader = Callable[[RunObject, list[Key]], list[Entry]]


def _annotation_entries(run: RunObject, keys: list[Key]) -> list[Entry]:
    """Every ``signature-<key>`` annotation on ``run``."""
    return [(short, f"{run.ref} {SIGNATURE_PREFIX}{short}",
             functools.partial(verify_annotation, run.annotations, short, keys, run.ref))
            for short in signature_keys(run.annotations)]


def _verify_signatures(run: RunObject, keys: list[Key], failures: list[str], read: Reader | None = None,
                       ) -> list[tuple[str, Verified]]:
    """Every stored signature of ``run``, verified and bound to it (failures appended to ``failures``)."""
    out = []
    on_run = read is None or isinstance(read, RefsReader)  # the run's annotations (and refs-mode references)
    entries = (_annotation_entries(run, keys) + (read(run, keys) if read else [])) if on_run else read(run, keys)
    for short, where, check in entries:
        try:
            item = check()
            signed = check_run_binding(short, run.kind, run.uid, item, run.started, run.finished)
            if signed is not None:
                for field, claimed in (("namespace", run.namespace), ("name", run.name)):
                    recorded = getattr(signed, field)
                    if recorded and recorded != claimed:
                        raise VerificationError(f"the statement names {field} {recorded!r}, not {claimed!r}")
                item = dataclasses.replace(item, signed_run=signed)
            out.append((short, item))
        except (VerificationError, Error) as exc:
            failures.append(f"{where}: {exc}")
        except MALFORMED as exc:
            what = "annotation" if on_run else "stored object"
            failures.append(f"{where}: malformed {what} ({type(exc).__name__})")
    return out


def _children(main: RunObject, candidates: list[Any], failures: list[str]) -> list[RunObject]:
    out = []
    for candidate in candidates:
        if not isinstance(candidate, dict) or not is_child(main.obj, candidate):
            md = candidate.get("metadata") if isinstance(candidate, dict) else None
            name = _text(md, "name") if isinstance(md, dict) else "?"
            log.warning("TaskRun %s is not a child of %s (not in its childReferences, not controlled by it); "
                        "it is not verified as part of it", name, main.ref)
            continue
        try:
            out.append(run_object(candidate, "TaskRun"))
        except InputError as exc:
            failures.append(str(exc))
    return out


def _failed(run: RunObject) -> str:
    """Why ``run`` does not count as signed: it is marked ``chains.tekton.dev/signed: failed`` ("" otherwise)."""
    if run.annotations.get(SIGNED) != "failed":
        return ""
    reason = run.annotations.get(FAILURE_REASON)
    shown = f" (failure reason {reason[:200]!r})" if isinstance(reason, str) and reason else ""
    return f"it is marked chains.tekton.dev/signed: failed{shown}"


def _note_unmarked(run: RunObject) -> None:
    """Warn when a run verified without being marked ``chains.tekton.dev/signed: "true"``."""
    if run.annotations.get(SIGNED) == "true":
        return
    note = ("its attestation is provisional (chainmail.dev/provisional-signed: the PipelineRun was still "
            "running)" if run.annotations.get(PROVISIONAL_SIGNED) == "true"
            else "it is not marked chains.tekton.dev/signed: \"true\"")
    log.warning("%s: %s", run.ref, note)


def verify_run(snapshot_or_obj: RunSnapshot | dict[str, Any], public_keys: list[str], ctx: Context,
               read: Reader | None = None, *, tlog: TlogCheck | None = None) -> list[Verified]:
    """Verify a run by its own attestation and report its children (see the module docstring).

    ``read`` lists each run's stored signatures when they are not its annotations (the ``gcs`` bucket,
    :func:`chainmail.verify.gcs_store.gcs_reader`); the binding rules are the same. Returns the run's
    verified payloads first, then each child's. Raises :class:`InputError` (no uid),
    :class:`NoMatchingSignatureError` or :class:`NoSignatureError`; then the run's transparency log
    entry must bind one of its signatures (:mod:`chainmail.verify.run_tlog`; ``tlog`` None: required,
    production log keys), else a transparency log error (24-28).
    """
    keys = load_keys(public_keys, ctx)
    read = read if read is not None else RefsReader(ctx)
    main_obj, candidates = _snapshot_parts(snapshot_or_obj)
    main = run_object(main_obj)
    failures: list[str] = []
    found = _verify_signatures(main, keys, failures, read)
    own = [v for short, v in found if short == main.own_key]
    verified = [v for _, v in found]
    children = _children(main, candidates, failures) if main.kind == "PipelineRun" else []
    child_items: list[tuple[str, dict[str, Any], list[Verified]]] = []
    for child in children:
        items = _verify_signatures(child, keys, failures, read)
        child_items.append((child.ref, child.annotations, [v for _, v in items]))
        for _, item in items:
            parent = item.signed_run.parent_uid if item.signed_run is not None else ""
            if parent and parent != main.uid:
                failures.append(f"{child.ref}: its statement names PipelineRun uid {parent}, not {main.uid}")
        if not any(short == child.own_key for short, _ in items):
            log.warning("%s (child of %s) has no signature of its own", child.ref, main.ref)
        verified += [v for _, v in items]
    if failures:
        shown = "; ".join(failures[:3]) + (f"; … {len(failures) - 3} more" if len(failures) > 3 else "")
        whose = f"{main.ref} and its children" if children else main.ref
        raise NoMatchingSignatureError(f"{len(failures)} of {len(failures) + len(verified)} signatures of "
                                       f"{whose} did not verify: {shown}")
    problem = _failed(main)
    if problem:
        raise NoSignatureError(f"{main.ref} is not signed: {problem}")
    if not own:
        more = f"; the signatures of its {len(children)} child TaskRun(s) do not stand in for it" if children else ""
        where = f"(chains.tekton.dev/signature-{main.own_key})" if isinstance(read, RefsReader) else "in the gcs bucket"
        raise NoSignatureError(f"{main.ref} has no signature of its own {where}{more}")
    from chainmail.verify.run_tlog import check_children_tlog, check_run_tlog

    check_run_tlog(main.ref, main.annotations, [v for _, v in found], own, keys, tlog)
    check_children_tlog(child_items, keys, tlog)
    _note_unmarked(main)
    return verified
