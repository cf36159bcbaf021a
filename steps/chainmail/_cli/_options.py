"""Option aliases shared by every command, so each is spelled the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

WorkspaceOpt = Annotated[
    Path,
    typer.Option("--workspace", "-w", envvar="CHAINMAIL_WORKSPACE",
                 help="Directory holding the step files (snapshot.json, payloads.json, signed.json, stored.json)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="CHAINMAIL_CONFIG",
                 help="chains-config as a YAML/JSON file or a ConfigMap manifest."),
]
ConfigMapOpt = Annotated[
    str | None,
    typer.Option("--configmap", envvar="CHAINMAIL_CONFIGMAP",
                 help="Read chains-config from the cluster, as NAMESPACE/NAME (e.g. tekton-chains/chains-config)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one chains-config key: KEY=VALUE (repeatable)."),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", "-k", envvar="CHAINMAIL_KEY",
                 help="Signing key: a directory with cosign.key+cosign.password or x509.pem, a key file, "
                      "k8s://NAMESPACE/SECRET, or a KMS URI (awskms://, gcpkms://, azurekms://, hashivault://). "
                      "Default: /etc/signing-secrets."),
]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", envvar="KUBECONFIG",
                 help="kubeconfig file (default: in-cluster, then ~/.kube/config)."),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace of the run (default: the kubeconfig's or the pod's)."),
]
OutputOpt = Annotated[
    str,
    typer.Option("--output", "-o", help="Summary format: text or json."),
]
ResultsDirOpt = Annotated[
    Path | None,
    typer.Option("--results-dir", envvar="CHAINMAIL_RESULTS_DIR",
                 help="Write Tekton results here (one file per result, e.g. /tekton/results)."),
]

DockerConfigOpt = Annotated[
    Path | None,
    typer.Option("--docker-config", envvar="DOCKER_CONFIG",
                 help="Registry credentials: a directory with config.json, or a .dockerconfigjson file."),
]
