"""What the SLSA formats share: run views, subjects, materials, resolved dependencies, byproducts.

The rules follow Tekton Chains (``pkg/chains/formats/slsa``): the same sources, the same
order, the same merging of duplicates. Where Chains is quadratic (looking up child
TaskRuns per pipeline task, merging subjects), lookups here go through dictionaries so
cost stays linear in the number of child TaskRuns.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

from chainmail import artifacts as hints
from chainmail.artifacts import Descriptors, Result, results_from
from chainmail.errors import InputError
from chainmail.formats._goval import GoTime, go_json
from chainmail.formats._tekton import decode_run, string_map
from chainmail.models import RunSnapshot

log = logging.getLogger("chainmail.formats")

PIPELINE_TASK_LABEL = "tekton.dev/pipelineTask"
REPRODUCIBLE_LABEL = "chains.tekton.dev/reproducible"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SLSA_BUILD_TYPE = "https://tekton.dev/chains/v2/slsa"
TEKTON_BUILD_TYPE = "https://tekton.dev/chains/v2/slsa-tekton"
JSON_MEDIA_TYPE = "application/json"


# --- run views -------------------------------------------------------------------------------------


class RunView:
    """A decoded run (Go's view of it) plus the accessors the formats need."""

    kind: str = ""

    def __init__(self, raw: dict[str, Any], where: str = "run") -> None:
        self.raw = raw
        self.where = where
        self.obj = decode_run(raw, self.kind, where)
        self.metadata: dict[str, Any] = self.obj["metadata"]
        self.spec: dict[str, Any] = self.obj["spec"]
        self.status: dict[str, Any] = self.obj["status"]

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.get("annotations") or {}

    def raw_meta_map(self, key: str) -> dict[str, str] | None:
        """Labels or annotations exactly as Go holds them (None when unset, ``{}`` when empty)."""
        meta = self.raw.get("metadata")
        return string_map(meta.get(key)) if isinstance(meta, dict) else None

    @property
    def gvk(self) -> str:
        """``tekton.dev/v1/TaskRun``: Chains' ``buildType`` for slsa/v1 (fixed by the Go type)."""
        return f"tekton.dev/v1/{self.kind}"

    @property
    def provenance(self) -> dict[str, Any] | None:
        return self.status.get("provenance")

    @property
    def ref_source(self) -> dict[str, Any] | None:
        prov = self.provenance
        return prov.get("refSource") if prov else None

    @property
    def start(self) -> GoTime | None:
        return self.status.get("startTime")

    @property
    def completion(self) -> GoTime | None:
        return self.status.get("completionTime")

    @cached_property
    def results(self) -> list[Result]:
        return results_from(self.status.get("results"))

    def _ref_resolver(self) -> str:
        return ""

    @property
    def remote_provenance(self) -> dict[str, Any] | None:
        """``status.provenance`` when the task/pipeline came from a remote resolver (not Cluster)."""
        if self.ref_source is None or self._ref_resolver() in ("", "Cluster"):
            return None
        return self.provenance


class TaskRunView(RunView):
    """A decoded TaskRun."""

    kind = "TaskRun"

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.status.get("steps") or []

    @property
    def sidecars(self) -> list[dict[str, Any]]:
        return self.status.get("sidecars") or []

    @property
    def task_spec(self) -> dict[str, Any] | None:
        return self.status.get("taskSpec")

    @cached_property
    def step_results(self) -> list[Result]:
        return [r for step in self.steps for r in results_from(step.get("results"))]

    def _ref_resolver(self) -> str:
        ref = self.spec.get("taskRef")
        return str(ref.get("resolver", "")) if ref else ""


class PipelineRunView(RunView):
    """A decoded PipelineRun with its child TaskRuns, indexed by ``tekton.dev/pipelineTask``."""

    kind = "PipelineRun"

    def __init__(self, raw: dict[str, Any], children: Iterable[dict[str, Any]], *, deep: bool) -> None:
        super().__init__(raw, "pipelineRun")
        self.children = [TaskRunView(c, f"taskRuns[{i}]") for i, c in enumerate(children)]
        self._by_task: dict[str, list[TaskRunView]] = {}
        for child in self.children:
            label = child.labels.get(PIPELINE_TASK_LABEL)
            if label is not None:
                self._by_task.setdefault(label, []).append(child)
        for ref in self.status.get("childReferences") or []:
            if ref.get("kind") not in ("TaskRun", None, ""):
                # Chains never signs such a PipelineRun (tektoncd/chains#1210); chainmail does,
                # leaving the custom run out as Chains' formatters would.
                log.info(
                    "PipelineRun %s: %s child %s is not a TaskRun; it is left out of the provenance",
                    self.name,
                    ref.get("kind"),
                    ref.get("name", ""),
                )
        if deep:
            self._check_children()

    def _check_children(self) -> None:
        have = {c.name for c in self.children}
        # While the run is still going (a provisional attestation from its own finally task),
        # the finally TaskRuns -- the signer among them -- are running and cannot be included.
        running_finally: set[str] = set()
        if not self.status.get("completionTime"):
            running_finally = {str(t.get("name", "")) for t in (self.pipeline_spec or {}).get("finally") or []}
        missing = [
            ref.get("name", "")
            for ref in self.status.get("childReferences") or []
            if ref.get("kind") == "TaskRun"
            and ref.get("name", "") not in have
            and ref.get("pipelineTaskName", "") not in running_finally
        ]
        if missing:
            raise InputError(
                f"PipelineRun {self.name}: child TaskRun(s) {', '.join(sorted(missing))} are missing "
                "from the snapshot; deep inspection needs every child (Chains would not sign it)",
                hint="take the snapshot again once the children exist, with their objects included",
            )

    @property
    def pipeline_spec(self) -> dict[str, Any] | None:
        return self.status.get("pipelineSpec")

    def pipeline_tasks(self) -> list[dict[str, Any]]:
        """``tasks`` then ``finally`` of ``status.pipelineSpec``."""
        spec = self.pipeline_spec or {}
        return list(spec.get("tasks") or []) + list(spec.get("finally") or [])

    def task_runs_for(self, task_name: str) -> list[TaskRunView]:
        """Child TaskRuns labelled ``tekton.dev/pipelineTask: <task_name>``, in snapshot order."""
        return self._by_task.get(task_name, [])

    def executed(self) -> Iterator[TaskRunView]:
        """Child TaskRuns that completed, pipeline task by pipeline task (Chains' GetExecutedTasks)."""
        for task in self.pipeline_tasks():
            for tr in self.task_runs_for(str(task.get("name", ""))):
                if tr.completion is not None:
                    yield tr

    def _ref_resolver(self) -> str:
        ref = self.spec.get("pipelineRef")
        return str(ref.get("resolver", "")) if ref else ""


def load(snapshot: RunSnapshot, *, deep: bool) -> TaskRunView | PipelineRunView:
    """Decode a snapshot's run (and, for a PipelineRun, its children)."""
    if snapshot.kind == "PipelineRun":
        return PipelineRunView(snapshot.run, snapshot.task_runs, deep=deep)
    return TaskRunView(snapshot.run)


# --- subjects ------------------------------------------------------------------------------------


def subjects_v1(view: TaskRunView | PipelineRunView, *, deep: bool) -> Descriptors:
    """Subjects for slsa/v1 and slsa/v2alpha3 (Chains' ``extract.SubjectDigests``)."""
    own = hints.object_subjects(view.results)
    if not isinstance(view, PipelineRunView) or not deep:
        return own
    merged = Descriptors()
    for tr in view.executed():
        merged.extend(hints.object_subjects(tr.results))
    merged.extend(own)
    return merged


def taskrun_subjects_v2alpha4(tr: TaskRunView) -> Descriptors:
    """Build-artifact subjects of a TaskRun: step (StepAction) results first, then task results."""
    subjects = Descriptors()
    for step in tr.steps:
        subjects.extend(hints.build_artifact_subjects(results_from(step.get("results"))))
    subjects.extend(hints.build_artifact_subjects(tr.results))
    return subjects


def subjects_v2alpha4(view: TaskRunView | PipelineRunView, *, deep: bool) -> Descriptors:
    """Subjects for slsa/v2alpha4: build artifacts only."""
    if isinstance(view, TaskRunView):
        return taskrun_subjects_v2alpha4(view)
    subjects = hints.build_artifact_subjects(view.results)
    if deep:
        for tr in view.executed():
            subjects.extend(taskrun_subjects_v2alpha4(tr))
    return subjects


# --- materials ----------------------------------------------------------------------------------------


def spdx_git(url: str) -> str:
    """``git+<url>.git``, adding the prefix and suffix only when missing."""
    if not url.startswith("git+"):
        url = "git+" + url
    if not url.endswith(".git"):
        url += ".git"
    return url


def _image_material(tr: TaskRunView, what: str, image_id: str) -> tuple[str, dict[str, str]]:
    uri, sep, digest = image_id.partition("@")
    alg, sep2, value = digest.partition(":")
    if not sep or "@" in digest or not sep2 or ":" in value:
        raise InputError(
            f"TaskRun {tr.name}: {what} imageID '{image_id}' is not of the form <image>@<algorithm>:<hex>; "
            "Tekton Chains cannot build provenance for it either"
        )
    return hints.OCI_SCHEME + uri.removeprefix("docker-pullable://"), {alg: value}


def step_images(tr: TaskRunView) -> Descriptors:
    return Descriptors(
        _image_material(tr, f"step {s.get('name', '')}", s.get("imageID", "")) for s in tr.steps
    )


def sidecar_images(tr: TaskRunView) -> Descriptors:
    return Descriptors(
        _image_material(tr, f"sidecar {s.get('name', '')}", s.get("imageID", "")) for s in tr.sidecars
    )


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _git_from(commit: str, url: str, params: Iterable[dict[str, Any]], key: str) -> tuple[str, str]:
    for p in params:
        if p.get("name") == hints.GIT_COMMIT:
            commit = _string(p.get(key))
        elif p.get("name") == hints.GIT_URL:
            url = _string(p.get(key))
    return commit, url


def _git_from_results(commit: str, url: str, results: Iterable[Result]) -> tuple[str, str]:
    for r in results:
        if r.name == hints.GIT_COMMIT:
            commit = r.string
        if r.name == hints.GIT_URL:
            url = r.string
    return commit, url


def task_inputs(tr: TaskRunView) -> Descriptors:
    """CHAINS-GIT_* (param defaults, then params, then results) and ``*ARTIFACT_INPUTS`` of a TaskRun."""
    specs = [p for p in (tr.task_spec or {}).get("params") or [] if "default" in p]
    commit, url = _git_from("", "", specs, "default")
    commit, url = _git_from(commit, url, tr.spec.get("params") or [], "value")
    commit, url = _git_from_results(commit, url, tr.results)
    url = spdx_git(url)  # Chains adds the prefix before checking, so an empty URL still counts
    mats = Descriptors()
    if commit and url:
        mats.add(url, {"sha1": commit})
    mats.extend(hints.input_materials(tr.results))
    return mats


def step_action_inputs(tr: TaskRunView) -> Descriptors:
    """CHAINS-GIT_* and ``*ARTIFACT_INPUTS`` among the steps' (StepAction) results."""
    mats = Descriptors()
    for step in tr.steps:
        commit, url = _git_from_results("", "", results_from(step.get("results")))
        url = spdx_git(url)
        if commit and url:
            mats.add(url, {"sha1": commit})
    mats.extend(hints.input_materials(tr.step_results))
    return mats


def pipeline_inputs(pr: PipelineRunView, *, deep: bool) -> Descriptors:
    """``*ARTIFACT_INPUTS`` of the PipelineRun, its children's inputs (deep), then its CHAINS-GIT_*."""
    mats = Descriptors(hints.input_materials(pr.results))
    commit = url = ""
    if pr.pipeline_spec is not None:
        if deep:
            for tr in pr.executed():
                mats.extend(task_inputs(tr))
        specs = [p for p in pr.pipeline_spec.get("params") or [] if "default" in p]
        commit, url = _git_from(commit, url, specs, "default")
    commit, url = _git_from(commit, url, pr.spec.get("params") or [], "value")
    commit, url = _git_from_results(commit, url, pr.results)
    if commit and url:
        mats.add(spdx_git(url), {"sha1": commit})
    return mats


def _ref_material(ref: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return str(ref.get("uri", "")), dict(ref.get("digest") or {})


def task_materials(tr: TaskRunView) -> Descriptors:
    """slsa/v1 materials of a TaskRun: step images, sidecar images, git source, inputs."""
    mats = step_images(tr)
    mats.extend(sidecar_images(tr))
    mats.extend(task_inputs(tr))
    return mats


def pipeline_materials(pr: PipelineRunView, *, deep: bool) -> Descriptors:
    """slsa/v1 materials of a PipelineRun."""
    mats = Descriptors()
    if pr.ref_source is not None:
        mats.add(*_ref_material(pr.ref_source))
    for tr in pr.executed():
        mats.extend(step_images(tr))
        mats.extend(sidecar_images(tr))
        if tr.ref_source is not None:
            mats.add(*_ref_material(tr.ref_source))
    mats.extend(pipeline_inputs(pr, deep=deep))
    return mats


def materials_json(mats: Iterable[tuple[str, dict[str, str]]]) -> list[dict[str, Any]]:
    """slsa/v0.2 ``materials`` entries (``uri`` and ``digest`` omitted when empty)."""
    out = []
    for uri, digest in mats:
        entry: dict[str, Any] = {}
        if uri:
            entry["uri"] = uri
        if digest:
            entry["digest"] = digest
        out.append(entry)
    return out


# --- SLSA 1.0 pieces ------------------------------------------------------------------------------


def descriptor(
    name: str = "",
    uri: str = "",
    digest: dict[str, str] | None = None,
    content: bytes = b"",
    media_type: str = "",
) -> dict[str, Any]:
    """An in-toto ResourceDescriptor as protojson writes it (empty fields left out)."""
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if uri:
        out["uri"] = uri
    if digest:
        out["digest"] = dict(digest)
    if content:
        out["content"] = base64.b64encode(content).decode()
    if media_type:
        out["mediaType"] = media_type
    return out


def _dedupe(deps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeated (uri, digest, content); ``task``, ``pipeline`` and ``stepAction/*`` always stay."""
    seen: set[tuple[str, tuple[tuple[str, str], ...], str]] = set()
    out = []
    for dep in deps:
        key = (dep.get("uri", ""), tuple(sorted((dep.get("digest") or {}).items())), dep.get("content", ""))
        name = dep.get("name", "")
        if key in seen and name not in ("task", "pipeline") and not name.startswith("stepAction/"):
            continue
        seen.add(key)
        out.append(dep)
    return out


def _named(mats: Iterable[tuple[str, dict[str, str]]], name: str = "") -> list[dict[str, Any]]:
    return [descriptor(name, uri, digest) for uri, digest in mats]


def remote_step_actions(tr: TaskRunView) -> list[dict[str, Any]]:
    """``stepAction/<step>`` for each step whose StepAction came from a remote resolver."""
    out = []
    for step in tr.steps:
        ref = (step.get("provenance") or {}).get("refSource")
        if ref is not None:
            out.append(descriptor(f"stepAction/{step.get('name', '')}", *_ref_material(ref)))
    return out


def taskrun_dependencies(tr: TaskRunView, *, step_actions: bool) -> list[dict[str, Any]]:
    """resolvedDependencies of a TaskRun."""
    head = []
    if tr.ref_source is not None:
        head.append(descriptor("task", *_ref_material(tr.ref_source)))
    deps = _named(list(step_images(tr)) + list(sidecar_images(tr)))
    if step_actions:
        deps += _named(step_action_inputs(tr), "inputs/result")
        deps += remote_step_actions(tr)
    inputs = list(task_inputs(tr))
    deps += _named(inputs, "inputs/result")
    deps += _named(inputs, "pipelineResource")
    return head + _dedupe(deps)


def _task_descriptor(tr: TaskRunView, build_type: str) -> dict[str, Any] | None:
    ref = tr.ref_source
    if build_type == TEKTON_BUILD_TYPE:
        uri, digest = _ref_material(ref) if ref is not None else ("", {})
        # The whole TaskRun as the controller holds it: read from its informer cache, where
        # Kubernetes' typed decoding leaves apiVersion and kind empty (so they are omitted).
        body = {k: v for k, v in tr.obj.items() if k not in ("kind", "apiVersion")}
        return descriptor("pipelineTask", uri, digest, content=go_json(body))
    if ref is None:
        return None
    return descriptor("pipelineTask", *_ref_material(ref))


def pipelinerun_dependencies(
    pr: PipelineRunView, *, deep: bool, step_actions: bool, build_type: str
) -> list[dict[str, Any]]:
    """resolvedDependencies of a PipelineRun."""
    deps = []
    if pr.ref_source is not None:
        deps.append(descriptor("pipeline", *_ref_material(pr.ref_source)))
    executed = list(pr.executed())
    for tr in executed:
        task = _task_descriptor(tr, build_type)
        if task is not None:
            deps.append(task)
        if step_actions:
            deps += remote_step_actions(tr)
        deps += _named(list(step_images(tr)) + list(sidecar_images(tr)))
    if deep and step_actions:
        for tr in executed:
            deps += _named(step_action_inputs(tr), "inputs/result")
    deps += _named(pipeline_inputs(pr, deep=deep), "inputs/result")
    return _dedupe(deps)


def external_parameters(view: RunView) -> dict[str, Any]:
    """``runSpec`` (the whole spec) plus ``buildConfigSource`` for remotely resolved tasks/pipelines."""
    params: dict[str, Any] = {}
    prov = view.remote_provenance
    if prov is not None:
        ref = prov["refSource"]
        digest = ref.get("digest") or {}
        first = next(iter(digest.items()), None)
        params["buildConfigSource"] = {
            "ref": f"{first[0]}:{first[1]}" if first else "",
            "repository": ref.get("uri", ""),
            "path": ref.get("entryPoint", ""),
        }
    params["runSpec"] = view.spec
    return params


def internal_parameters(view: RunView, build_type: str) -> dict[str, Any]:
    """Pipelines feature flags; ``slsa-tekton`` adds every label and annotation."""
    params: dict[str, Any] = {}
    prov = view.provenance
    if prov is not None and prov.get("featureFlags") is not None:
        params["tekton-pipelines-feature-flags"] = prov["featureFlags"]
    if build_type == TEKTON_BUILD_TYPE:
        params["labels"] = view.raw_meta_map("labels")
        params["annotations"] = view.raw_meta_map("annotations")
    return params


def byproduct(name: str, value: Any) -> dict[str, Any]:
    """A result as a byproduct: its JSON value, base64 in ``content``."""
    return descriptor(name, content=go_json(value), media_type=JSON_MEDIA_TYPE)


def _is_image_hint(name: str) -> bool:
    return name.endswith(hints.IMAGE_URL) or name.endswith(hints.IMAGE_DIGEST) or name == hints.IMAGES


def results_without_build_artifacts(prefix: str, results: Iterable[Result]) -> list[dict[str, Any]]:
    """v2alpha4 byproducts: results that are neither build artifacts nor image type hints."""
    return [
        byproduct(f"{prefix}/{r.name}", r.value)
        for r in results
        if hints.is_build_artifact(r) is False and not _is_image_hint(r.name)
    ]


def build_metadata(view: RunView) -> dict[str, Any]:
    """SLSA 1.0 ``runDetails.metadata``."""
    out: dict[str, Any] = {}
    if view.uid:
        out["invocationId"] = view.uid
    if view.start is not None:
        out["startedOn"] = view.start.protojson()
    if view.completion is not None:
        out["finishedOn"] = view.completion.protojson()
    return out


def slsa1_predicate(
    view: RunView,
    *,
    builder_id: str,
    build_type: str,
    dependencies: list[dict[str, Any]],
    byproducts: list[dict[str, Any]],
) -> dict[str, Any]:
    """The SLSA 1.0 provenance predicate."""
    definition: dict[str, Any] = {
        "buildType": build_type,
        "externalParameters": external_parameters(view),
        "internalParameters": internal_parameters(view, build_type),
    }
    if dependencies:
        definition["resolvedDependencies"] = dependencies
    details: dict[str, Any] = {
        "builder": {"id": builder_id} if builder_id else {},
        "metadata": build_metadata(view),
    }
    if byproducts:
        details["byproducts"] = byproducts
    return {"buildDefinition": definition, "runDetails": details}
