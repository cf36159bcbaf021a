"""Human-readable reports of verified provenance: Markdown (PR comments, task logs) and HTML.

A report says what built what, from which source at which commit, with which step images,
signed by which key or identity, and which policy rules passed::

    from chainmail.report import build_report

    report = build_report(verified, policy_result, snapshot=None)
    print(report.to_markdown())
    Path("report.html").write_text(report.to_html())

The HTML page is self-contained: inline CSS and an inline SVG graph (tasks → artifacts for a
PipelineRun, the run → its subjects otherwise), no scripts and no external URLs. Every value
that came from a statement, a run or a policy is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from chainmail.policy import PolicyResult, RuleResult, cert_identity, run_of_ref, statement_facts

if TYPE_CHECKING:
    from chainmail.models import RunSnapshot

# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Attestation:
    """One distinct verified statement and the artifacts it was verified for."""

    refs: tuple[str, ...]
    layout: str
    payload_type: str
    location: str
    key_id: str
    cert: str
    identity: str
    issuer: str
    statement: dict[str, Any]
    facts: dict[str, Any]

    @property
    def predicate_type(self) -> str:
        return str(self.statement.get("predicateType") or "")

    @property
    def subjects(self) -> list[str]:
        """``name@alg:hex`` for each subject (sha256 first)."""
        out = []
        for s in self.statement.get("subject") or []:
            if not isinstance(s, dict):
                continue
            digest = s.get("digest") if isinstance(s.get("digest"), dict) else {}
            alg = "sha256" if "sha256" in digest else next(iter(digest), "")
            name = s.get("name") or s.get("uri") or "?"
            out.append(f"{name}@{alg}:{digest[alg]}" if alg else str(name))
        return out


@dataclass(frozen=True)
class Signature:
    """A verified signature that carries no statement (a cosign simple-signing image signature)."""

    ref: str
    layout: str
    payload_type: str
    key_id: str
    identity: str


@dataclass(frozen=True)
class GraphNode:
    """A box in the build graph."""

    id: str
    label: str
    kind: str  # "run" | "task" | "artifact"
    column: int
    detail: str = ""


@dataclass(frozen=True)
class GraphEdge:
    """An arrow from ``source`` to ``target`` (node ids)."""

    source: str
    target: str
    #: False for an edge the provenance implies but does not state (drawn dashed).
    stated: bool = True


@dataclass(frozen=True)
class Graph:
    """What built what: nodes in columns, edges left to right."""

    title: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]


@dataclass(frozen=True)
class RunInfo:
    """The run named by the snapshot."""

    kind: str
    namespace: str
    name: str
    uid: str
    status: str


@dataclass(frozen=True)
class Report:
    """Everything a report shows; render with :meth:`to_markdown` or :meth:`to_html`."""

    attestations: tuple[Attestation, ...]
    signatures: tuple[Signature, ...]
    policy: PolicyResult | None
    run: RunInfo | None
    graphs: tuple[Graph, ...]
    generated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def passed(self) -> bool:
        """True when something verified and no policy rule (if any) failed."""
        verified = bool(self.attestations or self.signatures)
        return verified and (self.policy is None or self.policy.passed)

    @property
    def verdict(self) -> str:
        counts = f"{len(self.attestations)} attestation(s), {len(self.signatures)} signature(s) verified"
        if not (self.attestations or self.signatures):
            return "nothing verified"
        if self.policy is None:
            return f"{counts}; no policy checked"
        ok = sum(1 for r in self.policy.results if r.passed)
        state = "passed" if self.policy.passed else "FAILED"
        return f"{counts}; policy {self.policy.policy} {state} ({ok}/{len(self.policy.results)} checks)"

    def to_markdown(self) -> str:
        return _Markdown(self).render()

    def to_html(self) -> str:
        return _Html(self).render()

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "run": None if self.run is None else asdict(self.run),
            "attestations": [{"refs": list(a.refs), "predicateType": a.predicate_type, "keyId": a.key_id,
                              "identity": a.identity, "issuer": a.issuer, "subjects": a.subjects,
                              "builder": a.facts["builder"], "buildType": a.facts["buildType"],
                              "source": a.facts["source"], "stepImages": a.facts["stepImages"],
                              "startedOn": a.facts["startedOn"], "finishedOn": a.facts["finishedOn"]}
                             for a in self.attestations],
            "signatures": [asdict(s) for s in self.signatures],
            "policy": None if self.policy is None else self.policy.to_json(),
        }


# --------------------------------------------------------------------------- building


def build_report(verified: list[Any], policy_result: PolicyResult | None,
                 snapshot: dict[str, Any] | RunSnapshot | None = None, *, now: dt.datetime | None = None
                 ) -> Report:
    """Collect verified statements, signatures, the policy outcome and the build graph.

    ``verified`` holds ``chainmail.verify.Verified`` objects (anything with ``ref``, ``layout``,
    ``payload_type``, ``payload``, ``statement``, ``key_id``, ``cert``). ``snapshot`` is optional:
    a workspace snapshot (``{"run": …, "taskRuns": […]}``), ``{"pipelineRun": …, "taskRuns": […]}``
    or a bare run object (or a ``RunSnapshot``); it names the run and fills in child TaskRuns the
    provenance omits.
    """
    attestations: list[Attestation] = []
    by_payload: dict[bytes, int] = {}
    signatures: list[Signature] = []
    for item in verified:
        statement = getattr(item, "statement", None)
        ref = str(getattr(item, "ref", "") or "")
        cert = str(getattr(item, "cert", "") or "")
        identity, issuer = cert_identity(cert)
        if not isinstance(statement, dict):
            signatures.append(Signature(ref, str(getattr(item, "layout", "") or ""),
                                        str(getattr(item, "payload_type", "") or ""),
                                        str(getattr(item, "key_id", "") or ""), identity))
            continue
        payload = getattr(item, "payload", b"") or json.dumps(statement, sort_keys=True).encode()
        if payload in by_payload:
            existing = attestations[by_payload[payload]]
            if ref and ref not in existing.refs:
                attestations[by_payload[payload]] = _with_ref(existing, ref)
            continue
        by_payload[payload] = len(attestations)
        attestations.append(Attestation(
            refs=(ref,) if ref else (), layout=str(getattr(item, "layout", "") or ""),
            payload_type=str(getattr(item, "payload_type", "") or ""),
            location=str(getattr(item, "location", "") or ""),
            key_id=str(getattr(item, "key_id", "") or ""), cert=cert, identity=identity, issuer=issuer,
            statement=statement, facts=statement_facts(statement)))

    run, task_runs, pipeline_tasks = _read_snapshot(snapshot)
    graphs = tuple(_graph(a, run, task_runs, pipeline_tasks) for a in attestations)
    return Report(tuple(attestations), tuple(signatures), policy_result, run, graphs,
                  now or dt.datetime.now(dt.UTC))


def _with_ref(a: Attestation, ref: str) -> Attestation:
    return Attestation((*a.refs, ref), a.layout, a.payload_type, a.location, a.key_id, a.cert, a.identity,
                       a.issuer, a.statement, a.facts)


def _read_snapshot(snapshot: Any) -> tuple[RunInfo | None, list[dict[str, Any]], dict[str, list[str]]]:
    if hasattr(snapshot, "to_json"):  # a chainmail.models.RunSnapshot
        snapshot = snapshot.to_json()
    if not isinstance(snapshot, dict):
        return None, [], {}
    run = snapshot.get("run") or snapshot.get("pipelineRun") or (snapshot if "metadata" in snapshot else None)
    task_runs = [t for t in snapshot.get("taskRuns") or [] if isinstance(t, dict)]
    if not isinstance(run, dict):
        return None, task_runs, {}
    md = run.get("metadata") if isinstance(run.get("metadata"), dict) else {}
    status = run.get("status") if isinstance(run.get("status"), dict) else {}
    spec = run.get("spec") if isinstance(run.get("spec"), dict) else {}
    kind = str(run.get("kind") or ("PipelineRun" if "pipelineSpec" in status or "childReferences" in status
                                   or "pipelineRef" in spec or "pipelineSpec" in spec else "TaskRun"))
    info = RunInfo(kind, str(md.get("namespace") or ""), str(md.get("name") or ""), str(md.get("uid") or ""),
                   _condition(status))
    after: dict[str, list[str]] = {}
    pipeline_spec = status.get("pipelineSpec") if isinstance(status.get("pipelineSpec"), dict) else {}
    for section in ("tasks", "finally"):
        for t in pipeline_spec.get(section) or []:
            if isinstance(t, dict) and t.get("name"):
                after[str(t["name"])] = [str(a) for a in t.get("runAfter") or []]
    return info, task_runs, after


def _condition(status: dict[str, Any]) -> str:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Succeeded":
            return str(c.get("reason") or c.get("status") or "")
    return ""


def _graph(a: Attestation, run: RunInfo | None, task_runs: list[dict[str, Any]],
           pipeline_after: dict[str, list[str]]) -> Graph:
    facts = a.facts
    kind = facts["run"]["kind"] or (run.kind if run else "") or "run"
    from_refs = [parsed[2] for parsed in map(run_of_ref, a.refs) if parsed]
    name = from_refs[0] if from_refs else _run_name(facts["run"].get("uid", ""), kind, run, task_runs)
    tasks = [t for t in facts["tasks"] if t.get("name")]
    if kind == "PipelineRun" and not tasks and task_runs:
        tasks = [_task_from_taskrun(tr, pipeline_after) for tr in task_runs]
    elif kind == "PipelineRun" and not tasks:
        # slsa buildType: pipelineTask entries carry only the Task's source, not a name
        tasks = [{"name": _short(t["uri"] or "task", 28), "after": [], "status": "", "results": {}}
                 for t in facts["tasks"] if t.get("uri")]

    run_label = f"{kind} {name}".strip()
    nodes = [GraphNode("run", run_label, "run", 0, facts["buildType"])]
    edges: list[GraphEdge] = []
    depth: dict[str, int] = {}
    task_names = {t["name"] for t in tasks}

    def level(task_name: str, seen: frozenset[str] = frozenset()) -> int:
        if task_name in depth:
            return depth[task_name]
        task = next((t for t in tasks if t["name"] == task_name), None)
        parents = [p for p in (task or {}).get("after", []) if p in task_names and p not in seen]
        depth[task_name] = 1 + max((level(p, seen | {task_name}) for p in parents), default=0)
        return depth[task_name]

    for i, task in enumerate(tasks):
        tid = f"task-{i}"
        status = f" ({task['status']})" if task.get("status") else ""
        nodes.append(GraphNode(tid, task["name"], "task", level(task["name"]), f"{task['name']}{status}"))
    ids = {t["name"]: f"task-{i}" for i, t in enumerate(tasks)}
    for i, task in enumerate(tasks):
        parents = [p for p in task.get("after", []) if p in ids]
        for p in parents:
            edges.append(GraphEdge(ids[p], f"task-{i}"))
        if not parents:
            edges.append(GraphEdge("run", f"task-{i}"))

    last = max((n.column for n in nodes), default=0) + 1
    for j, subject in enumerate(a.subjects):
        aid = f"artifact-{j}"
        nodes.append(GraphNode(aid, subject, "artifact", last, subject))
        hexes = subject.rpartition(":")[2]
        producers = [ids[t["name"]] for t in tasks if hexes and hexes in json.dumps(t.get("results", {}))]
        for p in producers:
            edges.append(GraphEdge(p, aid))
        if not producers:
            edges.append(GraphEdge("run", aid, stated=not tasks))
    title = " / ".join(a.refs) or (a.subjects[0] if a.subjects else run_label)
    return Graph(title, tuple(nodes), tuple(edges))


def _run_name(uid: str, kind: str, run: RunInfo | None, task_runs: list[dict[str, Any]]) -> str:
    """The run's name: by uid (SLSA v1.0 invocationId) among the snapshot's runs, else the snapshot's run."""
    if uid:
        if run is not None and run.uid == uid:
            return run.name
        for tr in task_runs:
            md = tr.get("metadata") if isinstance(tr.get("metadata"), dict) else {}
            if md.get("uid") == uid:
                return str(md.get("name") or "")
        return ""
    return run.name if run is not None and run.kind == kind else ""


