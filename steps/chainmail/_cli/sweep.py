"""`chainmail sweep` and `chainmail finally` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainmail._cli._options import (
    ConfigMapOpt,
    ConfigOpt,
    DockerConfigOpt,
    KeyOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputOpt,
    SetOpt,
)

NamespaceKeysOpt = Annotated[
    Path | None,
    typer.Option("--namespace-keys",
                 help="YAML mapping of namespace to signing key URI; other namespaces use --key "
                      "(default: chains-config chainmail.namespace-keys)."),
]


def _check_output(output: str) -> None:
    if output not in ("text", "json"):
        from chainmail.errors import InputError

        raise InputError(f"--output '{output}': expected text or json")


def parse_concurrency(text: str) -> int | None:
    """``-j``: ``auto`` (None: adaptive) or a fixed number of runs in flight, 1 to 64."""
    value = text.strip().lower()
    if value == "auto":
        return None
    from chainmail.errors import InputError

    try:
        number = int(value)
    except ValueError:
        raise InputError(f"--concurrency '{text}': expected auto or a number from 1 to 64") from None
    if not 1 <= number <= 64:
        raise InputError(f"--concurrency {number}: expected auto or a number from 1 to 64")
    return number


def register(app: typer.Typer) -> None:
    """Add sweep and finally to the root app."""

    @app.command("sweep")
    def sweep_cmd(
        namespace: NamespaceOpt = None,
        all_namespaces: Annotated[
            bool, typer.Option("--all-namespaces", "-A",
                               help="Sweep every namespace (default: the kubeconfig's or the pod's "
                                    "namespace).")
        ] = False,
        since: Annotated[
            str | None, typer.Option("--since",
                                     help="Only runs that finished within this long, e.g. 30m, 6h, 2d.")
        ] = None,
        concurrency: Annotated[
            str, typer.Option("--concurrency", "-j",
                              help="Runs signed in parallel: a number (1-64), or auto to start at 4 and grow "
                                   "while run latency holds (up to --max-concurrency), halving on HTTP 429/5xx.")
        ] = "auto",
        max_concurrency: Annotated[
            int, typer.Option("--max-concurrency", min=1, max=64, help="Ceiling for -j auto.")
        ] = 16,
        retry_failed: Annotated[
            bool, typer.Option("--retry-failed",
                               help="Also retry runs marked signed=failed, while chains.tekton.dev/retries "
                                    "is below chainmail.retry.max-failed-attempts.")
        ] = False,
        max_runs: Annotated[int | None, typer.Option("--max-runs", min=0,
                                                     help="Attempt at most this many runs.")] = None,
        lease: Annotated[
            str, typer.Option("--lease", help="A claim older than this is taken over (crash recovery).")
        ] = "10m",
        key: KeyOpt = None,
        namespace_keys: NamespaceKeysOpt = None,
        config: ConfigOpt = None,
        configmap: ConfigMapOpt = None,
        set_: SetOpt = None,
        kubeconfig: KubeconfigOpt = None,
        docker_config: DockerConfigOpt = None,
        output: OutputOpt = "text",
    ) -> None:
        """Sign every completed, unsigned run (TaskRuns first, then PipelineRuns), each exactly once."""
        import json

        from chainmail._cli.steps import make_context
        from chainmail.errors import InputError, StorageError
        from chainmail.job import preload_signers

        _check_output(output)
        fixed = parse_concurrency(concurrency)
        if namespace and all_namespaces:
            raise InputError("give either --namespace or --all-namespaces, not both")
        ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig, key=key,
                           docker_config=docker_config)
        preload_signers(ctx)
        from chainmail.sweep import SweepOptions, load_namespace_keys, parse_duration, sweep

        keys = load_namespace_keys(namespace_keys if namespace_keys is not None
                                   else ctx.config.get("chainmail.namespace-keys"))
        options = SweepOptions(
            namespace=None if all_namespaces else (namespace or ctx.kube.namespace),
            since=parse_duration(since) if since else None,
            concurrency=fixed or min(4, max_concurrency),
            adaptive=fixed is None,
            max_concurrency=max_concurrency,
            retry_failed=retry_failed,
            max_runs=max_runs,
            namespace_keys=keys,
            lease=parse_duration(lease),
        )
        report = sweep(ctx, options)
        typer.echo(json.dumps(report.to_json(), indent=2) if output == "json" else report.text())
        if report.failed:
            raise StorageError(f"{len(report.failed)} run(s) could not be signed; see the list above",
                               hint="fix the cause, then run `chainmail sweep --retry-failed`")

    @app.command("finally")
    def finally_cmd(
        pipelinerun: Annotated[str, typer.Option("--pipelinerun", help="$(context.pipelineRun.name)")],
        namespace: NamespaceOpt = None,
        uid: Annotated[
            str | None, typer.Option("--uid", help="$(context.pipelineRun.uid); refuse any other run.")
        ] = None,
        key: KeyOpt = None,
        namespace_keys: NamespaceKeysOpt = None,
        config: ConfigOpt = None,
        configmap: ConfigMapOpt = None,
        set_: SetOpt = None,
        kubeconfig: KubeconfigOpt = None,
        docker_config: DockerConfigOpt = None,
        output: OutputOpt = "text",
    ) -> None:
        """From a finally task: sign the finished child TaskRuns, then a provisional PipelineRun attestation.

        Never marks the still-running PipelineRun signed; the watcher or a later sweep does.
        """
        import json

        from chainmail._cli.steps import make_context
        from chainmail.errors import StorageError
        from chainmail.finally_ import sign_so_far
        from chainmail.sweep import SweepOptions, load_namespace_keys

        _check_output(output)
        ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig, key=key,
                           docker_config=docker_config)
        keys = load_namespace_keys(namespace_keys if namespace_keys is not None
                                   else ctx.config.get("chainmail.namespace-keys"))
        report = sign_so_far(ctx, pipelinerun, namespace, uid,
                             options=SweepOptions(concurrency=1, namespace_keys=keys))
        typer.echo(json.dumps(report.to_json(), indent=2) if output == "json" else report.text())
        if report.failed:
            raise StorageError(f"{len(report.failed)} signing step(s) failed: " + "; ".join(report.failed))
