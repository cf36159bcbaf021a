"""Tekton bundles, built as ``tkn bundle push`` builds them and pushed with oras-py.

Example::

    bundle = build_bundle([Path("task.yaml").read_text()], created=ctime_from(None))
    digest = push_bundle("ghcr.io/acme/tasks/chainmail:0.1", bundle, ctx)
    task = resolve(client, f"ghcr.io/acme/tasks/chainmail@{digest}", "task", "chainmail-sign")

The image (tektoncd/cli ``pkg/bundle``, on go-containerregistry's ``empty.Image``):

- a Docker schema2 manifest, manifest annotations from ``--annotate``;
- a Docker config ``{"architecture":"","created":<ctime>,"history":[…],"os":"","rootfs":{…},
  "config":{"Labels":…}}`` with ``created`` from ``--ctime``, else ``$SOURCE_DATE_EPOCH``, else the epoch;
- input files sorted by the sha256 of their text (deterministic layer order);
- one gzip-tar layer per object: a single regular entry, mode 0600, named after the object, holding
  its JSON (YAML documents are converted to compact JSON with sorted keys, as
  ``sigs.k8s.io/yaml`` does; JSON documents are kept as written);
- layer annotations ``dev.tekton.image.apiVersion`` (the version only, e.g. ``v1``),
  ``dev.tekton.image.kind`` (lower case) and ``dev.tekton.image.name``; at most 20 objects.

Pushing uses oras-py (blobs with ``upload_blob``; the manifest as exact bytes through
``do_request``, because ``upload_manifest`` re-serialises JSON and forces the OCI media type), with
``auth_backend="basic"`` when the registry challenges with Basic. oras-py is imported only here.
Reading back (:func:`read_bundle`, :func:`resolve`) uses chainmail's own registry client and applies
the checks of Tekton's bundles resolver.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chainmail._internal import tls
from chainmail._internal.encoding import compact_json, load_json, sha256_digest
from chainmail.errors import InputError, RegistryAuthError, StorageError

if TYPE_CHECKING:
    from chainmail._internal.registry import RegistryClient
    from chainmail.context import Context

MAX_OBJECTS = 20
#: Largest layer read back after gunzip (a gzip bomb stops here).
MAX_LAYER_BYTES = 64 * 1024 * 1024
#: A layer's annotations and the bytes of its first tar entry.
_Entry = tuple[dict[str, str], bytes]
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ANN_API_VERSION = "dev.tekton.image.apiVersion"
ANN_KIND = "dev.tekton.image.kind"
ANN_NAME = "dev.tekton.image.name"
ZERO_TIME = "0001-01-01T00:00:00Z"

#: Kinds the Tekton scheme decodes (what ``tkn bundle push`` accepts).
TEKTON_KINDS = ("Task", "Pipeline", "StepAction", "ClusterTask", "TaskRun", "PipelineRun", "CustomRun")


@dataclass(frozen=True)
class BundleObject:
    """One Tekton object: its (apiVersion, kind, name) and the JSON bytes stored in its layer."""

    api_version: str
    kind: str
    name: str
    raw: bytes

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.raw)


@dataclass(frozen=True)
class BundleLayer:
    obj: BundleObject
    blob: bytes
    diff_id: str

    @property
    def annotations(self) -> dict[str, str]:
        return {ANN_API_VERSION: self.obj.api_version.rsplit("/", 1)[-1], ANN_KIND: self.obj.kind.lower(),
                ANN_NAME: self.obj.name}

    @property
    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": LAYER_TYPE, "size": len(self.blob), "digest": sha256_digest(self.blob),
                "annotations": dict(sorted(self.annotations.items()))}


@dataclass(frozen=True)
class Bundle:
    """A built bundle: exact manifest and config bytes, and the layers."""

    manifest: bytes
    config: bytes
    layers: tuple[BundleLayer, ...]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


# -- parsing -----------------------------------------------------------------------------------------

def _yaml_loader() -> type:
    """PyYAML's SafeLoader without the timestamp resolver (Go's YAML→JSON keeps timestamps as strings)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


