"""Verify what Tekton Chains or chainmail stored: the ``verify`` step.

Example::

    keys = [Path("cosign.pub").read_text()]
    for v in verify_attestation("registry.example/app@sha256:…", keys, ctx, "slsaprovenance1"):
        print(v.layout, v.statement["predicateType"])

Like sigstore-python's ``verify_dsse``, every function returns payloads only after their
signature verified, as :class:`Verified` records; check ``payload_type`` before trusting
``payload``. The checks follow cosign:

- :func:`verify_image` (``cosign verify --key``): the ``sha256-<hex>.sig`` tag and Sigstore bundle
  referrers (OCI 1.1 API or the ``sha256-<hex>`` fallback index). Each signature must verify over
  the payload, whose ``critical.type`` is cosign's and whose ``docker-manifest-digest`` is the image's.
- :func:`verify_attestation` (``cosign verify-attestation --key [--type]``): ``.att`` layers and
  bundles; the DSSE payload type must be in-toto, a subject's sha256 must be the image digest, and
  with ``predicate_type`` the statement's ``predicateType`` must match.
- Both take ``identity=`` (an :class:`~chainmail.identity.IdentityPolicy`) instead of keys for
  keyless signatures (``cosign verify --certificate-identity … --certificate-oidc-issuer …``):
  ``.sig``/``.att`` layers are checked by :mod:`chainmail.identity` against ``trusted_root`` (the
  leaf from ``dev.sigstore.cosign/certificate``, intermediates from ``…/chain``, the signing time
  from the Rekor SET in ``…/bundle`` when there is one, else now), bundles by sigstore-python.
- :func:`verify_run` (``cosign verify-blob[-attestation]`` on Chains' ``tekton`` annotations) and
  :func:`verify_file_store` (the ``file`` backend).

Image checks need one good signature (cosign's rule: other layers may be from other keys).
Run annotations and file stores are chainmail's own records of what was signed, so there
*every* stored signature must verify, and a DSSE envelope's payload must equal the stored payload.

Errors (exit codes as cosign): :class:`NoSignatureError` (10) when nothing is stored,
:class:`TagNotFoundError` (11) when the image does not exist, :class:`NoMatchingSignatureError`
(12) when nothing verifies, :class:`NoCertificateError` (13) when an identity was asked for and
every stored signature failed for want of a certificate (they were made with a key).
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import b64decode, b64encode
from chainmail.errors import (
    ConfigError,
    Error,
    InputError,
    NoCertificateError,
    NoMatchingSignatureError,
    NoSignatureError,
    RegistryAuthError,
    RegistryUnreachableError,
    TagNotFoundError,
    VerificationError,
)
from chainmail.models import INTOTO_PAYLOAD_TYPE, SIMPLESIGNING_PAYLOAD_TYPE, RunSnapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chainmail._internal.registry import Reference, RegistryClient
    from chainmail.context import Context
    from chainmail.identity import IdentityPolicy, TrustedRoot

log = logging.getLogger("chainmail.verify")

COSIGN_SIGNATURE_TYPE = "cosign container image signature"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

#: Where each verified payload was found.
LAYOUTS = ("legacy-sig", "legacy-att", "bundle-referrer", "bundle-fallback-tag", "annotations", "file")

#: cosign's ``--type`` short names (``options.PredicateTypeMap``).
PREDICATE_TYPES: dict[str, str] = {
    "custom": "https://cosign.sigstore.dev/attestation/v1",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
}

_ANNOTATION_PREFIX = "chains.tekton.dev/"


@dataclass(frozen=True)
class Verified:
    """One payload whose signature verified, and where it was found."""

    #: ``repo@sha256:…`` for images, ``<kind>/<namespace>/<name>`` for runs, a file path for the file store.
    ref: str
    #: One of :data:`LAYOUTS`.
    layout: str
    payload_type: str
    payload: bytes
    #: The parsed in-toto statement (None for simple-signing payloads).
    statement: dict[str, Any] | None = None
    #: SSH SHA256 fingerprint of the public key that verified (Chains' keyid format).
    key_id: str = ""
    #: Signing certificate PEM (keyless), else "".
    cert: str = ""
    #: The tag, referrer digest, annotation key or file the signature came from.
    location: str = ""

    @property
    def predicate_type(self) -> str:
        return str((self.statement or {}).get("predicateType") or "")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ref": self.ref, "layout": self.layout, "location": self.location,
                               "payloadType": self.payload_type, "keyId": self.key_id}
        if self.statement is not None:
            doc["predicateType"] = self.predicate_type
            doc["statement"] = self.statement
        else:
            try:
                doc["payload"] = json.loads(self.payload)
            except ValueError:
                doc["payload"] = b64encode(self.payload)
        if self.cert:
            doc["cert"] = self.cert
        return doc

    def summary(self) -> str:
        """One line for humans."""
        what = f"attestation {self.predicate_type}" if self.statement is not None else "signature"
        return f"verified {what} for {self.ref} [{self.layout}: {self.location}] key {self.key_id or '?'}"


# -- keys and primitives -----------------------------------------------------------------------------

def resolve_predicate_type(value: str | None) -> str | None:
    """cosign's ``--type``: a short name (``slsaprovenance1``…) or a full URI; None means any."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value in PREDICATE_TYPES:
        return PREDICATE_TYPES[value]
    if "://" in value or value.startswith("urn:"):
        return value
    raise InputError(f"--type '{value}': expected a predicate type URI or one of "
                     f"{', '.join(PREDICATE_TYPES)}")


