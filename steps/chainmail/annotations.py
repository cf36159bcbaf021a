"""Tekton Chains' run annotations and the signed/failed state machine.

A run moves from *unsigned* to ``chains.tekton.dev/signed: "true"`` once every payload is
stored, or to ``"failed"`` (with ``chains.tekton.dev/retries`` incremented and chainmail's
``chainmail.dev/failure-reason``) when signing or storing failed. ``sweep --retry-failed``
picks failed runs up again while ``retries`` stays under
``chainmail.retry.max-failed-attempts``.

:func:`flush` writes everything for a run in **one JSON merge patch**: the backends' pending
annotations (``payload-*``, ``signature-*``, …) together with the state. A merge patch only
touches the keys it names, so annotations owned by others are never clobbered. Only the
failure path reads before it writes (``retries``); it carries the run's resourceVersion as
a precondition and, on 409, re-reads and re-applies a bounded number of times.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chainmail.errors import ClusterError, Error

if TYPE_CHECKING:
    from chainmail.models import RunRef
    from chainmail.store_session import StoreSession

log = logging.getLogger("chainmail.annotations")

PREFIX = "chains.tekton.dev/"
SIGNED = PREFIX + "signed"
RETRIES = PREFIX + "retries"
TRANSPARENCY = PREFIX + "transparency"
#: Read, never written: asks for a Rekor upload when ``transparency.enabled: manual``.
TRANSPARENCY_UPLOAD = PREFIX + "transparency-upload"

#: chainmail's own keys.
FAILURE_REASON = "chainmail.dev/failure-reason"
CLAIM = "chainmail.dev/claim"
PROVISIONAL_SIGNED = "chainmail.dev/provisional-signed"
#: Label: runs carrying ``chainmail.dev/skip=true`` are never signed by sweep.
SKIP_LABEL = "chainmail.dev/skip"

MAX_REASON = 256
#: Patch attempts when the run keeps changing under us (409 Conflict).
MAX_ATTEMPTS = 5


def payload_key(short_key: str) -> str:
    return f"{PREFIX}payload-{short_key}"


def signature_key(short_key: str) -> str:
    return f"{PREFIX}signature-{short_key}"


def cert_key(short_key: str) -> str:
    return f"{PREFIX}cert-{short_key}"


def chain_key(short_key: str) -> str:
    return f"{PREFIX}chain-{short_key}"


# ------------------------------------------------------------------ refs mode (chainmail.storage.tekton.mode: refs)

#: Refs mode writes these instead of ``payload-``/``signature-``/``cert-``/``chain-`` (chainmail's own keys:
#: Chains reads none of them; none starts with ``chains.tekton.dev/signature-``).
REF_PREFIX = "chainmail.dev/"


def payload_digest_key(short_key: str) -> str:
    """``sha256:<hex>`` of the payload bytes that were signed."""
    return f"{REF_PREFIX}payload-digest-{short_key}"


def signature_digest_key(short_key: str) -> str:
    """``sha256:<hex>`` of the signature bytes (the DSSE envelope JSON, or the raw DER signature)."""
    return f"{REF_PREFIX}signature-digest-{short_key}"


def stored_key(short_key: str) -> str:
    """JSON list of ``{"backend": …, "location": …}``: where the payload and signature are kept."""
    return f"{REF_PREFIX}stored-{short_key}"


def stored_short_keys(annotations: Mapping[str, Any]) -> list[str]:
    """The ``<key>`` of every refs-mode ``chainmail.dev/stored-<key>`` annotation, sorted."""
    prefix = f"{REF_PREFIX}stored-"
    return sorted(k[len(prefix):] for k in annotations if k.startswith(prefix))


# ------------------------------------------------------------------ reading state


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """The object's annotations (empty when it has none)."""
    return dict(((obj.get("metadata") or {}).get("annotations")) or {})


def is_signed(obj: Mapping[str, Any]) -> bool:
    """``chains.tekton.dev/signed: "true"``."""
    return annotations_of(obj).get(SIGNED) == "true"


def is_failed(obj: Mapping[str, Any]) -> bool:
    """``chains.tekton.dev/signed: "failed"``."""
    return annotations_of(obj).get(SIGNED) == "failed"


def is_reconciled(obj: Mapping[str, Any]) -> bool:
    """Chains' ``Reconciled``: signed or failed for good; the controller leaves such runs alone."""
    return annotations_of(obj).get(SIGNED) in ("true", "failed")


def retries(obj: Mapping[str, Any]) -> int:
    """``chains.tekton.dev/retries`` as a number (0 when absent or not a number)."""
    return _int(annotations_of(obj).get(RETRIES))


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


# ------------------------------------------------------------------ failure reasons

_SECRETS = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S), "[PEM]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"(?i)\b(password|passwd|token|secret|api[-_]?key|authorization)([\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+"),
     r"\1\2***"),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@"), r"\1***@"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[JWT]"),
    (re.compile(r"[A-Za-z0-9+/]{80,}={0,2}"), "[data]"),
)


