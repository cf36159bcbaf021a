"""A distribution token issuer for tests: signs ES256 JWTs the real ``docker-registry`` accepts.

The registry is configured with ``auth: token`` (``realm`` = this server's ``/token``, ``service``,
``issuer`` and ``rootcertbundle`` = the self-signed certificate made here). Each token carries the
certificate in its ``x5c`` header, which the registry checks against that bundle, and an ``access``
claim: what the registry allows. Like docker's auth server, the issuer grants the intersection of the
requested actions and the login's rights (a token with less access, not a refusal), refuses a wrong
password with 401, and treats a request without ``Authorization`` as anonymous.

Every token request is logged (:attr:`TokenIssuer.requests`) so tests can count and inspect them.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

SERVICE = "chainmail-test-registry"
ISSUER = "chainmail-test-issuer"

#: login (None = anonymous) → repository → actions it may have.
Rights = Callable[[str | None, str], set[str]]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    """One request the issuer answered."""

    user: str | None
    scopes: list[str]
    service: str
    status: int


@dataclass
class TokenIssuer:
    """An HTTP token endpoint on 127.0.0.1 with a signing key and its self-signed certificate."""

    directory: Path
    users: dict[str, str]
    rights: Rights
    ttl: int = 300
    #: "token", "access_token" or "both": which field(s) the answer carries.
    field_name: str = "token"
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chainmail test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = self.directory / "token-issuer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict:
        """The registry's ``auth`` config section for this issuer."""
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.cert_path)}}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def scopes_seen(self) -> list[str]:
        with self._lock:
            return [s for r in self.requests for s in r.scopes]

    # -- tokens ------------------------------------------------------------------------------------

    def mint(self, subject: str, access: list[dict], ttl: int | None = None) -> str:
        """A signed JWT granting ``access`` (the registry's ``access`` claim)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + (ttl or self.ttl), "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def admin_token(self, repositories: list[str]) -> str:
        """A long-lived token with pull and push on ``repositories`` (for test set-up pushes)."""
        return self.mint("admin", [{"type": "repository", "name": r, "actions": ["pull", "push"]}
                                   for r in repositories], ttl=3600)

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access: dict[str, set[str]] = {}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            allowed = self.rights(user, name) & set(actions.split(","))
            if allowed:
                access.setdefault(name, set()).update(allowed)
        return [{"type": "repository", "name": n, "actions": sorted(a)} for n, a in sorted(access.items())]

    def _answer(self, authorization: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        user: str | None = None
        if authorization.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return 400, b"{}"
            if self.users.get(user) != password:
                return 401, json.dumps({"details": "invalid login"}).encode()
        scopes = query.get("scope", [])
        token = self.mint(user or "anonymous", self._grant(user, scopes))
        body: dict[str, object] = {"expires_in": self.ttl, "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.field_name in ("token", "both"):
            body["token"] = token
        if self.field_name in ("access_token", "both"):
            body["access_token"] = token
        return 200, json.dumps(body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/token":
                    self.send_response(404)
                    self.end_headers()
                    return
                query = parse_qs(url.query)
                status, body = issuer._answer(self.headers.get("Authorization", ""), query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")[0]
                with issuer._lock:
                    issuer.requests.append(TokenRequest(user, query.get("scope", []),
                                                        (query.get("service") or [""])[0], status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