def _keys(public_keys: list[str], ctx: Context) -> list[tuple[str, str]]:
    """``(pem, key_id)`` per key; non-PEM entries go through ``chainmail.signing.load_public_key``."""
    from chainmail.signing.keys import ssh_fingerprint

    if not public_keys:
        raise InputError("no public key given: pass --key (a cosign.pub, a key directory or k8s://NS/SECRET)")
    out = []
    for key in public_keys:
        pem = key
        if not key.lstrip().startswith("-----BEGIN"):
            from chainmail.signing import load_public_key

            pem = load_public_key(key, ctx)
        try:
            key_id = ssh_fingerprint(pem)
        except Error:
            key_id = ""
        out.append((pem, key_id))
    return out


def _verify_raw(keys: list[tuple[str, str]], signature: bytes, data: bytes) -> str | None:
    """The key id of the key that verifies ``signature`` over ``data``, or None."""
    from chainmail.signing import verify_signature

    for pem, key_id in keys:
        try:
            verify_signature(pem, signature, data)
        except VerificationError:
            continue
        return key_id or "unknown"
    return None


def _verify_dsse(keys: list[tuple[str, str]], envelope: bytes) -> tuple[str, bytes, str]:
    """``(payload_type, payload, key_id)`` from a DSSE envelope; raises :class:`VerificationError`."""
    from chainmail.signing.dsse import verify_envelope

    last: VerificationError | None = None
    for pem, key_id in keys:
        try:
            payload_type, payload = verify_envelope(envelope, [pem])
        except NoMatchingSignatureError as exc:
            last = exc
            continue
        return payload_type, payload, key_id or "unknown"
    raise last or NoMatchingSignatureError("DSSE envelope did not verify")


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise VerificationError(f"{what} is not a JSON object")
    return doc


#: Failures that abort verification instead of counting as a signature that did not verify: the
#: registry refusing us or gone, and configuration that cannot work (a trusted root sigstore-python
#: cannot load, sigstore-python missing for a keyless bundle).
_FATAL = (RegistryAuthError, RegistryUnreachableError, ConfigError)

#: Errors a malformed stored document can raise while it is picked apart; reported as a failed check.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError, UnicodeDecodeError)

#: Sigstore bundle media types (v0.1–v0.3), exactly as the bundle spec spells them.
BUNDLE_MEDIA_TYPES = frozenset({
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
})


def _layer_annotations(layer: dict[str, Any]) -> dict[str, Any]:
    annotations = layer.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict):
        raise VerificationError("layer annotations are not an object")
    return annotations


def _text_annotation(annotations: dict[str, Any], key: str) -> str:
    value = annotations.get(key, "")
    if not isinstance(value, str):
        raise VerificationError(f"annotation {key} is not a string")
    return value


def check_simplesigning(payload: bytes, image_digest: str | None) -> dict[str, Any]:
    """cosign's claim checks on a simple-signing payload; returns it parsed."""
    doc = _json(payload, "simple-signing payload")
    critical = doc.get("critical")
    if not isinstance(critical, dict):
        raise VerificationError("simple-signing payload has no 'critical' section")
    if critical.get("type") != COSIGN_SIGNATURE_TYPE:
        raise VerificationError(f"simple-signing critical.type is '{critical.get('type')}', "
                                f"not '{COSIGN_SIGNATURE_TYPE}'")
    signed = (critical.get("image") or {}).get("docker-manifest-digest")
    if image_digest is not None and signed != image_digest:
        raise VerificationError(f"signature is for {signed}, not for image {image_digest}")
    return doc


