"""Storage backends, keyed by the chains-config storage names.

Each signed payload goes to the backends named by ``artifacts.<kind>.storage`` for its
artifact kind. Backends that write run annotations do not patch the run themselves: they
add to :attr:`StoreSession.annotations`, and :func:`store_all`'s caller flushes those
together with ``chains.tekton.dev/signed`` in one patch per run (one API call, and the
run is never marked signed before its signatures are stored).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from chainmail.context import Context
from chainmail.errors import ConfigError, Error, StorageError
from chainmail.models import RunRef, RunSnapshot, SignedPayload, StoredRef

log = logging.getLogger("chainmail.storage")


@dataclass
class StoreSession:
    """One store pass over one run: shared context plus pending run annotations."""

    ctx: Context
    snapshot: RunSnapshot
    annotations: dict[RunRef, dict[str, str]] = field(default_factory=dict)

    def annotate(self, run: RunRef, values: dict[str, str]) -> None:
        """Queue annotations for ``run``; they are written by the caller in one patch."""
        self.annotations.setdefault(run, {}).update(values)


class Backend(ABC):
    """Where signed payloads go."""

    NAME: ClassVar[str]

    def __init__(self, session: StoreSession) -> None:
        self.session = session
        self.ctx = session.ctx

    @abstractmethod
    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        """Store every payload in ``signed``; raise :class:`StorageError` naming what failed."""


def _backends() -> dict[str, type[Backend]]:
    from chainmail.storage.file import FileBackend
    from chainmail.storage.oci import OciBackend
    from chainmail.storage.tekton import TektonBackend

    return {b.NAME: b for b in (TektonBackend, OciBackend, FileBackend)}


#: Names Chains accepts that chainmail does not implement; configuring one is a clear error.
UNSUPPORTED = ("gcs", "docdb", "grafeas", "kafka", "archivista")


def backend_names(signed: Iterable[SignedPayload], ctx: Context) -> dict[str, list[SignedPayload]]:
    """Group payloads by backend name, per the storage key of their artifact kind."""
    groups: dict[str, list[SignedPayload]] = {}
    for item in signed:
        for name in ctx.config.storage(item.payload.artifact.kind):
            if name in UNSUPPORTED:
                raise ConfigError(
                    f"artifacts.{item.payload.artifact.kind}.storage: backend '{name}' is not supported by "
                    "chainmail; use tekton, oci or file"
                )
            groups.setdefault(name, []).append(item)
    return groups


def check_signatures(signed: Iterable[SignedPayload]) -> None:
    """Refuse signatures that do not verify over their payload (a tampered ``signed.json``)."""
    from chainmail.errors import WorkspaceError
    from chainmail.signing import verify_signature
    from chainmail.signing.dsse import verify_envelope

    for item in signed:
        key = item.payload.artifact.full_key
        try:
            if item.payload.wrap:
                payload_type, body = verify_envelope(item.signature, [item.public_key])
                if payload_type != item.payload.payload_type or body != item.payload.body:
                    raise WorkspaceError(f"signed payload for {key}: the envelope does not hold this payload")
            else:
                verify_signature(item.public_key, item.signature, item.payload.body)
        except WorkspaceError:
            raise
        except Error as exc:
            raise WorkspaceError(f"signature for {key} does not verify over its payload ({exc})") from None


def store_all(signed: list[SignedPayload], session: StoreSession, *, check: bool = False) -> list[StoredRef]:
    """Send every payload to its backends; keep going on failure and raise one error at the end.

    With ``check`` (input read from a workspace file), signatures are verified first, so
    nothing is written for a tampered input. Returns the references written. On failure,
    raises :class:`StorageError` whose message lists every failed backend; ``error.stored``
    holds what did succeed.
    """
    if check:
        check_signatures(signed)
    groups = backend_names(signed, session.ctx)
    registry = _backends()
    refs: list[StoredRef] = []
    failures: list[str] = []
    last: Error | None = None
    for name, items in groups.items():
        try:
            refs.extend(registry[name](session).store(items))
        except Error as exc:
            log.warning("storage %s failed: %s", name, exc)
            failures.append(f"{name}: {exc}")
            last = exc
    if failures:
        err_cls = type(last) if isinstance(last, StorageError) else StorageError
        err = err_cls("; ".join(failures))
        err.stored = refs  # type: ignore[attr-defined]
        raise err
    return refs
