"""The ``grafeas`` backend: Container Analysis (Grafeas v1) notes and occurrences, over REST.

What Chains writes (``pkg/chains/storage/grafeas``), as the v1 JSON mapping of the same messages:

- an ATTESTATION note ``<noteid>-simplesigning`` (hint: ``storage.grafeas.notehint``) and, per
  image signature, one attestation occurrence on ``resourceUri`` = the image ``repo@sha256:…``;
- a BUILD note ``<noteid>-<taskrun|pipelinerun>-intoto`` (``builderVersion`` = the run's
  ``group/version/Kind``) and, per attestation subject ``name@alg:hex``, one build occurrence
  holding the statement converted to Grafeas' ``InTotoStatement`` (SLSA v0.2 predicate);
- every occurrence carries an envelope of the raw payload with the signature bytes as they came
  from the signer, and ``keyid`` = ``signers.kms.kmsref``.

``storage.grafeas.noteid`` defaults to ``tekton-<namespace>``; a note that already exists
(HTTP 409) is fine. Unlike Chains, which cannot store SLSA 1.0 (tektoncd/chains#889), an SLSA
v1 statement goes to the build occurrence's ``inTotoSlsaProvenanceV1``. The endpoint is
``https://containeranalysis.googleapis.com`` with application-default credentials (``google-auth``,
extra ``grafeas``); ``CHAINMAIL_GRAFEAS_ENDPOINT`` names another Grafeas server, and an
``http://`` one is called without credentials (a self-hosted Grafeas has no auth).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from chainmail._internal.encoding import b64encode, load_json, sha256_digest
from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE, SignedPayload, StoredRef
from chainmail.storage import Backend

log = logging.getLogger("chainmail.storage.grafeas")

ENDPOINT = "https://containeranalysis.googleapis.com"
ENDPOINT_ENV = "CHAINMAIL_GRAFEAS_ENDPOINT"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def _drop_empty(doc: dict[str, Any]) -> dict[str, Any]:
    """protojson leaves out unset fields: empty strings, lists, maps and absent messages."""
    return {k: v for k, v in doc.items() if v not in (None, "", [], {}) or k == "completeness"}


def _timestamp(value: Any) -> str | None:
    """An RFC 3339 time as protojson writes a Timestamp: UTC, ``Z``, 0/3/6/9 fractional digits."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        raise StorageError(f"grafeas storage: '{value}' is not an RFC 3339 time") from None
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    micros = when.microsecond
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def _struct(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StorageError("grafeas storage: a Struct field of the provenance is not a JSON object")
    return value


def slsa_zero_two(predicate: dict[str, Any]) -> dict[str, Any]:
    """Grafeas' ``SlsaProvenanceZeroTwo`` for an SLSA v0.2 predicate (grafeas' intoto converter)."""
    inv = predicate.get("invocation") or {}
    src = inv.get("configSource") or {}
    meta = predicate.get("metadata")
    out = {
        "builder": _drop_empty({"id": (predicate.get("builder") or {}).get("id", "")}),
        "buildType": predicate.get("buildType", ""),
        "invocation": _drop_empty({
            "configSource": _drop_empty({"uri": src.get("uri", ""), "digest": src.get("digest") or {},
                                         "entryPoint": src.get("entryPoint", "")}),
            "parameters": _struct(inv.get("parameters")),
            "environment": _struct(inv.get("environment")),
        }),
        "buildConfig": _struct(predicate.get("buildConfig")),
        "materials": [_drop_empty({"uri": m.get("uri", ""), "digest": m.get("digest") or {}})
                      for m in predicate.get("materials") or []],
    }
    if meta is not None:
        comp = meta.get("completeness") or {}
        out["metadata"] = _drop_empty({
            "buildInvocationId": meta.get("buildInvocationId", ""),
            "buildStartedOn": _timestamp(meta.get("buildStartedOn")),
            "buildFinishedOn": _timestamp(meta.get("buildFinishedOn")),
            "completeness": {k: True for k in ("parameters", "environment", "materials") if comp.get(k)},
            "reproducible": bool(meta.get("reproducible")) or None,
        })
    return _drop_empty(out)


def subjects_of(statement: dict[str, Any]) -> list[dict[str, Any]]:
    return [_drop_empty({"name": s.get("name", ""), "digest": s.get("digest") or {}})
            for s in statement.get("subject") or []]


def build_details(statement: dict[str, Any]) -> dict[str, Any]:
    """The ``build`` details of an occurrence for an in-toto statement."""
    head = {"_type": statement.get("_type", ""), "subject": subjects_of(statement),
            "predicateType": statement.get("predicateType", "")}
    predicate = statement.get("predicate") or {}
    if statement.get("predicateType") == SLSA_V1:
        keep = ("buildDefinition", "runDetails")
        return {"inTotoSlsaProvenanceV1": _drop_empty({**head, "predicate": {k: predicate[k] for k in keep
                                                                              if k in predicate}})}
    return {"intotoStatement": _drop_empty({**head, "slsaProvenanceZeroTwo": slsa_zero_two(predicate)})}


def artifact_uris(statement: dict[str, Any]) -> list[str]:
    """``name@alg:hex`` for each subject digest (Chains' ``RetrieveAllArtifactURIs``)."""
    return sorted({f"{s.get('name', '')}@{alg}:{hexd}" for s in statement.get("subject") or []
                   for alg, hexd in (s.get("digest") or {}).items()})


class GrafeasBackend(Backend):
    """Creates Chains' notes and occurrences in a Grafeas / Container Analysis project."""

    NAME = "grafeas"

    @classmethod
    def preflight(cls, ctx: Context) -> None:
        """Raise :class:`ConfigError` when ``storage.grafeas.projectid`` is missing (no network)."""
        cls._project(ctx)

    @staticmethod
    def _project(ctx: Context) -> str:
        project = ctx.config.get("storage.grafeas.projectid").strip()
        if not project:
            raise ConfigError("storage.grafeas.projectid is not set; the grafeas storage backend needs a project")
        return project

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        project = self._project(self.ctx)
        configured = self.ctx.config.get("storage.grafeas.noteid").strip()
        kms = self.ctx.config.get("signers.kms.kmsref")
        plans = [self._plan(item, project, configured or f"tekton-{item.payload.artifact.owner.namespace}", kms)
                 for item in signed]  # every payload converted before the first call
        refs: list[StoredRef] = []
        created: list[str] = []
        try:
            for item, (note, occurrences) in zip(signed, plans, strict=True):
                self._create_note(project, *note)
                for occ in occurrences:
                    name = self._post(f"/v1/projects/{project}/occurrences", occ, "creating an occurrence").get("name")
                    if name:
                        created.append(str(name))
                location = created[-1] if len(occurrences) == 1 and created else f"projects/{project}/notes/{note[0]}"
                refs.append(StoredRef(self.NAME, item.payload.artifact.full_key, location,
                                      sha256_digest(item.signature)))
        except StorageError:
            self._rollback(created)
            raise
        return refs

    def _rollback(self, names: list[str]) -> None:
        """Delete the occurrences this store created (best effort; notes are shared and stay)."""
        from chainmail._internal.http import RetryPolicy, request

        base = self._base()
        for name in names:
            try:
                resp = request("DELETE", f"{base}/v1/{name}", policy=RetryPolicy(deadline=5.0),
                               headers=self._auth(base))
                if resp.status_code not in (200, 404):
                    log.warning("grafeas storage: could not delete %s (HTTP %s)", name, resp.status_code)
            except Exception as exc:  # report and keep cleaning
                log.warning("grafeas storage: could not delete %s: %s", name, type(exc).__name__)

    @staticmethod
    def _base() -> str:
        return os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/") or ENDPOINT

    def _plan(self, item: SignedPayload, project: str, note_id: str,
              kms: str) -> tuple[tuple[str, dict[str, Any]], list[dict[str, Any]]]:
        payload = item.payload
        envelope_sig = [_drop_empty({"sig": b64encode(item.signature), "keyid": kms})]
        if payload.payload_type == SIMPLESIGNING_PAYLOAD_TYPE and not payload.wrap:
            nid = f"{note_id}-simplesigning"
            note = {"shortDescription": "OCI Artifact Attestation Note",
                    "attestation": {"hint": {"humanReadableName": self.ctx.config.get("storage.grafeas.notehint")}}}
            occ = {"resourceUri": payload.artifact.full_key, "noteName": f"projects/{project}/notes/{nid}",
                   "attestation": {"serializedPayload": b64encode(payload.body),
                                   "signatures": [_drop_empty({"signature": b64encode(item.signature),
                                                               "publicKeyId": kms})]},
                   "envelope": {"payload": b64encode(payload.body), "payloadType": SIMPLESIGNING_PAYLOAD_TYPE,
                                "signatures": envelope_sig}}
            return (nid, note), [occ]
        if not payload.wrap:
            raise StorageError(f"grafeas storage: {payload.artifact.full_key} is {payload.format}; Grafeas takes "
                               "simplesigning and in-toto payloads only")
        try:
            statement = load_json(payload.body)
        except ValueError:
            raise StorageError(f"grafeas storage: the payload of {payload.artifact.full_key} is not JSON") from None
        owner = payload.artifact.owner
        nid = f"{note_id}-{owner.kind.lower()}-intoto"
        note = {"shortDescription": "Build Provenance Note for TaskRun",
                "build": {"builderVersion": f"tekton.dev/v1/{owner.kind}"}}
        details = build_details(statement)
        occs = [{"resourceUri": uri, "noteName": f"projects/{project}/notes/{nid}", "build": details,
                 "envelope": {"payload": b64encode(payload.body), "payloadType": INTOTO_PAYLOAD_TYPE,
                              "signatures": envelope_sig}}
                for uri in artifact_uris(statement)]
        return (nid, note), occs

    def _create_note(self, project: str, note_id: str, note: dict[str, Any]) -> None:
        self._post(f"/v1/projects/{project}/notes?noteId={quote(note_id, safe='')}", note, "creating a note",
                   exists_ok=True)

    def _post(self, path: str, body: dict[str, Any], what: str, *, exists_ok: bool = False) -> dict[str, Any]:
        from chainmail._internal.http import BadResponseError, TransientError, request

        base = self._base()
        headers = {"Content-Type": "application/json", **self._auth(base)}
        try:
            resp = request("POST", base + path, policy=self.ctx.retry, json=body, headers=headers)
        except (TransientError, BadResponseError) as exc:
            raise StorageError(f"grafeas storage: {what} at {base} failed ({exc})") from None
        if resp.status_code == 409 and exists_ok:
            return {}
        if resp.status_code in (401, 403):
            raise StorageError(f"grafeas storage: {base} refused the credentials while {what} "
                               f"(HTTP {resp.status_code}: {_message(resp.content)})")
        if resp.status_code != 200:
            raise StorageError(f"grafeas storage: {what} at {base} failed (HTTP {resp.status_code}: "
                               f"{_message(resp.content)})")
        try:
            doc = load_json(resp.content)
        except ValueError:
            raise StorageError(f"grafeas storage: {base} answered {what} with something that is not JSON") from None
        return doc if isinstance(doc, dict) else {}

    def _auth(self, base: str) -> dict[str, str]:
        if base.startswith("http://"):
            return {}
        creds = self.ctx.cache.get("grafeas.credentials")
        try:
            import google.auth
            import google.auth.transport.requests
            from google.auth.exceptions import GoogleAuthError
        except ImportError:
            raise ConfigError("the grafeas storage backend needs google-auth: "
                              "pip install 'chainmail[grafeas]'") from None
        try:
            if creds is None:
                creds, _ = google.auth.default(scopes=[SCOPE])
                self.ctx.cache["grafeas.credentials"] = creds
            if not creds.valid:
                creds.refresh(google.auth.transport.requests.Request())
        except GoogleAuthError as exc:
            raise StorageError(f"grafeas storage: no usable application-default credentials "
                               f"({type(exc).__name__})") from None
        return {"Authorization": f"Bearer {creds.token}"}


def _message(body: bytes) -> str:
    """Google's error JSON ``{"error": {"message": …}}``, else the start of the body, on one line."""
    try:
        doc = load_json(body)
        text = str(doc["error"]["message"])
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode("utf-8", "replace")
    return " ".join(text.split())[:200]
