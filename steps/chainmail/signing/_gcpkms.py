"""``gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/versions/V]``: Google Cloud KMS over its REST API.

Credentials are Application Default Credentials through ``google-auth`` (the ``gcp`` extra): Workload
Identity, a service-account key in ``$GOOGLE_APPLICATION_CREDENTIALS``, or gcloud's. The endpoint is
``https://cloudkms.googleapis.com``; ``$CHAINMAIL_GCPKMS_ENDPOINT`` replaces it (a Private Service
Connect name, or a test server). As cosign does, the key must have purpose ASYMMETRIC_SIGN; without
``/versions/V`` the highest-numbered ENABLED version signs. Needs ``cloudkms.cryptoKeys.get``,
``cryptoKeyVersions.list``, ``viewPublicKey`` and ``useToSign`` (roles/cloudkms.signerVerifier + viewer).

The digest is computed here (SHA-256, or SHA-384 for EC P-384) and sent with its CRC32C; the answer's
CRC32Cs are checked, as Google recommends. EC P-256/P-384 and RSA PKCS#1 v1.5 SHA-256 keys sign;
RSA-PSS, SHA-512, secp256k1 and Ed25519 versions are refused (exit 5).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from chainmail.errors import ConfigError, KeyMaterialError, SigningError
from chainmail.signing._kms import Hash, KMSSigner, import_sdk, one_line, rest_call, shown

if TYPE_CHECKING:
    from chainmail.context import Context

_ID = r"[A-Za-z0-9_-]+"
_REF_RE = re.compile(rf"^gcpkms://(projects/{_ID}/locations/{_ID}/keyRings/{_ID}/cryptoKeys/{_ID})"
                     r"(?:/versions/(\d+))?$")
_ALGORITHMS: dict[str, Hash] = {
    "EC_SIGN_P256_SHA256": "sha256",
    "EC_SIGN_P384_SHA384": "sha384",
    "RSA_SIGN_PKCS1_2048_SHA256": "sha256",
    "RSA_SIGN_PKCS1_3072_SHA256": "sha256",
    "RSA_SIGN_PKCS1_4096_SHA256": "sha256",
}
_SCOPE = "https://www.googleapis.com/auth/cloudkms"
DEFAULT_ENDPOINT = "https://cloudkms.googleapis.com"


def parse_uri(uri: str) -> tuple[str, str]:
    """``(key name, version or "")`` of a ``gcpkms://`` URI."""
    match = _REF_RE.match(uri)
    if match is None:
        raise KeyMaterialError(
            f"'{shown(uri)}' is not a Google Cloud KMS key reference",
            hint="expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/versions/V]")
    return match.group(1), match.group(2) or ""


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Cloud KMS puts on digests and signatures."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


class GCPKMSSigner(KMSSigner):
    """An ASYMMETRIC_SIGN key version in Cloud KMS."""

    SCHEME = "gcpkms"

    def __init__(self, uri: str, ctx: Context, credentials: Any) -> None:
        self.uri = uri
        self._ctx, self._credentials = ctx, credentials
        self._endpoint = (os.environ.get("CHAINMAIL_GCPKMS_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")
        key, version = parse_uri(uri)
        doing = f"reading {uri}"
        purpose = self._call("GET", key, doing).get("purpose", "")
        if purpose != "ASYMMETRIC_SIGN":
            raise KeyMaterialError(f"{uri}: key purpose is {purpose or 'unknown'}, not ASYMMETRIC_SIGN")
        self.version = f"{key}/cryptoKeyVersions/{version}" if version else self._latest_enabled(key, doing)
        public = self._call("GET", f"{self.version}/publicKey", doing)
        algorithm, pem = str(public.get("algorithm", "")), public.get("pem")
        if algorithm not in _ALGORITHMS:
            raise KeyMaterialError(f"{uri}: unsupported key algorithm {algorithm or 'unknown'}; "
                                   f"supported: {', '.join(_ALGORITHMS)}")
        if not isinstance(pem, str) or crc32c(pem.encode()) != int(public.get("pemCrc32c", -1)):
            raise SigningError(f"{doing}: the public key was corrupted in transit (CRC32C mismatch)")
        from chainmail.signing.keys import public_key_pem

        super().__init__(uri, public_key_pem(pem, f"{uri} public key"), _ALGORITHMS[algorithm])

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> GCPKMSSigner:
        parse_uri(uri)
        return cls(uri, ctx, _credentials(uri))

    def _latest_enabled(self, key: str, doing: str) -> str:
        found = self._call("GET", f"{key}/cryptoKeyVersions", doing, params={"filter": "state=ENABLED"})
        versions = [v.get("name", "") for v in found.get("cryptoKeyVersions", []) if isinstance(v, dict)]
        numbered = [(int(n.rsplit("/", 1)[1]), n) for n in versions if n.rsplit("/", 1)[-1].isdigit()]
        if not numbered:
            raise KeyMaterialError(f"{self.uri}: the key has no ENABLED version")
        return max(numbered)[1]

    def sign_digest(self, digest: bytes) -> bytes:
        from chainmail._internal.encoding import b64decode, b64encode

        body = {"digest": {self.hash_name: b64encode(digest)}, "digestCrc32c": str(crc32c(digest))}
        doing = f"signing with {self.uri}"
        out = self._call("POST", f"{self.version}:asymmetricSign", doing, body=body)
        if out.get("verifiedDigestCrc32c") is not True:
            raise SigningError(f"{doing}: the digest was corrupted in transit (Cloud KMS did not verify its CRC32C)")
        try:
            signature = b64decode(str(out.get("signature", "")))
        except ValueError:
            raise SigningError(f"{doing}: Cloud KMS's signature is not base64") from None
        if not signature or crc32c(signature) != int(out.get("signatureCrc32c", -1)):
            raise SigningError(f"{doing}: the signature was corrupted in transit (CRC32C mismatch)")
        return signature

    def _call(self, method: str, path: str, doing: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {_token(self._credentials, doing)}"}
        return rest_call(f"Cloud KMS at {self._endpoint}", method, f"{self._endpoint}/v1/{path}", doing,
                         policy=self._ctx.retry, key_errors=("NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION"),
                         headers=headers, json=body, params=params)


def _credentials(uri: str) -> Any:
    auth = import_sdk("google.auth", "gcpkms", "google-auth", "gcp")
    from google.auth import exceptions as gx

    try:
        credentials, _ = auth.default(scopes=[_SCOPE])
    except gx.DefaultCredentialsError:
        raise ConfigError(f"{uri}: no Google Cloud credentials found",
                          hint="use Workload Identity, or set GOOGLE_APPLICATION_CREDENTIALS") from None
    return credentials


def _token(credentials: Any, doing: str) -> str:
    """A fresh access token (google-auth refreshes it near expiry)."""
    from google.auth import exceptions as gx
    from google.auth.transport.requests import Request

    if not credentials.valid:
        try:
            credentials.refresh(Request())
        except gx.GoogleAuthError as exc:
            detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
            raise SigningError(f"{doing}: getting a Google access token failed: {one_line(detail, 200)}") from None
    return str(credentials.token)
