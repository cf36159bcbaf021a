"""Storage backends, keyed by the chains-config storage names.

Each signed payload goes to the backends named by ``artifacts.<kind>.storage`` for its
artifact kind. Backends that write run annotations do not patch the run themselves: they
add to :attr:`~chainmail.store_session.StoreSession.annotations`, and :func:`store_all`'s caller
flushes those together with ``chains.tekton.dev/signed`` in one patch per run (one API call, and the
run is never marked signed before its signatures are stored).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

from chainmail.context import Context
from chainmail.errors import ConfigError, Error, StorageError
from chainmail.models import SignedPayload, StoredRef
from chainmail.store_session import StoreSession

if TYPE_CHECKING:
    from chainmail.transparency import LogKey

__all__ = ["UNSUPPORTED", "Backend", "StoreSession", "backend_names", "check_signatures", "store_all"]

log = logging.getLogger("chainmail.storage")


class Backend(ABC):
    """Where signed payloads go."""

    NAME: ClassVar[str]

    def __init__(self, session: StoreSession) -> None:
        self.session = session
        self.ctx = session.ctx
        #: What the backends that ran before this one stored (``tekton`` in refs mode points to them).
        self.stored_so_far: list[StoredRef] = []

    @classmethod  # noqa: B027 - an optional hook: most backends need no check
    def preflight(cls, ctx: Context) -> None:
        """Raise :class:`ConfigError` for settings this backend cannot work with (no network calls)."""

    @abstractmethod
    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        """Store every payload in ``signed``; raise :class:`StorageError` naming what failed."""


#: Backend name → (module, class): a backend's module is imported only when a payload is stored there.
BACKENDS: dict[str, tuple[str, str]] = {
    "tekton": ("chainmail.storage.tekton", "TektonBackend"),
    "oci": ("chainmail.storage.oci", "OciBackend"),
    "file": ("chainmail.storage.file", "FileBackend"),
    "gcs": ("chainmail.storage.gcs", "GcsBackend"),
    "docdb": ("chainmail.storage.docdb", "DocdbBackend"),
    "archivista": ("chainmail.storage.archivista", "ArchivistaBackend"),
    "grafeas": ("chainmail.storage.grafeas", "GrafeasBackend"),
}


def _backends(names: Iterable[str] | None = None) -> dict[str, type[Backend]]:
    """The backend classes for ``names`` (default: all) that exist, importing only their modules."""
    import importlib

    wanted = BACKENDS if names is None else [n for n in dict.fromkeys(names) if n in BACKENDS]
    out: dict[str, type[Backend]] = {}
    for name in wanted:
        module, cls = BACKENDS[name]
        out[name] = getattr(importlib.import_module(module), cls)
    return out


#: Names Chains accepts that chainmail does not implement; configuring one is a clear error.
UNSUPPORTED = ("kafka",)


def backend_names(signed: Iterable[SignedPayload], ctx: Context) -> dict[str, list[SignedPayload]]:
    """Group payloads by backend name, per the storage key of their artifact kind."""
    groups: dict[str, list[SignedPayload]] = {}
    for item in signed:
        for name in ctx.config.storage(item.payload.artifact.kind):
            if name in UNSUPPORTED:
                raise ConfigError(
                    f"artifacts.{item.payload.artifact.kind}.storage: backend '{name}' is not supported by "
                    "chainmail (see docs/storage-backends.md)"
                )
            groups.setdefault(name, []).append(item)
    backends = _backends(groups)
    for name in groups:
        if name in backends:
            backends[name].preflight(ctx)  # a bad setting is a ConfigError before anything is written
    if "tekton" in groups:
        from chainmail.storage.tekton import check_refs

        check_refs(ctx, {item.payload.artifact.kind for item in groups["tekton"]})
    return groups


def check_signatures(signed: Iterable[SignedPayload], keys: Mapping[str, str | None] | None = None) -> None:
    """Refuse signatures that do not verify over their payload (a tampered ``signed.json``).

    ``keys`` maps an artifact kind to the PEM public key the operator configured for it (None:
    that kind is not signed). With ``keys``, which ``store`` always passes, each signature must
    verify with that key and the item must name that key and no certificate: a ``signed.json``
    re-signed with another key is refused. Without it, each item is checked against its own
    ``publicKey`` (integrity only, for callers that made the signatures themselves).
    """
    from chainmail.errors import WorkspaceError

    for item in signed:
        key = item.payload.artifact.full_key
        expected = item.public_key
        if keys is not None:
            kind = item.payload.artifact.kind
            if kind not in keys or keys[kind] is None:
                raise WorkspaceError(f"signed.json holds a signature for {key}, but artifacts.{kind}.signer "
                                     "signs nothing; run sign again")
            certificate = _keyless_key(item, keys[kind], keys)
            expected = certificate or str(keys[kind])
            if certificate is None:
                _require_named_key(item, expected, keys)
        try:
            _verify_one(item, expected)
        except WorkspaceError:
            raise
        except Error as exc:
            raise WorkspaceError(f"signature for {key} does not verify over its payload ({exc})") from None


def _keyless_key(item: SignedPayload, trust: object, keys: Mapping[str, str | None]) -> str | None:
    """For a keyless kind: the item's certificate, once it and its log entry are checked (keyless_trust).

    None when ``trust`` is a configured key, not keyless.
    """
    from chainmail.errors import WorkspaceError
    from chainmail.job import ConfiguredKeys
    from chainmail.signing.keyless_trust import KeylessTrust, check_keyless

    if not isinstance(trust, KeylessTrust):
        return None
    if not isinstance(keys, ConfiguredKeys):
        raise WorkspaceError(f"signed payload for {item.payload.artifact.full_key} is keyless, but no "
                             "transparency log keys are configured to check it; refusing to store it")
    return check_keyless(item, trust, keys.log_keys())


def _fingerprint(pem: str) -> str:
    from chainmail.signing.keys import ssh_fingerprint

    try:
        return ssh_fingerprint(pem)
    except Error:
        return "an unreadable key"


def _require_named_key(item: SignedPayload, expected: str, keys: Mapping[str, str | None] | None = None) -> None:
    """The item must claim the configured key (what the backends write as ``.pub``) and no certificate.

    A log entry (``tlog``) is accepted only when ``keys`` carries the trusted log keys
    (:class:`chainmail.job.ConfiguredKeys`) and the entry verifies with them and logs exactly this
    signature by ``expected``; with ``transparency.enabled: true`` the entry is required.
    """
    from chainmail.errors import WorkspaceError

    key = item.payload.artifact.full_key
    want = _fingerprint(expected)
    got = _fingerprint(item.public_key)
    if got != want or item.key_id != want:
        raise WorkspaceError(f"signature for {key} was made with key {got}, not the configured signing key "
                             f"{want}; refusing to store it")
    if item.cert or item.chain:
        raise WorkspaceError(f"signed payload for {key} carries a certificate that the configured "
                             "signing key does not make; refusing to store it")
    from chainmail.job import ConfiguredKeys

    configured = keys if isinstance(keys, ConfiguredKeys) else None
    if item.tlog is None:
        if configured is not None and configured.require_tlog:
            raise WorkspaceError(f"signed payload for {key} has no transparency log entry, but "
                                 "transparency.enabled is true; run sign again")
        return
    if configured is None:
        raise WorkspaceError(f"signed payload for {key} carries a log entry that cannot be checked here; "
                             "refusing to store it")
    _check_tlog(item, expected, configured.log_keys())


def _check_tlog(item: SignedPayload, expected: str, log_keys: list[LogKey]) -> None:
    """``item.tlog`` must verify with ``log_keys`` (SET, proof, UUID) and log this exact signature by ``expected``."""
    import hashlib

    from chainmail.errors import WorkspaceError
    from chainmail.transparency import LogEntry, check_envelope_binding, check_signature_binding, verify_entry

    try:
        from chainmail.transparency import v2

        if v2.is_v2_tlog(item.tlog):  # Rekor v2: checkpoint + proof, then what the body binds
            v2_entry = v2.RekorV2Entry.from_json(item.tlog)
            v2.verify_entry(v2_entry, log_keys)
            if item.payload.wrap:
                v2.check_envelope_binding(v2_entry, item.signature, expected)
            else:
                v2.check_signature_binding(v2_entry, item.payload.body, item.signature, expected)
            return
        entry = LogEntry.from_response(item.tlog)
        verify_entry(entry, log_keys)
        if item.payload.wrap:
            check_envelope_binding(entry, item.signature, expected)
        else:
            check_signature_binding(entry, hashlib.sha256(item.payload.body).hexdigest(), item.signature, expected)
    except Error as exc:
        raise WorkspaceError(f"signed payload for {item.payload.artifact.full_key}: its transparency log entry "
                             f"is not to be trusted ({exc}); refusing to store it") from None


def _verify_one(item: SignedPayload, public_key: str) -> None:
    from chainmail.errors import WorkspaceError
    from chainmail.signing import verify_signature
    from chainmail.signing.dsse import parse, verify_envelope

    key = item.payload.artifact.full_key
    if not item.payload.wrap:
        verify_signature(public_key, item.signature, item.payload.body)
        return
    payload_type, body = verify_envelope(item.signature, [public_key])
    if payload_type != item.payload.payload_type or body != item.payload.body:
        raise WorkspaceError(f"signed payload for {key}: the envelope does not hold this payload")
    sigs = parse(item.signature)["signatures"]
    if len(sigs) != 1:
        raise WorkspaceError(f"signed payload for {key}: the envelope must hold exactly one signature")
    if sigs[0]["keyid"] not in ("", item.key_id):
        raise WorkspaceError(f"signed payload for {key}: the envelope's keyid is not the signing key's")


def store_all(signed: list[SignedPayload], session: StoreSession, *, check: bool = False,
              keys: Mapping[str, str | None] | None = None) -> list[StoredRef]:
    """Send every payload to its backends; keep going on failure and raise one error at the end.

    With ``check`` (input read from a workspace file), signatures are verified first, against
    ``keys`` (the operator's public key per artifact kind, see :func:`check_signatures`), so
    nothing is written for a tampered input. Returns the references written. On failure,
    raises :class:`StorageError` whose message lists every failed backend; ``error.stored``
    holds what did succeed.
    """
    if check:
        check_signatures(signed, keys)
    groups = backend_names(signed, session.ctx)
    registry = _backends(groups)
    refs: list[StoredRef] = []
    failures: list[str] = []
    last: Error | None = None
    # tekton last: in refs mode (chainmail.storage.tekton.mode) it records where the others put each payload.
    for name in sorted(groups, key=lambda n: n == "tekton"):
        items = groups[name]
        try:
            backend = registry[name](session)
            backend.stored_so_far = list(refs)
            refs.extend(backend.store(items))
        except Error as exc:
            log.warning("storage %s failed: %s", name, exc)
            failures.append(f"{name}: {exc}")
            last = exc
    if failures:
        err_cls = type(last) if isinstance(last, StorageError) else StorageError
        err = err_cls("; ".join(failures), hint=getattr(last, "hint", None))
        err.stored = refs  # type: ignore[attr-defined]
        raise err
    return refs
