"""Registry access shared by the image layouts: resolve the image, find where signatures live, fetch blobs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import load_json
from chainmail.errors import TagNotFoundError, VerificationError

if TYPE_CHECKING:
    from chainmail._internal.registry import Reference, RegistryClient
    from chainmail.context import Context


def client_and_image(ref: str, ctx: Context) -> tuple[RegistryClient, Reference]:
    """The registry client and the image pinned by digest; :class:`TagNotFoundError` when it does not exist."""
    from chainmail._internal.registry import Reference

    client = ctx.registry
    image = Reference.parse(ref)
    head = client.head_manifest(image)
    if head is None:
        raise TagNotFoundError(f"image {image} not found in the registry")
    if image.digest and head[0] != image.digest:
        raise VerificationError(f"registry returned digest {head[0]} for {image}")
    return client, Reference(image.registry, image.repository, image.tag, head[0])


def signature_repo(image: Reference, ctx: Context) -> Reference:
    """Where ``.sig``/``.att`` live: ``storage.oci.repository``, ``$COSIGN_REPOSITORY``, else by the image."""
    from chainmail._internal.registry import Reference

    override = (ctx.config.get("storage.oci.repository").strip()
                or os.environ.get("COSIGN_REPOSITORY", "").strip())
    return Reference.parse(override).with_tag("") if override else image.with_tag("")


def digest_of(desc: dict[str, Any]) -> str:
    digest = desc.get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise VerificationError("descriptor has no sha256 digest")
    return digest


def json_blob(client: RegistryClient, repo: Reference, desc: dict[str, Any], what: str) -> tuple[bytes, Any]:
    """A blob that must be JSON: its bytes and the parsed document (depth-bounded; a VerificationError
    when it is not JSON or nested too deep)."""
    data = client.get_blob(repo, digest_of(desc))
    try:
        return data, load_json(data)
    except ValueError as exc:
        raise VerificationError(f"{what} is not usable JSON ({exc})") from None
