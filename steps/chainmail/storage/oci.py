"""The ``oci`` backend: signatures and attestations in the registry, as Tekton Chains writes them.

``storage.oci.encoding-format: dsse`` (default; cosign's legacy tag layout)::

    <repo>:sha256-<hex>.sig   one layer per image signature, application/vnd.dev.cosign.simplesigning.v1+json:
                              blob = simple-signing payload, dev.cosignproject.cosign/signature = b64 DER
    <repo>:sha256-<hex>.att   one layer per attestation, application/vnd.dsse.envelope.v1+json:
                              blob = DSSE envelope, signature annotation ""; one .att per subject image

Each layer also carries ``dev.sigstore.cosign/certificate`` and ``dev.sigstore.cosign/chain`` (PEM or
``""``), plus ``dev.sigstore.cosign/bundle`` when the payload went to Rekor. Storing appends a layer to
the tag's manifest and rebuilds go-containerregistry's config bytes, so a signature written here has
the same payload layer digest and config bytes as Chains' own. ``storage.oci.repository`` moves both
tags to another repository.

``storage.oci.encoding-format: sigstore-bundle``: one Sigstore bundle v0.3 per payload, pushed by
digest as an OCI 1.1 referrer of the image; on registries without the referrers API (Debian's
registry 2.8) the ``sha256-<hex>`` fallback index tag lists them. Bundles hold a DSSE envelope, so
**the sign step must DSSE-wrap simple-signing payloads** (payloadType
``application/vnd.dev.cosign.simplesigning.v1+json``) when this encoding is selected; a raw DER
signature is rejected here with a clear error.

Concurrency: a tag is read, extended and written back (the registry has no compare-and-swap). Writers
in one process take a lock per tag. Across processes each PUT follows a read of the tag by one round
trip at most (blobs are uploaded before the read, or the tag is re-checked after them; the update starts
over on a change), and every store ends with :func:`settle`: after a short wait sized by the PUT
latency, each written tag is read back and a layer that a concurrent writer dropped is added again.
This narrows the lost-update window to "another writer stalled for longer than the wait between its
last read and its PUT"; it cannot close it without server support. The read-back is kept even for a tag
this process created from nothing: two writers that both found the tag missing both PUT a one-layer
manifest, and only the loser's read-back notices that its layer is gone.

A run's payloads that write disjoint tags (its image's ``.sig`` and ``.att``) are written at the same
time, on a small pool of writer threads; payloads that share a tag are written in turn, in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import b64decode, b64encode, compact_json, load_json, sha256_digest
from chainmail.errors import Error, RegistryAuthError, StorageError
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE, SignedPayload, StoredRef
from chainmail.storage import Backend

if TYPE_CHECKING:
    from chainmail._internal.registry import Reference, RegistryClient

log = logging.getLogger("chainmail.storage.oci")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
SIMPLESIGNING_LAYER = SIMPLESIGNING_PAYLOAD_TYPE
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

ANN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANN_CERT = "dev.sigstore.cosign/certificate"
ANN_CHAIN = "dev.sigstore.cosign/chain"
ANN_REKOR_BUNDLE = "dev.sigstore.cosign/bundle"
ANN_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANN_BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
ANN_CREATED = "org.opencontainers.image.created"

#: Go's zero ``time.Time`` as go-containerregistry writes it.
ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_ATTEMPTS = 12
#: settle(): wait SETTLE_FACTOR × the slowest write, within [SETTLE_MIN, SETTLE_MAX] seconds.
SETTLE_FACTOR = 2.0
SETTLE_MIN = 0.005
SETTLE_MAX = 1.0
SETTLE_ROUNDS = 3

_DESCRIPTOR_ORDER = ("mediaType", "size", "digest", "data", "urls", "annotations", "platform", "artifactType")
_HISTORY_ORDER = ("author", "created", "created_by", "comment", "empty_layer")

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
#: Held while the registry client for a service account is made (see :meth:`OciBackend.client`).
_clients_guard = threading.Lock()
#: Threads that write a run's further tags while its own thread writes the first (keep-alive sessions persist).
WRITER_THREADS = 16
_writers: tuple[int, ThreadPoolExecutor] | None = None
_writers_guard = threading.Lock()


def _writer_pool() -> ThreadPoolExecutor:
    """The process's writer threads (made again in a forked child, which has none of its parent's)."""
    global _writers
    with _writers_guard:
        if _writers is None or _writers[0] != os.getpid():
            _writers = (os.getpid(), ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="oci-write"))
        return _writers[1]


# -- byte-exact documents ---------------------------------------------------------------------------

def signature_tag(image_digest: str, suffix: str) -> str:
    """cosign's tag for an image digest: ``sha256-<hex>.<suffix>`` (or the bare fallback tag if no suffix)."""
    algo, _, hexpart = image_digest.partition(":")
    return f"{algo}-{hexpart}.{suffix}" if suffix else f"{algo}-{hexpart}"


