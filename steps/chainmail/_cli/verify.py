"""`chainmail verify` commands: images, attestations, runs and file stores, with cosign's exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainmail._cli._options import ConfigOpt, DockerConfigOpt, KubeconfigOpt, NamespaceOpt, OutputOpt, SetOpt

if TYPE_CHECKING:
    from collections.abc import Callable

    from chainmail.context import Context
    from chainmail.policy import Policy
    from chainmail.verify import Verified
    from chainmail.verify.certificates import IdentityPolicy
    from chainmail.verify.tlog import TlogCheck
    from chainmail.verify.trusted_root import TrustedRoot

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
ImageKeyOpt = Annotated[
    list[str] | None,
    typer.Option("--key", "-k",
                 help="Public key: a cosign.pub/PEM file, a key directory, or k8s://NAMESPACE/SECRET "
                      "(repeatable; any key may verify). Or verify keyless with --certificate-identity."),
]
IdentityOpt = Annotated[
    str | None,
    typer.Option("--certificate-identity",
                 help="Keyless: the identity the signing certificate must name (a SAN: workflow URI, "
                      "email…), exactly."),
]
IdentityRegexpOpt = Annotated[
    str | None,
    typer.Option("--certificate-identity-regexp",
                 help="Keyless: a regular expression the certificate's identity must match (a search, "
                      "as cosign: anchor it with ^…$)."),
]
IssuerOpt = Annotated[
    str | None,
    typer.Option("--certificate-oidc-issuer",
                 help="Keyless: the OIDC issuer the certificate must name, exactly "
                      "(e.g. https://token.actions.githubusercontent.com)."),
]
IssuerRegexpOpt = Annotated[
    str | None,
    typer.Option("--certificate-oidc-issuer-regexp",
                 help="Keyless: a regular expression the certificate's OIDC issuer must match."),
]
TrustedRootOpt = Annotated[
    str | None,
    typer.Option("--trusted-root",
                 help="The Sigstore trusted root: production, staging (both offline), or a trusted_root.json "
                      "file (the transparency log's PEM key also works for key-signed signatures). Fulcio CAs "
                      "for keyless; log keys for the transparency log check. Default: chains-config "
                      "chainmail.transparency.trusted-root for the log keys, else production."),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (CEL rules) the verified provenance must pass; else exit 14."),
]
ImageRefArg = Annotated[str, typer.Argument(help="Image reference (tag or @sha256: digest).")]
IgnoreTlogOpt = Annotated[
    bool,
    typer.Option("--insecure-ignore-tlog",
                 help="Do not consult the transparency log: accept key-signed signatures that were never "
                      "logged (chainmail's behaviour before the log was checked; as cosign's flag)."),
]
RekorUrlOpt = Annotated[
    str | None,
    typer.Option("--rekor-url",
                 help="Look a signature's entry up in this Rekor (index search by payload sha256, at most 64 "
                      "entries checked) when the signature carries none."),
]
TypeOpt = Annotated[
    str | None,
    typer.Option("--type", help="Predicate type: slsaprovenance(02), slsaprovenance1, … or a full URI."),
]


def _context(config: Path | None, sets: list[str] | None, docker_config: Path | None = None,
             kubeconfig: Path | None = None) -> Context:
    from chainmail._cli.steps import make_context

    return make_context(config, None, sets, docker_config=docker_config, kubeconfig=kubeconfig).make_interactive()


def _check_output(output: str) -> None:
    if output not in ("text", "json"):
        from chainmail.errors import InputError

        raise InputError(f"--output '{output}': expected text or json")


def _load_policy(path: Path | None) -> Policy | None:
    """The ``--policy`` file, read before anything is verified (a bad file exits 3 whatever is stored)."""
    if path is None:
        return None
    from chainmail.policy import load_policy

    return load_policy(path)


def _keyless(key: list[str] | None, identity: str | None, issuer: str | None, identity_regexp: str | None,
             issuer_regexp: str | None, trusted_root: str | None,
             ) -> tuple[IdentityPolicy | None, TrustedRoot | None]:
    """The identity policy and trusted root the flags ask for (both None for key-based verification)."""
    from chainmail.errors import InputError
    from chainmail.verify.certificates import IdentityPolicy
    from chainmail.verify.trusted_root import load_trusted_root

    policy = IdentityPolicy.from_flags(identity, issuer, identity_regexp, issuer_regexp)
    if key and policy is not None:
        raise InputError("pass --key or --certificate-identity/--certificate-oidc-issuer, not both")
    if not key and policy is None:
        raise InputError("pass --key, or --certificate-identity and --certificate-oidc-issuer")
    root = load_trusted_root(trusted_root or "production") if policy is not None else None
    return policy, root


def _tlog_check(ctx: Context, ignore: bool, rekor_url: str | None, trusted_root: str | None) -> TlogCheck:
    """How the transparency log is used: ``--insecure-ignore-tlog``, ``--rekor-url``, and the log keys of
    ``--trusted-root``, else ``chainmail.transparency.trusted-root``, else the production root."""
    from chainmail.verify.tlog import TlogCheck

    root = trusted_root or ctx.config.get("chainmail.transparency.trusted-root").strip() or None
    return TlogCheck(ignore=ignore, rekor_url=rekor_url or "", trusted_root=root, retry=ctx.retry)


def _check_tlog_flags(ignore: bool, rekor_url: str | None) -> None:
    if ignore and rekor_url:
        raise typer.BadParameter("--insecure-ignore-tlog and --rekor-url contradict each other; pass one",
                                 param_hint="--insecure-ignore-tlog")


def _report(what: str, verified: list[Verified], output: str, policy: Policy | None) -> None:
    """Print the verified payloads (and the policy outcome); raise PolicyViolationError when it failed."""
    import json

    from chainmail.verify import layouts_found

    result = None
    if policy is not None:
        from chainmail.policy import evaluate

        result = evaluate(policy, verified)
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
        from chainmail.errors import PolicyViolationError

        raise PolicyViolationError(result.summary(), hint="see the FAIL lines above")


def _verify_ref(verify: Callable[..., list[Verified]], ref: str, key: list[str] | None,
                keyless: tuple[str | None, str | None, str | None, str | None], trusted_root: str | None,
                tlog: tuple[bool, str | None], policy: Path | None, output: str, docker_config: Path | None,
                config: Path | None, set_: list[str] | None) -> None:
    """``verify image``/``verify attestation``: check the flags (``keyless``: identity, issuer and their
    regexps; ``tlog``: --insecure-ignore-tlog, --rekor-url), read the policy, verify ``ref`` and report."""
    _check_output(output)
    _check_tlog_flags(*tlog)
    identity, root = _keyless(key, *keyless, trusted_root)
    rules = _load_policy(policy)
    ctx = _context(config, set_, docker_config)
    verified = verify(ref, key or [], ctx, identity=identity, trusted_root=root,
                      tlog=_tlog_check(ctx, *tlog, trusted_root))
    _report(verified[0].ref, verified, output, rules)


@app.command("image")
def image_cmd(
    ref: ImageRefArg,
    key: ImageKeyOpt = None,
    certificate_identity: IdentityOpt = None,
    certificate_identity_regexp: IdentityRegexpOpt = None,
    certificate_oidc_issuer: IssuerOpt = None,
    certificate_oidc_issuer_regexp: IssuerRegexpOpt = None,
    trusted_root: TrustedRootOpt = None,
    insecure_ignore_tlog: IgnoreTlogOpt = False,
    rekor_url: RekorUrlOpt = None,
    policy: PolicyOpt = None,
    output: OutputOpt = "text",
    docker_config: DockerConfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Verify image signatures: the .sig tag and Sigstore bundle referrers (cosign verify --key, or
    keyless with --certificate-identity and --certificate-oidc-issuer)."""
    from chainmail.verify import verify_image

    keyless = (certificate_identity, certificate_oidc_issuer, certificate_identity_regexp,
               certificate_oidc_issuer_regexp)
    _verify_ref(verify_image, ref, key, keyless, trusted_root, (insecure_ignore_tlog, rekor_url), policy, output,
                docker_config, config, set_)


