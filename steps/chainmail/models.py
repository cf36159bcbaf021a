"""The nouns passed between the five steps, each with ``to_json``/``from_json``.

``RunSnapshot`` (snapshot) → ``Payload`` (format) → ``SignedPayload`` (sign) →
``StoredRef`` (store). The JSON shapes are the workspace contract documented in
``docs/workspace.md``; bytes travel as standard base64.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from chainmail.errors import InputError

ArtifactKind = Literal["taskrun", "pipelinerun", "oci"]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
SIMPLESIGNING_PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise InputError(f"{where}: expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InputError(f"{where}: not valid base64") from None


def _field(doc: dict[str, Any], name: str, where: str, kind: type = str) -> Any:
    if not isinstance(doc, dict) or name not in doc:
        raise InputError(f"{where}: missing field '{name}'")
    value = doc[name]
    if kind is not object and not isinstance(value, kind):
        raise InputError(f"{where}.{name}: expected {kind.__name__}")
    return value


@dataclass(frozen=True)
class RunRef:
    """Which run an artifact belongs to (where its annotations go)."""

    kind: Literal["TaskRun", "PipelineRun"]
    namespace: str
    name: str
    uid: str

    @property
    def plural(self) -> str:
        return "taskruns" if self.kind == "TaskRun" else "pipelineruns"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": self.uid}

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str = "run") -> RunRef:
        kind = _field(doc, "kind", where)
        if kind not in ("TaskRun", "PipelineRun"):
            raise InputError(f"{where}.kind: expected TaskRun or PipelineRun, got '{kind}'")
        return cls(kind, _field(doc, "namespace", where), _field(doc, "name", where), _field(doc, "uid", where))


@dataclass(frozen=True)
class RunSnapshot:
    """A finished run as captured: the object itself plus, for a PipelineRun, its child TaskRuns."""

    run: dict[str, Any]
    task_runs: list[dict[str, Any]] = field(default_factory=list)
    source: str = "file"

    @property
    def kind(self) -> Literal["TaskRun", "PipelineRun"]:
        kind = self.run.get("kind")
        if kind in ("TaskRun", "PipelineRun"):
            return kind  # type: ignore[return-value]
        # Chains' own fixtures omit apiVersion/kind: a pipelineSpec or childReferences means PipelineRun.
        status = self.run.get("status") or {}
        spec = self.run.get("spec") or {}
        if "pipelineSpec" in status or "childReferences" in status or "pipelineRef" in spec or "pipelineSpec" in spec:
            return "PipelineRun"
        return "TaskRun"

    @property
    def metadata(self) -> dict[str, Any]:
        return self.run.get("metadata") or {}

    @property
    def ref(self) -> RunRef:
        md = self.metadata
        return RunRef(self.kind, md.get("namespace", "") or "", md.get("name", "") or "", md.get("uid", "") or "")

    @property
    def resource_version(self) -> str:
        return str(self.metadata.get("resourceVersion", ""))

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "taskRuns": self.task_runs, "source": self.source}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunSnapshot:
        run = _field(doc, "run", "snapshot", dict)
        trs = doc.get("taskRuns") or []
        if not isinstance(trs, list) or not all(isinstance(t, dict) for t in trs):
            raise InputError("snapshot.taskRuns: expected a list of TaskRun objects")
        return cls(run, trs, str(doc.get("source", "file")))


@dataclass(frozen=True)
class Artifact:
    """Something to sign: the run itself or an image it produced (Chains' Signable objects)."""

    kind: ArtifactKind
    full_key: str
    short_key: str
    #: ``namespace/name`` of the run, or ``repo@sha256:<hex>`` of an image.
    ref: str
    owner: RunRef

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fullKey": self.full_key,
            "shortKey": self.short_key,
            "ref": self.ref,
            "owner": self.owner.to_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str = "artifact") -> Artifact:
        kind = _field(doc, "kind", where)
        if kind not in ("taskrun", "pipelinerun", "oci"):
            raise InputError(f"{where}.kind: expected taskrun, pipelinerun or oci, got '{kind}'")
        return cls(
            kind,
            _field(doc, "fullKey", where),
            _field(doc, "shortKey", where),
            _field(doc, "ref", where),
            RunRef.from_json(_field(doc, "owner", where, dict), f"{where}.owner"),
        )


