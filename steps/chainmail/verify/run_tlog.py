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
        if _binds_an_image_signature(entry, items, keys):
            return
        name = getattr(entry, "uuid", None) or f"at log index {entry.log_index}"
        raise last or TlogMismatchError(f"the transparency log entry {name} binds none of the run's signatures")
    return bind


def _binds_an_image_signature(entry: AnyEntry, items: list[Verified], keys: list[tuple[str, str]]) -> bool:
    """Whether ``entry`` logs a signature, by one of ``keys``, of an image the run's signed attestation names.

    Chains logs the run's attestation first and its image signatures after, and the annotation keeps the
    last entry: usually a ``hashedrekord`` of the image's simple-signing payload, which lives in the registry,
    not on the run. That payload is rebuilt from a subject of the verified statement (signed, so the run
    cannot choose it), and the entry's own signature must verify over it with a given key.
    """
    from chainmail.errors import TransparencyError, VerificationError
    from chainmail.formats.simplesigning import simple_signing_body
    from chainmail.signing import verify_signature

    signature = _logged_signature(entry)
    if signature is None:
        return False
    for item in items:
        for subject in (item.statement or {}).get("subject") or []:
            name = subject.get("name") if isinstance(subject, dict) else None
            digest = (subject.get("digest") or {}).get("sha256") if isinstance(subject, dict) else None
            if not isinstance(name, str) or not isinstance(digest, str) or len(digest) != 64:
                continue
            payload = simple_signing_body(name, f"sha256:{digest}")
            for pem, _ in keys:
                try:
                    verify_signature(pem, signature, payload)
                    bind_signature(entry, payload, signature, [pem])
                except (VerificationError, TransparencyError):
                    continue
                return True
    return False


def _logged_signature(entry: AnyEntry) -> bytes | None:
    """The signature a ``hashedrekord`` entry (v0.0.1 or v0.0.2) logs, or None."""
    import base64
    import binascii

    from chainmail.errors import TransparencyError

    try:
        spec = entry.body_json.get("spec") or {}
        spec = spec.get("hashedRekordV002", spec)
        content = (spec.get("signature") or {}).get("content")
        return base64.b64decode(content, validate=True) if isinstance(content, str) else None
    except (TransparencyError, AttributeError, TypeError, binascii.Error, ValueError):
        return None


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
