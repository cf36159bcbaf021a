"""Sigstore bundles attached to the image as OCI referrers: through the referrers API, or the
``sha256-<hex>`` fallback index tag on registries without it (cosign's ``--new-bundle-format``).

Each referrer manifest must have the image as ``subject`` and a bundle layer; the bundle holds a DSSE
envelope (message-signature bundles are not supported) and, when keyless, the signing certificate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import compact_json
from chainmail.errors import Error, VerificationError
from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE
from chainmail.verify.claims import check_simplesigning, check_statement, parse_object
from chainmail.verify.model import BUNDLE_MEDIA_TYPES, SIGN_PREDICATE, Verified
from chainmail.verify.oci import digest_of, json_blob
from chainmail.verify.search import FATAL, MALFORMED, Search
from chainmail.verify.trust import verify_envelope

if TYPE_CHECKING:
    from chainmail._internal.registry import Reference, RegistryClient
    from chainmail.verify.certificates import IdentityPolicy
    from chainmail.verify.keys import Key
    from chainmail.verify.tlog import TlogCheck
    from chainmail.verify.trusted_root import TrustedRoot


def _predicate_of(doc: dict[str, Any]) -> object:
    from chainmail.storage.oci import ANN_BUNDLE_PREDICATE

    annotations = doc.get("annotations") or {}
    return annotations.get(ANN_BUNDLE_PREDICATE) if isinstance(annotations, dict) else None


def _wanted(predicate: object, want_signatures: bool) -> bool:
    return predicate is None or (predicate == SIGN_PREDICATE) == want_signatures


def find_bundles(client: RegistryClient, image: Reference, search: Search, want_signatures: bool,
                 ) -> list[tuple[dict[str, Any], str, str]]:
    """``(bundle, layout, location)`` for the image's bundle referrers of the wanted kind (signatures, or
    attestations); each referrer that cannot be used is one failed candidate."""
    from chainmail.storage.oci import BUNDLE_TYPE, referrer_descriptors

    repo = image.with_tag("")
    try:
        descs, layout = referrer_descriptors(client, repo, image.digest)
    except FATAL:
        raise
    except Error as exc:
        search.found += 1
        search.fail(f"{repo.name} referrers of {image.digest}", exc)
        return []
    out = []
    for desc in descs:
        location = f"{repo.name}@{desc.get('digest')}"
        try:
            if not _wanted(_predicate_of(desc), want_signatures):
                continue
            got = client.get_manifest(repo.with_digest(digest_of(desc)))
            if got is None:
                search.found += 1
                raise VerificationError("referrer manifest is missing")
            manifest = parse_object(got[0], "referrer manifest")
            if not _wanted(_predicate_of(manifest), want_signatures):
                continue
            search.found += 1
            subject = manifest.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != image.digest:
                raise VerificationError(f"referrer's subject is not {image.digest}")
            layers = manifest.get("layers")
            layers = [x for x in layers if isinstance(x, dict) and x.get("mediaType") == BUNDLE_TYPE] \
                if isinstance(layers, list) else []
            if not layers:
                raise VerificationError("referrer has no Sigstore bundle layer")
            _raw, bundle = json_blob(client, repo, layers[0], "Sigstore bundle")
            if not isinstance(bundle, dict):
                raise VerificationError("Sigstore bundle is not a JSON object")
        except FATAL:
            raise
        except (VerificationError, Error) as exc:
            search.fail(location, exc)
            continue
        except MALFORMED as exc:
            search.found += 1
            search.fail(location, f"malformed referrer ({type(exc).__name__})")
            continue
        out.append((bundle, layout, location))
    return out


def bundle_envelope(bundle: dict[str, Any]) -> tuple[bytes, str]:
    """The DSSE envelope JSON and the signing certificate PEM ("" for key-based) of a bundle."""
    media_type = bundle.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise VerificationError(f"not a Sigstore bundle: mediaType {media_type!r}")
    env = bundle.get("dsseEnvelope")
    if not isinstance(env, dict):
        kind = "message signature" if "messageSignature" in bundle else "no DSSE envelope"
        raise VerificationError(f"unsupported bundle content ({kind})")
    from chainmail.verify.sigstore_bundle import bundle_certificate_pem

    # v0.3's `certificate`, or the leaf of v0.1/v0.2's `x509CertificateChain`
    return compact_json(env), bundle_certificate_pem(bundle)


def verify_bundle(bundle: dict[str, Any], image: Reference, keys: list[Key], identity: IdentityPolicy | None,
                  trusted_root: TrustedRoot | str | Path | None, *, wanted: str | None, signatures: bool,
                  target: str, layout: str, location: str, tlog: TlogCheck | None = None) -> Verified:
    """One bundle: its envelope (key or keyless), then cosign's claims — a simple-signing payload or a
    ``sign/v1`` statement for image signatures, an in-toto statement of type ``wanted`` for attestations —
    then, key-signed, its ``tlogEntries`` (``tlog``; None: required; keyless bundles: sigstore-python)."""
    envelope, cert = bundle_envelope(bundle)
    payload_type, payload, key_id = verify_envelope(keys, envelope, image.digest, cert, identity, trusted_root,
                                                    bundle=bundle)
    statement = None
    if signatures and payload_type == SIMPLESIGNING_PAYLOAD_TYPE:
        check_simplesigning(payload, image.digest)
    else:
        statement = check_statement(payload_type, payload, image.digest, SIGN_PREDICATE if signatures else wanted)
    if identity is None:
        from chainmail.verify.tlog import TlogCheck, entry_from_bundle, verifying_pems

        (tlog or TlogCheck()).require_envelope(entry_from_bundle(bundle), envelope, payload,
                                               verifying_pems(keys, key_id))
    return Verified(target, layout, payload_type, payload, statement, key_id, cert, location)
