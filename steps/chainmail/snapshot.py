"""Capture a run (and a PipelineRun's child TaskRuns) as a :class:`~chainmail.models.RunSnapshot`.

Sources:

- a file (JSON or YAML): one TaskRun/PipelineRun object; ``{"pipelineRun": …, "taskRuns": […]}``
  as in Chains' own test data; a ``kind: List`` holding one PipelineRun plus its TaskRuns (or
  one TaskRun); or a CloudEvent body ``{"taskRun": …}`` / ``{"pipelineRun": …}``;
- the cluster: the run by name, a PipelineRun's children from ``status.childReferences``
  (without them: the TaskRuns it controls, by ``ownerReferences``), skipping children that are gone.
  The ``tekton.dev/pipelineRunUID`` label only narrows the list call: anyone who can create a
  TaskRun can set it, so it never makes a TaskRun a child (:func:`is_child`).

``source`` records where it came from: ``file:<path>`` or ``api:<server>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chainmail._internal.encoding import MAX_JSON_DEPTH, JSONLimitError, load_json
from chainmail.errors import InputError, NotFoundError
from chainmail.models import RunSnapshot

if TYPE_CHECKING:
    from chainmail._internal.kube import KubeClient
    from chainmail.context import Context

log = logging.getLogger("chainmail.snapshot")

RunKind = Literal["TaskRun", "PipelineRun"]
_PLURAL = {"TaskRun": "taskruns", "PipelineRun": "pipelineruns"}


# ------------------------------------------------------------------ run state (Chains' IsDone)


def _succeeded(obj: dict[str, Any]) -> str:
    """The status of the ``Succeeded`` condition ("True", "False", "Unknown" or "")."""
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == "Succeeded":
            return str(cond.get("status") or "")
    return ""


def is_finished(obj: dict[str, Any]) -> bool:
    """True once the run has succeeded or failed (Chains acts on both)."""
    return _succeeded(obj) in ("True", "False")


def is_successful(obj: dict[str, Any]) -> bool:
    """True when the run's ``Succeeded`` condition is True."""
    return _succeeded(obj) == "True"


# ------------------------------------------------------------------ validation


def _kind_of(obj: dict[str, Any]) -> RunKind:
    return RunSnapshot(obj).kind


def validate_run(obj: Any, where: str, *, expect: RunKind | None = None, strict: bool = True) -> RunKind:
    """Check that ``obj`` looks like a v1 TaskRun or PipelineRun; return its kind.

    ``strict=False`` accepts a run without metadata or status (some of Chains' own test
    inputs are like that); the kind, apiVersion and field types are still checked.
    """
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a TaskRun or PipelineRun object, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind is not None and kind not in ("TaskRun", "PipelineRun"):
        raise InputError(f"{where}: kind is '{kind}', not TaskRun or PipelineRun")
    api_version = obj.get("apiVersion")
    if api_version is not None and api_version != "tekton.dev/v1":
        hint = ("fetch it as tekton.dev/v1 (kubectl get taskrun NAME -o json)"
                if str(api_version).startswith("tekton.dev/") else None)
        raise InputError(f"{where}: apiVersion is '{api_version}'; chainmail reads tekton.dev/v1 runs",
                         hint=hint)
    meta = obj.get("metadata")
    if meta is None and not strict:
        meta = {}
    if not isinstance(meta, dict):
        raise InputError(f"{where}: has no metadata")
    if strict and (not meta.get("name") or not isinstance(meta.get("name"), str)):
        raise InputError(f"{where}: metadata.name is missing")
    for key in ("labels", "annotations"):
        if meta.get(key) is not None and not isinstance(meta.get(key), dict):
            raise InputError(f"{where}: metadata.{key} must be a mapping")
    status = obj.get("status")
    if not isinstance(status, dict) and (strict or status is not None):
        raise InputError(f"{where}: has no status (was it captured before it ran?)")
    if obj.get("spec") is not None and not isinstance(obj.get("spec"), dict):
        raise InputError(f"{where}: spec must be a mapping")
    actual = _kind_of(obj)
    if expect is not None and actual != expect:
        raise InputError(f"{where}: expected a {expect}, got a {actual}")
    return actual


# ------------------------------------------------------------------ files


def _parse(text: str, path: Path) -> Any:
    """JSON (depth-bounded) or YAML; hostile nesting is an :class:`InputError`, never a RecursionError."""
    stripped = text.lstrip()
    if path.suffix == ".json" or stripped.startswith(("{", "[")):
        try:
            return load_json(text)
        except JSONLimitError as exc:
            raise InputError(f"{path}: {exc}") from None
        except ValueError as exc:
            if path.suffix == ".json":
                raise InputError(f"{path}: not valid JSON: {exc}") from None
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        if _too_deep(docs, MAX_JSON_DEPTH):
            raise JSONLimitError("too deep")
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid JSON or YAML: {' '.join(str(exc).split())}") from None
    except (RecursionError, JSONLimitError):
        raise InputError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not docs:
        raise InputError(f"{path}: the file is empty")
    if len(docs) == 1:
        return docs[0]
    return {"kind": "List", "items": docs}


