"""A strict HTTP double of Cloud KMS's REST API (v1) and Google's OAuth token endpoint, on a loopback port.

Why a double: Google ships no Cloud KMS emulator on PyPI or Debian. What it holds to, as the real
service does (https://cloud.google.com/kms/docs/reference/rest): a service-account JWT assertion signed
by the account's key with Google's token endpoint as audience, for a short-lived bearer token; 401
UNAUTHENTICATED without that token; 404 NOT_FOUND for an unknown key; 403 PERMISSION_DENIED without
``useToSign``; proto3 JSON (int64 checksums as strings, unknown fields rejected with 400
INVALID_ARGUMENT); the digest field must match the version's algorithm and length; CRC32C on the
digest (checked), the public key PEM and the signature; signatures are real (the private keys live here).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from chainmail.signing._gcpkms import crc32c

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
ALGORITHMS = {"EC_SIGN_P256_SHA256": "sha256", "EC_SIGN_P384_SHA384": "sha384",
              "RSA_SIGN_PKCS1_2048_SHA256": "sha256", "RSA_SIGN_PSS_2048_SHA256": "sha256",
              "EC_SIGN_ED25519": ""}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CloudKMS:
    """The service's state: keys, versions, the service account it trusts and the tokens it issued."""

    def __init__(self) -> None:
        self.account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.account = "chains-signer@proj.iam.gserviceaccount.com"
        self.keys: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CloudKMS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_key(self, name: str, algorithm: str, purpose: str = "ASYMMETRIC_SIGN",
                versions: tuple[str, ...] = ("ENABLED",)) -> str:
        """Create ``projects/proj/locations/global/keyRings/ring/cryptoKeys/NAME``; returns its resource name."""
        full = f"projects/proj/locations/global/keyRings/ring/cryptoKeys/{name}"
        made = {}
        for number, state in enumerate(versions, start=1):
            if algorithm.startswith("EC_SIGN_P384"):
                private: Any = ec.generate_private_key(ec.SECP384R1())
            elif algorithm.startswith("EC_"):
                private = ec.generate_private_key(ec.SECP256R1())
            else:
                private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            made[str(number)] = {"key": private, "state": state}
        self.keys[full] = {"purpose": purpose, "algorithm": algorithm, "versions": made}
        return full

    def service_account_json(self) -> str:
        pem = self.account_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        return json.dumps({"type": "service_account", "project_id": "proj", "private_key_id": "k1",
                           "private_key": pem, "client_email": self.account, "client_id": "1",
                           "token_uri": f"{self.url}/token"})