def _task_from_taskrun(tr: dict[str, Any], pipeline_after: dict[str, list[str]]) -> dict[str, Any]:
    md = tr.get("metadata") if isinstance(tr.get("metadata"), dict) else {}
    labels = md.get("labels") if isinstance(md.get("labels"), dict) else {}
    status = tr.get("status") if isinstance(tr.get("status"), dict) else {}
    name = str(labels.get("tekton.dev/pipelineTask") or md.get("name") or "task")
    results = {str(r.get("name")): r.get("value") for r in status.get("results") or [] if isinstance(r, dict)}
    return {"name": name, "after": pipeline_after.get(name, []), "status": _condition(status),
            "results": results}


# --------------------------------------------------------------------------- helpers shared by renderers


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_digest(ref: str) -> str:
    """``repo@sha256:0123456789ab…`` for labels."""
    name, sep, digest = ref.rpartition("@")
    if not sep:
        return ref
    alg, _, hexes = digest.partition(":")
    return f"{name}@{alg}:{hexes[:12]}…" if len(hexes) > 12 else ref


def _artifact_label(ref: str) -> str:
    """``org/app@sha256:01234567…``: the path without the registry and a short digest (tooltip: all)."""
    name, sep, digest = ref.rpartition("@")
    if not sep:
        return ref
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    alg, _, hexes = digest.partition(":")
    return f"{'/'.join(parts[-2:])}@{alg}:{hexes[:8]}…"


