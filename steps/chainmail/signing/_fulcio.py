"""Keyless signing: an ephemeral P-256 key certified by Fulcio for an OIDC identity.

Example::

    signer = FulcioSigner.create("https://fulcio.sigstore.dev", Path("/var/run/sigstore/oidc-token"))
    signer.cert, signer.chain          # leaf PEM (SAN = the token's identity) and issuing chain PEM
    signature = signer.sign(payload)   # ECDSA P-256 / SHA-256, DER

The key lives only in memory. Proof of possession is Fulcio v2's ``publicKeyRequest``: the key
signs the token's subject (``email`` for the Google and Sigstore Dex issuers, else ``sub``).
Fulcio failures are :class:`SigningError` (exit 6); an unreadable or malformed token is
:class:`KeyMaterialError` (exit 5). Not registered in ``SIGNER_FOR_URI_SCHEME`` yet.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from chainmail._internal.encoding import load_json
from chainmail.errors import KeyMaterialError, SigningError
from chainmail.signing._signer import KeySigner

if TYPE_CHECKING:
    from chainmail._internal.http import RetryPolicy

#: Issuers whose Fulcio challenge is the ``email`` claim (as Fulcio and sigstore-js decide).
EMAIL_ISSUERS = frozenset({"https://accounts.google.com", "https://oauth2.sigstore.dev/auth"})
SIGNING_CERT_PATH = "/api/v2/signingCert"
MAX_TOKEN_BYTES = 64 * 1024


def token_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT; Fulcio verifies the token, chainmail only reads the subject."""
    parts = token.split(".")
    if len(parts) != 3:
        raise KeyMaterialError("OIDC token is not a JWT (expected three dot-separated parts)")
    try:
        claims = load_json(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise KeyMaterialError("OIDC token: the claims part is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise KeyMaterialError("OIDC token: the claims are not a JSON object")
    return claims


def challenge_subject(claims: dict[str, Any]) -> str:
    """What the key signs as proof of possession."""
    key = "email" if claims.get("iss") in EMAIL_ISSUERS else "sub"
    value = claims.get(key)
    if not isinstance(value, str) or not value:
        raise KeyMaterialError(f"OIDC token has no '{key}' claim")
    return value


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); never echoed in errors."""
    try:
        data = path.read_bytes()[: MAX_TOKEN_BYTES + 1]
    except OSError as exc:
        raise KeyMaterialError(f"OIDC token file {path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_TOKEN_BYTES:
        raise KeyMaterialError(f"OIDC token file {path}: larger than {MAX_TOKEN_BYTES} bytes")
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyMaterialError(f"OIDC token file {path}: not ASCII") from None
    if not token:
        raise KeyMaterialError(f"OIDC token file {path} is empty")
    return token


class FulcioSigner(KeySigner):
    """An ephemeral P-256 key with a Fulcio certificate in ``cert`` (leaf) and ``chain`` (issuers)."""

    SCHEME: ClassVar[str] = "fulcio"

    @classmethod
    def create(cls, fulcio_url: str, token_file: Path, *, retry: RetryPolicy | None = None) -> FulcioSigner:
        """Make a key and ask Fulcio to certify it for the identity in ``token_file``."""
        return cls.from_token(fulcio_url, read_token(token_file), retry=retry)

    @classmethod
    def from_token(cls, fulcio_url: str, token: str, *, retry: RetryPolicy | None = None) -> FulcioSigner:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        parts = urlsplit(fulcio_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SigningError(f"Fulcio URL '{fulcio_url}' is not an http(s) URL")
        subject = challenge_subject(token_claims(token))
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        proof = key.sign(subject.encode(), ec.ECDSA(hashes.SHA256()))
        request = {
            "credentials": {"oidcIdentityToken": token},
            "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": pem},
                                 "proofOfPossession": base64.b64encode(proof).decode()},
        }
        leaf, chain = _request_certificate(fulcio_url.rstrip("/"), request, retry)
        signer = cls(key, "sha256", f"fulcio:{fulcio_url.rstrip('/')}")
        _check_leaf(leaf, pem)
        signer.cert = leaf
        signer.chain = chain
        return signer


def _request_certificate(url: str, request: dict[str, Any], retry: RetryPolicy | None) -> tuple[str, str]:
    import requests

    from chainmail._internal.encoding import load_json
    from chainmail._internal.http import BadResponseError, TransientError
    from chainmail._internal.http import request as http_request

    try:
        resp = http_request("POST", url + SIGNING_CERT_PATH, policy=retry, json=request, max_bytes=1024 * 1024)
    except TransientError as exc:
        raise SigningError(f"Fulcio {url} is unreachable: {exc}") from None
    except (BadResponseError, requests.RequestException) as exc:
        raise SigningError(f"Fulcio {url}: bad response ({type(exc).__name__})") from None
    if resp.status_code not in (200, 201):
        raise SigningError(f"Fulcio {url} refused the certificate request: HTTP {resp.status_code}"
                           f"{_message(resp.content)}")
    try:
        doc = load_json(resp.content)
        body = doc.get("signedCertificateEmbeddedSct") or doc.get("signedCertificateDetachedSct")
        certs = body["chain"]["certificates"]
    except (ValueError, AttributeError, KeyError, TypeError):
        raise SigningError(f"Fulcio {url}: the response has no certificate chain") from None
    if not isinstance(certs, list) or not certs or not all(isinstance(c, str) for c in certs):
        raise SigningError(f"Fulcio {url}: the response has no certificate chain")
    return certs[0].strip() + "\n", "".join(c.strip() + "\n" for c in certs[1:])


def _message(content: bytes) -> str:
    text = content.decode("utf-8", "replace")
    try:
        doc = load_json(text)
        text = doc.get("message", "") if isinstance(doc, dict) else ""
    except ValueError:
        pass
    text = " ".join(str(text).split())[:200]
    return f": {text}" if text else ""


def _check_leaf(leaf_pem: str, public_pem: str) -> None:
    """The certificate Fulcio issued must certify our key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    except ValueError:
        raise SigningError("Fulcio returned a leaf that is not a PEM certificate") from None
    got = cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if got.decode() != public_pem:
        raise SigningError("Fulcio returned a certificate for another key")