@dataclass(frozen=True)
class Payload:
    """An unsigned payload in one format (Chains' ``Payloader.CreatePayload``)."""

    artifact: Artifact
    format: str
    payload_type: str
    body: bytes
    #: True when the payload is signed inside a DSSE envelope (every in-toto format).
    wrap: bool
    #: ``repo@sha256:<hex>`` for each image subject; the OCI backend attaches the attestation to each.
    subjects: tuple[str, ...] = ()
    #: True for a PipelineRun attestation made while the run was still running (finally task).
    provisional: bool = False

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "artifact": self.artifact.to_json(),
            "format": self.format,
            "payloadType": self.payload_type,
            "body": _b64(self.body),
            "digest": self.digest,
            "wrap": self.wrap,
            "subjects": list(self.subjects),
        }
        if self.provisional:
            doc["provisional"] = True
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str = "payload") -> Payload:
        body = _unb64(_field(doc, "body", where), f"{where}.body")
        out = cls(
            Artifact.from_json(_field(doc, "artifact", where, dict), f"{where}.artifact"),
            _field(doc, "format", where),
            _field(doc, "payloadType", where),
            body,
            bool(_field(doc, "wrap", where, bool)),
            tuple(doc.get("subjects") or ()),
            bool(doc.get("provisional", False)),
        )
        if "digest" in doc and doc["digest"] != out.digest:
            raise InputError(f"{where}.body does not match its digest {doc['digest']}: the file was changed")
        return out


@dataclass(frozen=True)
class SignedPayload:
    """A payload with its signature, as handed to storage (Chains' ``StorageOpts``)."""

    payload: Payload
    #: Raw DER signature, or the DSSE envelope JSON when ``payload.wrap``.
    signature: bytes
    key_id: str
    #: PEM of the public key that verifies ``signature`` (for keyless: the certificate's key).
    public_key: str
    #: Where the key came from, without secrets (e.g. ``k8s://tekton-chains/signing-secrets``).
    signer: str
    cert: str = ""
    chain: str = ""
    #: Transparency log entry (Rekor v1 response for this payload), when uploaded.
    tlog: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "payload": self.payload.to_json(),
            "signature": _b64(self.signature),
            "keyId": self.key_id,
            "publicKey": self.public_key,
            "signer": self.signer,
            "cert": self.cert,
            "chain": self.chain,
        }
        if self.tlog is not None:
            doc["tlog"] = self.tlog
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str = "signed") -> SignedPayload:
        return cls(
            Payload.from_json(_field(doc, "payload", where, dict), f"{where}.payload"),
            _unb64(_field(doc, "signature", where), f"{where}.signature"),
            _field(doc, "keyId", where),
            _field(doc, "publicKey", where),
            _field(doc, "signer", where),
            str(doc.get("cert") or ""),
            str(doc.get("chain") or ""),
            doc.get("tlog"),
        )


@dataclass(frozen=True)
class StoredRef:
    """Where a backend put a signed payload; ``verify`` and Tekton results read these."""

    backend: str
    artifact: str
    #: Annotation key on ``ns/name``, ``repo:tag@sha256:…`` of a signature manifest, or a file path.
    location: str
    digest: str = ""
    #: True when an identical signature was already there and nothing was written.
    existing: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "artifact": self.artifact,
            "location": self.location,
            "digest": self.digest,
            "existing": self.existing,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str = "stored") -> StoredRef:
        return cls(
            _field(doc, "backend", where),
            _field(doc, "artifact", where),
            _field(doc, "location", where),
            str(doc.get("digest", "")),
            bool(doc.get("existing", False)),
        )
