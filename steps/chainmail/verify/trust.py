"""The trust decision: who signed a stored signature — one of the given keys, or a certificate that
chains to the trusted root and matches the identity policy (keyless).

- :func:`verify_signature_layer`: a legacy ``.sig`` layer's raw signature over its payload blob;
- :func:`verify_envelope`: a DSSE envelope from a ``.att`` layer (keyless: the layer's certificate,
  chain and Rekor SET) or from a Sigstore bundle (keyless: sigstore-python).

Keyless legacy layers take their signing time from a checked Rekor SET when the layer has one
(:mod:`chainmail.verify.rekor`), else now.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail.errors import Error, VerificationError
from chainmail.verify.keys import Key, verify_dsse, verify_raw

if TYPE_CHECKING:
    from datetime import datetime

    from chainmail.verify.certificates import IdentityPolicy
    from chainmail.verify.trusted_root import TrustedRoot



def layer_annotations(layer: dict[str, Any]) -> dict[str, Any]:
    """The ``annotations`` of an OCI descriptor ({} when absent)."""
    annotations = layer.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict):
        raise VerificationError("layer annotations are not an object")
    return annotations


def text_annotation(annotations: dict[str, Any], key: str) -> str:
    value = annotations.get(key, "")
    if not isinstance(value, str):
        raise VerificationError(f"annotation {key} is not a string")
    return value


def policy_kwargs(identity: IdentityPolicy) -> dict[str, str | None]:
    """The four matching keywords of the keyless functions."""
    return {"identity": identity.identity, "issuer": identity.issuer,
            "identity_regexp": identity.identity_regexp, "issuer_regexp": identity.issuer_regexp}


def _keyless_material(annotations: dict[str, Any]) -> tuple[str, str, str]:
    """``(certificate, chain, rekor bundle)`` annotations of a legacy ``.sig``/``.att`` layer."""
    return (text_annotation(annotations, "dev.sigstore.cosign/certificate"),
            text_annotation(annotations, "dev.sigstore.cosign/chain"),
            text_annotation(annotations, "dev.sigstore.cosign/bundle"))


def _check_time(when: datetime | None, cert: str) -> None:
    """Keyless: the logged integration time falls inside the certificate's validity (exit 25)."""
    if when is not None:
        from chainmail.verify.tlog import check_certificate_time

        check_certificate_time(int(when.timestamp()), cert)


def verify_signature_layer(keys: list[Key], payload: bytes, signature: bytes, annotations: dict[str, Any],
                           identity: IdentityPolicy | None, trusted_root: TrustedRoot | str | Path | None,
                           ) -> tuple[str | None, str]:
    """``(key id or identity, certificate)`` of a legacy ``.sig`` layer's signature over ``payload``:
    checked with ``keys``, or keyless with the layer's certificate when there is an ``identity``
    (key id None: no key verified it)."""
    cert, chain, rekor = _keyless_material(annotations)
    if identity is None:
        return verify_raw(keys, signature, payload), cert
    from chainmail.verify.certificates import verify_keyless_signature
    from chainmail.verify.rekor import rekor_signing_time

    when = rekor_signing_time(rekor, trusted_root, payload=payload, signature=signature,
                              cert_pem=cert) if rekor and cert else None
    _check_time(when, cert)
    who = verify_keyless_signature(payload, signature, cert, chain, **policy_kwargs(identity),
                                   trusted_root=trusted_root, signing_time=when)
    return who.identity, cert


def verify_envelope(keys: list[Key], envelope: bytes, digest: str, cert: str, identity: IdentityPolicy | None,
                    trusted_root: TrustedRoot | str | Path | None, *, layer: dict[str, Any] | None = None,
                    bundle: dict[str, Any] | None = None) -> tuple[str, bytes, str]:
    """``(payload_type, payload, key id or identity)`` of a DSSE envelope for the image ``digest``: checked
    with ``keys``, or keyless by the certificate of its ``.att`` ``layer`` or, else, of its ``bundle``."""
    if identity is None:
        return verify_dsse(keys, envelope)
    if layer is not None:
        return _keyless_att(envelope, layer_annotations(layer), identity, trusted_root)
    from chainmail.verify.sigstore_bundle import verify_keyless_bundle

    payload_type, payload = verify_keyless_bundle(bundle or {}, digest, **policy_kwargs(identity),
                                                  trusted_root=trusted_root)
    return payload_type, payload, _certificate_name(cert, identity)


def _certificate_name(cert_pem: str, identity: IdentityPolicy) -> str:
    """The SAN identity of a verified bundle's certificate that matched the policy (the key id shown)."""
    from cryptography import x509

    try:
        return identity.check(x509.load_pem_x509_certificate(cert_pem.encode()))[0]
    except (ValueError, Error):
        return "unknown"


def _keyless_att(envelope: bytes, annotations: dict[str, Any], identity: IdentityPolicy,
                 trusted_root: TrustedRoot | str | Path | None) -> tuple[str, bytes, str]:
    """``(payload_type, payload, identity)`` of a legacy ``.att`` layer signed keyless."""
    from chainmail.signing import dsse
    from chainmail.verify.certificates import verify_keyless_envelope
    from chainmail.verify.rekor import rekor_signing_time

    cert, chain, rekor = _keyless_material(annotations)
    when = None
    if rekor and cert:
        parsed = dsse.parse(envelope)
        when = rekor_signing_time(rekor, trusted_root, payload=parsed["payload"], cert_pem=cert)
        _check_time(when, cert)
    payload_type, payload, who = verify_keyless_envelope(envelope, cert, chain, **policy_kwargs(identity),
                                                         trusted_root=trusted_root, signing_time=when)
    return payload_type, payload, who.identity
