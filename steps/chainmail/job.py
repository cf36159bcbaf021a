"""Sign one run end to end: format → sign → store → mark, in one process.

This is what ``chainmail run``, the finally task and ``chainmail sweep`` call for each
run. The run is marked ``chains.tekton.dev/signed: "true"`` only after every payload is
stored; on failure it is marked ``failed`` with a short reason, so users see why without
reading logs, and ``sweep --retry-failed`` can pick it up again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chainmail._internal import crashpoints
from chainmail.context import Context
from chainmail.errors import Error, InputError
from chainmail.models import Payload, RunSnapshot, SignedPayload, StoredRef
from chainmail.store_session import StoreSession

if TYPE_CHECKING:
    from chainmail.transparency import LogKey

log = logging.getLogger("chainmail.job")


@dataclass
class JobResult:
    """What happened to one run."""

    snapshot: RunSnapshot
    payloads: list[Payload] = field(default_factory=list)
    signed: list[SignedPayload] = field(default_factory=list)
    stored: list[StoredRef] = field(default_factory=list)
    skipped: str = ""

    def summary(self) -> dict[str, object]:
        ref = self.snapshot.ref
        return {
            "run": f"{ref.kind}/{ref.namespace}/{ref.name}",
            "uid": ref.uid,
            "skipped": self.skipped,
            "payloads": [{"artifact": p.artifact.full_key, "format": p.format, "digest": p.digest}
                         for p in self.payloads],
            "stored": [r.to_json() for r in self.stored],
        }


def preload_signers(ctx: Context) -> None:
    """Load the configured signing keys now, while the process is small.

    Decrypting a cosign key runs scrypt with N=65536, which needs 64 MiB by design; doing it
    before the HTTP stack and formatters are imported keeps the process's peak memory down.
    Problems are ignored here: they surface, with a reason on the run, when signing.
    """
    from chainmail.errors import Error
    from chainmail.signing import signer_for

    for kind in ("taskrun", "pipelinerun", "oci"):
        try:
            signer_for(kind, ctx)  # type: ignore[arg-type]
        except Error:
            pass


def make_payloads(snapshot: RunSnapshot, ctx: Context, formats: list[str] | None = None,
                  *, provisional: bool = False) -> list[Payload]:
    """The ``format`` step."""
    from chainmail.formats import create_payloads

    return create_payloads(snapshot, ctx.config, formats, provisional=provisional)


def upload_wanted(snapshot: RunSnapshot, ctx: Context) -> bool:
    """Whether this run's signatures go to the transparency log (Chains' rule).

    ``transparency.enabled: true``: always; ``manual``: when the run is annotated
    ``chains.tekton.dev/transparency-upload: "true"`` and has no ``transparency`` entry yet.
    """
    from chainmail import annotations

    mode = ctx.config.transparency()
    if mode != "manual":
        return mode == "on"
    current = annotations.annotations_of(snapshot.run)
    requested = current.get(annotations.TRANSPARENCY_UPLOAD, "").strip().lower() == "true"
    return requested and not current.get(annotations.TRANSPARENCY)


def sign(payloads: list[Payload], ctx: Context, *, snapshot: RunSnapshot | None = None) -> list[SignedPayload]:
    """The ``sign`` step: first check every claimed image exists (see :mod:`chainmail.image_check`).

    ``snapshot`` (the run the payloads belong to) decides ``transparency.enabled: manual``;
    without it, manual mode is refused rather than guessed.
    """
    from chainmail.image_check import CONFIG_KEY as IMAGE_CHECK_KEY
    from chainmail.image_check import claimed_images, require_images_exist
    from chainmail.signing import require_no_transparency, sign_payloads

    require_no_transparency(ctx)
    client = None
    if snapshot is not None and ctx.config.bool(IMAGE_CHECK_KEY) and claimed_images(payloads):
        from chainmail.storage.oci import OciBackend

        # the client storage pushes with: explicit credentials plus the run's service account's pull secrets
        client = OciBackend(StoreSession(ctx, snapshot)).client()
    require_images_exist(payloads, ctx, client=client)
    upload = upload_wanted(snapshot, ctx) if snapshot is not None else None
    return sign_payloads(payloads, ctx, upload=upload)


class ConfiguredKeys(dict[str, str | None]):
    """The operator's public key per artifact kind, plus how ``store`` checks transparency log entries.

    :meth:`log_keys` loads the trusted log keys (``chainmail.transparency.trusted-root``);
    ``require_tlog`` is set for ``transparency.enabled: true``, where every signature comes with its entry.
    """

    def __init__(self, keys: dict[str, str | None], ctx: Context) -> None:
        super().__init__(keys)
        self._ctx = ctx
        self.require_tlog = ctx.config.transparency() == "on"

    def log_keys(self) -> list[LogKey]:
        """The transparency log keys entries must verify with (cached in ``ctx.cache``)."""
        from chainmail.transparency import load_log_keys

        root = self._ctx.config.get("chainmail.transparency.trusted-root").strip() or None
        cache_key = "log-keys:" + (root or "")
        cached = self._ctx.cache.get(cache_key)
        if isinstance(cached, list):
            return cached
        keys = load_log_keys(root)
        self._ctx.cache[cache_key] = keys
        return keys


def configured_keys(signed: list[SignedPayload], ctx: Context) -> ConfiguredKeys:
    """The operator's public key for each artifact kind in ``signed`` (what ``store`` verifies with)."""
    from chainmail.signing import configured_public_key

    kinds = dict.fromkeys(s.payload.artifact.kind for s in signed)
    return ConfiguredKeys({kind: configured_public_key(kind, ctx) for kind in kinds}, ctx)


