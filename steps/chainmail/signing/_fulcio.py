"""Keyless signing: an ephemeral P-256 key certified by Fulcio for the workload's OIDC identity.

Example::

    signer = FulcioSigner.from_uri("fulcio://", ctx)   # lazy: token and certificate on first use
    signer.cert, signer.chain                # leaf PEM (SAN = the token's identity) and issuing chain PEM
    signature = signer.sign(payload)         # ECDSA P-256 / SHA-256, DER

The key lives only in memory and only for one signing session (a run): Chains rebuilds its signer, and
so asks Fulcio again, on every signing, and a Fulcio certificate is valid for ten minutes. Proof of
possession is Fulcio v2's ``publicKeyRequest``: the key signs the token's subject (``email`` for the
Google and Sigstore Dex issuers, else ``sub``). The issued leaf must certify this key and chain to a
Fulcio CA of the trusted root (``chainmail.transparency.trusted-root``, else Sigstore's production root)
with the token's issuer in its OIDC issuer extension; the certificates are re-encoded as standard PEM.

Errors: Fulcio answering 4xx is :class:`FulcioRefusedError` (32) with Fulcio's reason; no answer or 5xx
until ``chainmail.retry.deadline-seconds`` is :class:`FulcioUnreachableError` (33), retried like any
outage; token problems come from :mod:`chainmail.signing._oidc` (30, 31).
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from chainmail._internal.encoding import load_json
from chainmail.errors import (
    ConfigError,
    Error,
    FulcioRefusedError,
    FulcioUnreachableError,
    IdentityTokenInvalidError,
    SigningError,
)
from chainmail.signing._oidc import IdentityToken, check_provider, identity_token, token_claims
from chainmail.signing._signer import KeySigner, Signer

if TYPE_CHECKING:
    from chainmail._internal.http import RetryPolicy
    from chainmail.config import Config
    from chainmail.context import Context

log = logging.getLogger("chainmail.signing.fulcio")

#: Issuers whose Fulcio challenge is the ``email`` claim (as Fulcio and sigstore-js decide).
EMAIL_ISSUERS = frozenset({"https://accounts.google.com", "https://oauth2.sigstore.dev/auth"})
SIGNING_CERT_PATH = "/api/v2/signingCert"
DEFAULT_TUF_MIRROR = "https://tuf-repo-cdn.sigstore.dev"
#: URI schemes that select keyless signing in ``--key``.
MAX_RESPONSE_BYTES = 1024 * 1024


def challenge_subject(claims: dict[str, Any]) -> str:
    """What the key signs as proof of possession."""
    key = "email" if claims.get("iss") in EMAIL_ISSUERS else "sub"
    value = claims.get(key)
    if not isinstance(value, str) or not value:
        raise IdentityTokenInvalidError(f"OIDC token has no '{key}' claim")
    return value


def fulcio_trusted_root(config: Config) -> str:
    """What the issued chain must lead to: ``chainmail.transparency.trusted-root``, else ``production``.

    chainmail has no TUF client: a non-default ``signers.x509.tuf.mirror.url`` (a private Sigstore)
    needs that mirror's ``trusted_root.json`` in ``chainmail.transparency.trusted-root``.
    """
    root = config.get("chainmail.transparency.trusted-root").strip()
    if root:
        return root
    mirror = config.get("signers.x509.tuf.mirror.url").strip().rstrip("/")
    if mirror and mirror != DEFAULT_TUF_MIRROR:
        raise ConfigError(
            f"signers.x509.tuf.mirror.url is {mirror}, but chainmail has no TUF client to read it",
            hint="download that mirror's trusted_root.json and set chainmail.transparency.trusted-root to it")
    return "production"


class FulcioSigner(Signer):
    """Keyless: certifies an ephemeral key on first use, then signs with it for the rest of the session.

    Nothing is read or requested until the first :meth:`sign` (or ``cert``/``public_key_pem``), so
    selecting the signer is free and a session that signs nothing never asks Fulcio.
    """

    SCHEME: ClassVar[str] = "fulcio"
    #: Never cached beyond one signing session: the certificate expires in minutes.
    SESSION_ONLY: ClassVar[bool] = True

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._signer: KeySigner | None = None
        self._lock = threading.Lock()
        self.uri = f"fulcio:{ctx.config.get('signers.x509.fulcio.address').strip().rstrip('/')}"

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> FulcioSigner:
        """``fulcio://``: keyless with chains-config's ``signers.x509.*`` settings."""
        rest = uri.split("://", 1)[1] if "://" in uri else ""
        if rest.strip("/"):
            raise ConfigError(f"signing key '{uri}': keyless URIs take no address",
                              hint="use fulcio:// and set signers.x509.fulcio.address")
        # a configuration it cannot work with fails here, before anything is signed
        fulcio_trusted_root(ctx.config)
        check_provider(ctx.config)
        return cls(ctx)

    def certified(self) -> KeySigner:
        """The certified key, asking Fulcio on first use (token from chains-config's provider)."""
        with self._lock:
            if self._signer is None:
                config = self._ctx.config
                root = fulcio_trusted_root(config)
                token = identity_token(config)
                token.check_fresh()
                self._signer = certify(config.get("signers.x509.fulcio.address").strip(), token,
                                       retry=self._ctx.retry, trusted_root=root)
            return self._signer

    def sign(self, data: bytes) -> bytes:
        return self.certified().sign(data)

    @property
    def public_key_pem(self) -> str:
        return self.certified().public_key_pem

    @property  # type: ignore[override]
    def cert(self) -> str:
        return self.certified().cert

    @property  # type: ignore[override]
    def chain(self) -> str:
        return self.certified().chain