def go_descriptor(desc: dict[str, Any]) -> dict[str, Any]:
    """A descriptor with keys in go-containerregistry's field order and sorted annotations."""
    out = {k: desc[k] for k in _DESCRIPTOR_ORDER if k in desc}
    if "annotations" in out:
        out["annotations"] = dict(sorted(out["annotations"].items()))
    out.update((k, v) for k, v in desc.items() if k not in out)
    return out


def _history_entry(entry: Any) -> dict[str, Any]:
    entry = entry if isinstance(entry, dict) else {}
    out: dict[str, Any] = {}
    for key in _HISTORY_ORDER:
        if key == "created":
            out["created"] = entry.get("created") or ZERO_TIME
        elif entry.get(key):
            out[key] = entry[key]
    return out


def ggcr_config(diff_ids: list[str], base: dict[str, Any] | None = None) -> bytes:
    """Config bytes as go-containerregistry writes them after ``mutate.Append`` of ``diff_ids``.

    With no ``base`` (the empty image) this is
    ``{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":…}×N],"os":"",
    "rootfs":{"type":"layers","diff_ids":[…]},"config":{}}``. With a ``base`` config its fields and
    history are kept and one history entry is added per new diff_id.
    """
    base = base or {}
    old_ids = list(((base.get("rootfs") or {}).get("diff_ids")) or [])
    if old_ids and diff_ids[: len(old_ids)] == old_ids:
        history = [_history_entry(h) for h in base.get("history") or []]
        history += [{"created": ZERO_TIME} for _ in diff_ids[len(old_ids):]]
    else:  # no usable base history: rebuild it, one entry per layer
        history = [{"created": ZERO_TIME} for _ in diff_ids]
    doc: dict[str, Any] = {"architecture": base.get("architecture", "")}
    for key in ("author", "container"):
        if base.get(key):
            doc[key] = base[key]
    doc["created"] = base.get("created") or ZERO_TIME
    if base.get("docker_version"):
        doc["docker_version"] = base["docker_version"]
    doc["history"] = history
    doc["os"] = base.get("os", "")
    doc["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    doc["config"] = base.get("config") if isinstance(base.get("config"), dict) else {}
    for key in ("os.version", "variant", "os.features"):
        if base.get(key):
            doc[key] = base[key]
    return compact_json(doc)


def image_manifest(config: dict[str, Any], layers: list[dict[str, Any]], *, media_type: str = OCI_MANIFEST,
                   annotations: dict[str, str] | None = None, subject: dict[str, Any] | None = None,
                   artifact_type: str = "") -> bytes:
    """Compact manifest bytes in go-containerregistry's field order."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = go_descriptor(config)
    doc["layers"] = [go_descriptor(layer) for layer in layers]
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    if subject:
        doc["subject"] = go_descriptor(subject)
    return compact_json(doc)


def rekor_bundle_annotation(tlog: dict[str, Any] | None) -> str | None:
    """cosign's ``dev.sigstore.cosign/bundle`` value from a Rekor v1 entry, or None."""
    entry = _rekor_entry(tlog)
    if entry is None:
        return None
    set_ = (entry.get("verification") or {}).get("signedEntryTimestamp", "")
    return compact_json({
        "SignedEntryTimestamp": set_,
        "Payload": {"body": entry["body"], "integratedTime": entry["integratedTime"],
                    "logIndex": entry["logIndex"], "logID": entry["logID"]},
    }).decode()


def _rekor_entry(tlog: dict[str, Any] | None) -> dict[str, Any] | None:
    if not tlog or not isinstance(tlog, dict):
        return None
    if "body" in tlog:
        return tlog
    if len(tlog) == 1:
        inner = next(iter(tlog.values()))
        if isinstance(inner, dict) and "body" in inner:
            return inner
    return None


def layer_for(signed: SignedPayload) -> tuple[bytes, str, dict[str, str]]:
    """``(blob, media_type, annotations)`` of the legacy ``.sig``/``.att`` layer for a signed payload."""
    payload = signed.payload
    if payload.payload_type == SIMPLESIGNING_PAYLOAD_TYPE:
        from chainmail.signing.dsse import is_envelope

        if is_envelope(signed.signature):
            raise StorageError(f"{payload.artifact.full_key}: a DSSE-wrapped simple-signing signature cannot "
                               "go in a .sig layer; it needs storage.oci.encoding-format=sigstore-bundle")
        blob, media_type, sig_annotation = payload.body, SIMPLESIGNING_LAYER, b64encode(signed.signature)
    elif payload.wrap:
        blob, media_type, sig_annotation = signed.signature, DSSE_LAYER, ""
    else:
        raise StorageError(f"{payload.artifact.full_key}: payload type {payload.payload_type} is neither "
                           "wrapped in DSSE nor a simple-signing payload; the oci backend cannot store it")
    annotations = {ANN_SIGNATURE: sig_annotation, ANN_CERT: signed.cert, ANN_CHAIN: signed.chain}
    bundle = rekor_bundle_annotation(signed.tlog)
    if bundle is not None:
        annotations[ANN_REKOR_BUNDLE] = bundle
    return blob, media_type, dict(sorted(annotations.items()))


# -- registry writes ---------------------------------------------------------------------------------

@contextmanager
def _tag_lock(ref: Reference, tag: str) -> Iterator[None]:
    key = (ref.name, tag)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0.005, 0.02 * (attempt + 1)))  # noqa: S311 - jitter


