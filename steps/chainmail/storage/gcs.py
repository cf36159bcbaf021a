"""The ``gcs`` backend: Chains' object layout in a Google Cloud Storage bucket.

For an artifact with short key ``K`` owned by run ``<kind>/<ns>/<name>``, the bucket
``storage.gcs.bucket`` gets (Chains' ``pkg/chains/storage/gcs`` names and bytes)::

    <taskrun|pipelinerun>-<ns>-<name>/K.payload     the raw payload
                                      K.signature   the raw signature (DER) or the DSSE envelope JSON
                                      K.cert        PEM certificate, or empty
                                      K.chain       PEM chain, or empty

Image signatures use the 12-hex key under their TaskRun's prefix. Credentials are
application-default (``google-cloud-storage``, optional extra ``gcs``); with
``STORAGE_EMULATOR_HOST`` set the client talks to that emulator anonymously. The signature
is written last, and a failed store deletes what it wrote, so a reader never finds a
signature without its payload.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import sha256_digest
from chainmail.context import Context
from chainmail.errors import ConfigError, StorageError
from chainmail.models import RunRef, SignedPayload, StoredRef
from chainmail.storage import Backend

if TYPE_CHECKING:
    from google.cloud.storage import Bucket

log = logging.getLogger("chainmail.storage.gcs")

#: Suffixes in write order: the signature last, so it is never there without its payload.
SUFFIXES = ("payload", "cert", "chain", "signature")


@dataclass(frozen=True)
class StoredSignature:
    """What the ``gcs`` backend holds for one short key."""

    payload: bytes
    signature: bytes
    cert: str = ""
    chain: str = ""


def run_prefix(run: RunRef) -> str:
    """``taskrun-<ns>-<name>`` or ``pipelinerun-<ns>-<name>`` (Chains' object prefix)."""
    return f"{run.kind.lower()}-{run.namespace or 'default'}-{run.name}"


def objects_for(item: SignedPayload) -> list[tuple[str, bytes]]:
    """The ``(object name, content)`` pairs Chains writes for one signed payload, signature last."""
    art = item.payload.artifact
    base = f"{run_prefix(art.owner)}/{art.short_key}"
    content = {
        "payload": item.payload.body,
        "cert": item.cert.encode(),
        "chain": item.chain.encode(),
        "signature": item.signature,
    }
    return [(f"{base}.{suffix}", content[suffix]) for suffix in SUFFIXES]


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split("\n")[0].split())[:300]


