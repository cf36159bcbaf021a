"""Verification uses the transparency log, as ``cosign verify`` does.

A key-signed signature must come with a Rekor entry — cosign's ``dev.sigstore.cosign/bundle`` layer
annotation, a Sigstore bundle's ``tlogEntries``, a run's ``chains.tekton.dev/transparency`` annotation, or
one found online with ``--rekor-url`` — unless :attr:`TlogCheck.ignore` (``--insecure-ignore-tlog``).
The entry is checked with :mod:`chainmail.transparency.verify` against the trusted log keys (its log
must be trusted, its SET verify, its inclusion proof and checkpoint too when present) and must bind
exactly this signature: the payload's sha256, the signature and the key (``hashedrekord``), or the
envelope's payload hash and one signature/verifier pair (``dsse``).

Example::

    check = TlogCheck(trusted_root="trusted_root.json", retry=ctx.retry)
    check.require_signature(entry_from_cosign_bundle(annotation), payload, signature, [pub_pem])

A Rekor v2 entry (``kindVersion`` 0.0.2, no SET: a signed checkpoint and an inclusion proof instead) is
checked with :mod:`chainmail.transparency.v2`; a run's v2 entry is read back from the log's tiles.

Errors (exit codes): :class:`TlogMissingError` (24), :class:`TlogMismatchError` (25),
:class:`TlogEntryInvalidError` (26), :class:`TlogInclusionError` (27), :class:`TlogUnknownLogError` (28);
a log that cannot be reached is a :class:`TransparencyError` (7).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from chainmail._internal.encoding import load_json
from chainmail.errors import (
    ConfigError,
    TlogEntryInvalidError,
    TlogInclusionError,
    TlogMismatchError,
    TlogMissingError,
    TlogUnknownLogError,
    TransparencyError,
    VerificationError,
)
from chainmail.transparency.entry import InclusionProof, LogEntry
from chainmail.transparency.errors import LogUnavailableError, UntrustedLogError
from chainmail.transparency.merkle import leaf_hash

if TYPE_CHECKING:
    from chainmail._internal.http import RetryPolicy
    from chainmail.transparency.client import RekorClient
    from chainmail.transparency.trust import LogKey
    from chainmail.transparency.v2 import RekorV2Entry

    #: A Rekor v1 entry or a Rekor v2 ``TransparencyLogEntry``.
    AnyEntry = LogEntry | RekorV2Entry

#: At most this many search results are fetched and checked by an online lookup.
MAX_LOOKUP = 64


@contextmanager
def _as(cls: type[VerificationError]) -> Iterator[None]:
    """Turn the transparency package's :class:`TransparencyError` into the typed verification error ``cls``."""
    try:
        yield
    except TransparencyError as exc:
        raise cls(str(exc)) from None


@contextmanager
def _v2_errors() -> Iterator[None]:
    """A Rekor v2 check that fails: an untrusted log is 28, any other failure 27; a log that is down stays 7."""
    try:
        yield
    except LogUnavailableError:
        raise
    except UntrustedLogError as exc:
        raise TlogUnknownLogError(str(exc)) from None
    except TransparencyError as exc:
        raise TlogInclusionError(str(exc)) from None


#: Latest ``integratedTime`` a datetime can hold (9999-12-31T23:59:59Z).
_MAX_TIME = 253402300799


