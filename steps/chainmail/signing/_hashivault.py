"""``hashivault://KEY``: a HashiCorp Vault (or OpenBao) transit key, over Vault's HTTP API.

Settings, in Chains' order (``signers.kms.auth.*`` in chains-config):

- address: ``auth.address``, else ``$VAULT_ADDR``;
- token: the file ``auth.token-path`` (wins), else ``auth.token``; with neither, a JWT/Kubernetes
  login when ``auth.oidc.path`` or ``auth.oidc.role`` is set: ``PUT /v1/auth/<path>/login`` with
  ``{"role", "jwt"}`` and the JWT read from ``auth.oidc.token-path`` (default: the pod's
  service-account token; path default ``jwt``); else ``$VAULT_TOKEN``, else ``~/.vault-token``;
- transit mount: ``$TRANSIT_SECRET_ENGINE_PATH``, default ``transit``; ``$VAULT_NAMESPACE`` and
  ``$VAULT_CACERT`` are honoured.

Like Chains (sigstore's Vault client with SHA-256), payloads are hashed with SHA-256 here and signed
with ``POST /v1/<mount>/sign/<key>/sha2-256`` and ``prehashed: true``, pinned to the key version whose
public key (``GET /v1/<mount>/keys/<key>``) was loaded. ECDSA P-256/384/521 and RSA (PKCS#1 v1.5)
keys sign; ed25519 transit keys cannot sign a prehashed digest and are refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail.errors import ConfigError, KeyMaterialError, SigningError
from chainmail.signing._kms import KMSAuth, KMSSigner, one_line, read_secret_file, shown

if TYPE_CHECKING:
    from chainmail.context import Context

_NAME_RE = re.compile(r"^\w(?:[\w.-]*\w)?$")
_VERSION_PREFIX = re.compile(r"^vault:v\d+:")
_SIGNING_TYPES = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "rsa-4096")


def parse_uri(uri: str) -> str:
    """The transit key name of ``hashivault://NAME``."""
    name = uri.split("://", 1)[1] if "://" in uri else ""
    if not _NAME_RE.match(name):
        raise KeyMaterialError(f"'{shown(uri)}' is not a Vault transit key reference",
                               hint="expected hashivault://KEYNAME (letters, digits, '_', '-', '.')")
    return name


class Vault:
    """The few Vault calls a signer needs; the token goes only into the ``X-Vault-Token`` header."""

    def __init__(self, address: str, ctx: Context) -> None:
        if not re.match(r"^https?://[^/\s]+", address):
            raise ConfigError(f"Vault address '{address}' is not an http(s):// URL",
                              hint="set signers.kms.auth.address or VAULT_ADDR, e.g. https://vault:8200")
        self.address = address.rstrip("/")
        self._ctx = ctx
        self.token = ""

    def call(self, method: str, path: str, doing: str, body: dict[str, Any] | None = None,
             token: bool = True) -> dict[str, Any]:
        """``method /v1/path``: the decoded JSON object, or a typed error (never quoting the token)."""
        from chainmail._internal import http
        from chainmail._internal.encoding import load_json

        headers = {"X-Vault-Request": "true"}
        if token:
            headers["X-Vault-Token"] = self.token
        if os.environ.get("VAULT_NAMESPACE"):
            headers["X-Vault-Namespace"] = os.environ["VAULT_NAMESPACE"]
        kwargs: dict[str, Any] = {"headers": headers, "policy": self._ctx.retry, "max_bytes": 1024 * 1024}
        if body is not None:
            kwargs["json"] = body
        if os.environ.get("VAULT_CACERT"):
            kwargs["verify"] = os.environ["VAULT_CACERT"]
        url = f"{self.address}/v1/{path}"
        try:
            resp = http.request(method, url, **kwargs)
        except http.TransientError as exc:
            raise SigningError(f"{doing}: cannot reach Vault at {self.address}: {self._scrub(exc)}") from None
        except Exception as exc:  # requests' TLS and protocol errors, BadResponseError
            raise SigningError(f"{doing}: Vault at {self.address}: {type(exc).__name__}: {self._scrub(exc)}") from None
        try:
            doc = load_json(resp.content) if resp.content else {}
        except ValueError:
            doc = None
        if resp.status_code >= 400 or not isinstance(doc, dict):
            errors = doc.get("errors") if isinstance(doc, dict) else None
            said = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else "no details"
            text = f"{doing}: Vault answered HTTP {resp.status_code} ({self._scrub(said)})"
            if resp.status_code == 404:
                raise KeyMaterialError(text)
            raise SigningError(text)
        return doc

    def _scrub(self, text: object) -> str:
        line = one_line(text, 240)
        return line.replace(self.token, "***") if self.token else line


