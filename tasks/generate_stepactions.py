#!/usr/bin/env python3
"""Generate the chainmail StepActions (tasks/stepactions/) from the Task steps.

The Tasks are the source of truth; the StepActions are derived from them, as
tektoncd-catalog/git-clone does, and tests/catalog fails when the files drift.

    python tasks/generate_stepactions.py               # write tasks/stepactions/*
    python tasks/generate_stepactions.py --check       # exit 1 if a file would change
    python tasks/generate_stepactions.py --sync-image  # copy catalog.yaml's image into
                                                       # every manifest, then generate

How a StepAction is derived from its Task's step (see STEPACTIONS below):

- image, securityContext and the CHAINMAIL_IMAGE param are copied;
- the listed params are copied with their descriptions and defaults;
- each listed workspace becomes a ``<NAME>_PATH`` param (StepActions cannot declare
  workspaces); ``$(workspaces.<name>.path)`` becomes ``$(params.<NAME>_PATH)``;
- the listed results become step results; ``$(results.<r>.path)`` becomes
  ``$(step.results.<r>.path)``;
- the script is cut into units (a line, or an ``if`` ... ``fi`` block). A unit is kept
  when every step environment variable it names survives, so a StepAction carries
  exactly the flag lines of its params; ``set -- run`` becomes ``set -- <subcommand>``;
- env entries are kept when a kept unit names them.

Only the standard library and PyYAML are used.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TASKS = Path(__file__).resolve().parent
REPO = TASKS.parent
OUT = TASKS / "stepactions"
CATALOG = REPO / "catalog.yaml"
GENERATOR = "tasks/generate_stepactions.py"
IMAGE_PARAM = "CHAINMAIL_IMAGE"
RAW_BASE = "https://raw.githubusercontent.com/chainmail-dev/chainmail"


@dataclass(frozen=True)
class StepActionSpec:
    """One StepAction: which Task step it comes from and what it keeps."""

    name: str
    task: str
    display_name: str
    description: str
    #: chainmail subcommand replacing ``run`` in ``set -- run``; None keeps the script as is.
    subcommand: str | None
    params: tuple[str, ...]
    #: workspace name -> None (optional ``*_PATH`` param, the workspace's description), or
    #: the description of a required ``*_PATH`` param.
    workspaces: dict[str, str | None] = field(default_factory=dict)
    results: tuple[str, ...] = ()


_SHARED = (
    "Directory shared by the chainmail steps, where snapshot.json, payloads.json, signed.json "
    "and stored.json are read and written: a Task workspace (an emptyDir is enough)."
)

_SPLICE = (
    "Run it with the other chainmail StepActions (snapshot, format, sign-payloads, store) sharing\n"
    "one OUTPUT_PATH directory to split `chainmail run` into separate steps, for example to add your\n"
    "own step between format and sign. The chainmail-sign Task does the same in one step, which is\n"
    "faster (one container and one Python start instead of four)."
)

_KEY_IN_REACH = (
    "Key exposure: spliced into your Task, these steps share the pod, the ServiceAccount and the\n"
    "workspaces with your own steps. Any step of that Task can read the signing key (the\n"
    "signing-secrets workspace, or a k8s:// key Secret through the ServiceAccount's token) and\n"
    "rewrite the files in OUTPUT_PATH between two chainmail steps, so this mode can honestly\n"
    "claim SLSA Build L1 only. For L3, let the chainmail watcher sign from its own namespace\n"
    "(docs/trust-model.md)."
)

STEPACTIONS: tuple[StepActionSpec, ...] = (
    StepActionSpec(
        name="chainmail-snapshot",
        task="chainmail-sign",
        display_name="chainmail snapshot",
        description=(
            "Reads a finished TaskRun or PipelineRun (and a PipelineRun's child TaskRuns) through the\n"
            "Kubernetes API and writes snapshot.json to OUTPUT_PATH: the first of the four chainmail\n"
            "signing steps. With RUN_UID set it refuses an object whose uid differs.\n\n"
            + _SPLICE + "\n\n" + _KEY_IN_REACH
        ),
        subcommand="snapshot",
        params=("TASKRUN", "PIPELINERUN", "RUN_NAMESPACE", "RUN_UID"),
        workspaces={"output": _SHARED},
    ),
    StepActionSpec(
        name="chainmail-format",
        task="chainmail-sign",
        display_name="chainmail format",
        description=(
            "Turns snapshot.json into payloads.json in OUTPUT_PATH: Chains-compatible provenance\n"
            "(in-toto, slsa/v1, slsa/v2alpha3, slsa/v2alpha4) for the run and simple-signing payloads\n"
            "for the images it reports, as the chains-config keys select. Needs no cluster access.\n\n"
            + _SPLICE + "\n\n" + _KEY_IN_REACH
        ),
        subcommand="format",
        params=("CHAINS_CONFIGMAP", "CHAINS_CONFIG"),
        workspaces={"output": _SHARED},
    ),
    StepActionSpec(
        name="chainmail-sign-payloads",
        task="chainmail-sign",
        display_name="chainmail sign payloads",
        description=(
            "Signs every payload in payloads.json with the signing key and writes signed.json to\n"
            "OUTPUT_PATH. Attestations are wrapped in DSSE envelopes as Chains does. It stores\n"
            "nothing; chainmail-store does.\n\n" + _SPLICE + "\n\n" + _KEY_IN_REACH
        ),
        subcommand="sign",
        params=("KEY", "CHAINS_CONFIGMAP", "CHAINS_CONFIG"),
        workspaces={"signing-secrets": None, "dockerconfig": None, "ssl-ca-directory": None, "output": _SHARED},
    ),
    StepActionSpec(
        name="chainmail-store",
        task="chainmail-sign",
        display_name="chainmail store",
        description=(
            "Checks every signature in signed.json against its payload and key, then stores it with\n"
            "the backends chains-config selects: run annotations (tekton) and OCI .sig/.att tags\n"
            "(oci), and marks the run chains.tekton.dev/signed. Writes stored.json to OUTPUT_PATH.\n\n"
            + _SPLICE + "\n\n" + _KEY_IN_REACH
        ),
        subcommand="store",
        params=("KEY", "CHAINS_CONFIGMAP", "CHAINS_CONFIG"),
        workspaces={"signing-secrets": None, "dockerconfig": None, "ssl-ca-directory": None, "output": _SHARED},
        results=("SIGNED", "STORED"),
    ),
    StepActionSpec(
        name="chainmail-verify",
        task="chainmail-verify",
        display_name="chainmail verify",
        description=(
            "Checks that an image carries a valid signature and provenance attestation made with the\n"
            "given key (and, optionally, that the attestation satisfies a policy), and fails the step\n"
            "when it does not. The same check as the chainmail-verify Task, as a step to put in front\n"
            "of your own deploy step."
        ),
        subcommand=None,
        params=("IMAGE", "KEY", "ATTESTATION_TYPE", "CHECK_SIGNATURE", "POLICY", "POLICY_FILE",
                "CHAINS_CONFIG", "IGNORE_TLOG", "REKOR_URL"),
        workspaces={"public-key": None, "policy": None, "dockerconfig": None, "ssl-ca-directory": None},
    ),
)


# ---------------------------------------------------------------------------- YAML output


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line strings; quotes where YAML would change the type."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if data == "" or re.fullmatch(r"[0-9][0-9.]*", data) or data.lower() in ("true", "false"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    if len(data) > 80 and " " in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=">")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump(doc: object) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


# ---------------------------------------------------------------------------- derivation


def workspace_param(workspace: str) -> str:
    return workspace.upper().replace("-", "_") + "_PATH"


def load_task(name: str) -> dict:
    return yaml.safe_load((TASKS / name / f"{name}.yaml").read_text())


_VAR = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")


def script_units(script: str) -> list[list[str]]:
    """Split a script into units: single lines, or whole ``if`` ... ``fi`` blocks."""
    units: list[list[str]] = []
    depth = 0
    for line in script.splitlines():
        stripped = line.strip()
        if depth:
            units[-1].append(line)
        else:
            units.append([line])
        if re.match(r"if\b", stripped):
            depth += 1
        if stripped == "fi" or stripped.endswith("; fi"):
            depth -= 1
    if depth:
        raise ValueError("unbalanced if/fi in script")
    return units


def _translate(value: str, spec: StepActionSpec) -> str:
    def ws(match: re.Match[str]) -> str:
        return f"$(params.{workspace_param(match.group(1))})"

    value = re.sub(r"\$\(workspaces\.([a-z0-9-]+)\.path\)", ws, value)
    return re.sub(r"\$\(results\.([A-Za-z0-9_.-]+)\.path\)", r"$(step.results.\1.path)", value)


def _env_source(entry: dict) -> tuple[str, str] | None:
    """('params'|'workspaces'|'results', name) the env value comes from, or None (valueFrom)."""
    match = re.fullmatch(r"\$\((params|workspaces|results)\.([A-Za-z0-9_.-]+?)(?:\.path)?\)",
                         str(entry.get("value", "")))
    return (match.group(1), match.group(2)) if match else None


def derive(spec: StepActionSpec, task: dict, version: str) -> dict:
    tspec = task["spec"]
    (step,) = tspec["steps"]  # every chainmail Task has one step
    params = {p["name"]: p for p in tspec.get("params", [])}
    workspaces = {w["name"]: w for w in tspec.get("workspaces", [])}
    results = {r["name"]: r for r in tspec.get("results", [])}

    wanted = {("params", p) for p in (*spec.params, IMAGE_PARAM)}
    wanted |= {("workspaces", w) for w in spec.workspaces}
    wanted |= {("results", r) for r in spec.results}
    env_names = {e["name"] for e in step["env"]}
    available = {e["name"] for e in step["env"] if _env_source(e) is None or _env_source(e) in wanted}

    kept_lines: list[str] = []
    used: set[str] = set()
    for unit in script_units(step["script"]):
        names = {n for line in unit for n in _VAR.findall(line)} & env_names
        if not names <= available:
            continue
        used |= names
        for line in unit:
            if spec.subcommand and line.strip() == "set -- run":
                line = line.replace("set -- run", f"set -- {spec.subcommand}")
            kept_lines.append(line)
    script = "\n".join(kept_lines) + "\n"

    env = [{**copy.deepcopy(e), **({"value": _translate(e["value"], spec)} if "value" in e else {})}
           for e in step["env"] if e["name"] in used]
    for source, name in sorted(wanted):
        if source != "params" or name == IMAGE_PARAM:
            continue
        if not any(_env_source(e) == (source, name) for e in step["env"] if e["name"] in used):
            raise ValueError(f"{spec.name}: param {name} is not used by any kept script line")

    def mention(text: str) -> str:
        # "the signing-secrets workspace" -> "SIGNING_SECRETS_PATH" (StepActions have no workspaces).
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            return workspace_param(name) if name in spec.workspaces else match.group(0)

        return re.sub(r"the ([a-z0-9-]+) workspace", sub, text)

    sa_params: list[dict] = []
    for name in spec.params:
        param = copy.deepcopy(params[name])
        param["description"] = mention(" ".join(param["description"].split()))
        sa_params.append(param)
    for name, required in spec.workspaces.items():
        param = {"name": workspace_param(name), "type": "string"}
        if required:
            param["description"] = required
        else:
            param["description"] = (f"Path of the Task's {name} workspace. "
                                    + " ".join(workspaces[name]["description"].split())
                                    + " Empty means not provided.")
            param["default"] = ""
        sa_params.append(param)
    sa_params.append(copy.deepcopy(params[IMAGE_PARAM]))

    metadata = task["metadata"]
    annotations = dict(metadata.get("annotations", {}))
    annotations["tekton.dev/displayName"] = spec.display_name
    annotations.pop("tekton.dev/signature", None)

    body: dict = {"description": spec.description}
    body["params"] = sa_params
    if spec.results:
        body["results"] = [copy.deepcopy(results[r]) for r in spec.results]
    body["image"] = f"$(params.{IMAGE_PARAM})"
    body["env"] = env
    body["securityContext"] = copy.deepcopy(step["securityContext"])
    body["script"] = script
    return {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "StepAction",
        "metadata": {
            "name": spec.name,
            "labels": {"app.kubernetes.io/version": version},
            "annotations": annotations,
        },
        "spec": body,
    }


def _manifest_text(spec: StepActionSpec, doc: dict) -> str:
    header = (
        f"# Generated by {GENERATOR} from tasks/{spec.task}/{spec.task}.yaml.\n"
        "# Do not edit: change the Task and run the generator (tests/catalog checks for drift).\n"
    )
    text = dump(doc)
    # Keep the version label a string for every YAML reader.
    text = re.sub(r"(app\.kubernetes\.io/version: )([0-9][^\n]*)", r'\1"\2"', text)
    return header + text


def _readme(spec: StepActionSpec, doc: dict, version: str) -> str:
    sa = doc["spec"]
    lines = [f"# {spec.name}", "", sa["description"].split("\n\n")[0].replace("\n", " "), ""]
    lines += [
        f"_Generated from [`tasks/{spec.task}`](../../{spec.task}/README.md) by `{GENERATOR}`; "
        "edit the Task, not this file._",
        "",
        "## Install",
        "",
        "```sh",
        f"kubectl apply -f {RAW_BASE}/v{version}/tasks/stepactions/{spec.name}/{spec.name}.yaml",
        "```",
        "",
        "Or reference it without installing, from the signed bundle (pin the digest):",
        "",
        "```yaml",
        "steps:",
        f"  - name: {spec.subcommand or 'verify'}",
        "    ref:",
        "      resolver: bundles",
        "      params:",
        "        - name: bundle",
        f"          value: ghcr.io/chainmail-dev/chainmail/bundle:{version}@sha256:<digest>",
        "        - name: name",
        f"          value: {spec.name}",
        "        - name: kind",
        "          value: stepaction",
        "```",
        "",
        "## Parameters",
        "",
    ]
    for p in sa["params"]:
        desc = " ".join(p["description"].split())
        default = p.get("default")
        if default is None:
            suffix = ""
        else:
            suffix = f" (_default_: `{default}`)" if default != "" else ' (_default_: `""`)'
        lines.append(f"- **{p['name']}**: {desc}{suffix}")
    lines += ["", "## Results", ""]
    if sa.get("results"):
        for r in sa["results"]:
            lines.append(f"- **{r['name']}**: {' '.join(r['description'].split())} "
                         f"(read it as `$(steps.<step>.results.{r['name']})`)")
    else:
        lines.append("None.")
    if spec.task == "chainmail-sign":
        lines += ["", "## Security", "", _KEY_IN_REACH.replace("\n", " ")]
    lines += [
        "",
        "## Platforms",
        "",
        f"{doc['metadata']['annotations']['tekton.dev/platforms'].replace(',', ', ')}.",
        "",
        "## Usage",
        "",
        "StepActions cannot declare workspaces, so each Task workspace is passed as a `*_PATH` param;",
        "the steps share the Task's `output` workspace (an emptyDir is enough). Steps run non-root with",
        "no fixed UID, GID or fsGroup, so OpenShift's restricted-v2 SCC admits them.",
        "",
        "```yaml",
        SPLICED_TASK.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


SPLICED_TASK = """\
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: sign-in-steps
spec:
  params:
    - name: TASKRUN
      type: string
  workspaces:
    - name: output
    - name: signing-secrets
  results:
    - name: STORED
      value: $(steps.store.results.STORED)
  steps:
    - name: snapshot
      ref:
        name: chainmail-snapshot
      params:
        - name: TASKRUN
          value: $(params.TASKRUN)
        - name: OUTPUT_PATH
          value: $(workspaces.output.path)
    - name: format
      ref:
        name: chainmail-format
      params:
        - name: CHAINS_CONFIG
          value: "artifacts.taskrun.format: slsa/v1"
        - name: OUTPUT_PATH
          value: $(workspaces.output.path)
    # ... your own step here, reading $(workspaces.output.path)/payloads.json ...
    - name: sign
      ref:
        name: chainmail-sign-payloads
      params:
        - name: SIGNING_SECRETS_PATH
          value: $(workspaces.signing-secrets.path)
        - name: OUTPUT_PATH
          value: $(workspaces.output.path)
    - name: store
      ref:
        name: chainmail-store
      params:
        - name: CHAINS_CONFIG
          value: "artifacts.taskrun.format: slsa/v1"
        - name: OUTPUT_PATH
          value: $(workspaces.output.path)