def annotate_transparency(signed: list[SignedPayload], session: StoreSession, ctx: Context) -> None:
    """Queue ``chains.tekton.dev/transparency`` (``<url>/api/v1/log/entries?logIndex=N``) on each logged run.

    Written with ``signed`` whatever the storage backends, as Chains does; the last entry wins.
    """
    if all(item.tlog is None for item in signed):
        return  # nothing was logged: the transparency modules stay unimported
    from chainmail import annotations
    from chainmail.transparency import LogEntry, transparency_annotation

    url = ctx.config.get("transparency.url")
    from chainmail.transparency import v2

    for item in signed:
        if item.tlog is not None:
            value = (v2.transparency_annotation(url, v2.RekorV2Entry.from_json(item.tlog)) if v2.is_v2_tlog(item.tlog)
                     else transparency_annotation(url, LogEntry.from_response(item.tlog)))
            session.annotate(item.payload.artifact.owner, {annotations.TRANSPARENCY: value})


def store(signed: list[SignedPayload], snapshot: RunSnapshot, ctx: Context, *, mark: bool = True,
          check: bool = False) -> list[StoredRef]:
    """The ``store`` step: every backend, then one annotation patch per run (with ``signed``).

    ``check`` verifies each signature against the operator's key first (never a key named in
    ``signed``): set it when ``signed`` was read from a file.
    """
    from chainmail import annotations
    from chainmail.storage import store_all

    session = StoreSession(ctx, snapshot)
    try:
        if check:
            from chainmail.storage import check_signatures

            check_signatures(signed, configured_keys(signed, ctx))
        annotate_transparency(signed, session, ctx)
        refs = store_all(signed, session)
        crashpoints.reached("after-store")
    except Error as exc:
        if mark:
            annotations.flush(session, signed=False, reason=str(exc))
        raise
    if mark:
        annotations.flush(session, signed=True)
    return refs


def skip_reason(snapshot: RunSnapshot, ctx: Context, *, provisional: bool = False) -> str:
    """Why this run should not be signed now ("" when it should)."""
    from chainmail.snapshot import is_finished, is_successful

    if not provisional and not is_finished(snapshot.run):
        return "not finished"
    if ctx.config.bool("chainmail.sign-successful-only") and not provisional and not is_successful(snapshot.run):
        return "did not succeed (chainmail.sign-successful-only is set)"
    return ""


