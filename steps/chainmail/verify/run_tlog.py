"""``verify run`` and the transparency log: the run's ``chains.tekton.dev/transparency`` entry must bind
one of the run's own verified signatures.

Chains records one entry per run (``<rekor URL>/api/v1/log/entries?logIndex=N``; chainmail, like Chains,
keeps the last one logged, which may be the run's attestation or one of its image signatures). That
entry is fetched from the URL it names (or from ``--rekor-url``, for a log the annotation names by an
address only reachable in-cluster), verified against the trusted log keys and must bind a signature
found on the run. Without the annotation, ``--rekor-url`` looks the run's attestation up by
its payload sha256; else the run fails with :class:`TlogMissingError` (24), unless the check is ignored.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from chainmail.errors import TLOG_ERRORS, TlogMismatchError, TlogMissingError
from chainmail.signing.dsse import is_envelope
from chainmail.verify.tlog import (
    TlogCheck,
    bind_envelope,
    bind_signature,
    parse_transparency_annotation,
    verify_logged,
    verifying_pems,
)

if TYPE_CHECKING:
    from chainmail.verify.model import Verified
    from chainmail.verify.tlog import AnyEntry

TRANSPARENCY = "chains.tekton.dev/transparency"


def _binder(items: list[Verified], keys: list[tuple[str, str]]) -> Any:
    """A check that an entry logs one of ``items``' signatures, by the key that verified it."""
    def bind(entry: AnyEntry) -> None:
        last: TlogMismatchError | None = None
        for item in items:
            if not item.signature:
                continue
            pems = verifying_pems(keys, item.key_id)
            try:
                if is_envelope(item.signature):
                    bind_envelope(entry, item.signature, pems)
                else:
                    bind_signature(entry, item.payload, item.signature, pems)
                return
            except TlogMismatchError as exc:
                last = exc
        name = getattr(entry, "uuid", None) or f"at log index {entry.log_index}"
        raise last or TlogMismatchError(f"the transparency log entry {name} binds none of the run's signatures")
    return bind


def check_run_tlog(ref: str, annotations: dict[str, Any], items: list[Verified], own: list[Verified],
                   keys: list[tuple[str, str]], tlog: TlogCheck | None) -> AnyEntry | None:
    """The run's log entry (annotation, else ``--rekor-url`` lookup) verifies and binds one of ``items``
    (the run's verified signatures; ``own``: its own attestation, what a lookup searches for); ``keys``:
    the ``(pem, key id)`` given to verify with."""
    check = tlog if tlog is not None else TlogCheck()
    if check.ignore:
        return None
    value = annotations.get(TRANSPARENCY)
    try:
        if isinstance(value, str) and value.strip():
            url, index, version = parse_transparency_annotation(value)
            entry = check.fetch_v2(check.rekor_url or url, index) if version == "2" \
                else check.fetch(check.rekor_url or url, log_index=index)
            verify_logged(entry, check.log_keys())
            _binder(items, keys)(entry)
            return entry
        if check.rekor_url and own:
            return check.lookup(check.rekor_url, hashlib.sha256(own[0].payload).hexdigest(),
                                _binder(own, keys))
    except TLOG_ERRORS as exc:
        raise type(exc)(f"{ref}: {exc}") from None
    raise TlogMissingError(f"{ref} has no {TRANSPARENCY} annotation: its signature was never logged (pass "
                           "--rekor-url URL to look it up, or --insecure-ignore-tlog to accept it unlogged)")


def check_children_tlog(children: list[tuple[str, dict[str, Any], list[Verified]]], keys: list[tuple[str, str]],
                        tlog: TlogCheck | None) -> None:
    """A PipelineRun's children ``(ref, annotations, verified)``: each that names a log entry must have one
    that verifies and binds one of its signatures (a child without one is not required to: children never
    stand in for the PipelineRun's own attestation)."""
    for ref, marks, items in children:
        if isinstance(marks.get(TRANSPARENCY), str) and items:
            check_run_tlog(ref, marks, items, [], keys, tlog)
