"""``azurekms://VAULT_HOST/KEY[/VERSION]``: an Azure Key Vault key, over the Key Vault REST API.

VAULT_HOST is the vault's host name (``myvault.vault.azure.net``), reached over HTTPS as cosign does.
Tokens come from ``azure-identity``'s DefaultAzureCredential (the ``azure`` extra): environment
(client secret or certificate), AKS workload identity, managed identity, Azure CLI. Without VERSION the
current version is read once and every signature is pinned to it. Needs the ``keys/get`` and
``keys/sign`` data actions (e.g. the "Key Vault Crypto User" role).

The digest is computed here: ES256/ES384/ES512 for EC P-256/P-384/P-521 keys (Key Vault's raw ``r‖s``
is re-encoded as ASN.1 DER, as cosign stores it) and RS256 for RSA keys of every size (what ``cosign
verify --key`` checks RSA with; sigstore would pick RS384/RS512 by size). P-256K keys are refused.
A private CA for the vault is read from ``$REQUESTS_CA_BUNDLE``, as azure-identity does.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from chainmail.errors import ConfigError, KeyMaterialError, SigningError
from chainmail.signing._kms import Hash, KMSSigner, import_sdk, one_line, rest_call, shown

if TYPE_CHECKING:
    from chainmail.context import Context

_REF_RE = re.compile(r"^azurekms://([A-Za-z0-9.-]+(?::\d+)?)/([A-Za-z0-9-]+)(?:/([A-Za-z0-9]+))?$")
_API = {"api-version": "7.4"}
_SCOPE = "https://vault.azure.net/.default"
#: JWK curve → (Key Vault algorithm, local digest, coordinate size).
_EC: dict[str, tuple[str, Hash, int]] = {"P-256": ("ES256", "sha256", 32), "P-384": ("ES384", "sha384", 48),
                                         "P-521": ("ES512", "sha512", 66)}


def parse_uri(uri: str) -> tuple[str, str, str]:
    """``(vault host, key name, version or "")`` of an ``azurekms://`` URI."""
    match = _REF_RE.match(uri)
    if match is None:
        raise KeyMaterialError(f"'{shown(uri)}' is not an Azure Key Vault key reference",
                               hint="expected azurekms://VAULT.vault.azure.net/KEY[/VERSION]")
    return match.group(1), match.group(2), match.group(3) or ""


def _b64url(text: object) -> bytes:
    from chainmail._internal.encoding import b64decode

    return b64decode(str(text))


class AzureKMSSigner(KMSSigner):
    """A key with the ``sign`` operation in Azure Key Vault."""

    SCHEME = "azurekms"

    def __init__(self, uri: str, ctx: Context, credential: Any) -> None:
        self.uri = uri
        self._ctx, self._credential = ctx, credential
        host, name, version = parse_uri(uri)
        self._vault = f"https://{host}"
        doing = f"reading {uri}"
        key = self._call("GET", f"keys/{name}/{version}".rstrip("/"), doing).get("key")
        if not isinstance(key, dict):
            raise SigningError(f"{doing}: Key Vault's answer has no 'key'")
        if "sign" not in (key.get("key_ops") or []):
            raise KeyMaterialError(f"{uri}: the key does not allow the 'sign' operation")
        kid = str(key.get("kid", ""))
        self._path = kid.removeprefix(self._vault).lstrip("/") if kid.startswith(self._vault + "/keys/") else ""
        if not self._path:
            raise SigningError(f"{doing}: Key Vault's key id '{kid}' is not in {self._vault}")
        public, hash_name = self._public_key(key)
        from chainmail.signing.keys import public_key_pem

        super().__init__(uri, public_key_pem(public), hash_name)

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> AzureKMSSigner:
        parse_uri(uri)
        identity = import_sdk("azure.identity", "azurekms", "azure-identity", "azure")
        return cls(uri, ctx, identity.DefaultAzureCredential())

    def _public_key(self, jwk: dict[str, Any]) -> tuple[Any, Hash]:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        kty = str(jwk.get("kty", "")).removesuffix("-HSM")
        try:
            if kty == "EC" and jwk.get("crv") in _EC:
                self.algorithm, hash_name, self._size = _EC[str(jwk["crv"])]
                curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}[str(jwk["crv"])]()
                numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(_b64url(jwk["x"]), "big"),
                                                        int.from_bytes(_b64url(jwk["y"]), "big"), curve)
                return numbers.public_key(), hash_name
            if kty == "RSA":
                self.algorithm, self._size = "RS256", 0
                numbers = rsa.RSAPublicNumbers(int.from_bytes(_b64url(jwk["e"]), "big"),
                                               int.from_bytes(_b64url(jwk["n"]), "big"))
                return numbers.public_key(), "sha256"
        except (KeyError, ValueError):
            raise SigningError(f"reading {self.uri}: Key Vault's public key (JWK) is malformed") from None
        raise KeyMaterialError(f"{self.uri}: unsupported key type {kty or 'unknown'} {jwk.get('crv', '')}".rstrip()
                               + "; supported: EC P-256/P-384/P-521, RSA")

    def sign_digest(self, digest: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        from chainmail._internal.encoding import b64encode

        value = b64encode(digest).replace("+", "-").replace("/", "_").rstrip("=")
        doing = f"signing with {self.uri}"
        out = self._call("POST", f"{self._path}/sign", doing, {"alg": self.algorithm, "value": value})
        try:
            signature = _b64url(out.get("value", ""))
        except ValueError:
            raise SigningError(f"{doing}: Key Vault's signature is not base64url") from None
        if not self._size:
            return signature
        if len(signature) != 2 * self._size:
            raise SigningError(f"{doing}: Key Vault's {self.algorithm} signature has {len(signature)} bytes")
        r, s = signature[: self._size], signature[self._size:]
        return encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))

    def _call(self, method: str, path: str, doing: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token(doing)}"}
        # chainmail's HTTP layer ignores CA bundles from the environment; use the one azure-identity uses
        verify: str | bool = os.environ.get("REQUESTS_CA_BUNDLE", "").strip() or True
        return rest_call(f"Key Vault {self._vault}", method, f"{self._vault}/{path}", doing, policy=self._ctx.retry,
                         params=_API, headers=headers, json=body, verify=verify)

    def _token(self, doing: str) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self._credential.get_token(_SCOPE).token)
        except ClientAuthenticationError as exc:
            first = str(exc.message or type(exc).__name__).strip().splitlines()[0]
            raise SigningError(f"{doing}: getting an Azure token failed: {one_line(first, 200)}") from None
        except ValueError as exc:
            raise ConfigError(f"{doing}: Azure credentials are misconfigured: {one_line(exc, 200)}") from None