@app.command("attestation")
def attestation_cmd(
    ref: ImageRefArg,
    key: ImageKeyOpt = None,
    certificate_identity: IdentityOpt = None,
    certificate_identity_regexp: IdentityRegexpOpt = None,
    certificate_oidc_issuer: IssuerOpt = None,
    certificate_oidc_issuer_regexp: IssuerRegexpOpt = None,
    trusted_root: TrustedRootOpt = None,
    insecure_ignore_tlog: IgnoreTlogOpt = False,
    rekor_url: RekorUrlOpt = None,
    type_: TypeOpt = None,
    policy: PolicyOpt = None,
    output: OutputOpt = "text",
    docker_config: DockerConfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Verify attestations: the .att tag and bundle referrers (cosign verify-attestation --key --type, or
    keyless with --certificate-identity and --certificate-oidc-issuer)."""
    from functools import partial

    from chainmail.verify import verify_attestation

    keyless = (certificate_identity, certificate_oidc_issuer, certificate_identity_regexp,
               certificate_oidc_issuer_regexp)
    _verify_ref(partial(verify_attestation, predicate_type=type_), ref, key, keyless, trusted_root,
                (insecure_ignore_tlog, rekor_url), policy, output, docker_config, config, set_)


@app.command("run")
def run_cmd(
    key: VerifyKeyOpt,
    name: Annotated[str | None, typer.Argument(
        metavar="RUN", help="The run: taskrun/NAME or pipelinerun/NAME (also tr/, pr/); a bare NAME must name "
                            "only one kind.")] = None,
    namespace: NamespaceOpt = None,
    kind: Annotated[str, typer.Option("--kind", help="taskrun, pipelinerun, or auto (a bare NAME must "
                                                     "name only one).")] = "auto",
    from_file: Annotated[Path | None, typer.Option("--from-file", "-f",
                                                   help="A run JSON/YAML with Chains' annotations.")] = None,
    file_store: Annotated[Path | None, typer.Option("--file-store",
                                                    help="Verify a 'file' backend directory.")] = None,
    source: Annotated[str, typer.Option(
        "--from", help="Where the run's signatures are: annotations, gcs (storage.gcs.bucket), or auto: gcs "
                       "when artifacts.<kind>.storage has gcs and not tekton.")] = "auto",
    insecure_ignore_tlog: IgnoreTlogOpt = False,
    rekor_url: RekorUrlOpt = None,
    trusted_root: Annotated[str | None, typer.Option(
        "--trusted-root", help="The transparency log's keys: a Sigstore trusted_root.json or the log's PEM key. "
                               "Default: chainmail.transparency.trusted-root, else production.")] = None,
    policy: PolicyOpt = None,
    output: OutputOpt = "text",
    kubeconfig: KubeconfigOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Verify a run by its own Chains attestation (signature-<kind>-<uid> annotation; a PipelineRun's
    children are verified and reported too, never in its place) and its chains.tekton.dev/transparency
    log entry, or a file store (whose runs are not checked against the log)."""
    from chainmail.errors import InputError

    _check_output(output)
    _check_tlog_flags(insecure_ignore_tlog, rekor_url)
    chosen = [x for x in (name, from_file, file_store) if x]
    if len(chosen) != 1:
        raise InputError("name exactly one of: a RUN (taskrun/NAME or pipelinerun/NAME, with -n), "
                         "--from-file FILE or --file-store DIR")
    if source not in ("auto", "annotations", "gcs"):
        raise InputError(f"--from '{source}': expected auto, annotations or gcs")
    if source != "auto" and file_store is not None:
        raise InputError("--from applies to a RUN or --from-file, not to --file-store")
    rules = _load_policy(policy)
    ctx = _context(config, set_, kubeconfig=kubeconfig)
    if file_store is not None:
        from chainmail.verify import verify_file_store

        verified = verify_file_store(file_store, key, ctx)
        _report(str(file_store), verified, output, rules)
        return
    from chainmail import snapshot
    from chainmail._cli.run_arg import snapshot_by_name
    from chainmail.verify import verify_run
    from chainmail.verify.gcs_store import gcs_reader, stores_runs_in_gcs

    if from_file is not None:
        snap = snapshot.from_file(from_file, strict=False)
    else:
        snap = snapshot_by_name(ctx, str(name), namespace, kind)
    ref = snap.ref
    read = None
    if source == "gcs" or (source == "auto" and stores_runs_in_gcs(ctx, "taskrun" if ref.kind == "TaskRun"
                                                                    else "pipelinerun")):
        read = gcs_reader(ctx)
    verified = verify_run(snap, key, ctx, read, tlog=_tlog_check(ctx, insecure_ignore_tlog, rekor_url, trusted_root))
    _report(f"{ref.kind} {ref.namespace}/{ref.name}", verified, output, rules)
