"""`chainmail tlog` commands: search and read a transparency log (Rekor), like `rekor-cli search/get`.

Every entry printed has been verified first: its SET against the trusted log key, its inclusion
proof and signed checkpoint when the log sends them, and its UUID.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chainmail._cli._options import ConfigOpt, SetOpt

if TYPE_CHECKING:
    from chainmail.transparency import LogEntry, RekorClient

app = typer.Typer(help="Search and read a transparency log (Rekor) and verify its entries.", no_args_is_help=True,
                  rich_markup_mode=None)

RekorUrlOpt = Annotated[
    str | None,
    typer.Option("--rekor-url", help="Rekor URL. Default: chains-config transparency.url."),
]
TrustedRootOpt = Annotated[
    Path | None,
    typer.Option("--trusted-root",
                 help="The log's key: a Sigstore trusted_root.json or a PEM public key. "
                      "Default: chains-config chainmail.transparency.trusted-root, else the public-good "
                      "Sigstore root embedded in sigstore-python."),
]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: text or json.")]


def _client(config: Path | None, sets: list[str] | None, rekor_url: str | None,
            trusted_root: Path | None) -> RekorClient:
    from chainmail._cli.steps import make_context
    from chainmail.transparency import client_for

    ctx = make_context(config, None, sets).make_interactive()
    configured = ctx.config.get("chainmail.transparency.trusted-root").strip() or None
    return client_for(ctx, url=rekor_url, trusted_root=trusted_root or configured)


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        from chainmail.errors import InputError

        raise InputError(f"--format '{fmt}': expected text or json")


@app.command("search")
def search(
    sha: Annotated[str | None, typer.Option("--sha", help="sha256 digest (hex, or sha256:HEX) of an artifact, "
                                                          "payload or in-toto subject.")] = None,
    artifact: Annotated[Path | None, typer.Option("--artifact", help="Search by this file's sha256.")] = None,
    public_key: Annotated[Path | None, typer.Option("--public-key",
                                                    help="Search by this PEM public key or certificate.")] = None,
    rekor_url: RekorUrlOpt = None,
    trusted_root: TrustedRootOpt = None,
    fmt: FormatOpt = "text",
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Print the UUIDs of the log entries for a digest, a file or a key (each entry verified first)."""
    from chainmail.errors import InputError

    _check_format(fmt)
    if sum(x is not None for x in (sha, artifact, public_key)) != 1:
        raise InputError("name exactly one of --sha DIGEST, --artifact FILE or --public-key FILE")
    rekor = _client(config, sets, rekor_url, trusted_root)
    if public_key is not None:
        uuids = rekor.search(public_key_pem=_read(public_key, "--public-key").decode())
    else:
        digest = sha if sha is not None else hashlib.sha256(_read(artifact, "--artifact")).hexdigest()
        uuids = rekor.search(sha256=str(digest))
    for uuid in uuids:
        rekor.get(uuid=uuid)
    if fmt == "json":
        typer.echo(json.dumps(uuids))
    elif not uuids:
        typer.echo("no matching entries found", err=True)
    else:
        typer.echo("\n".join(uuids))


