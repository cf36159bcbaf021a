"""cosign's legacy layout: the ``sha256-<hex>.sig`` and ``sha256-<hex>.att`` tags, one signature per layer.

``.sig`` layers: the blob is the simple-signing payload, the signature is the
``dev.cosignproject.cosign/signature`` annotation. ``.att`` layers: the blob is a DSSE envelope.
Keyless layers carry ``dev.sigstore.cosign/certificate``, ``…/chain`` and ``…/bundle`` (Rekor SET).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import b64decode
from chainmail.errors import Error, NoMatchingSignatureError, VerificationError
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE
from chainmail.verify.claims import check_simplesigning, check_statement, parse_object
from chainmail.verify.model import Verified
from chainmail.verify.oci import json_blob
from chainmail.verify.search import FATAL, Search
from chainmail.verify.tlog import TlogCheck, entry_from_cosign_bundle, verifying_pems
from chainmail.verify.trust import layer_annotations, text_annotation, verify_envelope, verify_signature_layer

if TYPE_CHECKING:
    from chainmail._internal.registry import Reference, RegistryClient
    from chainmail.transparency.entry import LogEntry
    from chainmail.verify.certificates import IdentityPolicy
    from chainmail.verify.keys import Key
    from chainmail.verify.trusted_root import TrustedRoot

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"


def layer_tlog_entry(annotations: dict[str, Any]) -> LogEntry | None:
    """The Rekor entry of a layer's ``dev.sigstore.cosign/bundle`` annotation (None when it has none)."""
    value = text_annotation(annotations, BUNDLE_ANNOTATION)
    return entry_from_cosign_bundle(value) if value.strip() else None


def tag_layers(client: RegistryClient, repo: Reference, image: Reference, suffix: str,
               search: Search) -> list[tuple[int, dict[str, Any], str]]:
    """``(index, layer descriptor, location)`` of the image's ``.sig``/``.att`` tag; a manifest that cannot
    be read or parsed is one failed candidate."""
    from chainmail.storage.oci import signature_tag

    tag = signature_tag(image.digest, suffix)
    location = f"{repo.name}:{tag}"
    try:
        got = client.get_manifest(repo.with_tag(tag))
        if got is None:
            return []
        layers = parse_object(got[0], f"{location} manifest").get("layers") or []
        if not isinstance(layers, list):
            raise VerificationError("manifest 'layers' is not a list")
    except FATAL:
        raise
    except (VerificationError, Error) as exc:
        search.found += 1
        search.fail(location, exc)
        return []
    out = [(i, layer, location) for i, layer in enumerate(layers) if isinstance(layer, dict)]
    search.found += len(out)
    return out


def verify_sig_layer(client: RegistryClient, repo: Reference, image: Reference, layer: dict[str, Any],
                     keys: list[Key], identity: IdentityPolicy | None,
                     trusted_root: TrustedRoot | str | Path | None, target: str, where: str,
                     tlog: TlogCheck | None = None) -> Verified:
    """One ``.sig`` layer: its signature over the blob, cosign's simple-signing claims for ``image``, then
    (key-signed) its transparency log entry (``tlog``; None: required, production log keys)."""
    annotations = layer_annotations(layer)
    annotation = text_annotation(annotations, SIGNATURE_ANNOTATION)
    if not annotation:
        raise VerificationError("layer has no signature annotation")
    signature = b64decode(annotation)
    payload, _doc = json_blob(client, repo, layer, "signature payload")
    key_id, cert = verify_signature_layer(keys, payload, signature, annotations, identity, trusted_root)
    if key_id is None:
        raise NoMatchingSignatureError("signature does not verify with the given key(s)")
    check_simplesigning(payload, image.digest)
    if identity is None:
        _tlog(tlog).require_signature(layer_tlog_entry(annotations), payload, signature,
                                      verifying_pems(keys, key_id))
    return Verified(target, "legacy-sig", SIMPLESIGNING_PAYLOAD_TYPE, payload, None, key_id, cert, where)


def verify_att_layer(client: RegistryClient, repo: Reference, image: Reference, layer: dict[str, Any],
                     keys: list[Key], identity: IdentityPolicy | None,
                     trusted_root: TrustedRoot | str | Path | None, wanted: str | None, target: str,
                     where: str, tlog: TlogCheck | None = None) -> Verified:
    """One ``.att`` layer: the DSSE envelope in its blob, the statement's claims for ``image``, then
    (key-signed) its transparency log entry."""
    annotations = layer_annotations(layer)
    cert = text_annotation(annotations, CERTIFICATE_ANNOTATION)
    envelope, _doc = json_blob(client, repo, layer, "DSSE envelope")
    payload_type, payload, key_id = verify_envelope(keys, envelope, image.digest, cert, identity, trusted_root,
                                                    layer=layer)
    statement = check_statement(payload_type, payload, image.digest, wanted)
    if identity is None:
        _tlog(tlog).require_envelope(layer_tlog_entry(annotations), envelope, payload, verifying_pems(keys, key_id))
    return Verified(target, "legacy-att", payload_type, payload, statement, key_id, cert, where)


def _tlog(tlog: TlogCheck | None) -> TlogCheck:
    return tlog if tlog is not None else TlogCheck()