def _documents(content: str, source: str) -> list[bytes]:
    """The JSON bytes of each document in ``content`` (YAML stream or concatenated JSON values)."""
    out: list[bytes] = []
    if content.lstrip().startswith("{"):
        text = content.strip()
        decoder = json.JSONDecoder()
        pos = 0
        while pos < len(text):
            try:
                _value, end = decoder.raw_decode(text, pos)
            except ValueError as exc:
                raise InputError(f"{source}: not valid JSON ({exc})") from None
            out.append(text[pos:end].strip().encode())
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
        return out
    import yaml

    try:  # the text as written: stripping it would cut the final newline of a trailing block scalar
        docs = list(yaml.load_all(content, Loader=_yaml_loader()))
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for doc in docs:
        if doc is None:
            continue
        try:
            out.append(compact_json(doc, sort_keys=True))
        except (TypeError, ValueError):
            raise InputError(f"{source}: a document holds values JSON cannot represent") from None
    return out


def parse_objects(contents: Iterable[str | tuple[str, str]]) -> list[BundleObject]:
    """Tekton objects from input texts (or ``(source, text)`` pairs), in ``tkn``'s layer order."""
    items = [(("<input>", c) if isinstance(c, str) else c) for c in contents]
    items.sort(key=lambda item: hashlib.sha256(item[1].encode()).digest())
    objects: list[BundleObject] = []
    seen: set[tuple[str, str, str]] = set()
    for source, text in items:
        for raw in _documents(text, source):
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise InputError(f"{source}: expected a Tekton object, got {type(doc).__name__}")
            api_version, kind = str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")
            if not api_version or not kind:
                raise InputError(f"{source}: object with no kind or apiVersion")
            if not api_version.startswith("tekton.dev/") or kind not in TEKTON_KINDS:
                raise InputError(f"{source}: {api_version} {kind} is not a Tekton object "
                                 f"(expected tekton.dev/* {', '.join(TEKTON_KINDS[:3])}, …)")
            name = str((doc.get("metadata") or {}).get("name") or "")
            if not name:
                raise InputError(f"{source}: {kind} has no metadata.name")
            key = (api_version.rsplit("/", 1)[-1], kind.lower(), name)
            if key in seen:
                raise InputError(f"{source}: {kind} '{name}' ({api_version}) appears twice; a bundle holds "
                                 "each (apiVersion, kind, name) once")
            seen.add(key)
            objects.append(BundleObject(api_version, kind, name, raw))
    if not objects:
        raise InputError("no Tekton objects in the input files")
    if len(objects) > MAX_OBJECTS:
        raise InputError(f"a Tekton bundle holds at most {MAX_OBJECTS} objects, got {len(objects)}")
    return objects


# -- building ----------------------------------------------------------------------------------------

