"""Sign only what exists: every image a run claims must be in its registry before anything is signed.

Tekton Chains signs whatever digest a run's ``IMAGE_URL``/``IMAGE_DIGEST``-style results name. A
typo, a failed push or a forged result then yields a signature and a provenance for an image
that does not exist. chainmail HEADs each claimed digest first (the ``oci`` artifacts from type
hinting and every attestation subject). One missing image refuses the whole run: its provenance
names that image as a subject, so signing "the rest" would still publish a statement about an
image nobody can fetch. ``chainmail.sign.verify-images-exist: "false"`` turns the check off (air
gapped stores, offline demos). An unreachable registry is retried as usual and reported as
unreachable, never as "does not exist".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from chainmail.errors import ImageNotFoundError, InputError

if TYPE_CHECKING:
    from chainmail._internal.registry import RegistryClient
    from chainmail.context import Context
    from chainmail.models import Payload

log = logging.getLogger("chainmail.image_check")

CONFIG_KEY = "chainmail.sign.verify-images-exist"


def claimed_images(payloads: Iterable[Payload]) -> list[str]:
    """``repo@sha256:<hex>`` of every image the payloads sign or name as subject, in first-seen order."""
    seen: dict[str, None] = {}
    for payload in payloads:
        if payload.artifact.kind == "oci":
            seen.setdefault(payload.artifact.ref, None)
        for subject in payload.subjects:
            seen.setdefault(subject, None)
    return list(seen)


def require_images_exist(payloads: list[Payload], ctx: Context, *, client: RegistryClient | None = None) -> None:
    """Raise :class:`ImageNotFoundError` naming the first claimed image its registry does not hold.

    ``client`` is the registry client to ask (the one storage will push with, holding the run's pull
    secrets); default ``ctx.registry``. Registry errors (unreachable, refused credentials) propagate
    as they are. Results are cached in ``ctx.cache`` so a sweep HEADs each digest once.
    """
    if not ctx.config.bool(CONFIG_KEY):
        return
    registry = client or ctx.registry
    from chainmail._internal.registry import Reference

    for image in claimed_images(payloads):
        cache_key = "image-exists:" + image
        if ctx.cache.get(cache_key) is True:
            continue
        try:
            ref = Reference.parse(image)
        except InputError:
            raise ImageNotFoundError(f"the run names image '{image}', which is not a valid image reference; "
                                     "nothing was signed") from None
        if not ref.digest:
            raise ImageNotFoundError(f"the run names image '{image}' without a digest; nothing was signed")
        found = registry.head_manifest(ref)
        if found is None or found[0] != ref.digest:
            raise ImageNotFoundError(
                f"image {image} does not exist in its registry; nothing of the run was signed",
                hint=f"push the image first, or set {CONFIG_KEY}: \"false\" for registries chainmail cannot reach",
            )
        ctx.cache[cache_key] = True
        log.debug("image %s exists", image)