def _heading(a: Attestation) -> str:
    """``PipelineRun provenance: repo@sha256:…``."""
    what = f"{a.facts['run']['kind']} provenance" if a.facts["run"]["kind"] else "Provenance"
    return f"{what}: {' '.join(a.refs) or (a.subjects[0] if a.subjects else 'statement')}"


def _source_text(source: dict[str, str]) -> str:
    if not source.get("repository"):
        return ""
    text = source["repository"]
    if source.get("commit"):
        text += f" @ {source['commit']}"
    if source.get("ref"):
        text += f" ({source['ref']})"
    if source.get("origin") == "configSource":
        text += " [definition source]"
    return text


def _signer_text(key_id: str, identity: str, issuer: str) -> str:
    parts = []
    if identity:
        parts.append(f"{identity}" + (f" (issuer {issuer})" if issuer else ""))
    if key_id:
        parts.append(f"key {key_id}")
    return ", ".join(parts) or "unknown key"


def _results_by_artifact(policy: PolicyResult) -> dict[str, list[RuleResult]]:
    out: dict[str, list[RuleResult]] = {}
    for r in policy.results:
        out.setdefault(r.artifact, []).append(r)
    return out


def _facts_rows(a: Attestation) -> list[tuple[str, str]]:
    f = a.facts
    rows = [("Predicate type", a.predicate_type), ("Builder", f["builder"]), ("Build type", f["buildType"]),
            ("Source", _source_text(f["source"]))]
    cs = f["configSource"]
    if cs.get("repository") and f["source"].get("origin") != "configSource":
        text = cs["repository"] + (f" @ {cs['commit']}" if cs.get("commit") else "")
        text += f" ({cs['entryPoint']})" if cs.get("entryPoint") else ""
        rows.append(("Definition", text))
    run = f["run"]
    if run.get("serviceAccount"):
        rows.append(("Service account", run["serviceAccount"]))
    if f["startedOn"] or f["finishedOn"]:
        rows.append(("Started / finished", f"{f['startedOn'] or '?'} → {f['finishedOn'] or '?'}"))
    rows.append(("Signed by", _signer_text(a.key_id, a.identity, a.issuer)))
    if a.layout:
        rows.append(("Stored as", f"{a.layout}: {a.location}" if a.location else a.layout))
    return [(k, v) for k, v in rows if v]


