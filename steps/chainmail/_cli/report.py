"""`chainmail report` commands: verify an image's or a run's provenance, then write a report.

``chainmail report image REF --key cosign.pub [--policy FILE] [--format markdown|html|json] [--out FILE]``
``chainmail report run [KIND/]NAME -n NS --key cosign.pub …``
``chainmail report run --from-file run.json --key cosign.pub …``

The report goes to stdout (or ``--out``). When a policy rule fails the report is still written and
the command then exits 14 (policy violated), unless ``--exit-zero``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chainmail._cli._options import ConfigMapOpt, ConfigOpt, KubeconfigOpt, NamespaceOpt, SetOpt
from chainmail._cli.steps import DockerConfigOpt, FromFileOpt, make_context
from chainmail._cli.verify import IgnoreTlogOpt, _tlog_check

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.models import RunSnapshot


class ReportFormat(StrEnum):
    """Output formats of ``chainmail report``."""

    markdown = "markdown"
    html = "html"
    json = "json"


PublicKeysOpt = Annotated[
    list[str],
    typer.Option("--key", "-k", metavar="KEY",
                 help="Public key to verify with: a cosign.pub/PEM file, a directory holding cosign.pub, "
                      "or k8s://NAMESPACE/SECRET. Repeat for several keys."),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", "-p", metavar="FILE",
                 help="Policy file (CEL rules) to evaluate on the verified provenance."),
]
FormatOpt = Annotated[ReportFormat, typer.Option("--format", help="Report format.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", metavar="FILE", help="Write the report to this file, not stdout.")
]
ExitZeroOpt = Annotated[
    bool, typer.Option("--exit-zero", help="Exit 0 even when a policy rule fails (the report still says so).")
]

app = typer.Typer(help="Verify provenance and write a report (Markdown, HTML or JSON).", no_args_is_help=True,
                  rich_markup_mode=None)


def register(root: typer.Typer) -> None:
    """Add report to the root app."""
    root.add_typer(app, name="report")


@app.command("image")
def image_cmd(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="The image: REPO@sha256:… (or REPO:TAG, resolved by verify).")
    ],
    key: PublicKeysOpt,
    policy: PolicyOpt = None,
    fmt: FormatOpt = ReportFormat.markdown,
    out: OutOpt = None,
    predicate_type: Annotated[
        str | None,
        typer.Option("--type", metavar="TYPE",
                     help="Only attestations of this predicate type (URI, or cosign's slsaprovenance, "
                          "slsaprovenance1)."),
    ] = None,
    config: ConfigOpt = None,
    configmap: ConfigMapOpt = None,
    set_: SetOpt = None,
    kubeconfig: KubeconfigOpt = None,
    docker_config: DockerConfigOpt = None,
    exit_zero: ExitZeroOpt = False,
    insecure_ignore_tlog: IgnoreTlogOpt = False,
) -> None:
    """Verify an image's attestations (.att) and their transparency log entries, and report what they say."""
    from chainmail.verify import verify_attestation

    loaded = _load_policy(policy)
    ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig, docker_config=docker_config).make_interactive()
    keys = _public_keys(key, ctx)
    verified = verify_attestation(ref, keys, ctx, predicate_type=predicate_type,
                                  tlog=_tlog_check(ctx, insecure_ignore_tlog, None, None))
    _emit(list(verified), loaded, None, fmt, out, exit_zero)


@app.command("run")
def run_cmd(
    key: PublicKeysOpt,
    name: Annotated[
        str | None,
        typer.Argument(metavar="RUN",
                       help="The run: taskrun/NAME or pipelinerun/NAME (also tr/, pr/); a bare NAME must "
                            "name only one kind."),
    ] = None,
    namespace: NamespaceOpt = None,
    from_file: FromFileOpt = None,
    policy: PolicyOpt = None,
    fmt: FormatOpt = ReportFormat.markdown,
    out: OutOpt = None,
    config: ConfigOpt = None,
    configmap: ConfigMapOpt = None,
    set_: SetOpt = None,
    kubeconfig: KubeconfigOpt = None,
    exit_zero: ExitZeroOpt = False,
    insecure_ignore_tlog: IgnoreTlogOpt = False,
) -> None:
    """Verify a run's Chains annotations (payload-/signature-*), its child TaskRuns' and its transparency
    log entry, and report."""
    from chainmail.verify import verify_run

    loaded = _load_policy(policy)
    ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig).make_interactive()
    snap = _read_run(ctx, name, namespace, from_file)
    keys = _public_keys(key, ctx)
    # a PipelineRun's snapshot carries its child TaskRuns too
    verified = verify_run(snap, keys, ctx, tlog=_tlog_check(ctx, insecure_ignore_tlog, None, None))
    _emit(list(verified), loaded, snap.to_json(), fmt, out, exit_zero)


def _read_run(ctx: Context, name: str | None, namespace: str | None, from_file: Path | None) -> RunSnapshot:
    from chainmail._cli.run_arg import resolve_run_name
    from chainmail._cli.steps import take_snapshot
    from chainmail.errors import InputError

    if (name is None) == (from_file is None):
        raise InputError("name exactly one run: NAME (taskrun/NAME, pipelinerun/NAME) or --from-file FILE")
    if from_file is not None or name is None:
        return take_snapshot(ctx, None, None, from_file, namespace, None)
    kind, run_name = resolve_run_name(ctx, name, namespace)
    if kind == "TaskRun":
        return take_snapshot(ctx, run_name, None, None, namespace, None)
    return take_snapshot(ctx, None, run_name, None, namespace, None)


def _public_keys(sources: list[str], ctx: Context) -> list[str]:
    """Each ``--key`` as public key PEM (files, key directories, ``k8s://`` Secrets)."""
    from chainmail.errors import KeyMaterialError
    from chainmail.signing import load_public_key

    if not sources:
        raise KeyMaterialError("no public key: pass --key (a cosign.pub file, or k8s://NS/SECRET)")
    return [load_public_key(source, ctx) for source in sources]


def _load_policy(path: Path | None) -> Any:
    if path is None:
        return None
    from chainmail.policy import load_policy

    return load_policy(path)


def _emit(verified: list[Any], policy: Any, snapshot: dict[str, Any] | None, fmt: ReportFormat,
          out: Path | None, exit_zero: bool) -> None:
    """Evaluate the policy, render the report, write it, then fail on a violated policy."""
    import json

    from chainmail.report import build_report

    result = None
    if policy is not None:
        from chainmail.policy import evaluate

        result = evaluate(policy, verified)
    report = build_report(verified, result, snapshot)
    if fmt is ReportFormat.html:
        text = report.to_html()
    elif fmt is ReportFormat.json:
        text = json.dumps(report.to_json(), indent=2) + "\n"
    else:
        text = report.to_markdown()
    if out is not None:
        from chainmail._internal.files import atomic_write

        atomic_write(out, text.encode())
        typer.echo(f"report written to {out}: {report.verdict}", err=True)
    else:
        typer.echo(text, nl=False)
    if result is not None and not result.passed and not exit_zero:
        from chainmail.errors import PolicyViolationError

        failed = sorted({r.rule for r in result.failures})
        raise PolicyViolationError(f"policy {result.policy}: {len(failed)} rule(s) failed: {', '.join(failed)}")
