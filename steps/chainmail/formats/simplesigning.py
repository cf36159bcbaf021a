"""``simplesigning``: cosign's simple-signing payload for an image (signed raw, no DSSE)."""

from __future__ import annotations

from typing import Any

from chainmail.artifacts import parse_image
from chainmail.errors import InputError
from chainmail.formats._base import Formatter
from chainmail.formats._goval import go_json
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE, Artifact, RunSnapshot

COSIGN_SIGNATURE_TYPE = "cosign container image signature"


def simple_signing_body(docker_reference: str, digest: str) -> bytes:
    """The exact bytes cosign signs: ``{"critical":{…},"optional":null}`` in Go's key order."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": COSIGN_SIGNATURE_TYPE,
            },
            "optional": None,
        }
    )


class SimpleSigning(Formatter):
    """Signs an OCI image: the identity is the normalised repository, the image its digest."""

    type = "simplesigning"
    payload_type = SIMPLESIGNING_PAYLOAD_TYPE
    wrap = False
    kinds = frozenset({"oci"})

    def body(self, artifact: Artifact, snapshot: RunSnapshot, view: Any = None) -> bytes:
        try:
            image = parse_image(artifact.ref)
        except ValueError as exc:
            raise InputError(f"artifact {artifact.ref} is not an image reference by digest: {exc}") from None
        return simple_signing_body(image.repository, image.digest)
