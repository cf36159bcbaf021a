"""`chainmail verify` commands: images, attestations, runs and file stores, with cosign's exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainmail._cli._options import ConfigOpt, KubeconfigOpt, NamespaceOpt, OutputOpt, SetOpt

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.verify import Verified

app = typer.Typer(
    help="Verify signatures and provenance stored by Tekton Chains or chainmail (like cosign verify).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

VerifyKeyOpt = Annotated[
    list[str],
    typer.Option("--key", "-k",
                 help="Public key: a cosign.pub/PEM file, a key directory, or k8s://NAMESPACE/SECRET "
                      "(repeatable; any key may verify)."),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (CEL rules) the verified provenance must pass; else exit 14."),
]
DockerConfigOpt = Annotated[
    Path | None,
    typer.Option("--docker-config", envvar="DOCKER_CONFIG",
                 help="Registry credentials: a directory with config.json, or a .dockerconfigjson file."),
]
TypeOpt = Annotated[
    str | None,
    typer.Option("--type", help="Predicate type: slsaprovenance(02), slsaprovenance1, … or a full URI."),
]


def _context(config: Path | None, sets: list[str] | None, docker_config: Path | None = None,
             kubeconfig: Path | None = None) -> Context:
    from chainmail._cli.steps import make_context

    return make_context(config, None, sets, docker_config=docker_config, kubeconfig=kubeconfig)


def _check_output(output: str) -> None:
    if output not in ("text", "json"):
        from chainmail.errors import InputError

        raise InputError(f"--output '{output}': expected text or json")


def _report(what: str, verified: list[Verified], output: str, policy: Path | None) -> None:
    """Print the verified payloads (and the policy outcome); raise PolicyViolation when it failed."""
    import json

    from chainmail.verify import apply_policy, layouts_found

    result = apply_policy(policy, verified) if policy is not None else None
    layouts = layouts_found(verified)
    if output == "json":
        doc = {"artifact": what, "layouts": layouts, "verified": [v.to_json() for v in verified],
               "policy": result.to_json() if result is not None else None}
        typer.echo(json.dumps(doc, indent=2))
    else:
        found = ", ".join(f"{name} ({count})" for name, count in layouts.items())
        typer.echo(f"Verification for {what} -- {len(verified)} verified; layouts: {found}", err=True)
        for item in verified:
            typer.echo(item.summary())
        if result is not None:
            typer.echo(result.to_text())
            typer.echo(result.summary())
    if result is not None and not result.passed:
        from chainmail.errors import PolicyViolation

        raise PolicyViolation(result.summary(), hint="see the FAIL lines above")


@app.command("image")
def image_cmd(
    ref: Annotated[str, typer.Argument(help="Image reference (tag or @sha256: digest).")],
    key: VerifyKeyOpt,
    policy: PolicyOpt = None,
    output: OutputOpt = "text",
    docker_config: DockerConfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Verify image signatures: the .sig tag and Sigstore bundle referrers (cosign verify --key)."""
    from chainmail.verify import verify_image

    _check_output(output)
    ctx = _context(config, set_, docker_config)
    verified = verify_image(ref, key, ctx)
    _report(verified[0].ref, verified, output, policy)


@app.command("attestation")
def attestation_cmd(
    ref: Annotated[str, typer.Argument(help="Image reference (tag or @sha256: digest).")],
    key: VerifyKeyOpt,
    type_: TypeOpt = None,
    policy: PolicyOpt = None,
    output: OutputOpt = "text",
    docker_config: DockerConfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Verify attestations: the .att tag and bundle referrers (cosign verify-attestation --key --type)."""
    from chainmail.verify import verify_attestation

    _check_output(output)
    ctx = _context(config, set_, docker_config)
    verified = verify_attestation(ref, key, ctx, type_)
    _report(verified[0].ref, verified, output, policy)


@app.command("run")
def run_cmd(
    key: VerifyKeyOpt,
    name: Annotated[str | None, typer.Argument(help="Name of the TaskRun or PipelineRun.")] = None,
    namespace: NamespaceOpt = None,
    kind: Annotated[str, typer.Option("--kind", help="taskrun, pipelinerun, or auto (try both).")] = "auto",
    from_file: Annotated[Path | None, typer.Option("--from-file", "-f",
                                                   help="A run JSON/YAML with Chains' annotations.")] = None,
    file_store: Annotated[Path | None, typer.Option("--file-store",
                                                    help="Verify a 'file' backend directory.")] = None,
    policy: PolicyOpt = None,
    output: OutputOpt = "text",
    kubeconfig: KubeconfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Verify Chains' signature annotations on a run (cosign verify-blob[-attestation]) or a file store."""
    from chainmail.errors import InputError

    _check_output(output)
    chosen = [x for x in (name, from_file, file_store) if x]
    if len(chosen) != 1:
        raise InputError("name exactly one of: a run NAME (with -n), --from-file FILE or --file-store DIR")
    ctx = _context(config, set_, kubeconfig=kubeconfig)
    if file_store is not None:
        from chainmail.verify import verify_file_store

        verified = verify_file_store(file_store, key, ctx)
        _report(str(file_store), verified, output, policy)
        return
    from chainmail import snapshot
    from chainmail.verify import verify_run

    if from_file is not None:
        snap = snapshot.from_file(from_file, strict=False)
    else:
        snap = _from_cluster(ctx, kind, namespace, str(name))
    verified = verify_run(snap, key, ctx)
    ref = snap.ref
    _report(f"{ref.kind} {ref.namespace}/{ref.name}", verified, output, policy)


def _from_cluster(ctx: Context, kind: str, namespace: str | None, name: str):
    from chainmail import snapshot
    from chainmail.errors import InputError, NotFoundError

    kinds = {"taskrun": ["TaskRun"], "pipelinerun": ["PipelineRun"], "auto": ["TaskRun", "PipelineRun"]}
    if kind.lower() not in kinds:
        raise InputError(f"--kind '{kind}': expected taskrun, pipelinerun or auto")
    last: NotFoundError | None = None
    for candidate in kinds[kind.lower()]:
        try:
            return snapshot.from_cluster(ctx.kube, candidate, namespace, name)  # type: ignore[arg-type]
        except NotFoundError as exc:
            last = exc
    raise last or InputError(f"no run named {name}")