# --------------------------------------------------------------------------- Markdown


def _md_code(text: str) -> str:
    """An inline code span that survives any backticks, pipes and newlines in ``text``."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    if not text:
        return "—"
    ticks = 1
    while "`" * ticks in text:
        ticks += 1
    fence = "`" * ticks
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_MD_SPECIAL = set("\\`*_[]|~")


def _md_text(text: str) -> str:
    """Plain text with Markdown metacharacters escaped and HTML neutralised (for messages)."""
    escaped = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in " ".join(str(text).split()))
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Markdown:
    def __init__(self, report: Report) -> None:
        self.r = report
        self.lines: list[str] = []

    def render(self) -> str:
        r = self.r
        add = self.lines.append
        mark = "PASS" if r.passed else "FAIL"
        add(f"## chainmail provenance report: {mark}")
        add("")
        add(f"**{_md_text(r.verdict)}**")
        if r.run is not None:
            add("")
            add(f"Run: {_md_code(f'{r.run.kind} {r.run.namespace}/{r.run.name}')}"
                + (f" ({_md_text(r.run.status)})" if r.run.status else ""))
        for a in r.attestations:
            self._attestation(a)
        if r.signatures:
            add("")
            add("### Image signatures")
            add("")
            for s in r.signatures:
                add(f"- {_md_code(s.ref)} signed by {_md_code(_signer_text(s.key_id, s.identity, ''))}")
        if r.policy is not None:
            self._policy(r.policy)
        add("")
        add(f"<sub>chainmail report, {r.generated.strftime('%Y-%m-%dT%H:%M:%SZ')}</sub>")
        return "\n".join(self.lines) + "\n"

    def _attestation(self, a: Attestation) -> None:
        add = self.lines.append
        add("")
        what, _, ref = _heading(a).partition(": ")
        add(f"### {what}: {_md_code(ref)}")
        add("")
        add("| | |")
        add("|---|---|")
        for key, value in _facts_rows(a):
            add(f"| {key} | {_md_code(value)} |")
        for title, values in (("Subjects", a.subjects), ("Step images", a.facts["stepImages"])):
            add("")
            add(f"**{title}** ({len(values)})")
            add("")
            add("\n".join(f"- {_md_code(v)}" for v in values) if values else "- none recorded")
        tasks = [t for t in a.facts["tasks"] if t.get("name")]
        if tasks:
            add("")
            add(f"**Tasks** ({len(tasks)})")
            add("")
            for t in tasks:
                status = f" ({_md_text(t['status'])})" if t.get("status") else ""
                after = f" after {', '.join(_md_code(x) for x in t['after'])}" if t.get("after") else ""
                add(f"- {_md_code(t['name'])}{status}{after}")

    def _policy(self, policy: PolicyResult) -> None:
        add = self.lines.append
        add("")
        add(f"### Policy {_md_code(policy.policy)}: {'passed' if policy.passed else 'FAILED'}")
        add("")
        add("| Result | Rule | Artifact | Message |")
        add("|---|---|---|---|")
        for res in policy.results:
            artifact = _md_code(_short_digest(res.artifact)) + (f" ({res.kind})" if res.kind else "")
            add(f"| {res.status} | {_md_code(res.rule)} | {artifact} | {_md_text(res.message)} |")


# --------------------------------------------------------------------------- HTML


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
:root { color-scheme: light; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --line: #d0d7de;
        --muted: #57606a; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; }
header { padding: 20px 32px; color: #fff; background: #24292f; }
header.pass { border-bottom: 6px solid var(--ok); } header.fail { border-bottom: 6px solid var(--bad); }
header h1 { margin: 0 0 4px; font-size: 22px; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; font-weight: 600; font-size: 12px;
         color: #fff; }
.badge.PASS { background: var(--ok); } .badge.FAIL { background: var(--bad); }
.badge.WARN { background: var(--warn); }
main { padding: 16px 32px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 20px;
          margin: 16px 0; }
h2 { font-size: 17px; margin: 4px 0 12px; word-break: break-all; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { width: 170px; color: var(--muted); font-weight: 600; }
code, pre { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
ul { margin: 4px 0 8px; padding-left: 20px; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; white-space: pre-wrap; }
svg { max-width: 100%; height: auto; background: #fbfcfd; border: 1px solid var(--line); border-radius: 6px; }
.node-run rect { fill: #ddf4ff; stroke: #0969da; } .node-task rect { fill: #fff8c5; stroke: #9a6700; }
.node-artifact rect { fill: #dafbe1; stroke: #1a7f37; }
svg text { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; fill: #1f2328; }
.edge { fill: none; stroke: #57606a; stroke-width: 1.5; } .edge.implied { stroke-dasharray: 5 4; }
.muted { color: var(--muted); }
footer { color: var(--muted); padding: 0 32px 24px; font-size: 12px; }
"""


