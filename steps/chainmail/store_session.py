"""One store pass over one run, and where the ``file`` backend keeps a run's files.

Both :mod:`chainmail.storage` (the backends fill a session) and :mod:`chainmail.annotations`
(which flushes it) import this module; it imports neither, so the dependencies point one way:
``storage → annotations → store_session``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chainmail._internal.files import confined
from chainmail.context import Context
from chainmail.models import RunRef, RunSnapshot


@dataclass
class StoreSession:
    """One store pass over one run: shared context plus pending run annotations."""

    ctx: Context
    snapshot: RunSnapshot
    annotations: dict[RunRef, dict[str, str]] = field(default_factory=dict)

    def annotate(self, run: RunRef, values: dict[str, str]) -> None:
        """Queue annotations for ``run``; they are written by the caller in one patch."""
        self.annotations.setdefault(run, {}).update(values)


def file_store_dir(ctx: Context) -> Path:
    """The ``file`` backend's directory: ``--file-store``, else ``chainmail.storage.file.directory``."""
    return ctx.file_store or Path(ctx.config.get("chainmail.storage.file.directory"))


def run_dir_name(run: RunRef) -> str:
    """``<taskrun|pipelinerun>-<namespace>-<name>``: one directory per run (Chains' GCS object prefix)."""
    return f"{run.kind.lower()}-{run.namespace or 'default'}-{run.name}"


def run_dir(root: Path, run: RunRef) -> Path:
    """The directory holding one run's files, checked to stay inside ``root`` (see :func:`confined`)."""
    return confined(root, run_dir_name(run))