def certify(fulcio_url: str, token: IdentityToken | str, *, retry: RetryPolicy | None = None,
            trusted_root: str | None = "production") -> KeySigner:
    """A fresh P-256 key with Fulcio's certificate in ``cert``/``chain``.

    ``trusted_root`` None skips the chain check (for callers that check it themselves).
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(token, str):
        token = IdentityToken(token, "the token", token_claims(token))
    parts = urlsplit(fulcio_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"signers.x509.fulcio.address '{fulcio_url}' is not an http(s) URL")
    url = fulcio_url.rstrip("/")
    subject = challenge_subject(token.claims)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    proof = key.sign(subject.encode(), ec.ECDSA(hashes.SHA256()))
    request = {
        "credentials": {"oidcIdentityToken": token.text},
        "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": pem},
                             "proofOfPossession": base64.b64encode(proof).decode()},
    }
    certs = _request_certificate(url, request, retry)
    leaf, chain = _normalise(url, certs)
    _check_leaf(url, leaf, pem)
    if trusted_root is not None:
        _check_chain(url, leaf, chain, token.issuer, trusted_root)
    signer = KeySigner(key, "sha256", f"fulcio:{url}")
    signer.cert = leaf
    signer.chain = chain
    log.info("Fulcio %s certified an ephemeral key for issuer %s", url, token.issuer or "(none)")
    return signer


def _request_certificate(url: str, request: dict[str, Any], retry: RetryPolicy | None) -> list[str]:
    import requests

    from chainmail._internal.http import RETRY_STATUSES, BadResponseError, TransientError
    from chainmail._internal.http import request as http_request

    try:
        resp = http_request("POST", url + SIGNING_CERT_PATH, policy=retry, json=request,
                            max_bytes=MAX_RESPONSE_BYTES)
    except TransientError as exc:
        raise FulcioUnreachableError(f"Fulcio {url} is unreachable: {exc}; nothing was signed") from None
    except (BadResponseError, requests.RequestException) as exc:
        raise SigningError(f"Fulcio {url}: unusable response ({type(exc).__name__}); nothing was signed") from None
    if resp.status_code in RETRY_STATUSES:
        raise FulcioUnreachableError(f"Fulcio {url} kept failing: HTTP {resp.status_code}{_message(resp.content)}; "
                                     "nothing was signed")
    if resp.status_code not in (200, 201):
        raise FulcioRefusedError(f"Fulcio {url} refused the certificate request: HTTP {resp.status_code}"
                                 f"{_message(resp.content)}; nothing was signed",
                                 hint="Fulcio must trust the token's issuer; check the token's issuer, audience "
                                      "and expiry")
    try:
        doc = load_json(resp.content)
        body = doc.get("signedCertificateEmbeddedSct") or doc.get("signedCertificateDetachedSct")
        certs = body["chain"]["certificates"]
    except (ValueError, AttributeError, KeyError, TypeError):
        raise SigningError(f"Fulcio {url}: the response has no certificate chain") from None
    if not isinstance(certs, list) or not certs or not all(isinstance(c, str) for c in certs):
        raise SigningError(f"Fulcio {url}: the response has no certificate chain")
    return certs


def _message(content: bytes) -> str:
    """Fulcio's reason, one line, bounded, with anything token-like removed."""
    from chainmail.annotations import short_reason

    text = content[:2048].decode("utf-8", "replace")
    try:
        doc = load_json(text)
        if isinstance(doc, dict):
            text = str(doc.get("message", ""))
    except ValueError:
        pass
    text = short_reason(text)[:200]
    return f": {text}" if text else ""


def _normalise(url: str, certs: list[str]) -> tuple[str, str]:
    """``(leaf PEM, chain PEM)`` re-encoded as standard 64-column PEM (what cosign and Rekor compare)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        loaded = [x509.load_pem_x509_certificate(c.encode()) for c in certs]
    except ValueError:
        raise SigningError(f"Fulcio {url} returned something that is not a PEM certificate") from None
    pems = [c.public_bytes(Encoding.PEM).decode() for c in loaded]
    return pems[0], "".join(pems[1:])


def _check_leaf(url: str, leaf_pem: str, public_pem: str) -> None:
    """The certificate Fulcio issued must certify our key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    got = cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if got.decode() != public_pem:
        raise SigningError(f"Fulcio {url} returned a certificate for another key; nothing was signed")


def _check_chain(url: str, leaf: str, chain: str, issuer: str, trusted_root: str) -> None:
    """The leaf chains to a trusted Fulcio CA now and names the token's issuer."""
    from chainmail.verify.certificates import check_identity

    try:
        check_identity(leaf, chain, identity_regexp=".*", issuer=issuer or None,
                       issuer_regexp=None if issuer else ".*", trusted_root=trusted_root)
    except ConfigError:
        raise
    except Error as exc:
        raise SigningError(f"Fulcio {url} issued a certificate chainmail cannot trust ({exc}); nothing was signed",
                           hint="for a private Fulcio, set chainmail.transparency.trusted-root to its "
                                "trusted_root.json") from None
