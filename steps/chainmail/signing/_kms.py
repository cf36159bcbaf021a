"""What every KMS signer shares: local hashing, a self-check of each signature, SDK imports, auth settings.

A KMS signer never holds the private key. It hashes the payload here (the hash its key calls for),
sends only the digest, and checks the returned signature against the public key it reported, so a
KMS answering with another key or algorithm fails the signing step instead of the verifier later.
``key_id`` is inherited: the SSH SHA256 fingerprint of the public key, the DSSE keyid Chains writes
for every signer, KMS ones included.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from chainmail.errors import ConfigError, KeyMaterialError, SigningError, VerificationError
from chainmail.signing._signer import Signer

if TYPE_CHECKING:
    from chainmail.context import Context

#: The digests a KMS signer may be asked for.
Hash = Literal["sha256", "sha384", "sha512"]

#: Where Kubernetes mounts the service-account token (Chains' default for ``oidc.token-path``).
DEFAULT_SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class KMSSigner(Signer):
    """A key held by a KMS. Subclasses fetch the public key when loaded and implement :meth:`sign_digest`."""

    def __init__(self, uri: str, public_key_pem: str, hash_name: Hash) -> None:
        self.uri = uri
        self._public_pem = public_key_pem
        self.hash_name: Hash = hash_name

    @property
    def public_key_pem(self) -> str:
        return self._public_pem

    @abstractmethod
    def sign_digest(self, digest: bytes) -> bytes:
        """The KMS's signature over a ``hash_name`` digest (ECDSA ASN.1 DER or RSA PKCS#1 v1.5)."""

    def sign(self, data: bytes) -> bytes:
        from chainmail.signing.keys import verify_signature

        signature = self.sign_digest(hashlib.new(self.hash_name, data).digest())
        try:
            verify_signature(self._public_pem, signature, data)
        except VerificationError:
            raise SigningError(f"{self.uri}: the KMS returned a signature that does not verify with the key's "
                               "public key") from None
        return signature


def import_sdk(module: str, scheme: str, package: str, extra: str) -> ModuleType:
    """Import an optional SDK at first use; a missing one is a :class:`ConfigError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{scheme}:// keys need the '{package}' package, which is not installed",
                          hint=f"install chainmail[{extra}]") from None


def shown(uri: str) -> str:
    """A key reference fit for a message: no query, fragment or user-info (where a careless secret would sit)."""
    scheme, sep, rest = uri.partition("://")
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = "***@" + host.rsplit("@", 1)[1]
    return one_line(f"{scheme}{sep}{host}{slash}{path}", 200)


def one_line(text: object, limit: int = 300) -> str:
    """A server's message as one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class KMSAuth:
    """chains-config ``signers.kms.auth.*`` (what Chains hands sigstore as RPCAuth)."""

    address: str = ""
    token: str = ""
    token_path: str = ""
    oidc_path: str = ""
    oidc_role: str = ""
    oidc_token_path: str = DEFAULT_SA_TOKEN
    spire_sock: str = ""
    spire_audience: str = ""

    @classmethod
    def from_context(cls, ctx: Context) -> KMSAuth:
        get = ctx.config.get
        return cls(
            address=get("signers.kms.auth.address").strip(),
            token=get("signers.kms.auth.token").strip(),
            token_path=get("signers.kms.auth.token-path").strip(),
            oidc_path=get("signers.kms.auth.oidc.path").strip(),
            oidc_role=get("signers.kms.auth.oidc.role").strip(),
            oidc_token_path=get("signers.kms.auth.oidc.token-path").strip() or DEFAULT_SA_TOKEN,
            spire_sock=get("signers.kms.auth.spire.sock").strip(),
            spire_audience=get("signers.kms.auth.spire.audience").strip(),
        )

    def static_token(self) -> str:
        """``token-path``'s content (one trailing newline dropped) when set, else ``token`` (Chains' order)."""
        if self.token_path:
            return read_secret_file(self.token_path, "signers.kms.auth.token-path")
        return self.token


def read_secret_file(path: str, key: str) -> str:
    """A token file's text without its trailing newline; unreadable or empty is a :class:`ConfigError`."""
    try:
        text = Path(os.path.expanduser(path)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{key}: cannot read {path}: {reason}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text.strip():
        raise ConfigError(f"{key}: {path} is empty")
    return text


def rest_call(service: str, method: str, url: str, doing: str, *, policy: Any, key_errors: tuple[str, ...] = (),
              **kwargs: Any) -> dict[str, Any]:
    """One JSON call to a KMS REST API (Cloud KMS, Key Vault) through chainmail's HTTP layer.

    Transport failures are :class:`SigningError` (exit 6); an error answer is :class:`KeyMaterialError`
    (exit 5) for 400/404 or an ``error.status``/``error.code`` in ``key_errors`` (the key reference is
    wrong), else :class:`SigningError`. Returns the answer's JSON object.
    """
    from chainmail._internal import http
    from chainmail._internal.encoding import load_json

    try:
        resp = http.request(method, url, policy=policy, max_bytes=1024 * 1024, **kwargs)
    except http.TransientError as exc:
        raise SigningError(f"{doing}: cannot reach {service}: {one_line(exc, 200)}") from None
    except Exception as exc:  # TLS and protocol errors, BadResponseError
        raise SigningError(f"{doing}: {service}: {type(exc).__name__}") from None
    try:
        doc = load_json(resp.content)
    except ValueError:
        doc = None
    if resp.status_code < 400 and isinstance(doc, dict):
        return doc
    error = doc.get("error") if isinstance(doc, dict) else None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("status") or error.get("code") or "")
    message = one_line(error.get("message", "no details"))
    text = f"{doing}: {service} answered HTTP {resp.status_code} {code}: {message}".replace(" :", ":")
    if resp.status_code in (400, 404) or code in key_errors:
        raise KeyMaterialError(text)
    raise SigningError(text)
