"""``verify run`` for runs signed with ``chainmail.storage.tekton.mode: refs``.

Such a run carries, per short key ``K``, no payload or signature but ``chainmail.dev/payload-digest-K``,
``chainmail.dev/signature-digest-K`` (``sha256:<hex>``) and ``chainmail.dev/stored-K``: where the other
backends put them (:mod:`chainmail.storage.tekton`). Each reference this configuration can read is fetched —
``file`` (the file store exists: the run's own path), ``gcs`` (``storage.gcs.bucket`` is set: the run's own
prefix), ``oci`` (the ``.sig``/``.att`` manifest named, else its tag), ``docdb`` (``storage.docdb.url`` is a
``dynamodb://`` table keyed by ``Name``) — and must match both digests and verify like a run annotation
(:func:`~chainmail.verify.stored.verify_stored`); the binding to the run is then checked by
:func:`~chainmail.verify.runs.verify_run` as for any other signature. A reference outside the run's own path,
prefix, tags or document is refused rather than read.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chainmail import annotations as ann
from chainmail._internal.encoding import b64decode, load_json
from chainmail.errors import Error, VerificationError
from chainmail.models import RunRef
from chainmail.verify.model import Verified
from chainmail.verify.stored import verify_stored

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.verify.keys import Key
    from chainmail.verify.runs import Entry, RunObject

log = logging.getLogger("chainmail.verify")

#: At most this many locations per artifact are read (one per backend, one per image for ``oci``); the rest
#: are skipped, which is safe: only what is read and verified counts.
MAX_POINTERS = 32
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
#: ``(payload, signature, cert)`` as one backend holds them.
Fetched = tuple[bytes, bytes, str]
Fetcher = Callable[["RunObject", str, str, "Context"], Fetched]


class RefsReader:
    """``verify_run``'s reader for runs read from their annotations: the refs-mode references among them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(self, run: RunObject, keys: list[Key]) -> list[Entry]:
        return ref_entries(run, keys, self.ctx)


def ref_entries(run: RunObject, keys: list[Key], ctx: Context) -> list[Entry]:
    """One entry per refs-mode ``chainmail.dev/stored-<key>`` annotation on ``run``."""
    return [(short, f"{run.ref} {ann.stored_key(short)}", functools.partial(verify_reference, run, short, keys, ctx))
            for short in ann.stored_short_keys(run.annotations)]


def verify_reference(run: RunObject, short: str, keys: list[Key], ctx: Context) -> Verified:
    """Fetch every readable copy ``stored-<short>`` names; each must match the digests and verify."""
    want_payload = _digest(run.annotations, ann.payload_digest_key(short))
    want_signature = _digest(run.annotations, ann.signature_digest_key(short))
    pointers = _pointers(run.annotations, short)
    readable = [(b, loc) for b, loc in pointers if readable_here(b, ctx)]
    if not readable:
        names = ", ".join(sorted({b for b, _ in pointers})) or "none"
        raise VerificationError(f"{ann.stored_key(short)} names no backend this configuration can read back "
                                f"({names}); verify reads oci, gcs (storage.gcs.bucket), file (the file store) and "
                                "docdb (a dynamodb:// storage.docdb.url)")
    verified: list[Verified] = []
    for backend, location in readable:
        where = f"{backend} {location}"
        try:
            payload, signature, cert = FETCHERS[backend](run, short, location, ctx)
        except Error as exc:
            raise VerificationError(f"cannot read {where}: {exc}") from None
        for what, data, want in (("payload", payload, want_payload), ("signature", signature, want_signature)):
            got = "sha256:" + hashlib.sha256(data).hexdigest()
            if got != want:
                raise VerificationError(f"the {what} in {where} has digest {got}, not the annotated {want}")
        verified.append(verify_stored(keys, payload, signature, run.ref, "refs", where, cert))
    return verified[0]


def readable_here(backend: str, ctx: Context) -> bool:
    """Whether this configuration can read ``backend`` back (others are skipped, not failed)."""
    from chainmail.store_session import file_store_dir

    config = ctx.config
    return {"oci": True,
            "gcs": bool(config.get("storage.gcs.bucket").strip()),
            "file": file_store_dir(ctx).is_dir(),
            "docdb": config.get("storage.docdb.url").strip().startswith("dynamodb://")}.get(backend, False)


def _digest(annotations: dict[str, Any], key: str) -> str:
    value = annotations.get(key)
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise VerificationError(f"no sha256 digest in annotation {key}")
    return value


def _pointers(annotations: dict[str, Any], short: str) -> list[tuple[str, str]]:
    key = ann.stored_key(short)
    try:
        doc = load_json(str(annotations.get(key, "")))
    except ValueError:
        raise VerificationError(f"annotation {key} is not JSON") from None
    if not isinstance(doc, list) or not all(
            isinstance(p, dict) and isinstance(p.get("backend"), str) and isinstance(p.get("location"), str)
            for p in doc):
        raise VerificationError(f"annotation {key}: expected a list of {{backend, location}}")
    pointers = list(dict.fromkeys((p["backend"], p["location"]) for p in doc))
    if len(pointers) > MAX_POINTERS:
        log.info("annotation %s names %d locations; the first %d are read", key, len(pointers), MAX_POINTERS)
    return pointers[:MAX_POINTERS]


