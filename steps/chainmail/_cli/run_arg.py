"""The RUN argument of ``verify run`` and ``report run``: ``NAME``, ``taskrun/NAME`` or ``pipelinerun/NAME``.

A bare NAME that names both a TaskRun and a PipelineRun in the namespace is refused as a usage
error (exit 2): which run gets verified must never depend on lookup order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.models import RunSnapshot

KIND_PREFIXES = {"taskrun": "TaskRun", "taskruns": "TaskRun", "tr": "TaskRun",
                 "pipelinerun": "PipelineRun", "pipelineruns": "PipelineRun", "pr": "PipelineRun"}
_PLURAL = {"TaskRun": "taskruns", "PipelineRun": "pipelineruns"}


def parse_run_name(text: str) -> tuple[str | None, str]:
    """``(kind or None, name)`` of ``NAME``, ``taskrun/NAME``, ``pipelinerun/NAME`` (also ``tr/``, ``pr/``…)."""
    from chainmail.errors import InputError

    prefix, sep, rest = text.strip().partition("/")
    if not sep:
        return None, prefix
    if prefix.lower() not in KIND_PREFIXES or not rest or "/" in rest:
        raise InputError(f"run '{text}': expected NAME, taskrun/NAME or pipelinerun/NAME")
    return KIND_PREFIXES[prefix.lower()], rest


def kinds_named(ctx: Context, namespace: str, name: str) -> list[str]:
    """The kinds (TaskRun, PipelineRun) of the runs named ``name`` in ``namespace``."""
    from chainmail.errors import NotFoundError

    found = []
    for kind, plural in _PLURAL.items():
        try:
            ctx.kube.get(plural, namespace, name)
        except NotFoundError:
            continue
        found.append(kind)
    return found


def resolve_run_name(ctx: Context, text: str, namespace: str | None, kind_option: str = "auto") -> tuple[str, str]:
    """``(kind, name)`` of the RUN argument; a bare NAME is looked up as both kinds and must match one."""
    from chainmail.errors import InputError, NotFoundError

    kind, name = parse_run_name(text)
    option = {"taskrun": "TaskRun", "pipelinerun": "PipelineRun", "auto": None}
    if kind_option.lower() not in option:
        raise InputError(f"--kind '{kind_option}': expected taskrun, pipelinerun or auto")
    wanted = option[kind_option.lower()]
    if kind and wanted and kind != wanted:
        raise InputError(f"run '{text}' is a {kind}, but --kind says {kind_option}")
    if kind or wanted:
        return str(kind or wanted), name
    ns = namespace or ctx.kube.namespace
    found = kinds_named(ctx, ns, name)
    if len(found) > 1:
        raise typer.BadParameter(f"both a TaskRun and a PipelineRun are named '{name}' in namespace {ns}; "
                                 f"say which: taskrun/{name} or pipelinerun/{name}", param_hint="RUN")
    if not found:
        raise NotFoundError(f"no TaskRun or PipelineRun named {name} in namespace {ns}")
    return found[0], name


def snapshot_by_name(ctx: Context, text: str, namespace: str | None, kind_option: str = "auto") -> RunSnapshot:
    """The named run read from the cluster (a PipelineRun with its children)."""
    from chainmail import snapshot

    kind, name = resolve_run_name(ctx, text, namespace, kind_option)
    return snapshot.from_cluster(ctx.kube, kind, namespace, name)  # type: ignore[arg-type]
