"""The on-disk contract between steps: one JSON document per step in a workspace directory.

=================  ==============  ==========================================
file               written by      holds
=================  ==============  ==========================================
``snapshot.json``  ``snapshot``    :class:`~chainmail.models.RunSnapshot`
``payloads.json``  ``format``      list of :class:`~chainmail.models.Payload`
``signed.json``    ``sign``        list of :class:`~chainmail.models.SignedPayload`
``stored.json``    ``store``       list of :class:`~chainmail.models.StoredRef`
=================  ==============  ==========================================

Every document carries ``apiVersion``, ``kind`` and ``input`` (the name and sha256 of the
document it was made from), so a step refuses input that was changed after the step that
read it, and a person can follow the chain. Writes are atomic. See ``docs/workspace.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from chainmail._internal.encoding import JSONLimitError, load_json
from chainmail._internal.files import atomic_write
from chainmail.errors import WorkspaceError
from chainmail.models import Payload, RunSnapshot, SignedPayload, StoredRef

API_VERSION = "chainmail.dev/v1alpha1"
SNAPSHOT, PAYLOADS, SIGNED, STORED = "snapshot.json", "payloads.json", "signed.json", "stored.json"
_KINDS = {SNAPSHOT: "Snapshot", PAYLOADS: "Payloads", SIGNED: "Signatures", STORED: "StoredRefs"}
_PREVIOUS = {PAYLOADS: SNAPSHOT, SIGNED: PAYLOADS, STORED: SIGNED}
#: Largest step document read (a PipelineRun with hundreds of children stays far below it).
MAX_DOCUMENT_BYTES = 256 << 20

T = TypeVar("T")


class Workspace:
    """A directory holding the step documents of one run."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def _digest(self, name: str) -> str:
        try:
            return "sha256:" + hashlib.sha256(self.path(name).read_bytes()).hexdigest()
        except FileNotFoundError:
            raise WorkspaceError(f"{self.path(name)} is missing: run the step that writes it first") from None

    def _write(self, name: str, body: dict[str, Any]) -> Path:
        doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": _KINDS[name]}
        previous = _PREVIOUS.get(name)
        if previous is not None:
            doc["input"] = {"file": previous, "digest": self._digest(previous)}
        doc.update(body)
        path = self.path(name)
        atomic_write(path, json.dumps(doc, indent=2, sort_keys=False).encode() + b"\n")
        return path

    def _read(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        try:
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise WorkspaceError(f"{path} is larger than {MAX_DOCUMENT_BYTES >> 20} MiB; not a chainmail document")
            raw = path.read_bytes()
        except FileNotFoundError:
            raise WorkspaceError(f"{path} is missing: run the step that writes it first") from None
        try:
            doc = load_json(raw)
        except json.JSONDecodeError as exc:
            raise WorkspaceError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except UnicodeDecodeError:
            raise WorkspaceError(f"{path} is not valid JSON (not UTF-8 text)") from None
        except JSONLimitError as exc:
            raise WorkspaceError(f"{path} is not a chainmail document ({exc})") from None
        if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION or doc.get("kind") != _KINDS[name]:
            raise WorkspaceError(f"{path} is not a chainmail {_KINDS[name]} document")
        previous = _PREVIOUS.get(name)
        if previous is not None:
            recorded = (doc.get("input") or {}).get("digest")
            if recorded != self._digest(previous):
                raise WorkspaceError(
                    f"{self.path(previous)} changed after {name} was made from it; run the steps again"
                )
        return doc

    def _items(self, name: str, key: str, parse: Callable[[dict[str, Any], str], T]) -> list[T]:
        doc = self._read(name)
        items = doc.get(key)
        if not isinstance(items, list):
            raise WorkspaceError(f"{self.path(name)}: '{key}' must be a list")
        try:
            return [parse(item, f"{name}:{key}[{i}]") for i, item in enumerate(items)]
        except WorkspaceError:
            raise
        except Exception as exc:  # InputError from the models: report it as a workspace problem
            raise WorkspaceError(str(exc)) from None

    # snapshot
    def write_snapshot(self, snap: RunSnapshot) -> Path:
        return self._write(SNAPSHOT, snap.to_json())

    def read_snapshot(self) -> RunSnapshot:
        try:
            return RunSnapshot.from_json(self._read(SNAPSHOT))
        except WorkspaceError:
            raise
        except Exception as exc:
            raise WorkspaceError(f"{self.path(SNAPSHOT)}: {exc}") from None

    # payloads
    def write_payloads(self, payloads: list[Payload]) -> Path:
        return self._write(PAYLOADS, {"payloads": [p.to_json() for p in payloads]})

    def read_payloads(self) -> list[Payload]:
        return self._items(PAYLOADS, "payloads", Payload.from_json)

    # signatures
    def write_signed(self, signed: list[SignedPayload]) -> Path:
        return self._write(SIGNED, {"signatures": [s.to_json() for s in signed]})

    def read_signed(self) -> list[SignedPayload]:
        return self._items(SIGNED, "signatures", SignedPayload.from_json)

    # stored refs
    def write_stored(self, refs: list[StoredRef]) -> Path:
        return self._write(STORED, {"stored": [r.to_json() for r in refs]})

    def read_stored(self) -> list[StoredRef]:
        return self._items(STORED, "stored", StoredRef.from_json)
