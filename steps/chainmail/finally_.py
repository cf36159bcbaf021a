"""``chainmail finally``: sign from a PipelineRun's own ``finally`` task.

The PipelineRun is still running when its finally tasks run, so this:

1. re-reads the PipelineRun by namespace/name and checks its uid (the params could lie);
2. lists the child TaskRuns labelled ``tekton.dev/pipelineRunUID=<uid>`` and
   ``tekton.dev/memberOf=tasks`` (the finally TaskRuns, this one included, are left out)
   and signs every finished, unsigned one, one after the other, with the same claim as
   ``sweep`` so a concurrent sweep or watcher never signs one twice;
3. signs a *provisional* PipelineRun attestation from those children, stores it, and
   records ``chainmail.dev/provisional-signed: "true"`` on the run, never
   ``chains.tekton.dev/signed`` (a later sweep or the watcher signs the finished run).

If the PipelineRun has already finished (the command was run by hand afterwards), it is
signed normally instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chainmail import annotations as ann
from chainmail.errors import Error, InputError

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.job import JobResult
    from chainmail.models import RunSnapshot
    from chainmail.sweep import SweepOptions

log = logging.getLogger("chainmail.finally")


@dataclass
class FinallyReport:
    """What the finally step did."""

    pipelinerun: str
    #: "provisional", "signed", "skipped: …" or "failed: …".
    outcome: str = ""
    children: dict[str, str] = field(default_factory=dict)
    result: JobResult | None = field(default=None, repr=False)

    @property
    def failed(self) -> list[str]:
        out = [f"TaskRun {name}: {what[8:]}" for name, what in self.children.items()
               if what.startswith("failed")]
        if self.outcome.startswith("failed"):
            out.append(f"PipelineRun {self.pipelinerun}: {self.outcome[8:]}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"pipelineRun": self.pipelinerun, "outcome": self.outcome, "taskRuns": dict(self.children)}

    def text(self) -> str:
        lines = [f"TaskRun {name}: {what}" for name, what in self.children.items()]
        lines.append(f"PipelineRun {self.pipelinerun}: {self.outcome}")
        return "\n".join(lines)


def sign_so_far(ctx: Context, name: str, namespace: str | None = None, uid: str | None = None, *,
                options: SweepOptions | None = None) -> FinallyReport:
    """Sign a running PipelineRun's finished child TaskRuns, then a provisional PipelineRun attestation."""
    from chainmail.snapshot import is_finished, reread_children
    from chainmail.sweep import Sweeper, run_name

    kube = ctx.kube
    ns = namespace or kube.namespace
    pr = kube.get("pipelineruns", ns, name)
    pr.setdefault("kind", "PipelineRun")
    actual = (pr.get("metadata") or {}).get("uid", "")
    if uid and actual != uid:
        raise InputError(f"PipelineRun {ns}/{name} has uid {actual}, not {uid}: it is not the run that "
                         "started this task")
    uid = actual
    report = FinallyReport(f"{ns}/{name}")
    sweeper = Sweeper(ctx, options)
    selector = f"tekton.dev/pipelineRunUID={uid},tekton.dev/memberOf=tasks"
    children = _in_child_order(pr, list(kube.iter_all("taskruns", ns, label_selector=selector)))
    for child in children:
        child.setdefault("kind", "TaskRun")
        child_name = (child.get("metadata") or {}).get("name", "")
        reason = sweeper.eligible(child)
        report.children[child_name] = f"skipped: {reason}" if reason else sweeper.process(child)

    if ann.is_signed(pr):
        report.outcome = "skipped: already signed"
        return report
    if is_finished(pr):
        # Run by hand after the fact: sign the finished run the normal way (children re-read).
        report.outcome = sweeper.process(pr)
        return report
    try:
        report.result = sign_provisional(reread_children(_snapshot(kube, pr, children), ctx), ctx)  # as signed
        report.outcome = "provisional"
    except Error as exc:
        report.outcome = f"failed: {ann.short_reason(exc)}"
        log.warning("provisional signing of %s failed: %s", run_name(pr), exc)
    return report


def sign_provisional(snapshot: RunSnapshot, ctx: Context) -> JobResult:
    """Format, sign and store a provisional PipelineRun attestation; mark it provisional, not signed.

    This is ``job.sign_run(snapshot, ctx, provisional=True, mark=False)`` except that the
    backends' pending annotations are flushed too, with ``provisional-signed`` instead of
    ``signed`` (``job.store(mark=False)`` drops them).
    """
    from chainmail import job
    from chainmail.storage import StoreSession, store_all

    result = job.JobResult(snapshot)
    reason = job.skip_reason(snapshot, ctx, provisional=True)
    if reason:
        result.skipped = reason
        return result
    result.payloads = job.make_payloads(snapshot, ctx, provisional=True)
    result.signed = job.sign(result.payloads, ctx, snapshot=snapshot)
    session = StoreSession(ctx, snapshot)
    try:
        job.annotate_transparency(result.signed, session, ctx)
        result.stored = store_all(result.signed, session)
    except Error as exc:
        ann.flush(session, signed=False, reason=str(exc), provisional=True)
        raise
    ann.flush(session, signed=True, provisional=True)
    return result


def _snapshot(kube: Any, pr: dict[str, Any], children: list[dict[str, Any]]) -> RunSnapshot:
    from chainmail.models import RunSnapshot

    return RunSnapshot(pr, children, kube.source)


def _in_child_order(pr: dict[str, Any], children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Children in ``status.childReferences`` order (matrix and retries keep their place), others last."""
    refs = [r.get("name") for r in (pr.get("status") or {}).get("childReferences") or ()
            if isinstance(r, dict)]
    order = {n: i for i, n in enumerate(refs)}
    return sorted(children, key=lambda c: (order.get((c.get("metadata") or {}).get("name"), len(order)),
                                           (c.get("metadata") or {}).get("name", "")))