def _run_ref(run: RunObject) -> RunRef:
    return RunRef("TaskRun" if run.kind == "TaskRun" else "PipelineRun", run.namespace, run.name, run.uid)


def _expect(location: str, wanted: str) -> None:
    if location != wanted:
        raise VerificationError(f"it points to {location!r}, not to this run's own {wanted!r}")


def fetch_file(run: RunObject, short: str, location: str, ctx: Context) -> Fetched:
    """The ``file`` store's ``<run dir>/<short>.{payload,signature,cert}``."""
    from chainmail._internal.files import confined
    from chainmail.store_session import file_store_dir, run_dir_name

    directory = run_dir_name(_run_ref(run))
    _expect(location, f"{directory}/{short}.signature")
    root = file_store_dir(ctx)
    try:
        raw = confined(root, directory, f"{short}.signature").read_bytes()
        payload = confined(root, directory, f"{short}.payload").read_bytes()
        cert_path = confined(root, directory, f"{short}.cert")
        cert = cert_path.read_text(errors="replace") if cert_path.is_file() else ""
    except OSError as exc:
        raise VerificationError(f"{exc.strerror or exc} under {root}") from None
    if raw.lstrip()[:1] == b"{":
        return payload, raw, cert
    try:
        return payload, b64decode(raw.decode(errors="replace")), cert
    except ValueError:
        raise VerificationError(f"{short}.signature is not base64") from None


def fetch_gcs(run: RunObject, short: str, location: str, ctx: Context) -> Fetched:
    """``gs://<storage.gcs.bucket>/<kind>-<ns>-<name>/<short>.*``."""
    from chainmail.storage.gcs import read_signatures, run_prefix

    ref = _run_ref(run)
    bucket = ctx.config.get("storage.gcs.bucket").strip()
    _expect(location, f"gs://{bucket}/{run_prefix(ref)}/{short}.signature")
    stored = read_signatures(ref, ctx).get(short)
    if stored is None:
        raise VerificationError(f"no {short}.payload and .signature under gs://{bucket}/{run_prefix(ref)}/")
    return stored.payload, stored.signature, stored.cert


def fetch_oci(run: RunObject, short: str, location: str, ctx: Context) -> Fetched:
    """The layer of the ``.sig``/``.att`` manifest whose blob is the signed envelope or payload."""
    from chainmail._internal.registry import Reference

    ref = Reference.parse(location)
    if not (ref.tag.startswith("sha256-") and ref.tag.endswith((".sig", ".att")) and ref.digest):
        raise VerificationError(f"{location!r} is not a .sig/.att manifest pinned by digest")
    client = ctx.registry
    # Appending a layer (the PipelineRun's after its children's) re-tags: the named manifest may be gone.
    got = client.get_manifest(ref.with_digest(ref.digest)) or client.get_manifest(ref.with_tag(ref.tag))
    if got is None:
        raise VerificationError(f"neither {location} nor its tag exists")
    manifest = load_json(got[0])
    want_signature = _digest(run.annotations, ann.signature_digest_key(short))
    want_payload = _digest(run.annotations, ann.payload_digest_key(short))
    for layer in manifest.get("layers") or []:
        notes = layer.get("annotations") or {}
        cert = str(notes.get("dev.sigstore.cosign/certificate") or "")
        if ref.tag.endswith(".att") and layer.get("digest") == want_signature:
            envelope = client.get_blob(ref, want_signature)
            return b64decode(str(load_json(envelope).get("payload") or "")), envelope, cert
        if ref.tag.endswith(".sig") and layer.get("digest") == want_payload:
            signature = b64decode(str(notes.get("dev.cosignproject.cosign/signature") or ""))
            return client.get_blob(ref, want_payload), signature, cert
    raise VerificationError(f"no layer of {ref.name}:{ref.tag} holds this signature")


def fetch_docdb(run: RunObject, short: str, location: str, ctx: Context) -> Fetched:
    """The ``SignedDocument`` named ``short`` in ``storage.docdb.url`` (``dynamodb://`` tables keyed by Name)."""
    from chainmail.storage.docdb import DocdbUrl

    url = DocdbUrl(ctx.config.get("storage.docdb.url"))
    if url.scheme != "dynamodb":
        raise VerificationError(f"reading {url.scheme}:// documents back is not supported; only dynamodb://")
    from chainmail.storage import docdb_dynamodb

    _expect(location, f"dynamodb://{url.host}#{short}")
    doc = docdb_dynamodb.get(url, short, ctx)
    if doc is None:
        raise VerificationError(f"no document {short} in DynamoDB table '{url.host}'")
    try:
        signature = b64decode(str(doc["Signature"]))
    except ValueError:
        raise VerificationError(f"document {short}: Signature is not base64") from None
    return bytes(doc["Signed"]), signature, str(doc["Cert"])


FETCHERS: dict[str, Fetcher] = {"file": fetch_file, "gcs": fetch_gcs, "oci": fetch_oci, "docdb": fetch_docdb}