def _parse(what: str, build: Callable[[], LogEntry]) -> LogEntry:
    try:
        entry = build()
        if entry.integrated_time > _MAX_TIME:
            raise TlogEntryInvalidError(f"{what}: integratedTime {entry.integrated_time} is not a time")
        return entry
    except TransparencyError as exc:
        raise TlogEntryInvalidError(f"{what}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
        raise TlogEntryInvalidError(f"{what}: malformed transparency log entry") from None


def entry_from_cosign_bundle(annotation: str | bytes) -> LogEntry:
    """The entry of cosign's ``dev.sigstore.cosign/bundle`` annotation (SET and entry, no proof)."""
    def build() -> LogEntry:
        doc = load_json(annotation)
        payload = doc["Payload"]
        body = base64.b64decode(payload["body"], validate=True)
        return LogEntry.from_response({leaf_hash(body).hex(): {
            "body": payload["body"], "integratedTime": payload["integratedTime"], "logID": payload["logID"],
            "logIndex": payload["logIndex"], "verification": {"signedEntryTimestamp": doc["SignedEntryTimestamp"]},
        }})
    return _parse("dev.sigstore.cosign/bundle", build)


def _b64hex(value: Any) -> str:
    return base64.b64decode(str(value), validate=True).hex()


def _is_v2(item: Any) -> bool:
    from chainmail.transparency.v2 import API_VERSION, is_v2_tlog

    kind_version = item.get("kindVersion") if isinstance(item, dict) else None
    return is_v2_tlog(item) and isinstance(kind_version, dict) and kind_version.get("version") == API_VERSION


def _parse_v2(item: Any) -> RekorV2Entry:
    from chainmail.transparency.v2 import RekorV2Entry

    try:
        return RekorV2Entry.from_json(item)
    except TransparencyError as exc:
        raise TlogEntryInvalidError(f"Sigstore bundle tlogEntries: {exc}") from None


def entry_from_bundle(bundle: dict[str, Any]) -> AnyEntry | None:
    """The first ``verificationMaterial.tlogEntries`` item of a Sigstore bundle (protobuf JSON), or None."""
    material = bundle.get("verificationMaterial")
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    if not entries:
        return None

    if _is_v2(entries[0]):
        return _parse_v2(entries[0])

    def build() -> LogEntry:
        item = entries[0]
        body = base64.b64decode(item["canonicalizedBody"], validate=True)
        verification: dict[str, Any] = {}
        promise = item.get("inclusionPromise") or {}
        if promise.get("signedEntryTimestamp"):
            verification["signedEntryTimestamp"] = promise["signedEntryTimestamp"]
        proof = item.get("inclusionProof")
        if proof:
            checkpoint = proof.get("checkpoint") or {}
            verification["inclusionProof"] = InclusionProof(
                int(proof["logIndex"]), int(proof["treeSize"]), bytes.fromhex(_b64hex(proof["rootHash"])),
                tuple(bytes.fromhex(_b64hex(h)) for h in proof.get("hashes") or []),
                str(checkpoint.get("envelope") or "") if isinstance(checkpoint, dict) else "",
            ).to_json()
        return LogEntry.from_response({leaf_hash(body).hex(): {
            "body": item["canonicalizedBody"], "integratedTime": int(item["integratedTime"]),
            "logID": _b64hex(item["logId"]["keyId"]), "logIndex": int(item["logIndex"]),
            "verification": verification,
        }})
    return _parse("Sigstore bundle tlogEntries", build)


def verifying_pems(keys: list[tuple[str, str]], key_id: str) -> list[str]:
    """The PEMs of ``keys`` (``(pem, key id)``) that have the key id a verification returned: the entry
    must name the key that verified, not just any key given."""
    return [pem for pem, kid in keys if (kid or "unknown") == key_id] or [pem for pem, _ in keys]


def verify_logged(entry: AnyEntry, keys: list[LogKey]) -> LogKey:
    """The entry's log is trusted (28), its SET verifies (26), its proof and checkpoint too (27)."""
    from chainmail.transparency.v2 import RekorV2Entry
    from chainmail.transparency.verify import log_key_for, verify_inclusion, verify_set, verify_uuid

    if isinstance(entry, RekorV2Entry):
        return _verify_v2(entry, keys)

    with _as(TlogUnknownLogError):
        log_key_for(entry, keys)
    with _as(TlogEntryInvalidError):
        key = verify_set(entry, keys)
        entry.body_json  # noqa: B018 -- a body that is not an entry is malformed
    with _as(TlogInclusionError):
        verify_inclusion(entry, key)
    with _as(TlogEntryInvalidError):
        verify_uuid(entry)
    return key


def _verify_v2(entry: RekorV2Entry, keys: list[LogKey]) -> LogKey:
    """A Rekor v2 entry: its checkpoint is signed by a trusted log (28) and its proof leads there (27)."""
    from chainmail.transparency.v2 import verify_entry

    with _v2_errors():
        return verify_entry(entry, keys)


def bind_signature(entry: AnyEntry, payload: bytes, signature: bytes, key_pems: list[str]) -> None:
    """A ``hashedrekord`` entry of the payload's sha256, this signature and one of ``key_pems`` (25)."""
    from chainmail.transparency import v2
    from chainmail.transparency.verify import check_signature_binding

    if isinstance(entry, v2.RekorV2Entry):
        _bind(entry, key_pems, lambda pem: v2.check_signature_binding(entry, payload, signature, pem))
        return
    _bind(entry, key_pems, lambda pem: check_signature_binding(entry, hashlib.sha256(payload).hexdigest(),
                                                               signature, pem))


def bind_envelope(entry: AnyEntry, envelope: bytes, key_pems: list[str]) -> None:
    """A ``dsse`` entry of the envelope's payload hash and one of its signatures by one of ``key_pems`` (25)."""
    from chainmail.transparency import v2
    from chainmail.transparency.verify import check_envelope_binding

    if isinstance(entry, v2.RekorV2Entry):
        _bind(entry, key_pems, lambda pem: v2.check_envelope_binding(entry, envelope, pem))
        return
    _bind(entry, key_pems, lambda pem: check_envelope_binding(entry, envelope, pem))


def _bind(entry: AnyEntry, key_pems: list[str], check: Callable[[str], None]) -> None:
    last: TransparencyError | None = None
    for pem in key_pems:
        try:
            check(pem)
            return
        except TransparencyError as exc:
            last = exc
    raise TlogMismatchError(f"the transparency log entry does not bind this signature: {last or 'no key'}")


def check_certificate_time(entry: AnyEntry | int, cert_pem: str) -> None:
    """Keyless: the entry was integrated while the signing certificate was valid (25)."""
    from cryptography import x509

    from chainmail.transparency.v2 import RekorV2Entry

    if isinstance(entry, RekorV2Entry):
        raise TlogMismatchError("a Rekor v2 entry carries no integration time, and chainmail does not check "
                                "timestamp-authority times yet: a keyless signature cannot be verified with it")

    when = datetime.fromtimestamp(entry if isinstance(entry, int) else entry.integrated_time, UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return  # an unreadable certificate fails the certificate checks themselves
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise TlogMismatchError(f"the transparency log entry was integrated at {when:%Y-%m-%dT%H:%M:%SZ}, outside "
                                f"the certificate's validity ({cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
                                f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})")


def parse_transparency_annotation(value: str) -> tuple[str, int, str]:
    """``(rekor URL, log index, API version "1" or "2")`` of a ``chains.tekton.dev/transparency`` value
    (Chains' ``…/api/v1/log/entries?logIndex=N``, or chainmail's ``/api/v2/`` one); 26 when malformed."""
    parts = urlsplit(value.strip())
    found = re.search(r"/api/v([12])/log/entries$", parts.path)
    index = parse_qs(parts.query).get("logIndex", [""])[0]
    if parts.scheme not in ("http", "https") or not found or not re.fullmatch(r"[0-9]{1,19}", index):
        raise TlogEntryInvalidError(f"chains.tekton.dev/transparency {value[:200]!r} is not "
                                    "<rekor URL>/api/v1/log/entries?logIndex=N")
    return f"{parts.scheme}://{parts.netloc}{parts.path[: found.start()]}", int(index), found.group(1)


@dataclass
class TlogCheck:
    """How verification uses the log: ``ignore`` (``--insecure-ignore-tlog``), ``rekor_url`` (look an entry up
    online when the signature carries none), ``trusted_root`` (a ``trusted_root.json`` or the log's PEM key;
    None or ``production``: Sigstore's production root; ``staging``)."""

    ignore: bool = False
    rekor_url: str = ""
    trusted_root: str | Path | None = None
    retry: RetryPolicy | None = None
    _keys: list[LogKey] | None = field(default=None, init=False, repr=False)

    def log_keys(self) -> list[LogKey]:
        """The trusted log keys (loaded once)."""
        if self._keys is None:
            from chainmail.transparency.trust import load_log_keys
            from chainmail.verify.trusted_root import embedded_trusted_root_path

            source: str | Path | None = self.trusted_root
            if source == "staging":
                source = embedded_trusted_root_path("staging")
                if source is None:
                    raise ConfigError("no staging trusted root available offline",
                                      hint="pass --trusted-root FILE (a Sigstore trusted_root.json)")
            elif source == "production":
                source = None
            self._keys = load_log_keys(source)
        return self._keys

    def client(self, url: str) -> RekorClient:
        from chainmail.transparency.client import RekorClient

        with _as(TlogEntryInvalidError):
            return RekorClient(url, keys=[], retry=self.retry)

    def require_signature(self, entry: AnyEntry | None, payload: bytes, signature: bytes,
                          key_pems: list[str]) -> AnyEntry | None:
        """A raw signature over ``payload``: its entry (or one found online) verifies and binds it."""
        return self._require(entry, hashlib.sha256(payload).hexdigest(),
                             lambda e: bind_signature(e, payload, signature, key_pems))

    def require_envelope(self, entry: AnyEntry | None, envelope: bytes, payload: bytes,
                         key_pems: list[str]) -> AnyEntry | None:
        """A DSSE envelope (``payload`` is what it signs): its entry verifies and binds it."""
        return self._require(entry, hashlib.sha256(payload).hexdigest(),
                             lambda e: bind_envelope(e, envelope, key_pems))

    def _require(self, entry: AnyEntry | None, sha256: str, bind: Callable[[Any], None]) -> AnyEntry | None:
        if self.ignore:
            return None
        if entry is None:
            if not self.rekor_url:
                raise TlogMissingError("the signature has no transparency log entry (pass --rekor-url URL to look "
                                       "one up, or --insecure-ignore-tlog to accept it unlogged)")
            return self.lookup(self.rekor_url, sha256, bind)
        verify_logged(entry, self.log_keys())
        bind(entry)
        return entry

    def fetch(self, url: str, *, uuid: str | None = None, log_index: int | None = None) -> LogEntry:
        """The entry at ``url`` (not yet verified); unreachable is :class:`TransparencyError` (7)."""
        from chainmail.transparency.client import check_addressed

        raw = self.client(url).fetch_raw(uuid=uuid, log_index=log_index)
        entry = _parse(f"transparency log {url}", lambda: LogEntry.from_response(raw))
        with _as(TlogEntryInvalidError):
            check_addressed(entry, uuid=uuid, log_index=log_index, url=url)
        return entry

    def fetch_v2(self, url: str, log_index: int) -> RekorV2Entry:
        """Rekor v2 entry ``log_index``, read from the log's tiles with a proof against its current checkpoint
        (which must verify with a trusted key: 28, else 27); unreachable is :class:`TransparencyError` (7)."""
        from chainmail.transparency.v2_client import RekorV2Client

        client = RekorV2Client(url, keys=self.log_keys(), retry=self.retry)
        with _v2_errors():
            return client.read_back(log_index)

    def lookup(self, url: str, sha256: str, bind: Callable[[LogEntry], None]) -> LogEntry:
        """Search ``url``'s index for ``sha256`` (at most :data:`MAX_LOOKUP` results, within one retry deadline
        overall); the first entry that binds the signature must verify. None binds: :class:`TlogMissingError`."""
        import time

        budget = self.retry.deadline if self.retry is not None else 30.0
        start = time.monotonic()
        uuids = self.client(url).search(sha256=sha256)[:MAX_LOOKUP]
        for uuid in uuids:
            if time.monotonic() - start > budget:  # a slow log cannot stretch a lookup to 64 deadlines
                raise TransparencyError(f"transparency log {url}: looking the signature up took longer than "
                                        f"{budget:g}s ({len(uuids)} entries to check)")
            try:
                entry = self.fetch(url, uuid=uuid)
                bind(entry)
            except (TlogMismatchError, TlogEntryInvalidError):
                continue  # another signature over the same payload, or junk: not ours
            verify_logged(entry, self.log_keys())
            return entry
        raise TlogMissingError(f"no entry of transparency log {url} binds this signature "
                               f"({len(uuids)} found for sha256 {sha256[:16]}…)")