def _has_layer(layers: list[dict[str, Any]], digest: str, signature: str) -> bool:
    return any(
        layer.get("digest") == digest and (layer.get("annotations") or {}).get(ANN_SIGNATURE, "") == signature
        for layer in layers
    )


def _base_config(client: RegistryClient, repo: Reference, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The existing config, fetched only when it is not the one go-containerregistry would have made."""
    layers = manifest.get("layers") or []
    cfg = manifest.get("config") or {}
    default = ggcr_config([layer.get("digest", "") for layer in layers])
    if cfg.get("digest") == sha256_digest(default):
        return json.loads(default)
    try:
        doc = load_json(client.get_blob(repo, cfg["digest"]))
    except (KeyError, TypeError, ValueError, StorageError):
        log.warning("config of %s is unreadable; rebuilding it from the layers", repo.name)
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class Written:
    """A tag update made by this process, kept so :func:`settle` can check it a moment later."""

    repo: Reference
    tag: str
    #: The tag's manifest digest after our write (or when we found our item already there).
    digest: str
    #: True when our item was already in the tag and nothing was written.
    existed: bool
    #: Slowest manifest PUT of the write, in seconds (sizes the settle delay).
    latency: float = 0.0
    #: ``time.monotonic()`` when the write finished.
    at: float = field(default_factory=time.monotonic)
    #: Whether a manifest document still holds our item.
    contains: Callable[[dict[str, Any]], bool] = field(default=lambda doc: True, repr=False)
    #: Write the item again (returns the new record).
    redo: Callable[[], Written] | None = field(default=None, repr=False)


#: What a ``build`` callback of :func:`_update_tag` returns: the new document, its media type, and whether
#: building it sent registry requests after the tag was read (then the tag is re-checked before the PUT).
_Built = tuple[bytes, str, bool]


def _update_tag(client: RegistryClient, repo: Reference, tag: str, *, kinds: tuple[str, ...],
                contains: Callable[[dict[str, Any]], bool],
                build: Callable[[dict[str, Any], str], _Built]) -> Written:
    """Optimistic read-modify-write of ``repo:tag``: GET, ``build``, (re-check,) PUT.

    ``kinds`` are the media types an existing manifest may have; ``contains`` says whether a
    document already holds our item (then nothing is written). The PUT must follow a read of the
    tag by one round trip at most, so that another writer's update lands in the gap only if it
    was already on the wire: when ``build`` sent requests (uploads, a config fetch) the tag is
    re-checked with a HEAD just before the PUT and the update starts over when it changed; when
    it sent nothing, the GET itself is that fresh read and a HEAD would only cost a round trip.
    :func:`settle` reads the tag back afterwards either way.
    """
    tag_ref = repo.with_tag(tag)
    with _tag_lock(repo, tag):
        for attempt in range(MAX_ATTEMPTS):
            current = client.get_manifest(tag_ref)
            doc: dict[str, Any] = {}
            media, base_digest = kinds[0], None
            if current is not None:
                raw, media, base_digest = current
                try:
                    doc = load_json(raw)
                except ValueError:
                    raise StorageError(f"{tag_ref}: existing manifest is not JSON") from None
                if media not in kinds or not isinstance(doc, dict):
                    raise StorageError(f"{tag_ref} is a {media}, not a {' or '.join(kinds)}; not changing it")
            if contains(doc):
                return Written(repo, tag, str(base_digest), True, contains=contains)
            raw_new, media, sent = build(doc, media)
            if sent and not _unchanged(client, tag_ref, base_digest):
                log.debug("%s changed while updating it; retrying", tag_ref)
                _pause(attempt)
                continue
            started = time.monotonic()
            digest = client.put_manifest(repo, tag, raw_new, media)
            # read back later, once for the whole store, by settle()
            return Written(repo, tag, digest, False, time.monotonic() - started, contains=contains)
    raise StorageError(f"{tag_ref}: gave up after {MAX_ATTEMPTS} concurrent updates of the tag")


def _unchanged(client: RegistryClient, tag_ref: Reference, base_digest: str | None) -> bool:
    """Whether ``tag_ref`` still points at ``base_digest`` (None: still absent), by one HEAD."""
    now = client.head_manifest(tag_ref)
    return (now[0] if now else None) == base_digest


def append_layer(client: RegistryClient, repo: Reference, tag: str, blob: bytes, media_type: str,
                 annotations: dict[str, str]) -> Written:
    """Add one layer to the image manifest at ``repo:tag`` (created if missing).

    A layer with the same digest and signature annotation is not added twice
    (``Written.existed``). Tuned for the common case, a tag that does not exist yet (a sweep signs
    what is unsigned): the layer blob and the config of a one-layer image are uploaded *before* the
    tag is read, so that a missing tag is followed by the PUT at once, with no re-check (two
    requests per blob, one GET, one PUT). When the tag exists, the config for the merged layers is
    uploaded after the read and the tag re-checked; the one-layer config then stays unreferenced
    (the registry's garbage collection removes it). When the tag already holds our layer, the two
    uploads cost one request each (the registry holds both blobs: the mount answers ``201``).
    """
    from chainmail._internal.registry import descriptor

    layer = {**descriptor(media_type, blob), "annotations": annotations}
    sig = annotations.get(ANN_SIGNATURE, "")
    client.push_blob(repo, blob, media_type)
    fresh_config = client.push_blob(repo, ggcr_config([layer["digest"]]), OCI_CONFIG)

    def contains(doc: dict[str, Any]) -> bool:
        return _has_layer([x for x in doc.get("layers") or [] if isinstance(x, dict)], layer["digest"], sig)

    def build(doc: dict[str, Any], media: str) -> _Built:
        if not doc:
            return image_manifest(fresh_config, [layer], media_type=media), media, False
        layers = [go_descriptor(x) for x in doc.get("layers") or []]
        base = _base_config(client, repo, doc) if layers else None
        config_bytes = ggcr_config([x["digest"] for x in layers] + [layer["digest"]], base)
        config_type = (doc.get("config") or {}).get("mediaType") or (
            DOCKER_CONFIG if media == DOCKER_MANIFEST else OCI_CONFIG)
        config = client.push_blob(repo, config_bytes, config_type)
        raw = image_manifest(config, [*layers, layer], media_type=media, annotations=doc.get("annotations"),
                             subject=doc.get("subject"))
        return raw, media, True

    written = _update_tag(client, repo, tag, kinds=(OCI_MANIFEST, DOCKER_MANIFEST), contains=contains,
                          build=build)
    written.redo = lambda: append_layer(client, repo, tag, blob, media_type, annotations)
    return written


def update_index(client: RegistryClient, repo: Reference, tag: str, entry: dict[str, Any]) -> Written:
    """Add ``entry`` to the OCI image index at ``repo:tag`` (the referrers fallback tag), sorted by digest."""
    entry = go_descriptor(entry)

    def contains(doc: dict[str, Any]) -> bool:
        manifests = doc.get("manifests") or []
        return any(isinstance(m, dict) and m.get("digest") == entry["digest"] for m in manifests)

    def build(doc: dict[str, Any], media: str) -> _Built:
        if doc and not isinstance(doc.get("manifests"), list):
            raise StorageError(f"{repo.name}:{tag} is not an OCI image index; cannot use it as the referrers "
                               "fallback tag")
        manifests = [go_descriptor(m) for m in doc.get("manifests") or [] if isinstance(m, dict)]
        manifests = sorted([*manifests, entry], key=lambda m: str(m.get("digest")))
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        if doc.get("annotations"):
            out["annotations"] = doc["annotations"]
        return compact_json(out), OCI_INDEX, False

    written = _update_tag(client, repo, tag, kinds=(OCI_INDEX,), contains=contains, build=build)
    written.redo = lambda: update_index(client, repo, tag, entry)
    return written


def _read_back(client: RegistryClient, tags: list[Reference]) -> list[tuple[str, str, int] | None]:
    """HEAD every tag, at the same time (the first in this thread, the others on the writer pool)."""
    futures = [_writer_pool().submit(client.head_manifest, tag) for tag in tags[1:]]
    first = client.head_manifest(tags[0]) if tags else None
    return [first, *(f.result() for f in futures)] if tags else []


def settle(client: RegistryClient, writes: list[Written]) -> list[Written]:
    """Check our tag writes again a moment later; write back anything a concurrent writer dropped.

    The registry has no compare-and-swap: a writer in another process that read the tag before
    our PUT can still overwrite it after. So, once per store, read each tag back (HEAD) a few
    times the slowest PUT's latency after the last write (at least ``SETTLE_MIN``, at most
    ``SETTLE_MAX`` seconds, so every write waits at least that long), all tags at once, and re-add
    our item where it is gone; repeat for re-added items, up to ``SETTLE_ROUNDS`` rounds. Returns
    the final record of every write.
    """
    final = list(writes)
    pending = [(i, w) for i, w in enumerate(writes) if not w.existed]
    for _round in range(SETTLE_ROUNDS):
        if not pending:
            break
        wait = min(SETTLE_MAX, max(SETTLE_MIN, SETTLE_FACTOR * max(w.latency for _, w in pending)))
        delay = max(w.at for _, w in pending) + wait - time.monotonic()
        if delay > 0:  # every write is checked at least `wait` after it finished
            time.sleep(delay)
        heads = _read_back(client, [w.repo.with_tag(w.tag) for _, w in pending])
        watch: list[tuple[int, Written]] = []
        for (i, w), head in zip(pending, heads, strict=True):
            tag_ref = w.repo.with_tag(w.tag)
            if head is not None and head[0] == w.digest:
                continue
            got = client.get_manifest(tag_ref)
            if got is not None and w.contains(load_json(got[0])):
                # someone merged our item into a newer manifest: watch that one for another round
                final[i] = dataclasses.replace(w, digest=got[2], at=time.monotonic())
            elif w.redo is None:
                raise StorageError(f"{tag_ref}: our entry was dropped by a concurrent writer")
            else:
                log.info("%s: a concurrent writer dropped our entry; adding it again", tag_ref)
                final[i] = w.redo()
            watch.append((i, final[i]))
        pending = watch
    return final


# -- sigstore bundles --------------------------------------------------------------------------------

def pem_to_der(pem: str) -> bytes:
    """The DER body of the first PEM block in ``pem``."""
    lines = pem.strip().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN"))
        end = next(i for i, line in enumerate(lines) if i > start and line.startswith("-----END"))
    except StopIteration:
        raise StorageError("expected a PEM public key or certificate") from None
    return b64decode("".join(lines[start + 1 : end]))


def key_hint(public_key_pem: str) -> str:
    """cosign's public-key hint: base64 of sha256 over the SubjectPublicKeyInfo DER."""
    return b64encode(hashlib.sha256(pem_to_der(public_key_pem)).digest())


def tlog_entry(tlog: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Rekor v1 entry as a bundle ``TransparencyLogEntry`` (protobuf JSON), or None; a v2 entry as it is."""
    from chainmail.transparency.v2 import is_v2_tlog

    if is_v2_tlog(tlog):
        return dict(tlog or {})
    entry = _rekor_entry(tlog)
    if entry is None:
        return None
    try:
        body = json.loads(b64decode(entry["body"]))
    except (ValueError, KeyError):
        body = {}
    out: dict[str, Any] = {
        "logIndex": str(entry["logIndex"]),
        "logId": {"keyId": b64encode(bytes.fromhex(entry["logID"]))},
        "kindVersion": {"kind": body.get("kind", ""), "version": body.get("apiVersion", "")},
        "integratedTime": str(entry["integratedTime"]),
    }
    verification = entry.get("verification") or {}
    if verification.get("signedEntryTimestamp"):
        out["inclusionPromise"] = {"signedEntryTimestamp": verification["signedEntryTimestamp"]}
    proof = verification.get("inclusionProof")
    if proof:
        out["inclusionProof"] = {
            "logIndex": str(proof["logIndex"]),
            "rootHash": b64encode(bytes.fromhex(proof["rootHash"])),
            "treeSize": str(proof["treeSize"]),
            "hashes": [b64encode(bytes.fromhex(h)) for h in proof.get("hashes") or []],
            "checkpoint": {"envelope": proof.get("checkpoint", "")},
        }
    out["canonicalizedBody"] = entry["body"]
    return out


def envelope_of(signed: SignedPayload) -> dict[str, Any]:
    """The DSSE envelope in ``signed.signature``; raise a clear error for a raw signature."""
    try:
        env = json.loads(signed.signature)
    except (ValueError, UnicodeDecodeError):
        env = None
    if not isinstance(env, dict) or not {"payload", "payloadType", "signatures"} <= env.keys():
        raise StorageError(
            f"{signed.payload.artifact.full_key}: storage.oci.encoding-format sigstore-bundle needs a DSSE "
            "envelope, but the sign step produced a raw signature",
            hint="sign with storage.oci.encoding-format=sigstore-bundle set, so simple-signing payloads are "
                 "DSSE-wrapped as Chains does",
        )
    return env


def sigstore_bundle(signed: SignedPayload) -> bytes:
    """A Sigstore bundle v0.3 (key-based, or with the certificate when keyless) around the envelope."""
    env = envelope_of(signed)
    if signed.cert.strip():
        material: dict[str, Any] = {"certificate": {"rawBytes": b64encode(pem_to_der(signed.cert))}}
    else:
        material = {"publicKey": {"hint": key_hint(signed.public_key)}}
    entry = tlog_entry(signed.tlog)
    material["tlogEntries"] = [entry] if entry else []
    sigs = [{"sig": s.get("sig", ""), "keyid": s.get("keyid", "")} for s in env.get("signatures") or []]
    bundle = {
        "mediaType": BUNDLE_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {"payload": env["payload"], "payloadType": env["payloadType"], "signatures": sigs},
    }
    return compact_json(bundle)


def bundle_predicate_type(signed: SignedPayload) -> str:
    """``dev.sigstore.bundle.predicateType``: cosign's sign/v1 for image signatures, else the statement's."""
    if signed.payload.payload_type == SIMPLESIGNING_PAYLOAD_TYPE or signed.payload.artifact.kind == "oci":
        return SIGN_PREDICATE
    try:
        return str(json.loads(signed.payload.body).get("predicateType") or "")
    except (ValueError, AttributeError):
        return ""


def referrer_descriptors(client: RegistryClient, repo: Reference, digest: str,
                         artifact_type: str = BUNDLE_TYPE) -> tuple[list[dict[str, Any]], str]:
    """Referrers of ``digest`` with ``artifact_type``, from the API or else the fallback tag.

    Returns ``(descriptors, layout)`` with layout ``bundle-referrer`` or ``bundle-fallback-tag``.
    """
    found = client.referrers(repo, digest, artifact_type)
    if found is not None:
        return found, "bundle-referrer"
    got = client.get_manifest(repo.with_tag(signature_tag(digest, "")))
    if got is None:
        return [], "bundle-fallback-tag"
    try:
        doc = load_json(got[0])
        manifests = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
    except (ValueError, AttributeError, TypeError):
        return [], "bundle-fallback-tag"
    return [m for m in manifests if m.get("artifactType") == artifact_type], "bundle-fallback-tag"


def push_bundle(client: RegistryClient, image: Reference, bundle: bytes, predicate_type: str,
                created: str | None = None) -> tuple[str, bool, Written | None]:
    """Attach ``bundle`` to ``image`` as an OCI 1.1 referrer, plus the fallback index when needed.

    Returns ``(referrer digest, existed, fallback index write or None)``.
    """
    head = client.head_manifest(image)
    if head is None:
        raise StorageError(f"image {image} not found; cannot attach a Sigstore bundle to it")
    subject = {"mediaType": head[1], "size": head[2], "digest": head[0]}
    repo = image.with_tag("")
    bundle_digest = sha256_digest(bundle)
    existing, _layout = referrer_descriptors(client, repo, head[0])
    for desc in existing:
        digest = desc.get("digest")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            continue
        got = client.get_manifest(repo.with_digest(digest))
        if got is None:
            continue
        try:
            layers = load_json(got[0]).get("layers") or []
        except (ValueError, AttributeError):
            continue
        if not isinstance(layers, list):
            continue
        if any(isinstance(x, dict) and x.get("digest") == bundle_digest for x in layers):
            return got[2], True, None
    layer = client.push_blob(repo, bundle, BUNDLE_TYPE)
    config = client.push_blob(repo, EMPTY_JSON, EMPTY_CONFIG)
    config["artifactType"] = BUNDLE_TYPE
    annotations = {
        ANN_BUNDLE_CONTENT: "dsse-envelope",
        ANN_BUNDLE_PREDICATE: predicate_type,
        ANN_CREATED: created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    raw = image_manifest(config, [layer], annotations=annotations, subject=subject, artifact_type=BUNDLE_TYPE)
    digest = client.put_manifest(repo, sha256_digest(raw), raw, OCI_MANIFEST)
    index = None
    if not client.supports_referrers(repo, head[0]):
        entry = {"mediaType": OCI_MANIFEST, "size": len(raw), "digest": digest,
                 "annotations": annotations, "artifactType": BUNDLE_TYPE}
        index = update_index(client, repo, signature_tag(head[0], ""), entry)
    return digest, False, index


# -- credentials from the run's service account -----------------------------------------------------

#: Namespaces whose service-account lookup was forbidden (warned about once per process).
_ungranted: set[str] = set()
_ungranted_guard = threading.Lock()


def warn_ungranted(namespace: str, account: str) -> None:
    """One warning per namespace per process: the run's registry credentials were not granted."""
    with _ungranted_guard:
        if namespace in _ungranted:
            return
        _ungranted.add(namespace)
    log.warning("namespace %s has not granted its registry credentials (service account %s is forbidden); "
                "pushing with DOCKER_CONFIG only; to use the run's pull secrets: chainmail watcher enable %s",
                namespace, account, namespace)


def credentials_not_granted(namespace: str) -> bool:
    """Whether reading ``namespace``'s service accounts was forbidden in this process."""
    with _ungranted_guard:
        return namespace in _ungranted


def service_account_of(run: dict[str, Any]) -> str:
    """The run's service account (TaskRun ``spec.serviceAccountName``; PipelineRun ``taskRunTemplate``)."""
    spec = run.get("spec") or {}
    name = spec.get("serviceAccountName") or (spec.get("taskRunTemplate") or {}).get("serviceAccountName")
    return str(name or "default")


#: A stored reference and, when a tag was updated, the write to re-check in :func:`settle`.
_Stored = tuple[StoredRef, Written | None]


class OciBackend(Backend):
    """Stores image signatures and attestations in the image's registry."""

    NAME = "oci"

    def client(self) -> RegistryClient:
        """The registry client: ``ctx.registry``, or one that also holds the run SA's pull secrets."""
        if not self.ctx.has_kube:
            return self.ctx.registry
        run = self.session.snapshot.run
        namespace = str((run.get("metadata") or {}).get("namespace") or "default")
        account = service_account_of(run)
        key = f"oci-registry:{namespace}/{account}"
        cached = self.ctx.cache.get(key)
        if cached is None:
            with _clients_guard:  # one lookup of the account's secrets, however many threads start at once
                cached = self.ctx.cache.get(key)
                if cached is None:
                    cached = self._client_with_secrets(namespace, account) or self.ctx.registry
                    self.ctx.cache[key] = cached
        return cached

    def _client_with_secrets(self, namespace: str, account: str) -> RegistryClient | None:
        """A client holding the logins of the account's Secrets (see :mod:`chainmail.storage.run_credentials`)."""
        from chainmail._internal.registry import RegistryClient
        from chainmail.errors import ClusterAuthError
        from chainmail.storage.run_credentials import logins_from_secrets

        kube = self.ctx.kube
        try:
            sa = kube.get_service_account(namespace, account)
        except ClusterAuthError:
            warn_ungranted(namespace, account)
            return None
        except Error as exc:
            log.warning("cannot read service account %s/%s for registry credentials: %s", namespace, account,
                        exc)
            return None
        refs = [*(sa.get("imagePullSecrets") or []), *(sa.get("secrets") or [])]
        names = list(dict.fromkeys(str(r.get("name")) for r in refs if isinstance(r, dict) and r.get("name")))
        secrets: list[tuple[str, Any]] = []
        for name in names:
            try:
                secrets.append((name, kube.get_secret_object(namespace, name)))
            except ClusterAuthError:
                warn_ungranted(namespace, account)
            except Error as exc:
                log.debug("skipping secret %s/%s: %s", namespace, name, exc)
        logins = logins_from_secrets(secrets, namespace)
        if not logins:
            return None
        base = self.ctx.registry
        client = RegistryClient(docker_config=base.docker_config, insecure=base.insecure,
                                retry=self.ctx.retry, max_blob_bytes=base.max_blob_bytes)
        for host, login in logins.items():
            client.add_credentials(host, login.username, login.password, identity_token=login.identity_token)
        return client

    def _repository_override(self) -> Reference | None:
        from chainmail._internal.registry import Reference

        value = self.ctx.config.get("storage.oci.repository").strip()
        return Reference.parse(value).with_tag("") if value else None

    def _image(self, text: str, what: str) -> Reference:
        from chainmail._internal.registry import Reference

        ref = Reference.parse(text)
        if not ref.digest.startswith("sha256:"):
            raise StorageError(f"{what} '{text}' has no sha256 digest; cannot store its signature")
        return ref

    def targets(self, item: SignedPayload) -> list[tuple[Reference, str]]:
        """``(image, suffix)`` pairs: the image for a signature, every subject for an attestation."""
        payload = item.payload
        if payload.artifact.kind == "oci" and payload.payload_type == SIMPLESIGNING_PAYLOAD_TYPE:
            return [(self._image(payload.artifact.ref, "image"), "sig")]
        if payload.artifact.kind == "oci" and not payload.subjects:
            return [(self._image(payload.artifact.ref, "image"), "att")]
        if not payload.subjects:
            log.info("%s: no subjects; nothing to attach in the registry (as Chains)",
                     payload.artifact.full_key)
        return [(self._image(s, "subject"), "att") for s in payload.subjects]

    def store(self, signed: list[SignedPayload]) -> list[StoredRef]:
        encoding = self.ctx.config.get("storage.oci.encoding-format")
        refs: list[StoredRef] = []
        writes: list[tuple[int, Written]] = []
        failures: list[Error] = []
        client: RegistryClient | None = None
        store = self._store_bundle if encoding == "sigstore-bundle" else self._store_tags
        outcomes = self._store_concurrently(signed) if encoding != "sigstore-bundle" else None
        if outcomes is not None:
            client = self.client()  # cached: the concurrent writes used it
        for index, item in enumerate(signed):
            try:
                if outcomes is not None:
                    stored = outcomes[index]
                    if isinstance(stored, Error):
                        raise stored
                else:
                    client = client or self.client()
                    stored = store(client, item)
                for ref, written in stored:
                    if written is not None:
                        writes.append((len(refs), written))
                    refs.append(ref)
            except Error as exc:
                log.warning("oci: %s: %s", item.payload.artifact.full_key, exc)
                failures.append(exc)
        if writes and client is not None:
            try:
                final = settle(client, [w for _, w in writes])
            except Error as exc:
                failures.append(exc)
            else:
                for (index, before), after in zip(writes, final, strict=True):
                    if after is not before and encoding != "sigstore-bundle":
                        ref = refs[index]
                        refs[index] = dataclasses.replace(ref, location=f"{ref.location.rsplit('@', 1)[0]}@"
                                                                        f"{after.digest}")
        if failures:
            cls = type(failures[-1]) if isinstance(failures[-1], StorageError) else StorageError
            message = "; ".join(str(e) for e in failures)
            namespace = self.session.snapshot.ref.namespace
            if any(isinstance(e, RegistryAuthError) for e in failures) and credentials_not_granted(namespace):
                message += (f" (namespace {namespace} has not granted its registry credentials to chainmail: "
                            f"chainmail watcher enable {namespace})")
            err = cls(message)
            err.stored = refs  # type: ignore[attr-defined]
            raise err
        return refs

    def _store_concurrently(self, signed: list[SignedPayload]) -> list[list[_Stored] | Error] | None:
        """Write the payloads' tags at once when no two payloads share a tag; None: write them in turn.

        A run's image signature (``.sig``) and attestation (``.att``) are independent tags, so their
        uploads and read-modify-writes overlap instead of adding up; :func:`settle` then checks both.
        Payloads that share a tag keep their order (the sequential path), as do single payloads.
        """
        if len(signed) < 2:
            return None
        try:
            client = self.client()
            tags = [{(repo.name, tag) for repo, tag in self._tags_of(item)} for item in signed]
        except Error:
            return None  # the sequential path reports it per payload
        if sum(len(t) for t in tags) != len(set().union(*tags)):
            return None

        def one(item: SignedPayload) -> list[_Stored] | Error:
            try:
                return self._store_tags(client, item)
            except Error as exc:
                return exc

        futures = [_writer_pool().submit(one, item) for item in signed[1:]]
        first = one(signed[0])
        return [first, *(f.result() for f in futures)]

    def _tags_of(self, item: SignedPayload) -> list[tuple[Reference, str]]:
        """The ``(repository, tag)`` pairs :meth:`_store_tags` writes for ``item``."""
        override = self._repository_override()
        return [(override or image.with_tag(""), signature_tag(image.digest, suffix))
                for image, suffix in self.targets(item)]

    def _store_tags(self, client: RegistryClient, item: SignedPayload) -> list[_Stored]:
        targets = self.targets(item)
        if not targets:
            return []
        override = self._repository_override()
        blob, media_type, annotations = layer_for(item)
        out: list[_Stored] = []
        for image, suffix in targets:
            repo = override or image.with_tag("")
            tag = signature_tag(image.digest, suffix)
            written = append_layer(client, repo, tag, blob, media_type, annotations)
            ref = StoredRef(self.NAME, item.payload.artifact.full_key, f"{repo.name}:{tag}@{written.digest}",
                            sha256_digest(blob), written.existed)
            out.append((ref, written))
        return out

    def _store_bundle(self, client: RegistryClient, item: SignedPayload) -> list[_Stored]:
        targets = self.targets(item)
        if not targets:
            return []
        if self.ctx.config.get("storage.oci.repository").strip():
            log.warning("storage.oci.repository is ignored with sigstore-bundle encoding (as Chains)")
        bundle = sigstore_bundle(item)
        predicate = bundle_predicate_type(item)
        out: list[_Stored] = []
        for image, _suffix in targets:
            digest, existed, index = push_bundle(client, image, bundle, predicate)
            ref = StoredRef(self.NAME, item.payload.artifact.full_key, f"{image.name}@{digest}",
                            sha256_digest(bundle), existed)
            out.append((ref, index))
        return out
