"""``chainmail sweep``: sign every completed, unsigned run, exactly once, like Chains' backlog.

The sweep pages through TaskRuns, then PipelineRuns (a PipelineRun only once all its child
TaskRuns are signed or failed, as Chains orders it), and signs each selected run on a thread
pool that shares one :class:`~chainmail.context.Context` (one decrypted key per key URI; one
keep-alive HTTP session per thread). Only one page of runs is held in memory.

**Exactly once.** Before signing, a worker *claims* the run with a merge patch that carries
the resourceVersion it just checked as a precondition and the annotation
``chainmail.dev/claim: <holder>/<unix-time>``. A 409 means someone else changed the run first:
the worker re-reads it and looks again (signed → skip; claimed by a live holder → skip). A
claim older than the lease (default 10 min) may be taken over, so a crashed signer never
blocks a run for good. :func:`chainmail.annotations.flush` drops the claim in the same patch
that sets ``signed``.

**Expired listings.** A ``continue`` token the API server no longer honours (410 Gone,
reason ``Expired``: the sweep outlived the server's compaction window) restarts the listing
from the start; runs already seen in this sweep (by uid) are not looked at again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail import annotations as ann
from chainmail._internal.adaptive import DEFAULT_MAXIMUM, AdaptiveLimit
from chainmail._internal.http import pushback_count, request_counts
from chainmail.errors import ClusterError, ConfigError, Error, InputError, NotFoundError

if TYPE_CHECKING:
    from chainmail._internal.kube import KubeClient
    from chainmail.context import Context

log = logging.getLogger("chainmail.sweep")

DEFAULT_LEASE = 600.0
#: Claim attempts when the run keeps changing between our read and our patch.
CLAIM_ATTEMPTS = 5
_PLURAL = {"TaskRun": "taskruns", "PipelineRun": "pipelineruns"}
#: Restarts of one listing after its continue token expired (410) before the sweep gives up.
MAX_LIST_RESTARTS = 3


def default_holder() -> str:
    """``<hostname>.<pid>.<random>``: names this signer in claims (no ``/``)."""
    host = socket.gethostname().replace("/", "-") or "chainmail"
    return f"{host}.{os.getpid()}.{secrets.token_hex(3)}"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``6h``, ``2d``, ``1w`` or combinations like ``1h30m`` → seconds."""
    value = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not value or pos != len(value):
        raise InputError(f"duration '{text}': expected a number and a unit, like 30m, 6h or 2d")
    return total


def load_namespace_keys(source: str | Path | None) -> dict[str, str]:
    """Namespace → key URI, from a YAML file or (when it is not a file) inline YAML."""
    if source is None or str(source).strip() == "":
        return {}
    import yaml

    path = Path(str(source))
    where = f"namespace keys {path}"
    text: str
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if is_file:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    elif isinstance(source, Path) or "\n" not in str(source) and ":" not in str(source):
        raise ConfigError(f"{where}: no such file")
    else:
        text, where = str(source), "chainmail.namespace-keys"
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        doc = doc.get("data") or {}
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                            for k, v in doc.items()):
        raise ConfigError(f"{where}: expected a mapping of namespace to key URI")
    return {k: v.strip() for k, v in doc.items()}


