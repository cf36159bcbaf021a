"""``verify run`` against the ``gcs`` backend: the run's objects ``<kind>-<ns>-<name>/<key>.{payload,signature,cert}``.

The bucket is read with :func:`chainmail.storage.gcs.read_signatures` and each stored pair goes through
the same checks as a run annotation (:func:`~chainmail.verify.stored.verify_stored`, then
:func:`~chainmail.verify.binding.check_run_binding` in :func:`~chainmail.verify.runs.verify_run`): the
object prefix names the run only by namespace and name, so what binds a signature to *this* run is its
key (``<kind>-<uid>``) and the statement's recorded uid and times — another run's objects copied under
this run's prefix do not verify.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from chainmail.models import RunRef
from chainmail.verify.stored import verify_stored

if TYPE_CHECKING:
    from chainmail.config import Kind
    from chainmail.context import Context
    from chainmail.verify.keys import Key
    from chainmail.verify.runs import Entry, Reader, RunObject


def gcs_reader(ctx: Context) -> Reader:
    """A :data:`~chainmail.verify.runs.Reader` listing a run's signatures in ``storage.gcs.bucket``."""
    from chainmail.storage.gcs import read_signatures, run_prefix

    bucket = ctx.config.get("storage.gcs.bucket").strip()

    def read(run: RunObject, keys: list[Key]) -> list[Entry]:
        ref = RunRef("TaskRun" if run.kind == "TaskRun" else "PipelineRun", run.namespace, run.name, run.uid)
        stored = read_signatures(ref, ctx)
        entries: list[Entry] = []
        for short in sorted(stored):
            item = stored[short]
            where = f"gs://{bucket}/{run_prefix(ref)}/{short}.signature"
            entries.append((short, where, functools.partial(verify_stored, keys, item.payload, item.signature,
                                                            run.ref, "gcs", where, item.cert)))
        return entries

    return read


def stores_runs_in_gcs(ctx: Context, kind: Kind) -> bool:
    """The config stores ``kind`` runs (taskrun/pipelinerun) in ``gcs`` and not in annotations."""
    names = ctx.config.storage(kind)
    return "gcs" in names and "tekton" not in names
