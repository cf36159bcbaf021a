"""`chainmail watcher` commands: per-namespace opt-ins for the cluster-wide watcher."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

app = typer.Typer(help="Per-namespace opt-ins for the chainmail watcher (pipelines/chainmail-watcher).",
                  no_args_is_help=True, rich_markup_mode=None)

#: The ClusterRole of pipelines/chainmail-watcher/opt-in/namespace-credentials.yaml (get serviceaccounts, secrets).
CREDENTIALS_ROLE = "chainmail-run-credentials"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def credentials_binding(namespace: str, *, signer_namespace: str = "chainmail",
                        signer: str = "chainmail-signer") -> dict[str, Any]:
    """The RoleBinding that lets the watcher's signer read ``namespace``'s run credentials."""
    from chainmail.errors import InputError

    for what, value in (("namespace", namespace), ("signer namespace", signer_namespace),
                        ("service account", signer)):
        if not _DNS1123_LABEL.match(value):
            raise InputError(f"{what} '{value}' is not a valid Kubernetes name (lower-case DNS label)")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": CREDENTIALS_ROLE, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "chainmail-watcher"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CREDENTIALS_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": signer, "namespace": signer_namespace}],
    }


@app.command("enable")
def enable_cmd(
    namespace: Annotated[str, typer.Argument(help="Namespace whose runs' registry credentials the watcher may use.")],
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
    signer_namespace: Annotated[str, typer.Option("--signer-namespace",
                                                  help="Namespace the watcher runs in.")] = "chainmail",
    signer: Annotated[str, typer.Option("--service-account", help="The watcher's signing ServiceAccount.")]
    = "chainmail-signer",
) -> None:
    """Print the RoleBinding that grants the watcher NAMESPACE's pull secrets; pipe it to `kubectl apply -f -`.

    It binds the ClusterRole chainmail-run-credentials (get serviceaccounts and secrets) in NAMESPACE
    only; apply pipelines/chainmail-watcher/opt-in/namespace-credentials.yaml once to create that ClusterRole.
    """
    import yaml

    from chainmail.errors import InputError

    doc = credentials_binding(namespace, signer_namespace=signer_namespace, signer=signer)
    if output == "yaml":
        typer.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())
    elif output == "json":
        typer.echo(json.dumps(doc, indent=2))
    else:
        raise InputError(f"unknown output format '{output}' (use yaml or json)")