def _too_deep(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests deeper than ``limit`` (iterative; YAML aliases are walked once per depth)."""
    deepest: dict[int, int] = {}
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > limit:
            return True
        if deepest.get(id(value), -1) >= depth:
            continue
        deepest[id(value)] = depth
        stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def from_document(doc: Any, source: str, where: str = "input", *, strict: bool = True) -> RunSnapshot:
    """Build a snapshot from a parsed document in any of the accepted shapes."""
    if isinstance(doc, list):
        doc = {"kind": "List", "items": doc}
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a TaskRun, a PipelineRun or {{pipelineRun, taskRuns}}, "
                         f"got {type(doc).__name__}")
    if doc.get("kind") == "List":
        return _from_list(doc.get("items"), source, where, strict)
    if doc.get("kind") == "Snapshot" and isinstance(doc.get("run"), dict):
        # A workspace snapshot.json.
        snap = RunSnapshot.from_json(doc)
        validate_run(snap.run, f"{where}: run", strict=strict)
        return RunSnapshot(snap.run, snap.task_runs, source)
    if "pipelineRun" in doc:
        pr = doc["pipelineRun"]
        if isinstance(pr, dict) and "kind" not in pr:
            pr["kind"] = "PipelineRun"
        validate_run(pr, f"{where}: pipelineRun", expect="PipelineRun", strict=strict)
        trs = doc.get("taskRuns") or []
        if not isinstance(trs, list):
            raise InputError(f"{where}: taskRuns must be a list")
        for i, tr in enumerate(trs):
            validate_run(tr, f"{where}: taskRuns[{i}]", expect="TaskRun", strict=strict)
        return RunSnapshot(pr, list(trs), source)
    if "taskRun" in doc and "metadata" not in doc:
        validate_run(doc["taskRun"], f"{where}: taskRun", expect="TaskRun", strict=strict)
        return RunSnapshot(doc["taskRun"], [], source)
    kind = validate_run(doc, where, strict=strict)
    if kind == "PipelineRun":
        log.warning("%s: a PipelineRun without its TaskRuns; provenance will only hold pipeline-level data",
                    where)
    return RunSnapshot(doc, [], source)


def _from_list(items: Any, source: str, where: str, strict: bool) -> RunSnapshot:
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: the List has no items")
    kinds = [validate_run(item, f"{where}: items[{i}]", strict=strict) for i, item in enumerate(items)]
    prs = [item for item, k in zip(items, kinds, strict=True) if k == "PipelineRun"]
    trs = [item for item, k in zip(items, kinds, strict=True) if k == "TaskRun"]
    if len(prs) > 1:
        raise InputError(f"{where}: the List holds {len(prs)} PipelineRuns; give one run per file")
    if prs:
        return RunSnapshot(prs[0], trs, source)
    if len(trs) > 1:
        raise InputError(f"{where}: the List holds {len(trs)} TaskRuns and no PipelineRun; "
                         "give one run per file")
    return RunSnapshot(trs[0], [], source)


def from_file(path: Path | str, *, strict: bool = True) -> RunSnapshot:
    """Read a run from a JSON or YAML file (see the module docstring for the shapes).

    ``strict=False`` also accepts runs without metadata or status, like some of Chains'
    own formatter test inputs.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    return from_document(_parse(text, path), f"file:{path}", str(path), strict=strict)


# ------------------------------------------------------------------ cluster


def from_object(kube: KubeClient, obj: dict[str, Any]) -> RunSnapshot:
    """A snapshot of an object already read from the API (children fetched for a PipelineRun)."""
    kind = validate_run(obj, f"{obj.get('kind', 'run')} {_name(obj)}")
    children = children_of(kube, obj) if kind == "PipelineRun" else []
    return RunSnapshot(obj, children, kube.source)


def from_cluster(kube: KubeClient, kind: RunKind, namespace: str | None, name: str) -> RunSnapshot:
    """Read a run by name (``namespace=None``: the client's default namespace)."""
    if kind not in _PLURAL:
        raise InputError(f"kind must be TaskRun or PipelineRun, not '{kind}'")
    obj = kube.get(_PLURAL[kind], namespace or kube.namespace, name)
    obj.setdefault("kind", kind)
    obj.setdefault("apiVersion", "tekton.dev/v1")
    return from_object(kube, obj)


def is_child(pipelinerun: dict[str, Any], taskrun: dict[str, Any]) -> bool:
    """Whether ``taskrun`` belongs to ``pipelinerun``: in its namespace, and named in its
    ``status.childReferences`` or controlled by it (an ownerReference with ``controller: true`` and its uid).
    The ``tekton.dev/pipelineRunUID`` label does not count."""
    pr_meta = _mapping(pipelinerun.get("metadata"))
    tr_meta = _mapping(taskrun.get("metadata"))
    if tr_meta.get("namespace") != pr_meta.get("namespace"):
        return False
    name, uid = tr_meta.get("name"), pr_meta.get("uid")
    refs = _mapping(pipelinerun.get("status")).get("childReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("kind", "TaskRun") == "TaskRun" and name and ref.get("name") == name:
            return True
    owners = tr_meta.get("ownerReferences")
    return bool(uid) and any(
        isinstance(o, dict) and o.get("controller") is True and o.get("kind") == "PipelineRun" and o.get("uid") == uid
        for o in (owners if isinstance(owners, list) else []))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def children_of(kube: KubeClient, pipelinerun: dict[str, Any]) -> list[dict[str, Any]]:
    """A PipelineRun's child TaskRuns, in ``status.childReferences`` order.

    One labelled list call fetches them all; a referenced child missing from it is fetched
    by name, and one that is gone is skipped with a warning (Chains does the same).
    CustomRun children are reported but not fetched. Without childReferences, the children
    are the TaskRuns the PipelineRun controls (ownerReferences); a TaskRun that only carries the
    ``tekton.dev/pipelineRunUID=<uid>`` label is left out with a warning.
    """
    meta = pipelinerun.get("metadata") or {}
    ns = meta.get("namespace") or kube.namespace
    uid = meta.get("uid") or ""
    refs = (pipelinerun.get("status") or {}).get("childReferences") or []
    listed: dict[str, dict[str, Any]] = {}
    if uid:
        for tr in kube.iter_all("taskruns", ns, label_selector=f"tekton.dev/pipelineRunUID={uid}"):
            listed[(tr.get("metadata") or {}).get("name", "")] = tr
    if not refs:
        owned = []
        for name, tr in sorted(listed.items()):
            tr.setdefault("metadata", {}).setdefault("namespace", ns)
            if is_child(pipelinerun, tr):
                owned.append(tr)
            else:
                log.warning("PipelineRun %s/%s: TaskRun %s carries its tekton.dev/pipelineRunUID label but is not "
                            "controlled by it; it is not treated as a child", ns, meta.get("name"), name)
        return owned
    out: list[dict[str, Any]] = []
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        kind, name = ref.get("kind", "TaskRun"), ref.get("name", "")
        if kind != "TaskRun":
            log.warning("PipelineRun %s/%s: child %s %s is not a TaskRun; it is not part of the provenance",
                        ns, meta.get("name"), kind, name)
            continue
        child = listed.get(name)
        if child is None:
            try:
                child = kube.get("taskruns", ns, name)
            except NotFoundError:
                log.warning("PipelineRun %s/%s: child TaskRun %s no longer exists; skipping it",
                            ns, meta.get("name"), name)
                continue
        child.setdefault("kind", "TaskRun")
        child.setdefault("apiVersion", "tekton.dev/v1")
        out.append(child)
    return out


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def reread_children(snapshot: RunSnapshot, ctx: Context) -> RunSnapshot:
    """A PipelineRun snapshot whose children are as they are *now*, e.g. after they were just signed.

    Chains signs the children first and builds the PipelineRun's provenance from the children as the API
    then returns them (``slsa-tekton`` deep inspection embeds them whole, with their ``chains.tekton.dev/*``
    annotations, finalizers and managedFields). The children are listed again (:func:`children_of`: one
    labelled list call); one gone or replaced (another uid) is kept as first read, with a warning. A snapshot
    read from a file without a cluster gets the annotations chainmail wrote to the file store
    (``<run dir>/annotations.json``) instead.
    """
    if snapshot.kind != "PipelineRun" or not snapshot.task_runs:
        return snapshot
    if snapshot.source.startswith("file") and not ctx.has_kube:
        return RunSnapshot(snapshot.run, [_with_file_annotations(c, ctx) for c in snapshot.task_runs],
                           snapshot.source)
    now = {_identity(c): c for c in children_of(ctx.kube, snapshot.run)}
    fresh = []
    for child in snapshot.task_runs:
        found = now.get(_identity(child))
        if found is None:
            log.warning("TaskRun %s is gone or was replaced; the PipelineRun's provenance uses it as first read",
                        _name(child))
        fresh.append(found or child)
    return RunSnapshot(snapshot.run, fresh, snapshot.source)


def _identity(obj: dict[str, Any]) -> tuple[str, str]:
    meta = _mapping(obj.get("metadata"))
    return str(meta.get("name", "")), str(meta.get("uid", ""))


def _with_file_annotations(child: dict[str, Any], ctx: Context) -> dict[str, Any]:
    import copy

    from chainmail.models import RunRef
    from chainmail.store_session import file_store_dir, run_dir_name

    meta = _mapping(child.get("metadata"))
    ref = RunRef("TaskRun", str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", "")))
    path = file_store_dir(ctx) / run_dir_name(ref) / "annotations.json"
    try:
        written = load_json(path.read_bytes()) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError):
        written = None
    if not isinstance(written, dict) or not written:
        return child
    out = copy.deepcopy(child)
    notes = out.setdefault("metadata", {}).get("annotations")
    out["metadata"]["annotations"] = {**(notes if isinstance(notes, dict) else {}),
                                      **{str(k): str(v) for k, v in written.items()}}
    return out
