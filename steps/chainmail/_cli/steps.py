"""The five-step commands (``snapshot``, ``format``, ``sign``, ``store``) and ``run`` (all in one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainmail._cli._options import (
    ConfigMapOpt,
    ConfigOpt,
    DockerConfigOpt,
    KeyOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputOpt,
    ResultsDirOpt,
    SetOpt,
    WorkspaceOpt,
)

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.models import RunSnapshot

TaskRunOpt = Annotated[str | None, typer.Option("--taskrun", help="Name of the TaskRun to sign.")]
PipelineRunOpt = Annotated[str | None, typer.Option("--pipelinerun", help="Name of the PipelineRun to sign.")]
FromFileOpt = Annotated[
    Path | None,
    typer.Option("--from-file", "-f",
                 help="Read the run from a JSON/YAML file: one object, or {pipelineRun: …, taskRuns: […]}."),
]
UidOpt = Annotated[str | None, typer.Option("--uid", help="Refuse to sign unless the run has this uid.")]
FileStoreOpt = Annotated[
    Path | None, typer.Option("--file-store", help="Directory for the 'file' storage backend.")
]
FormatsOpt = Annotated[
    str | None,
    typer.Option("--format", help="Run payload format(s), comma separated; overrides artifacts.*.format."),
]
TrustFileSnapshotOpt = Annotated[
    bool,
    typer.Option("--trust-file-snapshot",
                 help="Accept a snapshot.json made with --from-file: you vouch that nobody else could write it. "
                      "Snapshots from the cluster are always re-read from it instead."),
]
StoreKeyOpt = Annotated[
    str | None,
    typer.Option("--key", "-k", envvar="CHAINMAIL_KEY",
                 help="The signing key whose public half every signature must verify with: a key directory, "
                      "cosign.pub, a key file or k8s://NAMESPACE/SECRET. Default: as sign chooses it "
                      "(chains-config signers, /etc/signing-secrets)."),
]
ProvisionalOpt = Annotated[
    bool,
    typer.Option("--provisional", help="Allow a running PipelineRun (finally task); mark its attestation provisional."),
]


def make_context(config: Path | None, configmap: str | None, sets: list[str] | None, *,
                 kubeconfig: Path | None = None, key: str | None = None, docker_config: Path | None = None,
                 file_store: Path | None = None) -> Context:
    """Build the Context: chains-config from a file or the cluster, then ``--set`` overrides."""
    from chainmail.config import Config, read_config_file
    from chainmail.context import Context
    from chainmail.errors import ConfigError

    ctx = Context(kubeconfig=kubeconfig, key=key, docker_config=docker_config, file_store=file_store)
    data: dict[str, object] = {}
    if config is not None:
        data.update(read_config_file(config))
    if configmap:
        ns, _, name = configmap.partition("/")
        if not ns or not name:
            raise ConfigError(f"--configmap '{configmap}': expected NAMESPACE/NAME")
        data.update(ctx.kube.get_configmap(ns, name))
    for item in sets or ():
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE")
        data[k.strip()] = v
    ctx.config = Config.from_mapping(data)
    return ctx


def take_snapshot(ctx: Context, taskrun: str | None, pipelinerun: str | None, from_file: Path | None,
                  namespace: str | None, uid: str | None) -> RunSnapshot:
    """Read the run from a file or from the cluster (exactly one source)."""
    from chainmail import snapshot
    from chainmail.errors import InputError

    chosen = [x for x in (taskrun, pipelinerun, from_file) if x]
    if len(chosen) != 1:
        raise InputError("name exactly one run: --taskrun NAME, --pipelinerun NAME or --from-file FILE")
    if from_file is not None:
        snap = snapshot.from_file(from_file)
    else:
        kind = "TaskRun" if taskrun else "PipelineRun"
        snap = snapshot.from_cluster(ctx.kube, kind, namespace, str(taskrun or pipelinerun))
    if uid and snap.ref.uid != uid:
        raise InputError(f"{snap.ref.kind} {snap.ref.namespace}/{snap.ref.name} has uid {snap.ref.uid}, not {uid}")
    return snap


def _formats(value: str | None) -> list[str] | None:
    return [f.strip() for f in value.split(",") if f.strip()] if value else None


def _write_results(results_dir: Path | None, values: dict[str, str]) -> None:
    if results_dir is None:
        return
    from chainmail._internal.files import atomic_write

    for name, value in values.items():
        atomic_write(results_dir / name, value.encode())


def register(app: typer.Typer) -> None:
    """Add the step commands to the root app."""

    @app.command("snapshot")
    def snapshot_cmd(
        taskrun: TaskRunOpt = None,
        pipelinerun: PipelineRunOpt = None,
        from_file: FromFileOpt = None,
        namespace: NamespaceOpt = None,
        uid: UidOpt = None,
        kubeconfig: KubeconfigOpt = None,
        workspace: WorkspaceOpt = Path("."),
    ) -> None:
        """Capture a finished run (and a PipelineRun's child TaskRuns) into snapshot.json."""
        from chainmail.context import Context
        from chainmail.workspace import Workspace

        snap = take_snapshot(Context(kubeconfig=kubeconfig), taskrun, pipelinerun, from_file, namespace, uid)
        path = Workspace(workspace).write_snapshot(snap)
        typer.echo(f"snapshot of {snap.ref.kind} {snap.ref.namespace}/{snap.ref.name} written to {path}", err=True)

    @app.command("format")
    def format_cmd(
        workspace: WorkspaceOpt = Path("."),
        config: ConfigOpt = None,
        configmap: ConfigMapOpt = None,
        set_: SetOpt = None,
        formats: FormatsOpt = None,
        provisional: ProvisionalOpt = False,
        kubeconfig: KubeconfigOpt = None,
    ) -> None:
        """Turn snapshot.json into payloads.json (one payload per run attestation and image)."""
        from chainmail.job import make_payloads, skip_reason
        from chainmail.workspace import Workspace

        ws = Workspace(workspace)
        ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig)
        snap = ws.read_snapshot()
        if skip_reason(snap, ctx, provisional=provisional) == "not finished":
            from chainmail.errors import RunNotFinishedError

            raise RunNotFinishedError(f"{snap.ref.kind} {snap.ref.namespace}/{snap.ref.name} has not finished")
        payloads = make_payloads(snap, ctx, _formats(formats), provisional=provisional)
        path = ws.write_payloads(payloads)
        typer.echo(f"{len(payloads)} payload(s) written to {path}", err=True)

    @app.command("sign")
    def sign_cmd(
        workspace: WorkspaceOpt = Path("."),
        key: KeyOpt = None,
        config: ConfigOpt = None,
        configmap: ConfigMapOpt = None,
        set_: SetOpt = None,
        kubeconfig: KubeconfigOpt = None,
        docker_config: DockerConfigOpt = None,
        trust_file_snapshot: TrustFileSnapshotOpt = False,
    ) -> None:
        """Sign payloads.json into signed.json (DSSE envelopes for in-toto, raw signatures otherwise).

        Signs only what chainmail formats itself from the run (re-read from the cluster), after
        checking payloads.json holds exactly that.
        """
        from chainmail.job import sign
        from chainmail.workspace import Workspace
        from chainmail.workspace_trust import trusted_snapshot, verified_payloads

        ws = Workspace(workspace)
        ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig, key=key, docker_config=docker_config)
        snap = trusted_snapshot(ws, ctx, trust_file=trust_file_snapshot)
        signed = sign(verified_payloads(ws, ctx, snap), ctx, snapshot=snap)
        path = ws.write_signed(signed)
        typer.echo(f"{len(signed)} signature(s) written to {path}", err=True)

    @app.command("store")
    def store_cmd(
        workspace: WorkspaceOpt = Path("."),
        config: ConfigOpt = None,
        configmap: ConfigMapOpt = None,
        set_: SetOpt = None,
        kubeconfig: KubeconfigOpt = None,
        docker_config: DockerConfigOpt = None,
        file_store: FileStoreOpt = None,
        results_dir: ResultsDirOpt = None,
        key: StoreKeyOpt = None,
        trust_file_snapshot: TrustFileSnapshotOpt = False,
    ) -> None:
        """Store signed.json in the configured backends, then mark the run signed.

        Nothing is written unless signed.json carries exactly the payloads chainmail formats from
        the run and every signature verifies with the configured signing key.
        """
        from chainmail.job import configured_keys, store
        from chainmail.storage import check_signatures
        from chainmail.workspace import Workspace
        from chainmail.workspace_trust import signed_payloads_match, trusted_snapshot, verified_payloads

        ws = Workspace(workspace)
        ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig, key=key, docker_config=docker_config,
                           file_store=file_store)
        snap = trusted_snapshot(ws, ctx, trust_file=trust_file_snapshot)
        payloads = verified_payloads(ws, ctx, snap)
        signed = ws.read_signed()
        signed_payloads_match(signed, payloads, ctx)
        check_signatures(signed, configured_keys(signed, ctx))
        refs = store(signed, snap, ctx)
        path = ws.write_stored(refs)
        _write_results(results_dir, {"SIGNED": "true", "STORED": str(len(refs))})
        typer.echo(f"{len(refs)} reference(s) written to {path}", err=True)

    @app.command("run")
    def run_cmd(
        taskrun: TaskRunOpt = None,
        pipelinerun: PipelineRunOpt = None,
        from_file: FromFileOpt = None,
        namespace: NamespaceOpt = None,
        uid: UidOpt = None,
        key: KeyOpt = None,
        config: ConfigOpt = None,
        configmap: ConfigMapOpt = None,
        set_: SetOpt = None,
        formats: FormatsOpt = None,
        provisional: ProvisionalOpt = False,
        kubeconfig: KubeconfigOpt = None,
        docker_config: DockerConfigOpt = None,
        file_store: FileStoreOpt = None,
        workspace: Annotated[
            Path | None, typer.Option("--workspace", "-w", help="Also write every step file here.")
        ] = None,
        results_dir: ResultsDirOpt = None,
        with_children: Annotated[
            bool, typer.Option("--with-children", help="For a PipelineRun, first sign its finished child TaskRuns.")
        ] = False,
        output: OutputOpt = "text",
    ) -> None:
        """Snapshot, format, sign and store one run in a single process (the fast path)."""
        from chainmail import job
        from chainmail.workspace import Workspace

        ctx = make_context(config, configmap, set_, kubeconfig=kubeconfig, key=key, docker_config=docker_config,
                           file_store=file_store)
        job.preload_signers(ctx)
        snap = take_snapshot(ctx, taskrun, pipelinerun, from_file, namespace, uid)
        if workspace is not None:
            ws = Workspace(workspace)
            ws.write_snapshot(snap)
        if with_children:
            results = job.sign_with_children(snap, ctx, formats=_formats(formats), provisional=provisional)
        else:
            results = [job.sign_run(snap, ctx, formats=_formats(formats), provisional=provisional)]
        result = results[-1]
        if workspace is not None and not result.skipped:
            ws.write_payloads([p for r in results for p in r.payloads])
            ws.write_signed([s for r in results for s in r.signed])
            ws.write_stored([s for r in results for s in r.stored])
        _write_results(results_dir, {"SIGNED": "false" if result.skipped else "true",
                                     "STORED": str(sum(len(r.stored) for r in results))})
        if output == "json":
            typer.echo(job.summary_json(results))
        else:
            for r in results:
                typer.echo(job.summary_text(r))
