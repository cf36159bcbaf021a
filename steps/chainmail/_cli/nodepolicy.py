"""`chainmail policy nodes`: the node signature policy that makes CRI-O run only images chainmail signed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainmail._cli._options import KubeconfigOpt

app = typer.Typer(help="Signature policies for cluster nodes (containers-policy.json, OpenShift).",
                  no_args_is_help=True, rich_markup_mode=None)


@app.command("nodes")
def nodes_cmd(
    key: Annotated[str, typer.Option("--key", "-k",
                                     help="Public key (cosign.pub), a key directory, or k8s://NAMESPACE/SECRET.")],
    scope: Annotated[str, typer.Option("--scope", help="REGISTRY[/NAMESPACE/REPO] (or *.DOMAIN) the rule covers.")],
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="policy-json, registries-d, butane, machineconfig or clusterimagepolicy.")]
    = "policy-json",
    key_data: Annotated[bool, typer.Option("--key-data",
                                           help="Inline the key in policy.json (keyData) instead of a keyPath "
                                                "file on the node.")] = False,
    match: Annotated[str, typer.Option("--match",
                                       help="Signed identity rule: matchRepository (default; pulls by tag work) "
                                            "or matchRepoDigestOrExact.")] = "matchRepository",
    name: Annotated[str, typer.Option("--name", help="Base name of the key file, registries.d file and objects.")]
    = "chainmail",
    role: Annotated[str, typer.Option("--role", help="MachineConfigPool role (machineconfig, butane).")] = "worker",
    api_version: Annotated[str, typer.Option("--api-version",
                                             help="ClusterImagePolicy version: v1 (OpenShift 4.20+) or v1alpha1 "
                                                  "(TechPreview before).")] = "v1",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Write the sigstoreSigned rule for SCOPE with KEY, as a node file or an OpenShift object."""
    from chainmail._internal.files import atomic_write
    from chainmail.context import Context
    from chainmail.nodepolicy import FORMATS, NodePolicy
    from chainmail.signing import load_public_key

    if fmt not in FORMATS:
        from chainmail.errors import InputError

        raise InputError(f"--format '{fmt}': expected one of {', '.join(FORMATS)}")
    pem = load_public_key(key, Context(kubeconfig=kubeconfig))
    policy = NodePolicy.create(pem, scope, match=match, key_data=key_data, name=name, role=role)
    text = policy.render(fmt, api_version=api_version)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(out, text.encode())
        typer.echo(f"{fmt} for {policy.scope} written to {out}", err=True)