@app.command("get")
def get(
    uuid: Annotated[str | None, typer.Option("--uuid", help="Entry UUID (64 or 80 hex digits).")] = None,
    log_index: Annotated[int | None, typer.Option("--log-index", help="Entry log index.")] = None,
    attestation: Annotated[bool, typer.Option(
        "--attestation", help="Print only the in-toto statement the entry logs (dsse entries need --envelope).",
    )] = False,
    envelope: Annotated[Path | None, typer.Option(
        "--envelope", help="DSSE envelope (JSON or base64 JSON) to check against a dsse entry's hashes and "
                           "print with --attestation: Rekor does not store dsse envelopes.",
    )] = None,
    rekor_url: RekorUrlOpt = None,
    trusted_root: TrustedRootOpt = None,
    fmt: FormatOpt = "text",
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Print one verified log entry, by UUID or log index (like `rekor-cli get`)."""
    from chainmail.errors import InputError

    _check_format(fmt)
    if (uuid is None) == (log_index is None):
        raise InputError("name exactly one of --uuid UUID or --log-index N")
    rekor = _client(config, sets, rekor_url, trusted_root)
    entry = rekor.get(uuid=uuid, log_index=log_index)
    statement = _statement(entry, envelope) if (attestation or envelope is not None) else None
    if attestation:
        typer.echo(statement.decode() if statement is not None else "")
    elif fmt == "json":
        typer.echo(json.dumps(_rekor_cli_json(entry, statement), indent=2))
    else:
        typer.echo(_text(entry))


def _read(path: Path | None, flag: str) -> bytes:
    from chainmail.errors import InputError

    try:
        return Path(str(path)).read_bytes()
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None


def _statement(entry: LogEntry, envelope: Path | None) -> bytes:
    """The logged in-toto statement: the log's stored attestation, or ``envelope`` checked against the entry."""
    import base64

    from chainmail.errors import InputError, TransparencyError

    if envelope is None:
        if entry.attestation:
            return base64.b64decode(entry.attestation)
        raise InputError(
            f"Rekor entry {entry.uuid} ({entry.kind}) has no stored attestation",
            hint="Rekor keeps only hashes of dsse envelopes: pass --envelope FILE (the .att layer or "
                 "Chains' signature annotation) to check it against the entry and print its statement",
        )
    from chainmail.signing import dsse
    from chainmail.transparency import check_envelope_binding

    data = _read(envelope, "--envelope").strip()
    if not data.startswith(b"{"):
        try:
            data = base64.b64decode(data, validate=True)
        except ValueError:
            raise InputError(f"--envelope {envelope}: neither JSON nor base64") from None
    verifiers = [s.get("verifier") for s in entry.spec.get("signatures") or [] if isinstance(s, dict)]
    last: TransparencyError | None = None
    for verifier in verifiers:
        try:
            check_envelope_binding(entry, data, base64.b64decode(str(verifier)).decode())
            return dsse.parse(data)["payload"]
        except TransparencyError as exc:  # try the next logged verifier, report the last failure
            last = exc
    if last is not None:
        raise last
    raise InputError(f"Rekor entry {entry.uuid} ({entry.kind}) logs no DSSE signatures to check --envelope against")


#: How `rekor-cli get --format json` names each kind's body.
_BODY_KEYS = {"hashedrekord": "HashedRekordObj", "dsse": "DSSEObj", "intoto": "IntotoObj", "rekord": "RekordObj"}


def _rekor_cli_json(entry: LogEntry, statement: bytes | None) -> dict[str, Any]:
    """The fields `rekor-cli get --format json` prints (``Attestation`` is base64, as there)."""
    import base64

    attestation = base64.b64encode(statement).decode() if statement is not None else entry.attestation
    return {
        "Attestation": attestation,
        "AttestationType": "",
        "Body": {_BODY_KEYS.get(entry.kind, entry.kind): entry.spec},
        "LogIndex": entry.log_index,
        "IntegratedTime": entry.integrated_time,
        "UUID": entry.uuid,
        "LogID": entry.log_id,
    }


def _text(entry: LogEntry) -> str:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(entry.integrated_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    proof = entry.proof
    checked = "SET" + (f", inclusion proof (tree size {proof.tree_size})" if proof else "") + \
        (", checkpoint" if proof and proof.checkpoint else "")
    return "\n".join([
        f"LogID: {entry.log_id}",
        f"Index: {entry.log_index}",
        f"IntegratedTime: {when}",
        f"UUID: {entry.uuid}",
        f"Verified: {checked}",
        f"Body: {json.dumps(entry.body_json, indent=2, sort_keys=True)}",
    ])