class _Html:
    def __init__(self, report: Report) -> None:
        self.r = report

    def render(self) -> str:
        r = self.r
        state = "pass" if r.passed else "fail"
        mark = "PASS" if r.passed else "FAIL"
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # Nothing may load: no scripts, no network, styles inline only.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">",
            f"<title>chainmail report: {_e(self._title())}</title>",
            f"<style>{_CSS}</style></head><body>",
            f'<header class="{state}"><h1>chainmail provenance report '
            f'<span class="badge {mark}">{mark}</span></h1>',
            f"<div>{_e(r.verdict)}</div>",
        ]
        if r.run is not None:
            run = f"{r.run.kind} {r.run.namespace}/{r.run.name}"
            parts.append(f"<div>Run <code>{_e(run)}</code>"
                         + (f" ({_e(r.run.status)})" if r.run.status else "") + "</div>")
        parts.append("</header><main>")
        if r.policy is not None:
            parts.append(self._policy(r.policy))
        for i, (a, graph) in enumerate(zip(r.attestations, r.graphs, strict=True)):
            parts.append(self._attestation(a, graph, f"g{i}"))
        if r.signatures:
            items = "".join(f"<li><code>{_e(s.ref)}</code> signed by "
                            f"<code>{_e(_signer_text(s.key_id, s.identity, ''))}</code> "
                            f'<span class="muted">({_e(s.layout or s.payload_type)})</span></li>'
                            for s in r.signatures)
            parts.append(f"<section><h2>Image signatures</h2><ul>{items}</ul></section>")
        if not (r.attestations or r.signatures):
            parts.append("<section><h2>Nothing verified</h2>"
                         "<p>No signature or attestation verified.</p></section>")
        generated = r.generated.strftime("%Y-%m-%dT%H:%M:%SZ")
        parts.append(f"</main><footer>Generated by chainmail at {_e(generated)}.</footer></body></html>")
        return "\n".join(parts) + "\n"

    def _title(self) -> str:
        r = self.r
        if r.attestations and r.attestations[0].refs:
            return r.attestations[0].refs[0]
        if r.run is not None:
            return f"{r.run.kind} {r.run.namespace}/{r.run.name}"
        return r.signatures[0].ref if r.signatures else "no artifact"

    def _policy(self, policy: PolicyResult) -> str:
        rows = "".join(
            f'<tr><td><span class="badge {res.status}">{res.status}</span></td>'
            f"<td><code>{_e(res.rule)}</code></td>"
            f"<td><code>{_e(res.artifact)}</code>"
            + (f' <span class="muted">({_e(res.kind)})</span>' if res.kind else "")
            + f"</td><td>{_e(res.message)}</td></tr>"
            for res in policy.results)
        verdict = "passed" if policy.passed else "FAILED"
        return (f"<section><h2>Policy <code>{_e(policy.policy)}</code>: {verdict}</h2>"
                "<table><thead><tr><th>Result</th><th>Rule</th><th>Artifact</th><th>Message</th></tr></thead>"
                f"<tbody>{rows}</tbody></table></section>")

    def _attestation(self, a: Attestation, graph: Graph, uid: str) -> str:
        heading = _heading(a)
        rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in _facts_rows(a))

        def listing(title: str, values: Iterable[str]) -> str:
            values = list(values)
            items = "".join(f"<li><code>{_e(v)}</code></li>" for v in values)
            items = items or '<li class="muted">none recorded</li>'
            return f"<h3>{_e(title)} ({len(values)})</h3><ul>{items}</ul>"

        params = a.facts["params"]
        param_rows = "".join(
            f"<tr><th><code>{_e(k)}</code></th>"
            f"<td><code>{_e(v if isinstance(v, str) else json.dumps(v))}</code></td></tr>"
            for k, v in params.items())
        raw = json.dumps(a.statement, indent=2, sort_keys=True)
        return (
            f"<section><h2>{_e(heading)}</h2>"
            f"<table>{rows}</table>"
            f"<h3>Build graph</h3>{svg_graph(graph, uid)}"
            f"{listing('Subjects', a.subjects)}{listing('Step images', a.facts['stepImages'])}"
            + (f"<h3>Parameters ({len(params)})</h3><table>{param_rows}</table>" if params else "")
            + f"<details><summary>Statement</summary><pre>{_e(raw)}</pre></details></section>"
        )