def short_reason(text: object) -> str:
    """One line, at most 256 characters, with anything that looks like a credential removed."""
    value = str(text)
    for rx, repl in _SECRETS:
        value = rx.sub(repl, value)
    value = " ".join(value.split())
    if len(value) > MAX_REASON:
        value = value[: MAX_REASON - 1] + "…"
    return value


# ------------------------------------------------------------------ flush


def state_patch(current: Mapping[str, str], *, signed: bool, reason: str = "",
                provisional: bool = False) -> dict[str, str | None]:
    """The state part of the annotation patch for the snapshot's own run."""
    patch: dict[str, str | None] = {CLAIM: None}
    if provisional:
        # A still-running PipelineRun: never mark it signed; the final signer does that.
        if signed:
            patch[PROVISIONAL_SIGNED] = "true"
            patch[FAILURE_REASON] = None
        else:
            patch[FAILURE_REASON] = short_reason(reason or "provisional signing failed")
        return patch
    if signed:
        patch[SIGNED] = "true"
        patch[FAILURE_REASON] = None
    else:
        patch[SIGNED] = "failed"
        patch[RETRIES] = str(_int(current.get(RETRIES)) + 1)
        patch[FAILURE_REASON] = short_reason(reason or "signing failed")
    return patch


def flush(session: StoreSession, *, signed: bool, reason: str = "", provisional: bool = False) -> None:
    """Write the session's pending annotations plus the run's new state, one merge patch per run.

    On the failure path (``signed=False``) errors while writing are logged, not raised, so
    the caller's original error is what the user sees.
    """
    ctx = session.ctx
    snapshot = session.snapshot
    main = snapshot.ref
    runs: dict[RunRef, dict[str, str]] = {ref: dict(values) for ref, values in session.annotations.items()}
    runs.setdefault(main, {})
    try:
        if snapshot.source.startswith("file") and not ctx.has_kube:
            _flush_files(session, runs, signed=signed, reason=reason, provisional=provisional)
            return
        kube = ctx.kube
        for ref, pending in runs.items():
            if ref == main:
                _patch_main(kube, session, pending, signed=signed, reason=reason, provisional=provisional)
            elif pending:
                kube.patch_merge(ref.plural, ref.namespace, ref.name, {"metadata": {"annotations": pending}})
    except Error as exc:
        if signed:
            raise
        log.warning("could not mark %s %s/%s as failed: %s", main.kind, main.namespace, main.name, exc)


def _patch_main(kube: Any, session: StoreSession, pending: dict[str, str], *, signed: bool, reason: str,
                provisional: bool) -> None:
    from chainmail._internal.kube import ConflictError

    ref = session.snapshot.ref
    obj: dict[str, Any] | None = session.snapshot.run
    needs_read = not signed and not provisional  # retries is read-modify-write
    if needs_read and not (obj or {}).get("metadata", {}).get("resourceVersion"):
        obj = kube.get(ref.plural, ref.namespace, ref.name)
    for attempt in range(MAX_ATTEMPTS):
        current = annotations_of(obj or {})
        values: dict[str, str | None] = {**pending,
                                         **state_patch(current, signed=signed, reason=reason,
                                                       provisional=provisional)}
        rv = str((obj or {}).get("metadata", {}).get("resourceVersion") or "") if needs_read else None
        try:
            kube.patch_merge(ref.plural, ref.namespace, ref.name, {"metadata": {"annotations": values}},
                             resource_version=rv or None)
            log.debug("marked %s %s/%s %s", ref.kind, ref.namespace, ref.name,
                      "provisional" if provisional else ("signed" if signed else "failed"))
            return
        except ConflictError:
            log.debug("%s %s/%s changed while marking it (attempt %d); re-reading", ref.kind, ref.namespace,
                      ref.name, attempt + 1)
            obj = kube.get(ref.plural, ref.namespace, ref.name)
    raise ClusterError(f"cannot annotate {ref.plural} {ref.namespace}/{ref.name}: it kept changing "
                       f"({MAX_ATTEMPTS} conflicts in a row)")


def _flush_files(session: StoreSession, runs: dict[RunRef, dict[str, str]], *, signed: bool, reason: str,
                 provisional: bool) -> None:
    """No cluster: write the would-be annotations to ``<file store>/<kind>-<ns>-<name>/annotations.json``."""
    from chainmail._internal.encoding import load_json
    from chainmail._internal.files import atomic_write, confined
    from chainmail.store_session import file_store_dir, run_dir_name

    root = file_store_dir(session.ctx)
    main = session.snapshot.ref
    for ref, pending in runs.items():
        path = confined(root, run_dir_name(ref), "annotations.json")
        existing: dict[str, str] = {}
        if path.is_file() and not path.is_symlink():
            try:
                loaded = load_json(path.read_bytes())
                existing = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                existing = {}
        values: dict[str, str | None] = dict(pending)
        if ref == main:
            current = {**annotations_of(session.snapshot.run), **existing}
            values.update(state_patch(current, signed=signed, reason=reason, provisional=provisional))
        merged = dict(existing)
        for key, value in values.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        atomic_write(path, (json.dumps(dict(sorted(merged.items())), indent=2) + "\n").encode())
        log.debug("wrote %s", path)