def check_statement(payload_type: str, payload: bytes, image_digest: str | None,
                    predicate_type: str | None) -> dict[str, Any]:
    """cosign's attestation checks: in-toto payload type, a subject with the image digest, predicate type."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise VerificationError(f"invalid payloadType {payload_type} (expected {INTOTO_PAYLOAD_TYPE})")
    statement = _json(payload, "in-toto statement")
    if image_digest is not None:
        want = image_digest.partition(":")[2]
        algo = image_digest.partition(":")[0]
        subjects = statement.get("subject") or []
        if not any(isinstance(s, dict) and (s.get("digest") or {}).get(algo) == want for s in subjects):
            raise VerificationError(f"no subject of the statement has digest {image_digest}")
    if predicate_type is not None and statement.get("predicateType") != predicate_type:
        raise _PredicateMismatchError(str(statement.get("predicateType")))
    return statement


class _PredicateMismatchError(VerificationError):
    """A verified statement with another predicate type (filtered out, as cosign's --type does)."""


# -- registry ----------------------------------------------------------------------------------------

class _Search:
    """What an image verification found: verified payloads, failure reasons, and how much was stored."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.found = 0
        self.verified: list[Verified] = []
        self.failures: list[str] = []
        #: What each failure was (the exception, or the text), in the order of :attr:`failures`.
        self.reasons: list[object] = []
        self.mismatched_types: list[str] = []

    def fail(self, where: str, reason: object) -> None:
        log.info("%s: %s", where, reason)
        self.failures.append(f"{where}: {reason}")
        self.reasons.append(reason)


@contextmanager
def _recorded(search: _Search, where: str, what: str, *, by_type: bool = False) -> Iterator[None]:
    """Check one stored signature: a failure is recorded in ``search`` (``what``: how a malformed one is
    named) and the block skipped, except :data:`_FATAL`, which aborts. ``by_type``: a statement of
    another predicate type is set aside in ``search.mismatched_types`` (cosign's ``--type`` filter)."""
    try:
        yield
    except _FATAL:
        raise
    except (VerificationError, Error) as exc:
        if by_type and isinstance(exc, _PredicateMismatchError):
            search.mismatched_types.append(str(exc))
        else:
            search.fail(where, exc)
    except _MALFORMED as exc:
        search.fail(where, f"malformed {what} ({type(exc).__name__})")


def _client_and_image(ref: str, ctx: Context) -> tuple[RegistryClient, Reference]:
    from chainmail._internal.registry import Reference

    client = ctx.registry
    image = Reference.parse(ref)
    head = client.head_manifest(image)
    if head is None:
        raise TagNotFoundError(f"image {image} not found in the registry")
    if image.digest and head[0] != image.digest:
        raise VerificationError(f"registry returned digest {head[0]} for {image}")
    return client, Reference(image.registry, image.repository, image.tag, head[0])


def _signature_repo(image: Reference, ctx: Context) -> Reference:
    """Where ``.sig``/``.att`` live: ``storage.oci.repository``, ``$COSIGN_REPOSITORY``, else by the image."""
    import os

    from chainmail._internal.registry import Reference

    override = (ctx.config.get("storage.oci.repository").strip()
                or os.environ.get("COSIGN_REPOSITORY", "").strip())
    return Reference.parse(override).with_tag("") if override else image.with_tag("")


def _legacy_layers(client: RegistryClient, repo: Reference, image: Reference, suffix: str,
                   search: _Search) -> list[tuple[int, dict[str, Any], str]]:
    from chainmail.storage.oci import signature_tag

    tag = signature_tag(image.digest, suffix)
    got = client.get_manifest(repo.with_tag(tag))
    if got is None:
        return []
    location = f"{repo.name}:{tag}"
    try:
        layers = _json(got[0], f"{location} manifest").get("layers") or []
        if not isinstance(layers, list):
            raise VerificationError("manifest 'layers' is not a list")
    except VerificationError as exc:
        search.found += 1
        search.fail(location, exc)
        return []
    out = [(i, layer, location) for i, layer in enumerate(layers) if isinstance(layer, dict)]
    search.found += len(out)
    return out


def _bundles(client: RegistryClient, image: Reference, search: _Search, want_signatures: bool,
             ) -> list[tuple[dict[str, Any], str, str]]:
    """``(bundle, layout, location)`` for the image's Sigstore bundle referrers of the wanted kind."""
    from chainmail.storage.oci import ANN_BUNDLE_PREDICATE, BUNDLE_TYPE, referrer_descriptors

    repo = image.with_tag("")
    descs, layout = referrer_descriptors(client, repo, image.digest)
    out = []
    for desc in descs:
        location = f"{repo.name}@{desc.get('digest')}"
        try:
            annotations = desc.get("annotations") or {}
            annotated = annotations.get(ANN_BUNDLE_PREDICATE) if isinstance(annotations, dict) else None
            if annotated is not None and (annotated == SIGN_PREDICATE) != want_signatures:
                continue
            got = client.get_manifest(repo.with_digest(_digest_of(desc)))
            if got is None:
                search.found += 1
                raise VerificationError("referrer manifest is missing")
            manifest = _json(got[0], "referrer manifest")
            annotations = manifest.get("annotations") or {}
            predicate = annotations.get(ANN_BUNDLE_PREDICATE) if isinstance(annotations, dict) else None
            if predicate is not None and (predicate == SIGN_PREDICATE) != want_signatures:
                continue
            search.found += 1
            if (manifest.get("subject") or {}).get("digest") != image.digest:
                raise VerificationError(f"referrer's subject is not {image.digest}")
            layers = [x for x in manifest.get("layers") or [] if isinstance(x, dict)
                      and x.get("mediaType") == BUNDLE_TYPE]
            if not layers:
                raise VerificationError("referrer has no Sigstore bundle layer")
            bundle = _json(client.get_blob(repo, _digest_of(layers[0])), "Sigstore bundle")
        except _FATAL:
            raise
        except (VerificationError, Error) as exc:
            search.fail(location, exc)
            continue
        except _MALFORMED as exc:
            search.found += 1
            search.fail(location, f"malformed referrer ({type(exc).__name__})")
            continue
        out.append((bundle, layout, location))
    return out


def _digest_of(desc: dict[str, Any]) -> str:
    digest = desc.get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise VerificationError("descriptor has no sha256 digest")
    return digest


def _bundle_envelope(bundle: dict[str, Any]) -> tuple[bytes, str]:
    """The DSSE envelope JSON and the certificate PEM ("" for key-based) of a bundle."""
    media_type = bundle.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise VerificationError(f"not a Sigstore bundle: mediaType {media_type!r}")
    env = bundle.get("dsseEnvelope")
    if not isinstance(env, dict):
        kind = "message signature" if "messageSignature" in bundle else "no DSSE envelope"
        raise VerificationError(f"unsupported bundle content ({kind})")
    material = bundle.get("verificationMaterial") or {}
    cert = ""
    raw = (material.get("certificate") or {}).get("rawBytes")
    if raw:
        body = b64encode(b64decode(raw))
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        cert = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    return json.dumps(env).encode(), cert


def _policy_kwargs(identity: IdentityPolicy) -> dict[str, str | None]:
    """The four matching keywords of :mod:`chainmail.identity`'s functions."""
    return {"identity": identity.identity, "issuer": identity.issuer,
            "identity_regexp": identity.identity_regexp, "issuer_regexp": identity.issuer_regexp}


def _certificate_name(cert_pem: str, identity: IdentityPolicy) -> str:
    """The SAN identity of a verified bundle's certificate that matched the policy (the key id shown)."""
    from cryptography import x509

    try:
        return identity.check(x509.load_pem_x509_certificate(cert_pem.encode()))[0]
    except (ValueError, Error):
        return "unknown"


def _keyless_layer(annotations: dict[str, Any]) -> tuple[str, str, str]:
    """``(certificate, chain, rekor bundle)`` annotations of a legacy ``.sig``/``.att`` layer."""
    return (_text_annotation(annotations, "dev.sigstore.cosign/certificate"),
            _text_annotation(annotations, "dev.sigstore.cosign/chain"),
            _text_annotation(annotations, "dev.sigstore.cosign/bundle"))


def verify_image(ref: str, public_keys: list[str], ctx: Context, *, identity: IdentityPolicy | None = None,
                 trusted_root: TrustedRoot | str | Path | None = None) -> list[Verified]:
    """``cosign verify --key``: image signatures in ``.sig`` layers and signature bundles.

    With ``identity`` (keyless, ``--certificate-identity``/``--certificate-oidc-issuer``) no key is
    loaded: each signature's certificate must chain to ``trusted_root`` (None: production) and match.
    Raises :class:`TagNotFoundError`, :class:`NoSignatureError`, :class:`NoMatchingSignatureError` or
    :class:`NoCertificateError`.
    """
    keys = _keys(public_keys, ctx) if identity is None else []
    client, image = _client_and_image(ref, ctx)
    target = f"{image.name}@{image.digest}"
    search = _Search(target)
    repo = _signature_repo(image, ctx)
    for index, layer, location in _legacy_layers(client, repo, image, "sig", search):
        where = f"{location} layer {index}"
        with _recorded(search, where, "signature layer"):
            annotations = _layer_annotations(layer)
            annotation = _text_annotation(annotations, "dev.cosignproject.cosign/signature")
            if not annotation:
                raise VerificationError("layer has no signature annotation")
            signature = b64decode(annotation)
            payload = client.get_blob(repo, _digest_of(layer))
            key_id, cert = _verify_layer(keys, payload, signature, annotations, identity, trusted_root)
            if key_id is None:
                raise NoMatchingSignatureError("signature does not verify with the given key(s)")
            check_simplesigning(payload, image.digest)
            search.verified.append(Verified(target, "legacy-sig", SIMPLESIGNING_PAYLOAD_TYPE, payload, None,
                                            key_id, cert, where))
    for bundle, layout, location in _bundles(client, image, search, want_signatures=True):
        with _recorded(search, location, "bundle"):
            envelope, cert = _bundle_envelope(bundle)
            payload_type, payload, key_id = _verify_envelope(keys, envelope, image, cert, identity, trusted_root,
                                                             bundle=bundle)
            statement = None
            if payload_type == SIMPLESIGNING_PAYLOAD_TYPE:
                check_simplesigning(payload, image.digest)
            else:
                statement = check_statement(payload_type, payload, image.digest, SIGN_PREDICATE)
            search.verified.append(Verified(target, layout, payload_type, payload, statement, key_id, cert,
                                            location))
    return _outcome(search, "signatures")


def _verify_layer(keys: list[tuple[str, str]], payload: bytes, signature: bytes, annotations: dict[str, Any],
                  identity: IdentityPolicy | None, trusted_root: TrustedRoot | str | Path | None,
                  ) -> tuple[str | None, str]:
    """``(key id or identity, certificate)`` of a legacy ``.sig`` layer's signature over ``payload``:
    checked with ``keys``, or keyless with the layer's certificate when there is an ``identity``
    (key id None: no key verified it)."""
    cert, chain, rekor = _keyless_layer(annotations)
    if identity is None:
        return _verify_raw(keys, signature, payload), cert
    from chainmail.identity import rekor_signing_time, verify_keyless_signature

    when = rekor_signing_time(rekor, trusted_root, payload=payload, signature=signature,
                              cert_pem=cert) if rekor and cert else None
    who = verify_keyless_signature(payload, signature, cert, chain, **_policy_kwargs(identity),
                                   trusted_root=trusted_root, signing_time=when)
    return who.identity, cert


def _verify_envelope(keys: list[tuple[str, str]], envelope: bytes, image: Reference, cert: str,
                     identity: IdentityPolicy | None, trusted_root: TrustedRoot | str | Path | None, *,
                     layer: dict[str, Any] | None = None, bundle: dict[str, Any] | None = None,
                     ) -> tuple[str, bytes, str]:
    """``(payload_type, payload, key id or identity)`` of a DSSE envelope: checked with ``keys``, or
    keyless by the certificate of its ``.att`` ``layer`` or, else, of its Sigstore ``bundle``."""
    if identity is None:
        return _verify_dsse(keys, envelope)
    if layer is not None:
        return _verify_keyless_att(envelope, _layer_annotations(layer), identity, trusted_root)
    return _verify_keyless_bundle(bundle or {}, image, cert, identity, trusted_root)


def _verify_keyless_bundle(bundle: dict[str, Any], image: Reference, cert: str, identity: IdentityPolicy,
                           trusted_root: TrustedRoot | str | Path | None) -> tuple[str, bytes, str]:
    """``(payload_type, payload, identity)`` of a keyless bundle verified by sigstore-python."""
    from chainmail.identity import verify_keyless_bundle

    payload_type, payload = verify_keyless_bundle(bundle, image.digest, **_policy_kwargs(identity),
                                                  trusted_root=trusted_root)
    return payload_type, payload, _certificate_name(cert, identity)


def _verify_keyless_att(envelope: bytes, annotations: dict[str, Any], identity: IdentityPolicy,
                        trusted_root: TrustedRoot | str | Path | None) -> tuple[str, bytes, str]:
    """``(payload_type, payload, identity)`` of a legacy ``.att`` layer signed keyless."""
    from chainmail.identity import rekor_signing_time, verify_keyless_envelope
    from chainmail.signing import dsse

    cert, chain, rekor = _keyless_layer(annotations)
    when = None
    if rekor and cert:
        parsed = dsse.parse(envelope)
        when = rekor_signing_time(rekor, trusted_root, payload=parsed["payload"], cert_pem=cert)
    payload_type, payload, who = verify_keyless_envelope(envelope, cert, chain, **_policy_kwargs(identity),
                                                         trusted_root=trusted_root, signing_time=when)
    return payload_type, payload, who.identity


def verify_attestation(ref: str, public_keys: list[str], ctx: Context,
                       predicate_type: str | None = None, *, identity: IdentityPolicy | None = None,
                       trusted_root: TrustedRoot | str | Path | None = None) -> list[Verified]:
    """``cosign verify-attestation --key [--type]``: ``.att`` layers and attestation bundles.

    ``identity`` and ``trusted_root``: keyless verification, as for :func:`verify_image`.
    """
    wanted = resolve_predicate_type(predicate_type)
    keys = _keys(public_keys, ctx) if identity is None else []
    client, image = _client_and_image(ref, ctx)
    target = f"{image.name}@{image.digest}"
    search = _Search(target)
    repo = _signature_repo(image, ctx)
    #: (envelope, layout, where, cert, .att layer, bundle)
    sources: list[tuple[bytes | None, str, str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    for index, layer, location in _legacy_layers(client, repo, image, "att", search):
        try:
            cert = _text_annotation(_layer_annotations(layer), "dev.sigstore.cosign/certificate")
        except VerificationError as exc:
            search.fail(f"{location} layer {index}", exc)
            continue
        sources.append((None, "legacy-att", f"{location} layer {index}", cert, layer, None))
    for bundle, layout, location in _bundles(client, image, search, want_signatures=False):
        try:
            envelope, cert = _bundle_envelope(bundle)
        except VerificationError as exc:
            search.fail(location, exc)
            continue
        except _MALFORMED as exc:
            search.fail(location, f"malformed bundle ({type(exc).__name__})")
            continue
        sources.append((envelope, layout, location, cert, None, bundle))
    for envelope, layout, where, cert, layer, bundle in sources:
        with _recorded(search, where, "attestation", by_type=True):
            if envelope is None and layer is not None:
                envelope = client.get_blob(repo, _digest_of(layer))
            payload_type, payload, key_id = _verify_envelope(keys, envelope or b"", image, cert, identity,
                                                             trusted_root, layer=layer, bundle=bundle)
            statement = check_statement(payload_type, payload, image.digest, wanted)
            search.verified.append(Verified(target, layout, payload_type, payload, statement, key_id, cert,
                                            where))
    if not search.verified and search.mismatched_types:
        found = ", ".join(sorted(set(search.mismatched_types)))
        raise NoMatchingSignatureError(
            f"{target}: no verified attestation has predicate type {wanted} (found {found})")
    return _outcome(search, "attestations")


def _outcome(search: _Search, what: str) -> list[Verified]:
    if search.verified:
        return search.verified
    if not search.found:
        raise NoSignatureError(f"no {what} found for {search.image}")
    more = len(search.failures) - 3
    shown = "; ".join(search.failures[:3]) + (f"; … {more} more" if more > 0 else "")
    if search.reasons and all(isinstance(r, NoCertificateError) for r in search.reasons):
        first = search.reasons[0]
        raise NoCertificateError(f"none of the {search.found} {what} for {search.image} has a signing "
                                 f"certificate: {shown}", hint=getattr(first, "hint", None))
    raise NoMatchingSignatureError(f"none of the {search.found} {what} for {search.image} verified: {shown}")


# -- runs and the file store -------------------------------------------------------------------------

def _verify_stored(keys: list[tuple[str, str]], payload: bytes, signature: bytes, ref: str, layout: str,
                   location: str, cert: str) -> Verified:
    """One stored ``(payload, signature)`` pair: a DSSE envelope or a raw DER signature."""
    if signature.lstrip()[:1] == b"{":
        payload_type, inner, key_id = _verify_dsse(keys, signature)
        if inner != payload:
            raise VerificationError("the stored payload differs from the signed envelope's payload")
        statement = check_statement(payload_type, inner, None, None) if payload_type == INTOTO_PAYLOAD_TYPE \
            else None
        return Verified(ref, layout, payload_type, inner, statement, key_id, cert, location)
    key_id = _verify_raw(keys, signature, payload)
    if key_id is None:
        raise NoMatchingSignatureError("signature does not verify with the given key(s)")
    try:
        doc = check_simplesigning(payload, None)
    except VerificationError:
        return Verified(ref, layout, "application/octet-stream", payload, None, key_id, cert, location)
    critical = doc["critical"]
    image = (critical.get("identity") or {}).get("docker-reference", "")
    digest = (critical.get("image") or {}).get("docker-manifest-digest", "")
    return Verified(f"{image}@{digest}" if image else ref, layout, SIMPLESIGNING_PAYLOAD_TYPE, payload, None,
                    key_id, cert, location)


def _run_objects(obj: RunSnapshot | dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(obj, RunSnapshot):
        return [obj.run, *obj.task_runs]
    if isinstance(obj, dict) and "pipelineRun" in obj:
        return [obj["pipelineRun"], *(obj.get("taskRuns") or [])]
    if isinstance(obj, dict) and isinstance(obj.get("run"), dict):
        return [obj["run"], *(obj.get("taskRuns") or [])]
    if isinstance(obj, dict):
        return [obj]
    raise InputError("verify run: expected a run object or a snapshot")


def _decode_annotation(value: object, key: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"annotation {key} is not a string")
    try:
        return b64decode(value)
    except ValueError:
        raise VerificationError(f"annotation {key} is not base64") from None


_IMAGE_KEY = re.compile(r"^[0-9a-f]{12}$")


def _same_time(a: object, b: object) -> bool:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(a).replace("Z", "+00:00")) == datetime.fromisoformat(
            str(b).replace("Z", "+00:00"))
    except ValueError:
        return str(a) == str(b)


def check_run_binding(short_key: str, run_kind: str, uid: str, item: Verified, started: str = "") -> None:
    """The ``<key>`` of ``signature-<key>`` must name what was signed, so another run's genuine
    annotations pasted onto this run do not verify.

    ``taskrun-<uid>``/``pipelinerun-<uid>``: this run's kind and uid, an in-toto statement whose
    start time (SLSA v0.2 ``metadata.buildStartedOn``, v1.0 ``runDetails.metadata.startedOn``) is
    the run's ``status.startTime`` and, for SLSA v1.0, whose ``invocationId`` is the uid. An image
    key (12 hex): a simple-signing payload whose image digest starts with it (Chains' ShortKey).
    The finish time is not compared: a provisional PipelineRun attestation predates it.
    """
    prefix, sep, rest = short_key.partition("-")
    if sep and prefix in ("taskrun", "pipelinerun"):
        if prefix != run_kind.lower():
            raise VerificationError(f"key {short_key} is for a {prefix}, not for this {run_kind}")
        if uid and rest != uid:
            raise VerificationError(f"key {short_key} names another run (this run's uid is {uid})")
        if item.statement is None:
            raise VerificationError(f"key {short_key} holds {item.payload_type}, not a run attestation")
        predicate = item.statement.get("predicate") or {}
        details = predicate.get("runDetails")
        metadata = details.get("metadata") if isinstance(details, dict) else predicate.get("metadata")
        if not isinstance(metadata, dict):
            return
        invocation = metadata.get("invocationId", metadata.get("invocationID"))
        if uid and invocation is not None and invocation != uid:
            raise VerificationError(f"the statement's invocationId {invocation!r} is not this run's uid "
                                    f"{uid}")
        signed_start = metadata.get("startedOn", metadata.get("buildStartedOn"))
        if started and signed_start is not None and not _same_time(signed_start, started):
            raise VerificationError(f"the statement's start time {signed_start} is not this run's "
                                    f"status.startTime {started}")
        return
    if _IMAGE_KEY.match(short_key):
        digest = ""
        if item.payload_type == SIMPLESIGNING_PAYLOAD_TYPE:
            digest = str(((_json(item.payload, "payload").get("critical") or {}).get("image") or {})
                         .get("docker-manifest-digest") or "")
        if not digest.startswith(f"sha256:{short_key}"):
            raise VerificationError(f"key {short_key} does not name the signed image "
                                    f"({digest or 'no image'})")
        return
    raise VerificationError(f"unexpected signature key {short_key!r} (Chains writes taskrun-<uid>, "
                            "pipelinerun-<uid> or a 12-hex image key)")


def verify_run(snapshot_or_obj: RunSnapshot | dict[str, Any], public_keys: list[str], ctx: Context,
               ) -> list[Verified]:
    """Chains' ``tekton`` annotations on a run (and a snapshot's child TaskRuns): every
    ``chains.tekton.dev/signature-<key>`` must verify over ``payload-<key>`` and be bound to the
    run by its key (:func:`check_run_binding`)."""
    keys = _keys(public_keys, ctx)
    verified: list[Verified] = []
    failures: list[str] = []
    names: list[str] = []
    for run in _run_objects(snapshot_or_obj):
        md = run.get("metadata") if isinstance(run, dict) else None
        md = md if isinstance(md, dict) else {}
        snap = RunSnapshot(run)
        name = f"{snap.kind.lower()}/{md.get('namespace', '')}/{md.get('name', '')}"
        uid = md.get("uid") if isinstance(md.get("uid"), str) else ""
        status = run.get("status") if isinstance(run.get("status"), dict) else {}
        started = status.get("startTime") if isinstance(status.get("startTime"), str) else ""
        names.append(name)
        annotations = md.get("annotations") or {}
        if not isinstance(annotations, dict):
            failures.append(f"{name}: metadata.annotations is not an object")
            continue
        for key, value in sorted(annotations.items()):
            if not key.startswith(_ANNOTATION_PREFIX + "signature-"):
                continue
            short = key[len(_ANNOTATION_PREFIX + "signature-"):]
            payload_key = f"{_ANNOTATION_PREFIX}payload-{short}"
            where = f"{name} {key}"
            try:
                if payload_key not in annotations:
                    raise VerificationError(f"no {payload_key} annotation next to the signature")
                signature = _decode_annotation(value, key)
                payload = _decode_annotation(annotations[payload_key], payload_key)
                cert_raw = annotations.get(f"{_ANNOTATION_PREFIX}cert-{short}") or ""
                cert = _decode_annotation(cert_raw, "cert").decode(errors="replace") if cert_raw else ""
                item = _verify_stored(keys, payload, signature, name, "annotations", key, cert)
                check_run_binding(short, snap.kind, uid, item, started)
                verified.append(item)
            except (VerificationError, Error) as exc:
                failures.append(f"{where}: {exc}")
            except _MALFORMED as exc:
                failures.append(f"{where}: malformed annotation ({type(exc).__name__})")
    return _strict_outcome(verified, failures, " and ".join(names) or "the run",
                           "chains.tekton.dev/signature-* annotations")


def verify_file_store(directory: Path, public_keys: list[str], ctx: Context) -> list[Verified]:
    """Every ``<shortKey>.signature`` under ``directory`` (the ``file`` backend's layout) must verify."""
    keys = _keys(public_keys, ctx)
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"file store {root} is not a directory")
    verified: list[Verified] = []
    failures: list[str] = []
    for sig_path in sorted(root.rglob("*.signature")):
        payload_path = sig_path.with_suffix(".payload")
        try:
            if not payload_path.is_file():
                raise VerificationError(f"no {payload_path.name} next to the signature")
            signature = sig_path.read_bytes()
            payload = payload_path.read_bytes()
            if signature.lstrip()[:1] != b"{":
                signature = _decode_annotation(signature.decode(errors="replace"), sig_path.name)
            cert_path = sig_path.with_suffix(".cert")
            cert = cert_path.read_text(errors="replace") if cert_path.is_file() else ""
            item = _verify_stored(keys, payload, signature, str(sig_path), "file", str(sig_path), cert)
            run_kind = sig_path.parent.name.partition("-")[0]
            if run_kind in ("taskrun", "pipelinerun") or _IMAGE_KEY.match(sig_path.stem):
                # the directory names the run but not its uid: the kind and image keys can be checked
                kind = "TaskRun" if run_kind == "taskrun" else "PipelineRun"
                check_run_binding(sig_path.stem, kind, "", item)
            verified.append(item)
        except (VerificationError, Error, OSError) as exc:
            failures.append(f"{sig_path}: {exc}")
        except _MALFORMED as exc:
            failures.append(f"{sig_path}: malformed file ({type(exc).__name__})")
    return _strict_outcome(verified, failures, str(root), "*.signature files")


def _strict_outcome(verified: list[Verified], failures: list[str], what: str, kind: str) -> list[Verified]:
    if failures:
        shown = "; ".join(failures[:3]) + (f"; … {len(failures) - 3} more" if len(failures) > 3 else "")
        total = len(failures) + len(verified)
        raise NoMatchingSignatureError(f"{len(failures)} of {total} signatures in {what} did not verify: "
                                       f"{shown}")
    if not verified:
        raise NoSignatureError(f"no {kind} found in {what}")
    return verified


# -- policy and output -------------------------------------------------------------------------------

def apply_policy(path: Path, verified: list[Verified]) -> Any:
    """Evaluate a policy file on ``verified``; returns the ``PolicyResult`` (the caller prints, then
    raises :class:`PolicyViolationError` when it did not pass)."""
    from chainmail.policy import evaluate, load_policy

    return evaluate(load_policy(path), verified)


def layouts_found(verified: list[Verified]) -> dict[str, int]:
    """How many verified payloads came from each layout."""
    out: dict[str, int] = {}
    for v in verified:
        out[v.layout] = out.get(v.layout, 0) + 1
    return out