def storage_error(exc: BaseException, bucket: str, what: str) -> StorageError:
    """Map a google-cloud-storage / google-auth exception to a one-line :class:`StorageError`."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    if isinstance(exc, gexc.NotFound):
        return StorageError(f"gcs storage: bucket '{bucket}' does not exist (while {what})",
                            hint="create the bucket or fix storage.gcs.bucket")
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
        return StorageError(f"gcs storage: bucket '{bucket}' refused the credentials while {what} "
                            f"(HTTP {exc.code}: {_first_line(exc)})",
                            hint="check the application-default credentials and their role on the bucket")
    if isinstance(exc, aexc.DefaultCredentialsError):
        return StorageError("gcs storage: no application-default credentials found",
                            hint="set GOOGLE_APPLICATION_CREDENTIALS or run on a workload with a Google identity")
    if isinstance(exc, aexc.RefreshError):
        return StorageError(f"gcs storage: the credentials were refused while {what} ({_first_line(exc)})")
    if isinstance(exc, gexc.GoogleAPICallError):
        return StorageError(f"gcs storage: {what} in bucket '{bucket}' failed (HTTP {exc.code}: {_first_line(exc)})")
    return StorageError(f"gcs storage: {what} in bucket '{bucket}' failed ({type(exc).__name__}: {_first_line(exc)})")


def _bucket_name(ctx: Context) -> str:
    name = ctx.config.get("storage.gcs.bucket").strip()
    if not name:
        raise ConfigError("storage.gcs.bucket is not set; the gcs storage backend needs a bucket name")
    return name


def bucket(ctx: Context) -> Bucket:
    """The configured bucket handle (one client per process, application-default credentials)."""
    name = _bucket_name(ctx)
    client = ctx.cache.get("gcs.client")
    if client is None:
        try:
            storage = importlib.import_module("google.cloud.storage")
        except ImportError:
            raise ConfigError("the gcs storage backend needs google-cloud-storage: "
                              "pip install 'chainmail[gcs]'") from None
        try:
            client = storage.Client()
        except Exception as exc:  # google-auth raises several unrelated types here
            raise storage_error(exc, name, "creating the client") from None
        ctx.cache["gcs.client"] = client
    return client.bucket(name)


def _retry(ctx: Context) -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(float(ctx.retry.deadline))


class GcsBackend(Backend):
    """Writes Chains' ``.payload``/``.signature``/``.cert``/``.chain`` objects to a bucket."""

    NAME = "gcs"

    @classmethod
    def preflight(cls, ctx: Context) -> None:
        """Raise :class:`ConfigError` when ``storage.gcs.bucket`` is missing (no network)."""
        _bucket_name(ctx)

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        bkt = bucket(self.ctx)
        retry = _retry(self.ctx)
        written: list[str] = []
        refs: list[StoredRef] = []
        try:
            for item in signed:
                for name, content in objects_for(item):
                    try:
                        bkt.blob(name).upload_from_string(content, content_type="application/octet-stream",
                                                          retry=retry)
                    except Exception as exc:
                        raise storage_error(exc, bkt.name, f"writing {name}") from None
                    written.append(name)
                refs.append(StoredRef(self.NAME, item.payload.artifact.full_key, f"gs://{bkt.name}/{name}",
                                      sha256_digest(item.signature)))
        except StorageError:
            self._rollback(bkt, written)
            raise
        return refs

    def _rollback(self, bkt: Bucket, names: list[str]) -> None:
        """Delete what this store wrote, signatures first (best effort: the store already failed)."""
        for name in sorted(names, key=lambda n: not n.endswith(".signature")):
            try:
                bkt.blob(name).delete()
            except Exception as exc:  # report and keep cleaning
                log.warning("gcs storage: could not delete %s after a failed store: %s", name, _first_line(exc))


def read_signatures(target: RunRef | str, ctx: Context) -> dict[str, StoredSignature]:
    """What the bucket holds for a run (every short key under its prefix) or an image.

    ``target`` is a :class:`RunRef`, or an image reference ``repo@sha256:<hex>`` (its
    signatures sit under the owning TaskRun's prefix, which is found by listing the bucket).
    Short keys without both a ``.signature`` and a ``.payload`` are left out.
    """
    bkt = bucket(ctx)
    if isinstance(target, RunRef):
        prefix, wanted = run_prefix(target) + "/", None
    else:
        _, sep, digest = target.partition("@sha256:")
        if not sep or len(digest) < 12:
            raise ConfigError(f"gcs storage: '{target}' is not an image reference with a sha256 digest")
        prefix, wanted = None, digest[:12]
    found: dict[str, dict[str, bytes]] = {}
    try:
        for blob in bkt.client.list_blobs(bkt, prefix=prefix, retry=_retry(ctx)):
            short, dot, suffix = blob.name.rpartition("/")[2].rpartition(".")
            if not dot or suffix not in SUFFIXES or (wanted is not None and short != wanted):
                continue
            found.setdefault(short, {})[suffix] = blob.download_as_bytes(retry=_retry(ctx))
    except StorageError:
        raise
    except Exception as exc:
        raise storage_error(exc, bkt.name, f"reading {prefix or wanted}") from None
    return {
        short: StoredSignature(parts["payload"], parts["signature"], parts.get("cert", b"").decode(),
                               parts.get("chain", b"").decode())
        for short, parts in found.items()
        if "payload" in parts and "signature" in parts
    }