"""


def catalog() -> dict:
    return yaml.safe_load(CATALOG.read_text())


def render() -> dict[Path, str]:
    """Every generated file and its content."""
    version = str(catalog()["version"])
    files: dict[Path, str] = {}
    tasks: dict[str, dict] = {}
    for spec in STEPACTIONS:
        task = tasks.setdefault(spec.task, load_task(spec.task))
        doc = derive(spec, task, version)
        files[OUT / spec.name / f"{spec.name}.yaml"] = _manifest_text(spec, doc)
        files[OUT / spec.name / "README.md"] = _readme(spec, doc, version)
    return files


# ---------------------------------------------------------------------------- image sync

_PINNED = re.compile(r"ghcr\.io/chainmail-dev/chainmail:[A-Za-z0-9_.-]+@sha256:[0-9a-f]{64}")


def sync_image() -> list[Path]:
    """Copy catalog.yaml's chainmail image into every manifest that pins one."""
    ref = catalog()["images"]["chainmail"]["ref"]
    changed = []
    for path in sorted([*TASKS.rglob("*.yaml"), *(REPO / "pipelines").rglob("*.yaml")]):
        text = path.read_text()
        new = _PINNED.sub(ref, text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift instead of writing")
    parser.add_argument("--sync-image", action="store_true",
                        help="copy catalog.yaml's image ref into every manifest first")
    args = parser.parse_args(argv)
    if args.sync_image and not args.check:
        for path in sync_image():
            print(f"image updated: {path.relative_to(REPO)}")
    stale = []
    for path, content in render().items():
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path.relative_to(REPO)}")
    if args.check and stale:
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)}", file=sys.stderr)
        print(f"run: python {GENERATOR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