NAMESPACES_KEY = "chainmail.namespaces"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def watched_namespaces(value: str) -> frozenset[str] | None:
    """The namespaces ``chainmail.namespaces`` names, or None when it names none (every namespace)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    bad = [name for name in names if not _DNS_LABEL.fullmatch(name)]
    if bad:
        raise ConfigError(f"{NAMESPACES_KEY}: {bad[0]!r} is not a namespace name")
    return frozenset(names) or None


# ------------------------------------------------------------------ options and report


@dataclass
class SweepOptions:
    """What to sweep and how."""

    #: One namespace, or None for all namespaces.
    namespace: str | None = None
    #: Only runs that finished in the last this-many seconds.
    since: float | None = None
    #: Runs in flight: fixed, or where adaptive concurrency starts.
    concurrency: int = 4
    #: Grow the concurrency while run latency holds, halve it on HTTP 429/5xx (see ``_internal.adaptive``).
    adaptive: bool = False
    #: Adaptive concurrency's ceiling.
    max_concurrency: int = DEFAULT_MAXIMUM
    retry_failed: bool = False
    #: Stop after attempting this many runs.
    max_runs: int | None = None
    #: Namespace → signing key URI; other namespaces use ``ctx.key``.
    namespace_keys: Mapping[str, str] = field(default_factory=dict)
    lease: float = DEFAULT_LEASE
    holder: str = field(default_factory=default_holder)
    page: int = 500
    kinds: tuple[str, ...] = ("TaskRun", "PipelineRun")


@dataclass
class SweepReport:
    """Counts of what happened; thread-safe."""

    signed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seen: int = 0
    seconds: float = 0.0
    #: The concurrency gate the sweep used (its figures go in the report).
    concurrency: AdaptiveLimit | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_signed(self) -> None:
        with self._lock:
            self.signed += 1

    def add_skipped(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def add_failed(self, run: str, reason: str) -> None:
        with self._lock:
            self.failed.append((run, reason))

    def to_json(self) -> dict[str, Any]:
        return {
            "signed": self.signed,
            "skipped": dict(sorted(self.skipped.items())),
            "skippedTotal": sum(self.skipped.values()),
            "failed": [{"run": run, "reason": reason} for run, reason in sorted(self.failed)],
            "seen": self.seen,
            "seconds": round(self.seconds, 3),
            "concurrency": self.concurrency.to_json() if self.concurrency else None,
            # requests sent by this process, by host and method (retries and redirects included)
            "httpRequests": request_counts(),
        }

    def text(self) -> str:
        skipped = sum(self.skipped.values())
        lines = [f"sweep: {self.signed} signed, {skipped} skipped, {len(self.failed)} failed "
                 f"({self.seen} runs seen in {self.seconds:.1f}s)"]
        if self.concurrency is not None:
            lines.append(f"  {self.concurrency.text()}")
        for reason, count in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  skipped {count}: {reason}")
        for run, reason in sorted(self.failed):
            lines.append(f"  failed {run}: {reason}")
        return "\n".join(lines)


# ------------------------------------------------------------------ selection and claims


def _completed_at(obj: Mapping[str, Any]) -> float | None:
    status = obj.get("status") or {}
    stamp = status.get("completionTime")
    if not stamp:
        for cond in status.get("conditions") or ():
            if isinstance(cond, dict) and cond.get("type") == "Succeeded":
                stamp = cond.get("lastTransitionTime")
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def run_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'run')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def parse_claim(value: str | None) -> tuple[str, float] | None:
    """``<holder>/<unix-time>`` → (holder, time); None when absent or malformed."""
    if not value:
        return None
    holder, _, stamp = value.rpartition("/")
    try:
        return holder, float(stamp)
    except ValueError:
        return None


def claim(kube: KubeClient, obj: dict[str, Any], holder: str, *, eligible: Callable[[dict[str, Any]], str],
          lease: float = DEFAULT_LEASE, now: Callable[[], float] = time.time) -> dict[str, Any] | str:
    """Claim ``obj`` for ``holder``; return the claimed (fresh) object, or why not.

    ``eligible(obj)`` is re-checked on every version of the object looked at, so a run
    signed by someone else since it was listed is skipped.
    """
    from chainmail._internal.kube import ConflictError

    plural = _PLURAL[str(obj.get("kind"))]
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    for _ in range(CLAIM_ATTEMPTS):
        reason = eligible(obj)
        if reason:
            return reason
        current = parse_claim(ann.annotations_of(obj).get(ann.CLAIM))
        if current and current[0] != holder and now() - current[1] < lease:
            return "claimed by another signer"
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if not rv:
            obj = kube.get(plural, ns, name)
            continue
        patch = {"metadata": {"annotations": {ann.CLAIM: f"{holder}/{int(now())}"}}}
        try:
            claimed = kube.patch_merge(plural, ns, name, patch, resource_version=rv)
        except ConflictError:
            log.debug("%s changed since it was read; re-reading", run_name(obj))
            obj = kube.get(plural, ns, name)
            continue
        claimed.setdefault("kind", obj.get("kind"))
        claimed.setdefault("apiVersion", "tekton.dev/v1")
        return claimed
    return "kept changing while claiming"


def release(kube: KubeClient, obj: dict[str, Any]) -> None:
    """Drop our claim (only if the run is still the version we claimed)."""
    meta = obj.get("metadata") or {}
    try:
        kube.patch_merge(_PLURAL[str(obj.get("kind"))], meta.get("namespace", ""), meta.get("name", ""),
                         {"metadata": {"annotations": {ann.CLAIM: None}}},
                         resource_version=str(meta.get("resourceVersion") or "") or None)
    except Error as exc:
        log.debug("could not release the claim on %s: %s", run_name(obj), exc)


# ------------------------------------------------------------------ the sweeper


class Sweeper:
    """Selects, claims and signs runs; used by ``sweep`` and ``finally``."""

    def __init__(self, ctx: Context, options: SweepOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or SweepOptions()
        self.report = SweepReport()
        self.kube = ctx.kube
        self.max_failed = ctx.config.int("chainmail.retry.max-failed-attempts")
        self.namespaces = watched_namespaces(ctx.config.get(NAMESPACES_KEY))
        self._contexts: dict[str | None, Context] = {ctx.key: ctx}
        self._ctx_lock = threading.Lock()
        self._cutoff = time.time() - self.options.since if self.options.since else None
        opts = self.options
        start = max(1, opts.concurrency)
        self.limit = AdaptiveLimit(start, maximum=max(start, opts.max_concurrency), adaptive=opts.adaptive,
                                   pushback=pushback_count)
        self.report.concurrency = self.limit

    # -------------------------------------------------------------- selection

    def eligible(self, obj: dict[str, Any]) -> str:
        """Why this run should not be signed now ("" when it should)."""
        from chainmail.job import skip_reason
        from chainmail.models import RunSnapshot
        from chainmail.snapshot import is_finished

        if not is_finished(obj):
            return "not finished"
        meta = obj.get("metadata") or {}
        if self.namespaces is not None and meta.get("namespace") not in self.namespaces:
            return f"namespace not in {NAMESPACES_KEY}"
        if ((meta.get("labels") or {}).get(ann.SKIP_LABEL) or "").lower() == "true":
            return f"labelled {ann.SKIP_LABEL}=true"
        state = (meta.get("annotations") or {}).get(ann.SIGNED)
        if state == "true":
            return "already signed"
        if state == "failed":
            if not self.options.retry_failed:
                return "failed earlier (use --retry-failed)"
            if ann.retries(obj) >= self.max_failed:
                return "failed too often (chainmail.retry.max-failed-attempts)"
        if self._cutoff is not None:
            done = _completed_at(obj)
            if done is not None and done < self._cutoff:
                return "finished before --since"
        return skip_reason(RunSnapshot(obj), self.ctx)

    def context_for(self, namespace: str) -> Context:
        """The shared context, or a sibling with the namespace's key (same kube client and caches)."""
        key = self.options.namespace_keys.get(namespace, self.ctx.key)
        with self._ctx_lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                from chainmail.context import Context

                base = self.ctx
                ctx = Context(config=base.config, kubeconfig=base.kubeconfig,
                              docker_config=base.docker_config, file_store=base.file_store, key=key,
                              cache=base.cache)
                ctx.kube = self.kube
                self._contexts[key] = ctx
            return ctx

    # -------------------------------------------------------------- one run

    def process(self, obj: dict[str, Any], *, children: list[dict[str, Any]] | None = None) -> str:
        """Claim and sign one run; returns "signed", "skipped: …" or "failed: …" (also recorded)."""
        from chainmail import job
        from chainmail.models import RunSnapshot
        from chainmail.snapshot import children_of

        name = run_name(obj)
        try:
            if obj.get("kind") == "PipelineRun" and children is None:
                children = children_of(self.kube, obj)
                waiting = [c for c in children if not _child_done(c)]
                if waiting:
                    return self._skip(f"waiting for {len(waiting)} child TaskRun(s) to be signed", name)
            got = claim(self.kube, obj, self.options.holder, eligible=self.eligible, lease=self.options.lease)
            if isinstance(got, str):
                return self._skip(got, name)
        except NotFoundError:
            return self._skip("deleted before it was signed", name)
        except Error as exc:
            return self._fail(name, str(exc))
        snap = RunSnapshot(_without_claim(got), list(children or []), self.kube.source)
        ns = (got.get("metadata") or {}).get("namespace", "")
        try:
            result = job.sign_run(snap, self.context_for(ns))
        except NotFoundError as exc:
            if self._gone(got):
                return self._skip("deleted while it was signed", name)
            return self._fail(name, str(exc))
        except Error as exc:
            release(self.kube, got)  # a no-op (409) when the run was already marked failed
            return self._fail(name, str(exc))
        except Exception as exc:  # a bug: record it, free the run, keep sweeping
            log.exception("internal error while signing %s", name)
            release(self.kube, got)
            return self._fail(name, f"internal error ({type(exc).__name__}: {exc})")
        if result.skipped:
            release(self.kube, got)
            return self._skip(result.skipped, name)
        self.report.add_signed()
        log.info("signed %s", name)
        return "signed"

    def _gone(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        try:
            self.kube.get(_PLURAL[str(obj.get("kind"))], meta.get("namespace", ""), meta.get("name", ""))
        except NotFoundError:
            return True
        except Error:
            return False
        return False

    def _skip(self, reason: str, name: str) -> str:
        log.debug("skipped %s: %s", name, reason)
        self.report.add_skipped(reason)
        return f"skipped: {reason}"

    def _fail(self, name: str, reason: str) -> str:
        reason = ann.short_reason(reason)
        log.warning("failed to sign %s: %s", name, reason)
        self.report.add_failed(name, reason)
        return f"failed: {reason}"

    # -------------------------------------------------------------- the sweep

    def run(self) -> SweepReport:
        """Sweep TaskRuns, then PipelineRuns; returns the report."""
        started = time.monotonic()
        budget = [self.options.max_runs if self.options.max_runs is not None else -1]
        for kind in ("TaskRun", "PipelineRun"):
            if kind not in self.options.kinds or budget[0] == 0:
                continue
            self._phase(self._listings(kind), kind, budget)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _listings(self, kind: str) -> Iterator[dict[str, Any]]:
        """The runs of one kind in scope: one namespace, every watched namespace, or the whole cluster."""
        if self.options.namespace is not None or self.namespaces is None:
            yield from listing(self.kube, _PLURAL[kind], self.options.namespace, page=self.options.page)
            return
        for namespace in sorted(self.namespaces):
            yield from listing(self.kube, _PLURAL[kind], namespace, page=self.options.page)

    def _timed(self, obj: dict[str, Any]) -> str:
        """:meth:`process` one run and hand its latency to the concurrency gate (signed runs only: a skip
        or an early failure is quick whatever the servers' load, and would skew the gate's baseline)."""
        started = time.monotonic()
        outcome = ""
        try:
            outcome = self.process(obj)
            return outcome
        finally:
            self.limit.release(time.monotonic() - started if outcome == "signed" else None)

    def _phase(self, objects: Iterable[dict[str, Any]], kind: str, budget: list[int]) -> None:
        with ThreadPoolExecutor(max_workers=self.limit.capacity, thread_name_prefix="sweep") as pool:
            for obj in objects:
                self.report.seen += 1
                obj.setdefault("kind", kind)
                reason = self.eligible(obj)
                if reason:
                    self.report.add_skipped(reason)
                    continue
                if budget[0] == 0:
                    self.report.add_skipped("over --max-runs")
                    continue
                budget[0] -= 1
                self.limit.acquire()
                pool.submit(self._timed, obj)


def listing(kube: KubeClient, plural: str, namespace: str | None, *, page: int) -> Iterator[dict[str, Any]]:
    """Every object once, a page at a time; an expired continue token (410) restarts the list."""
    seen: set[str] = set()
    token: str | None = None
    restarts = 0
    while True:
        try:
            items, token = kube.list(plural, namespace, limit=page, continue_=token)
        except ClusterError as exc:
            if token is None or not _expired(exc) or restarts >= MAX_LIST_RESTARTS:
                raise
            restarts += 1
            log.warning("listing %s: continue token expired (HTTP 410); listing again from the start", plural)
            token = None
            continue
        for item in items:
            meta = item.get("metadata") or {}
            ident = str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
            if ident not in seen:
                seen.add(ident)
                yield item
        if not token:
            return


def _expired(exc: ClusterError) -> bool:
    """The API server's 410 Gone for a continue token that is too old."""
    return "HTTP 410" in str(exc)


def _without_claim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as provenance should see it: without our claim annotation (kept out of the payload)."""
    meta = obj.get("metadata") or {}
    notes = meta.get("annotations") or {}
    if ann.CLAIM not in notes:
        return obj
    out = dict(obj)
    out["metadata"] = {**meta, "annotations": {k: v for k, v in notes.items() if k != ann.CLAIM}}
    return out


def _child_done(child: Mapping[str, Any]) -> bool:
    """A child no longer blocks its PipelineRun: signed or failed for good, or marked to skip."""
    labels = (child.get("metadata") or {}).get("labels") or {}
    return ann.is_reconciled(child) or (labels.get(ann.SKIP_LABEL) or "").lower() == "true"


def sweep(ctx: Context, options: SweepOptions | None = None) -> SweepReport:
    """Sign every eligible run; see the module docstring."""
    return Sweeper(ctx, options).run()

