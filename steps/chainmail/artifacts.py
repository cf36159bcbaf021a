"""Which artifacts a run produced and consumed, found by Tekton Chains' "type hinting".

Chains never inspects images or files; it reads result names:

- ``*IMAGE_URL`` + ``*IMAGE_DIGEST`` (string results sharing a prefix) and ``IMAGES``
  (``repo@sha256:…`` entries separated by commas or newlines) name OCI images;
- ``*ARTIFACT_URI`` + ``*ARTIFACT_DIGEST`` name other artifacts;
- object results ``*ARTIFACT_OUTPUTS`` / ``*ARTIFACT_INPUTS`` (``{uri, digest}``, plus
  ``isBuildArtifact: "true"`` for a build output) name outputs and inputs;
- ``CHAINS-GIT_URL`` + ``CHAINS-GIT_COMMIT`` name the source (see the formats).

Image references are normalised like go-containerregistry's ``name.NewDigest``
(``busybox`` → ``index.docker.io/library/busybox``). A hint whose digest or reference is
invalid is skipped with a warning on the ``chainmail.formats`` logger, never fatal.

Example::

    for image in images(snapshot):        # what the simplesigning path signs
        print(image.full_key)             # index.docker.io/library/app@sha256:…
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chainmail.models import Artifact, RunRef

if TYPE_CHECKING:
    from chainmail.config import Config
    from chainmail.models import RunSnapshot

log = logging.getLogger("chainmail.formats")

IMAGE_URL = "IMAGE_URL"
IMAGE_DIGEST = "IMAGE_DIGEST"
IMAGES = "IMAGES"
ARTIFACT_URI = "ARTIFACT_URI"
ARTIFACT_DIGEST = "ARTIFACT_DIGEST"
ARTIFACT_INPUTS = "ARTIFACT_INPUTS"
ARTIFACT_OUTPUTS = "ARTIFACT_OUTPUTS"
GIT_URL = "CHAINS-GIT_URL"
GIT_COMMIT = "CHAINS-GIT_COMMIT"
OCI_SCHEME = "oci://"

DEFAULT_REGISTRY = "index.docker.io"
_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"^[a-f0-9]+$")
_SHA1_RE = re.compile(r"^[a-f0-9]{40}$")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REPO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-./")
_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]<>\""
)


_warned: ContextVar[set[str] | None] = ContextVar("chainmail_artifacts_warned", default=None)


def _warn(msg: str, *args: object) -> None:
    """Warn on ``chainmail.formats``; inside :func:`warnings_once`, each message only once."""
    seen = _warned.get()
    if seen is not None:
        text = msg % args
        if text in seen:
            return
        seen.add(text)
    log.warning(msg, *args)


@contextmanager
def warnings_once() -> Iterator[None]:
    """Report each skipped hint once while formatting one run (several formats read the same results)."""
    token = _warned.set(set())
    try:
        yield
    finally:
        _warned.reset(token)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One run or step result: its name and value (a string, a list of strings or a string map)."""

    name: str
    value: Any

    @property
    def string(self) -> str:
        """The string value ("" for array and object results, as Go's ``StringVal``)."""
        return self.value if isinstance(self.value, str) else ""

    @property
    def object(self) -> dict[str, str] | None:
        """The object value, or None when the result is not an object (Go's nil ``ObjectVal``)."""
        return self.value if isinstance(self.value, dict) else None


def results_from(items: Iterable[dict[str, Any]] | None) -> list[Result]:
    """Results from decoded ``status.results`` (or a step's ``results``) entries."""
    return [Result(str(r.get("name", "")), r.get("value", "")) for r in items or ()]


# --- digests and image references -------------------------------------------------------------


def parse_digest(text: str) -> tuple[str, str]:
    """Split ``alg:hex`` as Chains' ``ParseDigest``: sha256/384/512 or sha1; ValueError when invalid.

    The algorithm comes back lower-cased and both parts trimmed.
    """
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"digest '{text}' is not in the form <algorithm>:<hex>")
    alg = parts[0].strip().lower()
    hexpart = parts[1].strip()
    if alg in _HEX:
        if len(hexpart) != _HEX[alg]:
            raise ValueError(f"digest '{text}': {alg} needs {_HEX[alg]} hex characters")
        if not _HEX_RE.match(hexpart):
            raise ValueError(f"digest '{text}': invalid hex (lower-case 0-9a-f only)")
    elif alg == "sha1":
        if not _SHA1_RE.match(hexpart):
            raise ValueError(f"digest '{text}': sha1 needs 40 lower-case hex characters")
    else:
        raise ValueError(f"digest '{text}': unsupported algorithm '{alg}'")
    return alg, hexpart


