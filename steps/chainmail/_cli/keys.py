"""`chainmail keys` commands: make a cosign key pair, print a public key."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from chainmail._cli._options import ConfigOpt, KeyOpt, KubeconfigOpt, SetOpt

app = typer.Typer(help="Create cosign key pairs and show public keys.", no_args_is_help=True,
                  rich_markup_mode=None)

DestArg = Annotated[
    str,
    typer.Argument(help="Directory to write cosign.key and cosign.pub into, or k8s://NAMESPACE/SECRET."),
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--password-file",
                 help="Read the key password from this file ('-' for stdin; one trailing newline is "
                      "dropped). Default: $COSIGN_PASSWORD, else an empty password."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing key files or an existing Secret.")]
WritePasswordOpt = Annotated[
    bool,
    typer.Option("--write-password",
                 help="Also write cosign.password next to the key (what Chains' signing-secrets holds). "
                      "A Secret always gets it."),
]


def _password(password_file: Path | None) -> tuple[bytes, bool]:
    """(password, whether one was given) from --password-file, then $COSIGN_PASSWORD."""
    from chainmail.errors import InputError

    if password_file is not None:
        if str(password_file) == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                data = password_file.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read password file {password_file}: {exc.strerror}") from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        return data, True
    from chainmail.signing.keys import read_password_env

    env = read_password_env()  # a KeyMaterialError (exit 5) when it is not UTF-8 text
    if env is not None:
        return env, True
    return b"", False


@app.command("generate")
def generate(
    dest: DestArg = ".",
    password_file: PasswordFileOpt = None,
    force: ForceOpt = False,
    write_password: WritePasswordOpt = False,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Create a cosign key pair (like `cosign generate-key-pair`).

    The key is ECDSA P-256, encrypted in cosign's format. For k8s://NAMESPACE/SECRET the
    Secret gets cosign.key, cosign.pub and cosign.password (the layout Tekton Chains reads)
    and cosign.pub is also written to the current directory. The password is never printed.
    """
    from chainmail.context import Context
    from chainmail.signing.keys import PUBLIC_KEY_FILE, write_keypair

    password, given = _password(password_file)
    if not given:
        typer.echo("warning: no --password-file and COSIGN_PASSWORD is unset; the private key has an empty "
                   "password", err=True)
    ctx = Context(kubeconfig=kubeconfig)
    if dest.startswith("k8s://"):
        written = write_keypair(dest, password, ctx, force=force, local_pub=Path(PUBLIC_KEY_FILE))
        typer.echo(f"Private key, public key and password written to secret {written[0]}")
        for path in written[1:]:
            typer.echo(f"Public key written to {path}")
        return
    labels = {"cosign.key": "Private key", "cosign.pub": "Public key", "cosign.password": "Password"}
    for path in write_keypair(dest, password, ctx, force=force, write_password=write_password):
        typer.echo(f"{labels[Path(path).name]} written to {path}")


@app.command("copy")
def copy(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="k8s://NAMESPACE/SECRET to copy from.")],
    dest: Annotated[str, typer.Argument(metavar="DEST", help="k8s://NAMESPACE/SECRET to create.")],
    force: ForceOpt = False,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Copy a signing key Secret, e.g. Chains' signing-secrets into the watcher's namespace.

    The key is loaded (and its password checked) before anything is written; only the key
    entries are copied, into an immutable Secret. Nothing secret is printed.
    """
    from chainmail.context import Context
    from chainmail.signing.keys import copy_keypair

    entries = copy_keypair(source, dest, Context(kubeconfig=kubeconfig), force=force)
    typer.echo(f"copied {', '.join(entries)} from {source} to {dest}")


@app.command("public-key")
def public_key(
    ref: Annotated[str | None, typer.Argument(
        metavar="[KMSREF|KEY]",
        help="A KMS key (awskms://, gcpkms://, azurekms://, hashivault://), a key file or directory, "
             "a .pub file or k8s://NAMESPACE/SECRET.")] = None,
    key: KeyOpt = None,
    kubeconfig: KubeconfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the public key (PEM) of a key, like `cosign public-key --key`.

    The key is the argument (it wins over --key and $CHAINMAIL_KEY) or --key: a KMS key
    (fetched from the KMS; signers.kms.auth.* from --config/--set apply), a key file, a key
    directory, a .pub file or k8s://NAMESPACE/SECRET (default: the signing-secrets directory).
    """
    from chainmail._cli.steps import make_context
    from chainmail.signing import DEFAULT_SIGNING_SECRETS, load_public_key

    source = ref or key or os.environ.get("CHAINMAIL_SIGNING_SECRETS") or DEFAULT_SIGNING_SECRETS
    ctx = make_context(config, None, set_, kubeconfig=kubeconfig).make_interactive()
    typer.echo(load_public_key(source, ctx), nl=False)