def _error(code: int, status: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def _handler(kms: CloudKMS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _send(self, code: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            self._send(*self._route("GET", b""))

        def do_POST(self) -> None:
            self._send(*self._route("POST", self._body()))

        def _route(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
            url = urlsplit(self.path)
            kms.requests.append((method, url.path))
            if url.path == "/token" and method == "POST":
                return self._token(body)
            if not url.path.startswith("/v1/"):
                return _error(404, "NOT_FOUND", "unknown path")
            if self.headers.get("Authorization", "").removeprefix("Bearer ") not in kms.tokens:
                return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            path = url.path.removeprefix("/v1/")
            query = parse_qs(url.query)
            if method == "POST" and path.endswith(":asymmetricSign"):
                return self._sign(path.removesuffix(":asymmetricSign"), body)
            if method != "GET":
                return _error(404, "NOT_FOUND", "unknown method")
            if path.endswith("/publicKey"):
                return self._public_key(path.removesuffix("/publicKey"))
            if path.endswith("/cryptoKeyVersions"):
                return self._list(path.removesuffix("/cryptoKeyVersions"), query)
            key = kms.keys.get(path)
            if key is None:
                return _error(404, "NOT_FOUND", f"{path} not found.")
            return 200, {"name": path, "purpose": key["purpose"],
                         "versionTemplate": {"algorithm": key["algorithm"], "protectionLevel": "SOFTWARE"}}

        def _token(self, body: bytes) -> tuple[int, dict[str, Any]]:
            form = parse_qs(body.decode())
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or "assertion" not in form:
                return 400, {"error": "invalid_request"}
            head, claims, sig = form["assertion"][0].split(".")
            try:
                kms.account_key.public_key().verify(_b64url_decode(sig), f"{head}.{claims}".encode(),
                                                    padding.PKCS1v15(), hashes.SHA256())
            except Exception:
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            doc = json.loads(_b64url_decode(claims))
            now = time.time()
            if (doc.get("iss") != kms.account or doc.get("aud") != "https://oauth2.googleapis.com/token"
                    or "https://www.googleapis.com/auth/cloudkms" not in doc.get("scope", "").split()
                    or not doc.get("iat", 0) - 300 <= now <= doc.get("exp", 0)):
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT claims."}
            token = "ya29." + secrets.token_urlsafe(24)
            kms.tokens.add(token)
            return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

        def _version(self, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
            parent, _, number = name.partition("/cryptoKeyVersions/")
            key = kms.keys.get(parent)
            version = key["versions"].get(number) if key else None
            return (key, version) if key and version else None

        def _list(self, parent: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
            key = kms.keys.get(parent)
            if key is None:
                return _error(404, "NOT_FOUND", f"{parent} not found.")
            if set(query) - {"filter", "pageSize", "pageToken", "orderBy", "view"}:
                return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name.")
            wanted = query.get("filter", [""])[0]
            if wanted not in ("", "state=ENABLED"):
                return _error(400, "INVALID_ARGUMENT", "Invalid filter.")
            versions = [{"name": f"{parent}/cryptoKeyVersions/{n}", "state": v["state"], "algorithm": key["algorithm"]}
                        for n, v in key["versions"].items() if not wanted or v["state"] == "ENABLED"]
            return 200, ({"cryptoKeyVersions": versions, "totalSize": len(versions)} if versions else {})

        def _public_key(self, name: str) -> tuple[int, dict[str, Any]]:
            found = self._version(name)
            if found is None:
                return _error(404, "NOT_FOUND", f"{name} not found.")
            key, version = found
            pem = version["key"].public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            return 200, {"pem": pem, "algorithm": key["algorithm"], "pemCrc32c": str(crc32c(pem.encode())),
                         "name": name, "protectionLevel": "SOFTWARE"}

        def _sign(self, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
            found = self._version(name)
            if found is None:
                return _error(404, "NOT_FOUND", f"{name} not found.")
            if name in kms.denied:
                return _error(403, "PERMISSION_DENIED", f"Permission 'cloudkms.cryptoKeyVersions.useToSign' denied "
                                                        f"on resource '{name}' (or it may not exist).")
            key, version = found
            request = json.loads(body)
            if set(request) - {"name", "digest", "digestCrc32c", "data", "dataCrc32c"}:
                return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name.")
            if version["state"] != "ENABLED":
                return _error(400, "FAILED_PRECONDITION", f"{name} is not enabled, current state is: DISABLED.")
            hash_name = ALGORITHMS[key["algorithm"]]
            digests = request.get("digest", {})
            if list(digests) != [hash_name]:
                return _error(400, "INVALID_ARGUMENT", "The requested Digest is not compatible with the key.")
            digest = base64.b64decode(digests[hash_name])
            algorithm = _HASHES[hash_name]()
            if len(digest) != algorithm.digest_size:
                return _error(400, "INVALID_ARGUMENT", "Length of digest is incorrect.")
            if "digestCrc32c" in request and int(request["digestCrc32c"]) != crc32c(digest):
                return _error(400, "INVALID_ARGUMENT", "The checksum in field digest_crc32c did not match the data.")
            private = version["key"]
            if isinstance(private, ec.EllipticCurvePrivateKey):
                signature = private.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
            elif "PSS" in key["algorithm"]:
                signature = private.sign(digest, padding.PSS(padding.MGF1(algorithm), algorithm.digest_size),
                                         utils.Prehashed(algorithm))
            else:
                signature = private.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
            return 200, {"signature": base64.b64encode(signature).decode(), "signatureCrc32c": str(crc32c(signature)),
                         "verifiedDigestCrc32c": "digestCrc32c" in request, "name": name,
                         "protectionLevel": "SOFTWARE"}

    return Handler