@dataclass(frozen=True)
class ImageRef:
    """An image by digest, normalised like go-containerregistry (``name.Digest``)."""

    #: ``Repository.Name()``: registry plus repository, ``library/`` added on Docker Hub.
    repository: str
    #: ``sha256:<hex>``
    digest: str

    @property
    def name(self) -> str:
        """``repository@sha256:<hex>`` (Chains' FullKey for an image)."""
        return f"{self.repository}@{self.digest}"

    @property
    def hex(self) -> str:
        return self.digest.partition(":")[2]


def _check_registry(name: str) -> None:
    if not name:
        return
    if name.startswith("["):
        end = name.rfind("]")
        if end < 0:
            raise ValueError(f"registry '{name}' is not a valid URI authority")
        host, port = name[1:end], name[end + 1 :]
    else:
        colon = name.rfind(":")
        host, port = (name[:colon], name[colon:]) if colon >= 0 else (name, "")
    if port and not (port[0] == ":" and port[1:].isdigit() or port == ":"):
        raise ValueError(f"registry '{name}' has an invalid port")
    for ch in host:
        if ord(ch) < 0x80 and ch not in _HOST_CHARS:
            raise ValueError(f"registry '{name}' is not a valid URI authority")


def _check_element(what: str, value: str, allowed: frozenset[str], low: int, high: int) -> None:
    if not low <= len(value) <= high:
        raise ValueError(f"{what} must be between {low} and {high} characters in length: {value}")
    if any(ch not in allowed for ch in value):
        raise ValueError(f"{what} has characters outside [{''.join(sorted(allowed))}]: {value}")


