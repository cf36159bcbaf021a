"""Loading and walking the Tekton packaging (tasks/, pipelines/, catalog.yaml) for the catalog tests.

Kept free of pytest so the helpers are plain functions; the fixtures live in conftest.py.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tasks"
PIPELINES = REPO / "pipelines"
STEPACTIONS = TASKS / "stepactions"
CATALOG = REPO / "catalog.yaml"

#: Tekton kinds published as catalog packages, and the directory that holds each kind.
PACKAGE_KINDS = {"Task": TASKS, "StepAction": STEPACTIONS, "Pipeline": PIPELINES}

#: tektoncd/hub config.yaml categories (catlin errors on any other value).
HUB_CATEGORIES = {
    "Automation", "Build Tools", "CLI", "Cloud", "Code Quality", "Continuous Integration", "Deployment",
    "Developer Tools", "Image Build", "Integration & Delivery", "Git", "Kubernetes", "Messaging",
    "Monitoring", "Networking", "Openshift", "Publishing", "Security", "Storage", "Testing",
}
AH_CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
PINNED_IMAGE = re.compile(
    r"^(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?)/(?P<repo>[a-z0-9]+([._/-][a-z0-9]+)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})@sha256:[0-9a-f]{64}$"
)
PARAM_NAME = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9.-]*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
RESULT_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LOWER_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9]+$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
#: Tekton variable references that must never appear inside a script.
SCRIPT_FORBIDDEN = re.compile(r"\$\((params|workspaces|results|context|tasks|steps|step|inputs|outputs)[.\[]")


def shared_dir() -> Path:
    return Path(os.environ.get("CHAINMAIL_SHARED", REPO.parent / "shared")).resolve()


# ---------------------------------------------------------------------------------------------- YAML


class DuplicateKeyError(yaml.YAMLError):
    pass


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (yamllint's key-duplicates rule)."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class Doc:
    """One YAML document of a manifest file."""

    path: Path
    index: int
    obj: dict[str, Any]

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    @property
    def where(self) -> str:
        return f"{self.rel}[{self.index}] {self.kind}/{self.name}"

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata") or {}
        return str(meta.get("name") or meta.get("generateName") or "")


def yaml_files() -> list[Path]:
    """Every YAML file under tasks/ and pipelines/."""
    return sorted(p for root in (TASKS, PIPELINES) for p in root.rglob("*.y*ml") if p.is_file())


def manifest_files() -> list[Path]:
    """YAML files holding Kubernetes objects (Artifact Hub's repository metadata is not one)."""
    return [p for p in yaml_files() if not p.name.startswith("artifacthub-repo.")]


@functools.cache
def load_docs(path: Path) -> tuple[Doc, ...]:
    with path.open() as fh:
        return tuple(Doc(path, i, obj) for i, obj in enumerate(yaml.load_all(fh, Loader=UniqueKeyLoader))
                     if obj is not None)


def all_docs() -> list[Doc]:
    return [d for p in manifest_files() for d in load_docs(p)]


def package_docs() -> list[Doc]:
    """The catalog packages: <kind dir>/<name>/<name>.yaml holding a Task, StepAction or Pipeline."""
    out = []
    for doc in all_docs():
        base = PACKAGE_KINDS.get(doc.kind)
        if base is not None and doc.path.parent.parent == base and doc.path.stem == doc.path.parent.name:
            out.append(doc)
    return out


@functools.cache
def catalog() -> dict[str, Any]:
    return yaml.load(CATALOG.read_text(), Loader=UniqueKeyLoader)


def catalog_image() -> str:
    return str(catalog()["images"]["chainmail"]["ref"])


# ---------------------------------------------------------------------------------------------- schemas

#: (apiVersion, kind) -> (CRD file under schemas/tekton-pipeline, version)
TEKTON_CRDS = {
    ("tekton.dev/v1", "Task"): ("300-task.yaml", "v1"),
    ("tekton.dev/v1", "TaskRun"): ("300-taskrun.yaml", "v1"),
    ("tekton.dev/v1", "Pipeline"): ("300-pipeline.yaml", "v1"),
    ("tekton.dev/v1", "PipelineRun"): ("300-pipelinerun.yaml", "v1"),
    ("tekton.dev/v1beta1", "StepAction"): ("300-stepaction.yaml", "v1beta1"),
}


def strictify(schema: Any) -> Any:
    """kubeconform-style strict mode: no unknown fields wherever the schema lists the known ones."""
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strictify(v) for k, v in schema.items()}
    if (out.get("type") == "object" and "properties" in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in out):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(shared: Path, filename: str, version: str) -> dict[str, Any]:
    """The strict openAPIV3Schema of one CRD version."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((shared / "schemas" / "tekton-pipeline" / filename).read_text(), Loader=loader)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return strictify(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
    raise KeyError(f"{filename} has no version {version}")


# ---------------------------------------------------------------------------------------------- walking


def embedded_specs(doc_obj: dict[str, Any], where: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, 'task'|'pipeline', spec) for every schemaless embedded spec, recursively."""
    kind = doc_obj.get("kind")
    spec = doc_obj.get("spec") or {}
    if kind == "TaskRun" and "taskSpec" in spec:
        yield f"{where}.spec.taskSpec", "task", spec["taskSpec"]
    if kind == "PipelineRun" and "pipelineSpec" in spec:
        yield f"{where}.spec.pipelineSpec", "pipeline", spec["pipelineSpec"]
        yield from _pipeline_tasks(spec["pipelineSpec"], f"{where}.spec.pipelineSpec")
    if kind == "Pipeline":
        yield from _pipeline_tasks(spec, f"{where}.spec")


def _pipeline_tasks(pspec: dict[str, Any], where: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for section in ("tasks", "finally"):
        for i, task in enumerate(pspec.get(section) or []):
            if "taskSpec" in task:
                yield f"{where}.{section}[{i}:{task.get('name')}].taskSpec", "task", task["taskSpec"]
            if "pipelineSpec" in task:
                yield f"{where}.{section}[{i}].pipelineSpec", "pipeline", task["pipelineSpec"]
                yield from _pipeline_tasks(task["pipelineSpec"], f"{where}.{section}[{i}].pipelineSpec")


def task_like_specs() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(where, spec, is_stepaction) for every Task spec we ship, including embedded taskSpecs."""
    for doc in all_docs():
        if doc.kind == "Task":
            yield doc.where, doc.obj["spec"], False
        if doc.kind == "StepAction":
            yield doc.where, doc.obj["spec"], True
        for where, kind, spec in embedded_specs(doc.obj, doc.where):
            if kind == "task":
                yield where, spec, False


def steps_of(spec: dict[str, Any], is_stepaction: bool) -> list[dict[str, Any]]:
    if is_stepaction:
        return [spec]
    template = spec.get("stepTemplate") or {}
    merged = []
    for step in spec.get("steps") or []:
        if "ref" in step:
            merged.append(step)
            continue
        m = copy.deepcopy(template)
        m.update(step)
        merged.append(m)
    return merged


def substitute_param_defaults(value: str, params: list[dict[str, Any]]) -> str:
    """What Artifact Hub does before scanning: put param defaults into $(params.x)."""
    defaults = {p["name"]: p.get("default") for p in params}

    def sub(m: re.Match[str]) -> str:
        default = defaults.get(m.group(1))
        return default if isinstance(default, str) else m.group(0)

    return re.sub(r"\$\(params\.([A-Za-z0-9_.-]+)\)", sub, value)


def walk_strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from walk_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_strings(v)
