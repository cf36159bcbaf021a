"""A strict HTTPS double of Azure Key Vault's keys REST API (7.4) and an App Service managed-identity endpoint.

Why a double: Microsoft ships no Key Vault emulator on PyPI or Debian. What it holds to, as the real
service does (https://learn.microsoft.com/rest/api/keyvault/keys/): HTTPS only; ``api-version`` required;
401 with a ``WWW-Authenticate`` challenge without a bearer token it issued; tokens only for resource
``https://vault.azure.net`` and the right ``X-IDENTITY-HEADER`` (what azure-identity's managed identity
sends); 404 KeyNotFound; 403 ForbiddenByRbac without the sign data action; JWK public keys (``kid``,
``kty``, ``key_ops``, base64url coordinates); sign bodies exactly ``{"alg", "value"}`` with the key's
algorithm and a digest of its length; ECDSA signatures as raw ``r‖s``; real keys and signatures.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

_ALG = {"ES256": (hashes.SHA256, 32), "ES384": (hashes.SHA384, 48), "ES512": (hashes.SHA512, 66),
        "RS256": (hashes.SHA256, 0)}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KeyVault:
    """Vault state; ``vault`` is the HTTPS host:port, ``identity`` the plain-HTTP managed-identity endpoint."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.tokens: set[str] = set()
        self.identity_secret = "msi-" + secrets.token_hex(8)
        self.requests: list[tuple[str, str]] = []
        self._vault = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, identity=False))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._vault.socket = context.wrap_socket(self._vault.socket, server_side=True)
        self._identity = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, identity=True))
        self.vault = f"127.0.0.1:{self._vault.server_address[1]}"
        self.identity = f"http://127.0.0.1:{self._identity.server_address[1]}/msi/token"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self._vault, self._identity)]

    def __enter__(self) -> KeyVault:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        for server in (self._vault, self._identity):
            server.shutdown()
            server.server_close()

    def add_key(self, name: str, kty: str = "EC", crv: str = "P-256", ops: tuple[str, ...] = ("sign", "verify"),
                versions: int = 1) -> None:
        made = []
        for _ in range(versions):
            if kty.startswith("EC"):
                curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1, "P-256K": ec.SECP256K1}
                private: Any = ec.generate_private_key(curve[crv]())
            else:
                private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            made.append((secrets.token_hex(16), private))
        self.keys[name] = {"kty": kty, "crv": crv, "ops": list(ops), "versions": made}

    def private_key(self, name: str, version: int = -1) -> Any:
        return self.keys[name]["versions"][version][1]


def _handler(kv: KeyVault, identity: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _send(self, code: int, doc: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._route("GET", b"")

        def do_POST(self) -> None:
            self._route("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _error(self, code: int, error: str, message: str, inner: str = "") -> None:
            doc: dict[str, Any] = {"error": {"code": error, "message": message}}
            if inner:
                doc["error"]["innererror"] = {"code": inner}
            challenge = {"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/t", '
                                             'resource="https://vault.azure.net"'} if code == 401 else None
            self._send(code, doc, challenge)

        def _route(self, method: str, body: bytes) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            kv.requests.append((method, url.path))
            if identity:
                return self._identity(url.path, query)
            if query.get("api-version") != ["7.4"]:
                return self._error(400, "BadParameter", "The request URI contains an invalid API version.")
            if self.headers.get("Authorization", "").removeprefix("Bearer ") not in kv.tokens:
                return self._error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
            parts = url.path.strip("/").split("/")
            if len(parts) < 2 or parts[0] != "keys" or parts[1] not in kv.keys:
                return self._error(404, "KeyNotFound", f"A key with (name/id) {'/'.join(parts[1:])} was not found "
                                                       "in this key vault.")
            key = kv.keys[parts[1]]
            versions = dict(key["versions"])
            version = parts[2] if len(parts) > 2 else key["versions"][-1][0]
            if version not in versions:
                return self._error(404, "KeyNotFound", f"A key with (name/id) {parts[1]}/{version} was not found.")
            if method == "GET" and len(parts) <= 3:
                return self._send(200, {"key": self._jwk(parts[1], version, versions[version]),
                                        "attributes": {"enabled": True, "recoveryLevel": "Recoverable"}})
            if method == "POST" and len(parts) == 4 and parts[3] == "sign":
                return self._sign(parts[1], version, versions[version], body)
            return self._error(405, "MethodNotAllowed", "The method is not allowed.")

        def _identity(self, path: str, query: dict[str, list[str]]) -> None:
            if path != "/msi/token" or query.get("api-version") != ["2019-08-01"]:
                return self._send(404, {"error": "not found"})
            if self.headers.get("X-IDENTITY-HEADER") != kv.identity_secret:
                return self._send(401, {"error": "unauthorized", "error_description": "Invalid identity header."})
            if query.get("resource") != ["https://vault.azure.net"]:
                return self._send(400, {"error": "invalid_resource", "error_description": "Unknown resource."})
            token = "eyJ0eXAi." + secrets.token_urlsafe(24)
            kv.tokens.add(token)
            return self._send(200, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                                    "resource": "https://vault.azure.net", "token_type": "Bearer", "client_id": "c"})

        def _jwk(self, name: str, version: str, private: Any) -> dict[str, Any]:
            key = kv.keys[name]
            jwk: dict[str, Any] = {"kid": f"https://{kv.vault}/keys/{name}/{version}", "kty": key["kty"],
                                   "key_ops": key["ops"]}
            numbers = private.public_key().public_numbers()
            if isinstance(private, ec.EllipticCurvePrivateKey):
                size = (private.curve.key_size + 7) // 8
                jwk.update(crv=key["crv"], x=_b64url(numbers.x.to_bytes(size, "big")),
                           y=_b64url(numbers.y.to_bytes(size, "big")))
            else:
                jwk.update(n=_b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                           e=_b64url(numbers.e.to_bytes(3, "big")))
            return jwk

        def _sign(self, name: str, version: str, private: Any, body: bytes) -> None:
            if f"{name}/{version}" in kv.denied or name in kv.denied:
                return self._error(403, "Forbidden", "Caller is not authorized to perform action on resource. "
                                   "Action: 'Microsoft.KeyVault/vaults/keys/sign/action'", inner="ForbiddenByRbac")
            if "sign" not in kv.keys[name]["ops"]:
                return self._error(403, "Forbidden", "Operation sign is not allowed on this key.",
                                   inner="KeyOperationForbidden")
            request = json.loads(body)
            if set(request) != {"alg", "value"} or request["alg"] not in _ALG:
                return self._error(400, "BadParameter", "Property alg or value is missing or invalid.")
            algorithm, size = _ALG[request["alg"]]
            is_ec = isinstance(private, ec.EllipticCurvePrivateKey)
            if is_ec != bool(size) or (is_ec and (private.curve.key_size + 7) // 8 != size):
                return self._error(400, "BadParameter", f"Invalid algorithm {request['alg']} for this key.")
            digest = _unb64url(request["value"])
            if len(digest) != algorithm.digest_size:
                return self._error(400, "BadParameter", "Invalid digest length.")
            if is_ec:
                r, s = decode_dss_signature(private.sign(digest, ec.ECDSA(utils.Prehashed(algorithm()))))
                signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
            else:
                signature = private.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm()))
            return self._send(200, {"kid": f"https://{kv.vault}/keys/{name}/{version}", "value": _b64url(signature)})

    return Handler