def _repository(name: str) -> str:
    if not name:
        raise ValueError("a repository name must be specified")
    registry, repo = "", name
    first, sep, rest = name.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first):
        registry, repo = first, rest
    _check_element("repository", repo, _REPO_CHARS, 2, 255)
    _check_registry(registry)
    if registry in ("", "docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = f"library/{repo}"
    return f"{registry}/{repo}"


def _strip_tag(name: str) -> str:
    parts = name.split(":")
    base = name
    if len(parts) > 1 and "/" not in parts[-1]:
        base, tag = ":".join(parts[:-1]), parts[-1]
        if not tag:
            raise ValueError(f"{name} must specify a tag name after the colon")
        _check_element("tag", tag, _TAG_CHARS, 1, 128)
    return _repository(base)


def parse_image(ref: str) -> ImageRef:
    """Parse ``repo[:tag]@sha256:<hex>`` like ``name.NewDigest``; ValueError when invalid."""
    parts = ref.split("@")
    if len(parts) != 2:
        raise ValueError(
            f"a digest must contain exactly one '@' separator (e.g. registry/repository@digest): {ref}"
        )
    base, digest = parts
    if not digest.startswith("sha256:"):
        raise ValueError(f"unsupported digest algorithm: {digest}")
    hexpart = digest[len("sha256:") :]
    if len(hexpart) != 64 or not _HEX_RE.match(hexpart):
        raise ValueError(f"invalid sha256 digest: {digest}")
    try:
        repository = _strip_tag(base)
    except ValueError:
        repository = _repository(base)
    return ImageRef(repository, digest)


# --- type hints --------------------------------------------------------------------------------


def _pairs(results: Sequence[Result], uri_suffix: str, digest_suffix: str) -> list[tuple[str, str]]:
    """Group ``<prefix><uri_suffix>`` and ``<prefix><digest_suffix>`` string results by prefix."""
    partial: dict[str, list[str]] = {}
    for r in results:
        for index, suffix in ((0, uri_suffix), (1, digest_suffix)):
            if not r.name.endswith(suffix):
                continue
            value = r.string.strip()
            if not value:
                log.debug("result %s is empty or not a string; ignored", r.name)
                continue
            partial.setdefault(r.name[: len(r.name) - len(suffix)], ["", ""])[index] = value
    return [(uri, digest) for uri, digest in partial.values() if uri and digest]


def _image_from(uri: str, digest: str, hint: str) -> ImageRef | None:
    try:
        return parse_image(f"{uri}@{digest}")
    except ValueError as exc:
        _warn("skipping %s '%s@%s': %s", hint, uri, digest, exc)
        return None


def oci_images(results: Sequence[Result]) -> list[ImageRef]:
    """Images named by ``*IMAGE_URL``/``*IMAGE_DIGEST``, ``IMAGES`` and image build artifacts, deduplicated.

    This is Chains' ``ExtractOCIImagesFromResults``: the images it signs (simplesigning)
    and the image subjects of its attestations.
    """
    found: dict[str, ImageRef] = {}

    def add(image: ImageRef | None) -> None:
        if image is not None and image.name not in found:
            found[image.name] = image

    for uri, digest in _pairs(results, IMAGE_URL, IMAGE_DIGEST):
        add(_image_from(uri, digest, "*IMAGE_URL/*IMAGE_DIGEST image"))
    for r in results:
        if r.name != IMAGES:
            continue
        for entry in re.split(r"[,\n]", r.string):
            entry = entry.strip()
            if not entry:
                continue
            try:
                add(parse_image(entry))
            except ValueError as exc:
                _warn("skipping IMAGES entry '%s': %s", entry, exc)
    for uri, digest in build_artifacts(results):
        add(_image_from(uri, digest, f"*{ARTIFACT_OUTPUTS} build artifact"))
    return list(found.values())


def artifact_uris(results: Sequence[Result]) -> list[tuple[str, str]]:
    """Valid ``*ARTIFACT_URI``/``*ARTIFACT_DIGEST`` pairs as (uri, digest)."""
    out = []
    for uri, digest in _pairs(results, ARTIFACT_URI, ARTIFACT_DIGEST):
        try:
            parse_digest(digest)
        except ValueError as exc:
            _warn("skipping *%s '%s': %s", ARTIFACT_URI, uri, exc)
            continue
        out.append((uri, digest))
    return out


def _valid_object(r: Result, obj: dict[str, str]) -> bool:
    uri, digest = obj.get("uri", ""), obj.get("digest", "")
    if not uri or not digest:
        log.debug("result %s lacks uri or digest; ignored", r.name)
        return False
    try:
        parse_digest(digest)
    except ValueError as exc:
        _warn("skipping result %s (uri '%s'): %s", r.name, uri, exc)
        return False
    return True


def structured(results: Sequence[Result], marker: str) -> list[tuple[str, str]]:
    """Valid object results named ``*<marker>`` (``ARTIFACT_INPUTS``/``_OUTPUTS``) as (uri, digest)."""
    out = []
    for r in results:
        if not r.name.endswith(marker):
            continue
        obj = r.object
        if obj is None:
            _warn("skipping result %s: *%s results must be objects with uri and digest", r.name, marker)
            continue
        if _valid_object(r, obj):
            out.append((obj["uri"], obj["digest"]))
    return out


def is_build_artifact(r: Result) -> bool | None:
    """True for a valid ``*ARTIFACT_OUTPUTS`` object with ``isBuildArtifact: "true"``.

    False when the result is not marked as one; None when it is an invalid ``*ARTIFACT_OUTPUTS``
    result (not an object, or a marked one without a valid uri and digest).
    """
    if not r.name.endswith(ARTIFACT_OUTPUTS):
        return False
    obj = r.object
    if obj is None:
        return None
    if obj.get("isBuildArtifact") != "true":
        return False
    return True if _valid_object(r, obj) else None


def build_artifacts(results: Sequence[Result]) -> list[tuple[str, str]]:
    """``*ARTIFACT_OUTPUTS`` objects marked ``isBuildArtifact: "true"`` as (uri, digest)."""
    out = []
    for r in results:
        if is_build_artifact(r):
            obj = r.object or {}
            out.append((obj["uri"], obj["digest"]))
    return out


def input_materials(results: Sequence[Result]) -> list[tuple[str, dict[str, str]]]:
    """``*ARTIFACT_INPUTS`` objects as materials: (uri, {algorithm: hex})."""
    out = []
    for uri, digest in structured(results, ARTIFACT_INPUTS):
        alg, hexpart = parse_digest(digest)
        out.append((uri, {alg: hexpart}))
    return out


# --- merging (Chains' AppendSubjects / AppendMaterials) ----------------------------------------


class Descriptors:
    """An ordered list of (name, digest set); adding an entry with the same name and one equal
    ``alg: hex`` pair merges the digest sets instead of appending (linear time)."""

    def __init__(self, items: Iterable[tuple[str, dict[str, str]]] = ()) -> None:
        self._items: list[tuple[str, dict[str, str]]] = []
        #: (name, algorithm, hex) → positions holding it; the first match wins, as in Chains.
        self._index: dict[tuple[str, str, str], set[int]] = {}
        #: positions with an empty hex value (they match any entry lacking that algorithm).
        self._blank: dict[str, set[int]] = {}
        self.extend(items)

    def _matches(self, name: str, digest: dict[str, str]) -> set[int]:
        found: set[int] = set()
        for alg, value in digest.items():
            found |= self._index.get((name, alg, value), set())
        for pos in self._blank.get(name, ()):
            if any(v == "" and alg not in digest for alg, v in self._items[pos][1].items()):
                found.add(pos)
        return found

    def _set(self, pos: int, name: str, alg: str, value: str) -> None:
        existing = self._items[pos][1]
        if alg in existing:
            self._index.get((name, alg, existing[alg]), set()).discard(pos)
        existing[alg] = value
        self._index.setdefault((name, alg, value), set()).add(pos)
        if value == "":
            self._blank.setdefault(name, set()).add(pos)

    def add(self, name: str, digest: dict[str, str]) -> None:
        found = self._matches(name, digest)
        if found:
            pos = min(found)
        else:
            pos = len(self._items)
            self._items.append((name, {}))
        for alg, value in digest.items():
            self._set(pos, name, alg, value)

    def extend(self, items: Iterable[tuple[str, dict[str, str]]]) -> None:
        for name, digest in items:
            self.add(name, digest)

    def __iter__(self) -> Iterator[tuple[str, dict[str, str]]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _split_digest(digest: str) -> dict[str, str] | None:
    parts = digest.split(":")
    if len(parts) != 2:
        _warn("digest '%s' is not in the form <algorithm>:<hex>; skipped", digest)
        return None
    return {parts[0]: parts[1]}


def object_subjects(results: Sequence[Result]) -> Descriptors:
    """Subjects of one run for ``slsa/v1`` and ``slsa/v2alpha3``: images, ``*ARTIFACT_URI`` artifacts
    and every ``*ARTIFACT_OUTPUTS`` object."""
    subjects = Descriptors()
    for image in oci_images(results):
        subjects.add(image.repository, {"sha256": image.hex})
    for uri, digest in artifact_uris(results) + structured(results, ARTIFACT_OUTPUTS):
        split = _split_digest(digest)
        if split is not None:
            subjects.add(uri, split)
    return subjects


def build_artifact_subjects(results: Sequence[Result]) -> Descriptors:
    """Subjects for ``slsa/v2alpha4``: build artifacts, then images."""
    subjects = Descriptors()
    for uri, digest in build_artifacts(results):
        split = _split_digest(digest)
        if split is not None:
            subjects.add(uri, split)
    for image in oci_images(results):
        subjects.add(image.repository, {"sha256": image.hex})
    return subjects


# --- artifacts to sign ---------------------------------------------------------------------------


def image_artifact(image: ImageRef, owner: RunRef) -> Artifact:
    """The signable artifact for an image (FullKey ``repo@sha256:…``, ShortKey 12 hex)."""
    return Artifact("oci", image.name, image.hex[:12], image.name, owner)


def images(snapshot: RunSnapshot, config: Config | None = None) -> list[Artifact]:
    """The OCI images Chains signs (simplesigning) for this run.

    Only a TaskRun's own results count; Chains never signs images from a PipelineRun, so
    that yields an empty list. ``config`` is accepted for symmetry with the other steps.
    """
    if snapshot.kind != "TaskRun":
        return []
    from chainmail.formats._tekton import status_results

    return [
        image_artifact(image, snapshot.ref) for image in oci_images(results_from(status_results(snapshot)))
    ]