def ctime_from(value: str | None, env: dict[str, str] | None = None) -> str:
    """The config's ``created``: ``--ctime`` (RFC 3339, ``YYYY-MM-DD[THH:MM:SS]`` or Unix seconds),
    else ``$SOURCE_DATE_EPOCH``, else 1970-01-01T00:00:00Z; always UTC."""
    env = os.environ if env is None else env
    if value:
        text = value.strip()
        if text.isdigit():
            moment = datetime.fromtimestamp(int(text), UTC)
        else:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InputError(f"--ctime '{value}': expected RFC 3339, YYYY-MM-DD or Unix seconds"
                                 ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    elif env.get("SOURCE_DATE_EPOCH", "").strip():
        raw = env["SOURCE_DATE_EPOCH"].strip()
        if not raw.lstrip("-").isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH '{raw}' is not a number of seconds")
        moment = datetime.fromtimestamp(int(raw), UTC)
    else:
        moment = datetime.fromtimestamp(0, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tar_single(name: str, data: bytes) -> bytes:
    """A tar with one regular file ``name`` (mode 0600, mtime 0, root-owned), ended by two zero blocks."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = 0
    info.type = tarfile.REGTYPE
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    padding = b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return header + data + padding + b"\0" * (2 * tarfile.BLOCKSIZE)


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def build_bundle(contents: Iterable[str | tuple[str, str]], *, annotations: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, created: str | None = None) -> Bundle:
    """Build the bundle image for the given input texts (see the module docstring)."""
    layers = []
    for obj in parse_objects(contents):
        tar = tar_single(obj.name, obj.raw)
        layers.append(BundleLayer(obj, _gzip(tar), sha256_digest(tar)))
    config_doc: dict[str, Any] = {
        "architecture": "",
        "created": created or ctime_from(None),
        "history": [{"created": ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "config": {"Labels": dict(sorted(labels.items()))} if labels else {},
    }
    config = compact_json(config_doc)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": sha256_digest(config)},
        "layers": [layer.descriptor for layer in layers],
    }
    if annotations:
        manifest_doc["annotations"] = dict(sorted(annotations.items()))
    return Bundle(compact_json(manifest_doc), config, tuple(layers))


def parse_pairs(items: Iterable[str] | None, option: str) -> dict[str, str]:
    """``k=v`` options into a dict."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} '{item}': expected KEY=VALUE")
        out[key.strip()] = value
    return out


# -- pushing (oras-py) -------------------------------------------------------------------------------

def push_bundle(ref: str, bundle: Bundle, ctx: Context) -> str:
    """Push with oras-py: blobs with ``upload_blob``, then the exact manifest bytes; returns its digest."""
    import tempfile
    from pathlib import Path

    from chainmail._internal.registry import Reference

    target = Reference.parse(ref)
    if target.digest:
        raise InputError(f"bundle reference '{ref}': push to a tag, not a digest")
    client = ctx.registry
    # Fail fast with typed errors (unreachable, no or wrong credentials) before oras' own slow retries.
    challenge = client.ping(target.registry)
    creds = client.credentials(target.registry) if challenge else None
    if challenge and creds is None:
        raise RegistryAuthError(f"registry {target.registry} needs credentials to push {target.repository}",
                                hint=f"add a login for {target.registry} to --docker-config")
    client.head_manifest(target)
    try:
        import oras.provider
    except ImportError:
        from chainmail.errors import ConfigError

        raise ConfigError("pushing bundles needs oras-py", hint="pip install 'chainmail[oras]'") from None
    registry = oras.provider.Registry(hostname=target.registry,
                                      insecure=client.scheme(target.registry) == "http",
                                      tls_verify=tls.verify(),
                                      auth_backend="basic" if challenge == "basic" else "token")
    if creds is not None:
        registry.auth.set_basic_auth(creds.username, creds.password)
    container = registry.get_container(f"{target.name}:{target.tag or 'latest'}")
    try:
        with tempfile.TemporaryDirectory(prefix="chainmail-bundle-") as tmp:
            blobs = [(bundle.config, CONFIG_TYPE)] + [(layer.blob, LAYER_TYPE) for layer in bundle.layers]
            for i, (data, media_type) in enumerate(blobs):
                path = Path(tmp) / f"blob-{i}"
                path.write_bytes(data)
                desc = {"mediaType": media_type, "size": len(data), "digest": sha256_digest(data)}
                resp = registry.upload_blob(str(path), container, desc)
                _oras_check(resp, target, f"upload blob {desc['digest']}", (200, 201, 202))
        url = f"{registry.prefix}://{container.manifest_url()}"
        resp = registry.do_request(url, "PUT", data=bundle.manifest, headers={"Content-Type": MANIFEST_TYPE})
    except (ValueError, OSError) as exc:  # oras-py reports protocol failures as ValueError
        text = str(exc)
        if "UNAUTHORIZED" in text or "DENIED" in text or "authentication" in text.lower():
            raise RegistryAuthError(f"registry {target.registry} denied the push to {target.repository}",
                                    hint=f"check the push rights of the login for {target.registry}"
                                    ) from None
        raise StorageError(f"registry {target.name}: push failed ({type(exc).__name__})") from None
    _oras_check(resp, target, "PUT manifest", (200, 201))
    digest = resp.headers.get("Docker-Content-Digest") or bundle.digest
    if digest != bundle.digest:
        raise StorageError(f"registry {target.name} stored the bundle manifest as {digest}, "
                           f"not {bundle.digest}")
    return digest


def _oras_check(resp: Any, target: Any, what: str, ok: tuple[int, ...]) -> None:
    status = getattr(resp, "status_code", 0)
    if status in ok:
        return
    if status in (401, 403):
        raise RegistryAuthError(f"registry {target.registry} denied {what} on {target.repository}: "
                                f"HTTP {status}")
    raise StorageError(f"registry {target.name}: {what} failed: HTTP {status}")


# -- reading back (resolver-style) -------------------------------------------------------------------

def _gunzip(blob: bytes, where: str) -> bytes:
    """``blob`` decompressed, refusing more than :data:`MAX_LAYER_BYTES` of output."""
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(blob, MAX_LAYER_BYTES + 1)
    except zlib.error:
        raise InputError(f"{where}: layer is not valid gzip") from None
    if len(data) > MAX_LAYER_BYTES or inflater.unconsumed_tail:
        raise InputError(f"{where}: layer inflates past {MAX_LAYER_BYTES // 1048576} MiB")
    return data


def _first_entry(blob: bytes, where: str = "bundle") -> bytes:
    """What Tekton's bundles resolver reads from a layer: the first tar entry, after sniffing gzip."""
    data = _gunzip(blob, where) if blob[:2] == b"\x1f\x8b" else blob
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            member = tar.next()
            if member is None or not member.isfile():
                return data
            extracted = tar.extractfile(member)
            return extracted.read() if extracted is not None else data
    except tarfile.TarError:
        return data


def read_bundle(client: RegistryClient, ref: str) -> tuple[dict[str, Any], list[_Entry]]:
    """The manifest and ``(annotations, first-entry bytes)`` per layer, with the resolver's checks.

    Raises :class:`InputError` when the image breaks the bundle contract (more than 20 layers,
    missing annotations, a kind that is not lower-case singular).
    """
    from chainmail._internal.registry import Reference

    target = Reference.parse(ref)
    got = client.get_manifest(target)
    if got is None:
        from chainmail.errors import TagNotFoundError

        raise TagNotFoundError(f"bundle {target} not found")
    manifest = load_json(got[0])  # checked by get_manifest: a JSON object within the depth limit
    layers = manifest.get("layers") or []
    if not isinstance(layers, list):
        raise InputError(f"bundle {target}: manifest 'layers' is not a list")
    if len(layers) > MAX_OBJECTS:
        raise InputError(f"bundle {target} has {len(layers)} layers; the resolver allows {MAX_OBJECTS}")
    out = []
    for i, layer in enumerate(layers):
        ann = layer.get("annotations") if isinstance(layer, dict) else None
        if not isinstance(ann, dict) or not isinstance(layer.get("digest"), str):
            raise InputError(f"bundle {target} layer {i}: not a descriptor with a digest and annotations")
        missing = [k for k in (ANN_API_VERSION, ANN_KIND, ANN_NAME) if not ann.get(k)]
        if missing:
            raise InputError(f"bundle {target} layer {i} lacks {', '.join(missing)}")
        kind = str(ann[ANN_KIND])
        if kind != kind.lower() or kind.endswith("s"):
            raise InputError(f"bundle {target} layer {i}: kind '{kind}' must be lower-case and singular")
        out.append((ann, _first_entry(client.get_blob(target, layer["digest"]), f"bundle {target} layer {i}")))
    return manifest, out


def resolve(client: RegistryClient, ref: str, kind: str, name: str) -> dict[str, Any]:
    """The object Tekton's bundles resolver would return for ``kind``/``name`` (first matching layer)."""
    _manifest, layers = read_bundle(client, ref)
    for ann, data in layers:
        if ann[ANN_KIND].lower() == kind.lower() and ann[ANN_NAME] == name:
            import yaml

            doc = yaml.safe_load(data)
            if not isinstance(doc, dict) or str(doc.get("kind", "")).lower() != kind.lower():
                raise InputError(f"bundle {ref}: layer for {kind} '{name}' does not hold a {kind}")
            return doc
    raise InputError(f"bundle {ref} has no {kind} named '{name}'")