def sign_run(snapshot: RunSnapshot, ctx: Context, *, formats: list[str] | None = None,
             provisional: bool = False, mark: bool = True) -> JobResult:
    """Format, sign and store every artifact of one run; mark the run signed or failed."""
    from chainmail.errors import RunNotFinishedError

    result = JobResult(snapshot)
    reason = skip_reason(snapshot, ctx, provisional=provisional)
    if reason == "not finished":
        raise RunNotFinishedError(f"{snapshot.ref.kind} {snapshot.ref.namespace}/{snapshot.ref.name} has not finished")
    if reason:
        result.skipped = reason
        return result
    session_marked = False
    try:
        crashpoints.reached("after-snapshot")
        result.payloads = make_payloads(snapshot, ctx, formats, provisional=provisional)
        crashpoints.reached("after-format")
        result.signed = sign(result.payloads, ctx, snapshot=snapshot)
        crashpoints.reached("after-sign")
        session_marked = True
        result.stored = store(result.signed, snapshot, ctx, mark=mark)
    except Error as exc:
        if mark and not session_marked and not isinstance(exc, InputError):
            from chainmail import annotations

            annotations.flush(StoreSession(ctx, snapshot), signed=False, reason=str(exc))
        raise
    return result


def sign_with_children(snapshot: RunSnapshot, ctx: Context, *, formats: list[str] | None = None,
                       provisional: bool = False) -> list[JobResult]:
    """Sign each finished, unsigned child TaskRun of a PipelineRun, then the PipelineRun itself.

    This is the order Chains keeps (children first, so their ``.att`` layers are written
    before the PipelineRun's); a TaskRun snapshot yields just its own result.
    """
    from chainmail import annotations
    from chainmail.snapshot import is_finished, reread_children

    def child_result(child: dict[str, Any]) -> JobResult:
        sub = RunSnapshot(child, [], snapshot.source)
        if annotations.is_signed(child):
            return JobResult(sub, skipped="already signed")
        if not is_finished(child):
            return JobResult(sub, skipped="not finished")
        return sign_run(sub, ctx, formats=formats)

    results = _in_order(child_result, snapshot.task_runs)
    if any(not r.skipped for r in results):  # Chains builds the PipelineRun's provenance from the signed children
        snapshot = reread_children(snapshot, ctx)
    results.append(sign_run(snapshot, ctx, formats=formats, provisional=provisional))
    return results


#: Child TaskRuns of one PipelineRun signed at the same time (each is its own API and registry work).
CHILD_CONCURRENCY = 4


def _in_order(work: Callable[[dict[str, Any]], JobResult], children: Sequence[dict[str, Any]]) -> list[JobResult]:
    """``work`` on every child, up to :data:`CHILD_CONCURRENCY` at once; results (or the first error) in order."""
    if len(children) < 2:
        return [work(child) for child in children]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(CHILD_CONCURRENCY, len(children)),
                            thread_name_prefix="child") as pool:
        futures = [pool.submit(work, child) for child in children]
        errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]


def summary_text(result: JobResult) -> str:
    """One line per run for humans."""
    ref = result.snapshot.ref
    if result.skipped:
        return f"skipped {ref.kind} {ref.namespace}/{ref.name}: {result.skipped}"
    backends = sorted({r.backend for r in result.stored})
    kinds = ", ".join(f"{p.artifact.kind}:{p.format}" for p in result.payloads)
    return (f"signed {ref.kind} {ref.namespace}/{ref.name}: {len(result.payloads)} payload(s) [{kinds}] "
            f"stored in {', '.join(backends) or 'nothing'}")


def summary_json(results: list[JobResult]) -> str:
    return json.dumps([r.summary() for r in results], indent=2)