_COL_W, _NODE_W, _NODE_H, _ROW_H, _PAD, _LANE = 270, 230, 34, 50, 20, 10


def svg_graph(graph: Graph, uid: str = "g") -> str:
    """An inline SVG of ``graph``: columns left to right, curved arrows, full labels in tooltips."""
    columns: dict[int, list[GraphNode]] = {}
    for node in graph.nodes:
        columns.setdefault(node.column, []).append(node)
    ncols = max(columns, default=0) + 1
    nrows = max((len(v) for v in columns.values()), default=1)
    width = _PAD * 2 + (ncols - 1) * _COL_W + _NODE_W
    pos: dict[str, tuple[float, float]] = {}
    for col, nodes in columns.items():
        offset = (nrows - len(nodes)) * _ROW_H / 2
        for row, node in enumerate(nodes):
            pos[node.id] = (_PAD + col * _COL_W, _PAD + offset + row * _ROW_H)
    column_of = {node.id: node.column for node in graph.nodes}
    edges = [e for e in graph.edges if e.source in pos and e.target in pos]
    # Edges that skip a column run in their own lane under the nodes, so they never cross a box.
    long_edges = [e for e in edges if column_of[e.target] - column_of[e.source] > 1]
    nodes_bottom = _PAD + (nrows - 1) * _ROW_H + _NODE_H
    height = nodes_bottom + _PAD + (len(long_edges) * _LANE + 4 if long_edges else 0)
    out = [f'<svg role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>{_e(graph.title)}</title>',
           f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker>'
           "</defs>"]
    for edge in edges:
        (x1, y1), (x2, y2) = pos[edge.source], pos[edge.target]
        x1, y1, x2, y2 = x1 + _NODE_W, y1 + _NODE_H / 2, x2 - 2, y2 + _NODE_H / 2
        if edge in long_edges:
            lane = long_edges.index(edge)
            lane_y = nodes_bottom + 10 + lane * _LANE
            gap_out, gap_in = x1 + 8 + (lane % 4) * 4, x2 - 10 - (lane % 4) * 4
            d = f"M{x1:.0f},{y1:.0f} H{gap_out:.0f} V{lane_y:.0f} H{gap_in:.0f} V{y2:.0f} H{x2:.0f}"
        else:
            mid = (x1 + x2) / 2
            d = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        cls = "edge" if edge.stated else "edge implied"
        out.append(f'<path class="{cls}" d="{d}" marker-end="url(#{uid}-arrow)"/>')
    for node in graph.nodes:
        x, y = pos[node.id]
        label = _artifact_label(node.label) if node.kind == "artifact" else node.label
        out.append(f'<g class="node-{node.kind}"><title>{_e(node.detail or node.label)}</title>'
                   f'<rect x="{x:.0f}" y="{y:.0f}" width="{_NODE_W}" height="{_NODE_H}" rx="6" '
                   'stroke-width="1.5"/>'
                   f'<text x="{x + 10:.0f}" y="{y + _NODE_H / 2 + 4:.0f}">{_e(_short(label, 29))}</text></g>')
    out.append("</svg>")
    return "".join(out)
