"""`chainmail config` commands: check an existing chains-config, import an operator's Chains settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainmail._cli._options import ConfigMapOpt, ConfigOpt, KubeconfigOpt, OutputOpt, SetOpt

if TYPE_CHECKING:
    from chainmail.config_import import Preset

app = typer.Typer(help="Check a chains-config against this build; import OpenShift Pipelines' Chains settings.",
                  no_args_is_help=True, rich_markup_mode=None)

PresetOpt = Annotated[
    str | None,
    typer.Option("--preset", help="Platform defaults: 'openshift' (openshift-pipelines/chains-config, service "
                                  "account pipeline) or 'tekton' (tekton-chains/chains-config)."),
]


def _preset(name: str | None) -> Preset | None:
    from chainmail.config_import import PRESETS
    from chainmail.errors import ConfigError

    if name is None:
        return None
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"--preset '{name}': expected one of {', '.join(sorted(PRESETS))}") from None


def _output(value: str) -> str:
    from chainmail.errors import InputError

    if value not in ("text", "json"):
        raise InputError(f"--output '{value}': expected text or json")
    return value


@app.command("check")
def check_cmd(
    config: ConfigOpt = None,
    configmap: ConfigMapOpt = None,
    set_: SetOpt = None,
    preset: PresetOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: OutputOpt = "text",
) -> None:
    """List every key of a chains-config with what chainmail does with it: same, different, not supported.

    Exits 0 when chainmail can use the config as it is, 3 when a key is not supported, unknown or invalid.
    """
    import json

    from chainmail.config import read_config_file
    from chainmail.config_check import check_config
    from chainmail.context import Context
    from chainmail.errors import ConfigError

    fmt = _output(output)
    chosen = _preset(preset)
    if configmap is None and chosen is not None and config is None:
        configmap = chosen.configmap_ref
    data: dict[str, object] = {}
    if config is not None:
        data.update(read_config_file(config))
    if configmap:
        ns, _, name = configmap.partition("/")
        if not ns or not name:
            raise ConfigError(f"--configmap '{configmap}': expected NAMESPACE/NAME")
        data.update(Context(kubeconfig=kubeconfig).kube.get_configmap(ns, name))
    for item in set_ or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set '{item}': expected KEY=VALUE")
        data[key.strip()] = value
    if config is None and not configmap and not set_:
        raise ConfigError("nothing to check: pass --configmap NS/NAME, --config FILE, --set KEY=VALUE or --preset")
    report = check_config(data)
    text = json.dumps(report.to_json(), indent=2) + "\n" if fmt == "json" else report.to_text()
    typer.echo(text, nl=False)
    if not report.ok:
        bad = [v.key for v in report.verdicts if v.status in ("not supported", "unknown", "invalid")]
        typer.echo(f"Error: chainmail cannot use this config as it is: {', '.join(bad)}", err=True)
        raise typer.Exit(ConfigError.exit_code)


@app.command("import")
def import_cmd(
    tektonconfig: Annotated[Path, typer.Option("--tektonconfig",
                                               help="A TektonConfig or TektonChain (operator.tekton.dev) "
                                                    "as YAML/JSON, e.g. `oc get tektonconfig config -o yaml`.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write here (mode 0600) instead of stdout.")] = None,
    flat: Annotated[bool, typer.Option("--flat", help="Write a flat key: value mapping, not a ConfigMap.")] = False,
    preset: PresetOpt = "openshift",
    no_operator_defaults: Annotated[bool, typer.Option(
        "--no-operator-defaults",
        help="Do not fill unset keys with the operator's defaults (e.g. storage oci).")] = False,
) -> None:
    """Turn TektonConfig.spec.chain (or a TektonChain's spec) into chains-config.

    Operator-only fields (disabled, generateSigningSecret, …) are reported on stderr, never copied.
    """
    import yaml

    from chainmail._internal.files import atomic_write
    from chainmail.config_check import SECRET_KEYS
    from chainmail.config_import import OPENSHIFT, import_tektonconfig
    from chainmail.errors import ConfigError, InputError

    chosen = _preset(preset) or OPENSHIFT
    try:
        text = tektonconfig.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {tektonconfig}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{tektonconfig} is not valid YAML/JSON: {exc}".splitlines()[0]) from None
    if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("kind") == "List":
        docs = list(docs[0].get("items") or [])
    result = import_tektonconfig(docs, preset=chosen, operator_defaults=not no_operator_defaults)
    data = result.data
    if out is None and any(k in SECRET_KEYS and v for k, v in data.items()):
        data = {k: ("REDACTED" if k in SECRET_KEYS and v else v) for k, v in data.items()}
        typer.echo("Warning: secret values replaced by REDACTED on stdout; use --out FILE to write them", err=True)
    doc = dict(sorted(data.items())) if flat else {**result.configmap(), "data": dict(sorted(data.items()))}
    rendered = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    for key, note in result.operator_only.items():
        typer.echo(f"not copied: {key}: {note}", err=True)
    if result.defaulted:
        typer.echo(f"operator defaults filled in: {', '.join(result.defaulted)}", err=True)
    if out is None:
        typer.echo(rendered, nl=False)
    else:
        atomic_write(out, rendered.encode(), mode=0o600)
        typer.echo(f"{len(data)} key(s) from {result.source} written to {out}", err=True)