class HashiVaultSigner(KMSSigner):
    """A transit key that signs (``supports_signing``) in Vault."""

    SCHEME = "hashivault"

    def __init__(self, uri: str, vault: Vault, mount: str, name: str) -> None:
        self.uri = uri
        self._vault, self._mount, self._name = vault, mount, name
        doing = f"reading {uri} (transit key '{name}', mount '{mount}')"
        data = vault.call("GET", f"{mount}/keys/{name}", doing).get("data")
        if not isinstance(data, dict):
            raise SigningError(f"{doing}: Vault's answer has no 'data'")
        key_type = str(data.get("type", ""))
        if key_type not in _SIGNING_TYPES:
            raise KeyMaterialError(f"{uri}: transit key type '{key_type}' cannot sign here; "
                                   f"supported: {', '.join(_SIGNING_TYPES)}")
        version = data.get("latest_version")
        keys = data.get("keys")
        entry = keys.get(str(version)) if isinstance(keys, dict) else None
        pem = entry.get("public_key") if isinstance(entry, dict) else None
        if not isinstance(version, int) or not isinstance(pem, str) or not pem.startswith("-----BEGIN"):
            raise SigningError(f"{doing}: Vault's answer has no public key for the latest version")
        self.version = version
        from chainmail.signing.keys import public_key_pem

        super().__init__(uri, public_key_pem(pem, f"{uri} public key"), "sha256")

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> HashiVaultSigner:
        name = parse_uri(uri)
        auth = KMSAuth.from_context(ctx)
        address = auth.address or os.environ.get("VAULT_ADDR", "").strip()
        if not address:
            raise ConfigError(f"{uri}: no Vault address", hint="set signers.kms.auth.address or VAULT_ADDR")
        vault = Vault(address, ctx)
        vault.token = _token(auth, vault)
        mount = os.environ.get("TRANSIT_SECRET_ENGINE_PATH", "").strip().strip("/") or "transit"
        return cls(uri, vault, mount, name)

    def sign_digest(self, digest: bytes) -> bytes:
        from chainmail._internal.encoding import b64decode, b64encode

        body = {"input": b64encode(digest), "prehashed": True, "key_version": self.version,
                "signature_algorithm": "pkcs1v15"}
        doing = f"signing with {self.uri}"
        data = self._vault.call("POST", f"{self._mount}/sign/{self._name}/sha2-256", doing, body).get("data")
        signature = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(signature, str) or not _VERSION_PREFIX.match(signature):
            raise SigningError(f"{doing}: Vault's answer has no 'vault:vN:' signature")
        try:
            return b64decode(_VERSION_PREFIX.sub("", signature))
        except ValueError:
            raise SigningError(f"{doing}: Vault's signature is not base64") from None


def _token(auth: KMSAuth, vault: Vault) -> str:
    """The Vault token, in Chains' order (see the module docstring)."""
    if auth.spire_sock:
        raise ConfigError("signers.kms.auth.spire.sock: SPIFFE JWT-SVIDs are not supported by chainmail",
                          hint="mount a projected service-account token and set signers.kms.auth.oidc.token-path")
    token = auth.static_token()
    if not token and (auth.oidc_path or auth.oidc_role):
        jwt = read_secret_file(auth.oidc_token_path, "signers.kms.auth.oidc.token-path")
        path = auth.oidc_path.strip("/") or "jwt"
        vault.token = jwt  # only so that an echo of it in an error is scrubbed; not sent as a header
        doc = vault.call("PUT", f"auth/{path}/login", f"Vault login at auth/{path} as role '{auth.oidc_role}'",
                         {"role": auth.oidc_role, "jwt": jwt}, token=False)
        login = doc.get("auth")
        token = login.get("client_token", "") if isinstance(login, dict) else ""
        if not isinstance(token, str) or not token:
            raise SigningError(f"Vault login at auth/{path}: the answer has no client token")
    if not token:
        token = os.environ.get("VAULT_TOKEN", "").strip()
    if not token:
        home_token = Path.home() / ".vault-token"
        if home_token.is_file():
            token = read_secret_file(str(home_token), "~/.vault-token")
    if not token:
        raise ConfigError("no Vault token", hint="set signers.kms.auth.token-path, signers.kms.auth.token, "
                                                 "signers.kms.auth.oidc.role, or VAULT_TOKEN")
    return token
