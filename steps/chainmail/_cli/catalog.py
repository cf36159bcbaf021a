"""`chainmail catalog` commands: publish the Tasks as a Tekton bundle (like ``tkn bundle push``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainmail._cli._options import ConfigOpt, OutputOpt, SetOpt

app = typer.Typer(help="Publish chainmail's Tasks: Tekton bundles.", no_args_is_help=True,
                  rich_markup_mode=None)
bundle_app = typer.Typer(help="Tekton bundles (OCI images holding Tasks/Pipelines/StepActions).",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(bundle_app, name="bundle")

DockerConfigOpt = Annotated[
    Path | None,
    typer.Option("--docker-config", envvar="DOCKER_CONFIG",
                 help="Registry credentials: a directory with config.json, or a .dockerconfigjson file."),
]


@bundle_app.command("push")
def push_cmd(
    ref: Annotated[str, typer.Argument(help="Where to push, e.g. ghcr.io/acme/tasks/chainmail:0.1.")],
    files: Annotated[list[Path], typer.Option("--filenames", "-f",
                                              help="YAML/JSON file(s) of Tekton objects (repeatable).")],
    annotate: Annotated[list[str] | None,
                        typer.Option("--annotate", help="Manifest annotation KEY=VALUE (repeatable).")
                        ] = None,
    label: Annotated[list[str] | None,
                     typer.Option("--label", help="Config label KEY=VALUE (repeatable).")] = None,
    ctime: Annotated[str | None,
                     typer.Option("--ctime", help="Image created time (RFC 3339, YYYY-MM-DD or Unix "
                                                  "seconds); default $SOURCE_DATE_EPOCH, else the epoch.")
                     ] = None,
    docker_config: DockerConfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Build a Tekton bundle exactly as `tkn bundle push` does and push it with oras-py."""
    from chainmail._cli.steps import make_context
    from chainmail.bundle import build_bundle, ctime_from, parse_pairs, push_bundle
    from chainmail.errors import InputError

    contents = []
    for path in files:
        try:
            contents.append((str(path), path.read_text()))
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
    bundle = build_bundle(contents, annotations=parse_pairs(annotate, "--annotate"),
                          labels=parse_pairs(label, "--label"), created=ctime_from(ctime))
    typer.echo("Creating Tekton Bundle:", err=True)
    for layer in bundle.layers:
        typer.echo(f"\t- Added {layer.obj.kind}: {layer.obj.name} to image", err=True)
    ctx = make_context(config, None, set_, docker_config=docker_config)
    digest = push_bundle(ref, bundle, ctx)
    typer.echo(f"Pushed Tekton Bundle to {ref.rsplit('@', 1)[0]}@{digest}", err=True)
    typer.echo(digest)


@bundle_app.command("inspect")
def inspect_cmd(
    ref: Annotated[str, typer.Argument(help="Bundle reference (tag or @sha256: digest).")],
    output: OutputOpt = "text",
    docker_config: DockerConfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """List a bundle's layers with their Tekton annotations (and check the resolver's rules)."""
    import json

    from chainmail._cli.steps import make_context
    from chainmail.bundle import ANN_API_VERSION, ANN_KIND, ANN_NAME, read_bundle
    from chainmail.errors import InputError

    if output not in ("text", "json"):
        raise InputError(f"--output '{output}': expected text or json")
    ctx = make_context(config, None, set_, docker_config=docker_config)
    manifest, layers = read_bundle(ctx.registry, ref)
    if output == "json":
        doc = {"ref": ref, "mediaType": manifest.get("mediaType"),
               "annotations": manifest.get("annotations") or {},
               "layers": [{"digest": desc.get("digest"), "size": desc.get("size"),
                           "annotations": desc.get("annotations") or {}}
                          for desc in manifest.get("layers") or []]}
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{ref}: {manifest.get('mediaType')}, {len(layers)} object(s)")
    for (ann, _data), desc in zip(layers, manifest.get("layers") or [], strict=True):
        typer.echo(f"  {ann[ANN_KIND]}/{ann[ANN_NAME]} (apiVersion {ann[ANN_API_VERSION]}) "
                   f"{desc.get('digest')} {desc.get('size')} bytes")
    for key, value in sorted((manifest.get("annotations") or {}).items()):
        typer.echo(f"  annotation {key}={value}")
