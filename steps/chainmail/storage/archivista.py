"""The ``archivista`` backend: DSSE envelopes uploaded to an Archivista server.

As Chains (through Archivista's Go client) does, each signature is read as a DSSE envelope
and sent as ``POST <storage.archivista.url>/upload`` with ``Content-Type: application/json``
and the envelope re-encoded by Go's ``json.Encoder`` (fields ``payload``, ``payloadType``,
``signatures[{keyid, sig}]``, a trailing newline). A 200 answer carries the envelope's
``gitoid``. Simple-signing image signatures are not envelopes: Chains fails on them, and
chainmail refuses them before uploading anything.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from chainmail._internal.encoding import b64encode, compact_json, load_json, sha256_digest
from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.models import SignedPayload, StoredRef
from chainmail.storage import Backend


def base_url(ctx: Context) -> str:
    """``storage.archivista.url`` checked: required, http(s)."""
    url = ctx.config.get("storage.archivista.url").strip()
    if not url:
        raise ConfigError("storage.archivista.url is not set; the archivista storage backend needs the server URL")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"storage.archivista.url: '{url}' is not an http(s) URL")
    return url


def refuse_simplesigning(ctx: Context) -> None:
    """Archivista takes only DSSE envelopes: OCI simple-signing cannot go there."""
    if "archivista" in ctx.config.storage("oci") and ctx.config.enabled("oci"):
        raise ConfigError("artifacts.oci.storage: archivista stores DSSE envelopes only, and image signatures are "
                          "simplesigning; remove archivista from artifacts.oci.storage")


def _b64_field(value: Any, where: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ValueError(f"{where} is not a base64 string")
    return base64.b64decode(value, validate=True)


def upload_body(item: SignedPayload) -> bytes:
    """The request body Archivista's Go client sends for this signature (``json.Encoder`` of the envelope)."""
    key = item.payload.artifact.full_key
    if not item.payload.wrap:
        raise StorageError(f"archivista storage: {key} is a simplesigning signature, not a DSSE envelope; "
                           "Archivista stores in-toto attestations only")
    try:
        env = load_json(item.signature)
        if not isinstance(env, dict):
            raise ValueError("not an object")
        sigs = []
        for sig in env.get("signatures") or []:
            out: dict[str, Any] = {"keyid": str(sig.get("keyid", "")), "sig": b64encode(_b64_field(sig.get("sig"),
                                                                                               "sig"))}
            cert = _b64_field(sig.get("certificate"), "certificate")
            if cert:
                out["certificate"] = b64encode(cert)
            for name in ("intermediates", "timestamps"):
                if sig.get(name):
                    out[name] = sig[name]
            sigs.append(out)
        doc = {"payload": b64encode(_b64_field(env.get("payload"), "payload")),
               "payloadType": str(env.get("payloadType", "")), "signatures": sigs}
    except (ValueError, TypeError, AttributeError) as exc:
        raise StorageError(f"archivista storage: the signature of {key} is not a DSSE envelope ({exc})") from None
    return compact_json(doc) + b"\n"


class ArchivistaBackend(Backend):
    """Uploads each in-toto attestation's DSSE envelope to Archivista."""

    NAME = "archivista"

    @classmethod
    def preflight(cls, ctx: Context) -> None:
        """Raise :class:`ConfigError` for a bad ``storage.archivista.*`` setting (no network)."""
        base_url(ctx)
        refuse_simplesigning(ctx)

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        from chainmail._internal.http import BadResponseError, TransientError, request

        base = base_url(self.ctx).rstrip("/")
        bodies = [upload_body(item) for item in signed]  # every envelope checked before the first upload
        refs: list[StoredRef] = []
        for item, body in zip(signed, bodies, strict=True):
            key = item.payload.artifact.full_key
            try:
                resp = request("POST", f"{base}/upload", policy=self.ctx.retry, data=body,
                               headers={"Content-Type": "application/json"}, max_bytes=1 << 20)
            except (TransientError, BadResponseError) as exc:
                raise StorageError(f"archivista storage: uploading {key} to {base} failed ({exc})") from None
            if resp.status_code in (401, 403):
                raise StorageError(f"archivista storage: {base} refused the upload of {key} (HTTP {resp.status_code})")
            if resp.status_code != 200:
                text = " ".join(resp.text.split())[:200]
                raise StorageError(f"archivista storage: {base} rejected {key} (HTTP {resp.status_code}: {text})")
            try:
                gitoid = load_json(resp.content)["gitoid"]
                if not isinstance(gitoid, str) or not gitoid:
                    raise ValueError("empty gitoid")
            except (ValueError, KeyError, TypeError):
                raise StorageError(f"archivista storage: {base} answered the upload of {key} "
                                   "without a gitoid") from None
            refs.append(StoredRef(self.NAME, key, f"{base}/download/{gitoid}", sha256_digest(item.signature)))
        return refs

