"""A Rekor v1 log entry as the API returns it, parsed into a typed :class:`LogEntry`.

Example::

    entry = LogEntry.from_response(response_json)      # {"<uuid>": {body, integratedTime, …}}
    entry.kind, entry.spec                              # "hashedrekord", {"data": …, "signature": …}
    entry.cosign_bundle()                               # dev.sigstore.cosign/bundle annotation value
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import TransparencyError


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TransparencyError(f"Rekor entry: '{what}' is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TransparencyError(f"Rekor entry: '{what}' is not valid base64") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TransparencyError(f"Rekor entry: '{what}' is missing or not a non-negative integer")
    return value


def _hex(value: Any, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise TransparencyError(f"Rekor entry: '{what}' is not hex") from None


@dataclass(frozen=True)
class InclusionProof:
    """RFC 6962 audit path of the entry in one log shard, with the shard's signed checkpoint."""

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str = ""

    @classmethod
    def from_json(cls, doc: Any) -> InclusionProof:
        if not isinstance(doc, dict):
            raise TransparencyError("Rekor entry: 'inclusionProof' is not an object")
        hashes = doc.get("hashes") or []
        if not isinstance(hashes, list):
            raise TransparencyError("Rekor entry: 'inclusionProof.hashes' is not a list")
        checkpoint = doc.get("checkpoint") or ""
        if not isinstance(checkpoint, str):
            raise TransparencyError("Rekor entry: 'inclusionProof.checkpoint' is not a string")
        return cls(
            _int(doc.get("logIndex"), "inclusionProof.logIndex"),
            _int(doc.get("treeSize"), "inclusionProof.treeSize"),
            _hex(doc.get("rootHash"), "inclusionProof.rootHash"),
            tuple(_hex(h, "inclusionProof.hashes") for h in hashes),
            checkpoint,
        )

    def to_json(self) -> dict[str, Any]:
        return {"logIndex": self.log_index, "treeSize": self.tree_size, "rootHash": self.root_hash.hex(),
                "hashes": [h.hex() for h in self.hashes], "checkpoint": self.checkpoint}


@dataclass(frozen=True)
class LogEntry:
    """One transparency log entry (Rekor v1 API shape), not yet verified."""

    uuid: str
    #: The canonicalized entry exactly as logged (the bytes the SET and the leaf hash cover).
    body: bytes
    integrated_time: int
    #: Hex sha256 of the log's public key (SPKI DER).
    log_id: str
    log_index: int
    #: The Signed Entry Timestamp (DER signature by the log key); empty when the log sent none.
    set: bytes = b""
    proof: InclusionProof | None = None
    #: ``attestation.data`` (base64) when the log stored an attestation (intoto entries only).
    attestation: str = ""

    @classmethod
    def from_response(cls, doc: Any) -> LogEntry:
        """Parse ``{"<uuid>": {...}}`` (one entry); raises :class:`TransparencyError`."""
        if not isinstance(doc, dict) or len(doc) != 1:
            raise TransparencyError("Rekor returned an unexpected response: expected one entry keyed by its UUID")
        ((uuid, item),) = doc.items()
        if not isinstance(item, dict):
            raise TransparencyError(f"Rekor entry {uuid}: not an object")
        verification = item.get("verification") or {}
        if not isinstance(verification, dict):
            raise TransparencyError(f"Rekor entry {uuid}: 'verification' is not an object")
        proof = verification.get("inclusionProof")
        set_ = verification.get("signedEntryTimestamp")
        log_id = item.get("logID")
        _hex(log_id, "logID")
        attestation = (item.get("attestation") or {}).get("data") if isinstance(item.get("attestation"), dict) else ""
        return cls(
            uuid=str(uuid),
            body=_b64(item.get("body"), "body"),
            integrated_time=_int(item.get("integratedTime"), "integratedTime"),
            log_id=str(log_id).lower(),
            log_index=_int(item.get("logIndex"), "logIndex"),
            set=_b64(set_, "verification.signedEntryTimestamp") if set_ else b"",
            proof=InclusionProof.from_json(proof) if proof else None,
            attestation=attestation if isinstance(attestation, str) else "",
        )

    @property
    def body_json(self) -> dict[str, Any]:
        """The decoded body: ``{"apiVersion", "kind", "spec"}``."""
        try:
            doc = load_json(self.body)
        except ValueError:
            raise TransparencyError(f"Rekor entry {self.uuid}: the body is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
            raise TransparencyError(f"Rekor entry {self.uuid}: the body has no spec")
        return doc

    @property
    def kind(self) -> str:
        return str(self.body_json.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.body_json.get("apiVersion", ""))

    @property
    def spec(self) -> dict[str, Any]:
        return self.body_json["spec"]

    def to_json(self) -> dict[str, Any]:
        """The Rekor v1 response shape again (``{"<uuid>": {...}}``)."""
        item: dict[str, Any] = {
            "body": base64.b64encode(self.body).decode(),
            "integratedTime": self.integrated_time,
            "logID": self.log_id,
            "logIndex": self.log_index,
            "verification": {},
        }
        if self.set:
            item["verification"]["signedEntryTimestamp"] = base64.b64encode(self.set).decode()
        if self.proof is not None:
            item["verification"]["inclusionProof"] = self.proof.to_json()
        if self.attestation:
            item["attestation"] = {"data": self.attestation}
        return {self.uuid: item}

    def set_payload(self) -> dict[str, Any]:
        """What the SET signs (before RFC 8785 canonicalization)."""
        return {"body": base64.b64encode(self.body).decode(), "integratedTime": self.integrated_time,
                "logID": self.log_id, "logIndex": self.log_index}

    def cosign_bundle(self) -> dict[str, Any]:
        """cosign's ``dev.sigstore.cosign/bundle`` annotation (Go field names, no JSON tags)."""
        payload = self.set_payload()
        return {
            "SignedEntryTimestamp": base64.b64encode(self.set).decode(),
            "Payload": {"body": payload["body"], "integratedTime": self.integrated_time,
                        "logIndex": self.log_index, "logID": self.log_id},
        }

    def bundle_tlog_entry(self) -> dict[str, Any]:
        """The entry as a Sigstore bundle ``TransparencyLogEntry`` (protobuf JSON, v0.3 bundles)."""
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        out: dict[str, Any] = {
            "logIndex": str(self.log_index),
            "logId": {"keyId": b64(bytes.fromhex(self.log_id))},
            "kindVersion": {"kind": self.kind, "version": self.api_version},
            "integratedTime": str(self.integrated_time),
        }
        if self.set:
            out["inclusionPromise"] = {"signedEntryTimestamp": b64(self.set)}
        if self.proof is not None:
            out["inclusionProof"] = {
                "logIndex": str(self.proof.log_index),
                "rootHash": b64(self.proof.root_hash),
                "treeSize": str(self.proof.tree_size),
                "hashes": [b64(h) for h in self.proof.hashes],
                "checkpoint": {"envelope": self.proof.checkpoint},
            }
        out["canonicalizedBody"] = b64(self.body)
        return out


#: The Tekton Chains run annotation that records the log entry.
TRANSPARENCY_ANNOTATION = "chains.tekton.dev/transparency"


def transparency_annotation(rekor_url: str, entry: LogEntry) -> str:
    """Chains' ``chains.tekton.dev/transparency`` value: ``<url>/api/v1/log/entries?logIndex=N``."""
    return f"{rekor_url.rstrip('/')}/api/v1/log/entries?logIndex={entry.log_index}"
