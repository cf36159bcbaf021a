"""``awskms://[ENDPOINT]/KEY``: AWS KMS asymmetric keys through boto3 (the ``aws`` extra).

KEY is what cosign accepts: a key id (``1234abcd-…`` or ``mrk-…``), a key ARN, ``alias/NAME`` or an
alias ARN. ENDPOINT (optional, ``host[:port]``) is reached over HTTPS, as cosign does; without it boto3
picks the regional endpoint (or ``$AWS_ENDPOINT_URL_KMS``). The region is the ARN's, else boto3's
(``$AWS_REGION``); credentials come from boto3's chain (env, web identity/IRSA, instance role). Chains'
``signers.kms.auth.*`` keys do not apply to AWS. Needs ``kms:GetPublicKey`` and ``kms:Sign``.

The digest is computed here and sent with ``MessageType=DIGEST``: ECDSA_SHA_256/384/512 for
ECC_NIST_P256/P384/P521 keys, RSASSA_PKCS1_V1_5_SHA_256 for RSA keys (the scheme ``cosign verify
--key`` checks RSA keys with; cosign itself would pick the key's first algorithm, PSS).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from chainmail.errors import ConfigError, KeyMaterialError, SigningError
from chainmail.signing._kms import Hash, KMSSigner, import_sdk, one_line, shown

if TYPE_CHECKING:
    from chainmail.context import Context

_HEX = "[0-9A-Fa-f]"
_KEY_ID = rf"(?:mrk-)?{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}"
_ARN = r"arn:aws(?:-us-gov|-cn)?:kms:(?P<region>[a-z0-9-]+):\d{12}:"
_ENDPOINT_RE = re.compile(r"^(?:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?)?$")
_ALIAS = r"alias/[A-Za-z0-9/_-]+"  # AWS's alias name characters
_KEY_RE = re.compile(rf"^(?:{_KEY_ID}|{_ALIAS}|{_ARN}(?:key/{_KEY_ID}|{_ALIAS}))$")

#: KeySpec → (SigningAlgorithm, local digest).
_ALGORITHMS: dict[str, tuple[str, Hash]] = {
    "ECC_NIST_P256": ("ECDSA_SHA_256", "sha256"),
    "ECC_NIST_P384": ("ECDSA_SHA_384", "sha384"),
    "ECC_NIST_P521": ("ECDSA_SHA_512", "sha512"),
    "RSA_2048": ("RSASSA_PKCS1_V1_5_SHA_256", "sha256"),
    "RSA_3072": ("RSASSA_PKCS1_V1_5_SHA_256", "sha256"),
    "RSA_4096": ("RSASSA_PKCS1_V1_5_SHA_256", "sha256"),
}
#: AWS error codes that mean the reference or the key is wrong for signing (exit 5); others are the KMS failing (6).
_KEY_ERRORS = frozenset({"NotFoundException", "InvalidArnException", "InvalidKeyUsageException",
                         "UnsupportedOperationException", "ValidationException"})
_XML_ERROR = re.compile(r"<Code>([^<]*)</Code>.*?<Message>([^<]*)</Message>", re.S)
_FORMAT = "awskms://[ENDPOINT]/KEY with KEY a key id, key ARN, alias/NAME or alias ARN"


def parse_uri(uri: str) -> tuple[str, str, str]:
    """``(endpoint, key, region)`` of an ``awskms://`` URI (endpoint and region may be empty)."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    endpoint, slash, key = rest.partition("/")
    match = _KEY_RE.match(key) if slash and _ENDPOINT_RE.match(endpoint) else None
    if match is None:
        raise KeyMaterialError(f"'{shown(uri)}' is not an AWS KMS key reference", hint=f"expected {_FORMAT}")
    return endpoint, key, match.group("region") or ""


class AWSKMSSigner(KMSSigner):
    """A sign/verify key in AWS KMS."""

    SCHEME = "awskms"

    def __init__(self, uri: str, client: Any, key: str) -> None:
        self.uri = uri
        self._client = client
        self._key = key
        out = self._call("getting the public key of", client.get_public_key, KeyId=key)
        # KeySpec, or its deprecated twin CustomerMasterKeySpec (AWS returns both; moto only the latter)
        usage, spec = out.get("KeyUsage", ""), out.get("KeySpec") or out.get("CustomerMasterKeySpec", "")
        if usage != "SIGN_VERIFY":
            raise KeyMaterialError(f"{uri}: key usage is {usage or 'unknown'}, not SIGN_VERIFY",
                                   hint="create the key with --key-usage SIGN_VERIFY")
        if spec not in _ALGORITHMS:
            supported = ", ".join(_ALGORITHMS)
            raise KeyMaterialError(f"{uri}: unsupported key spec {spec or 'unknown'}; supported: {supported}")
        self.algorithm, hash_name = _ALGORITHMS[spec]
        if self.algorithm not in out.get("SigningAlgorithms", [self.algorithm]):
            raise KeyMaterialError(f"{uri}: the key does not offer {self.algorithm}")
        from chainmail.signing.keys import public_key_pem

        pem = public_key_pem(_der_to_pem(out.get("PublicKey", b"")), f"{uri} public key")
        super().__init__(uri, pem, hash_name)

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> AWSKMSSigner:
        endpoint, key, region = parse_uri(uri)
        return cls(uri, _client(uri, endpoint, region), key)

    def sign_digest(self, digest: bytes) -> bytes:
        out = self._call("signing with", self._client.sign, KeyId=self._key, Message=digest,
                         MessageType="DIGEST", SigningAlgorithm=self.algorithm)
        signature = out.get("Signature")
        if not isinstance(signature, bytes | bytearray) or not signature:
            raise SigningError(f"signing with {self.uri}: AWS KMS returned no signature")
        return bytes(signature)

    def _call(self, doing: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        from botocore import exceptions as bx

        try:
            return method(**kwargs)
        except bx.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            xml = _XML_ERROR.search(message) if code.isdigit() else None
            if xml:  # not KMS's JSON error: an XML one from a proxy or an emulator
                code, message = xml.group(1), xml.group(2)
            message = one_line(message)
            text = f"{doing} {self.uri}: AWS KMS said {code}: {message}".rstrip(": ")
            if code in _KEY_ERRORS:
                raise KeyMaterialError(text) from None
            raise SigningError(text) from None
        except (bx.NoCredentialsError, bx.PartialCredentialsError):
            raise ConfigError(f"{doing} {self.uri}: no AWS credentials found",
                              hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or a web identity "
                                   "(IRSA) for the step's service account") from None
        except bx.SSLError as exc:
            raise SigningError(f"{doing} {self.uri}: TLS failed: {one_line(exc, 200)}",
                               hint="trust the endpoint's CA with AWS_CA_BUNDLE") from None
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                bx.ConnectionClosedError) as exc:
            raise SigningError(f"{doing} {self.uri}: cannot reach AWS KMS after retries: "
                               f"{one_line(exc, 200)}") from None
        except bx.BotoCoreError as exc:
            raise SigningError(f"{doing} {self.uri}: {type(exc).__name__}: {one_line(exc, 200)}") from None


def _der_to_pem(der: bytes) -> bytes:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


def _client(uri: str, endpoint: str, region: str) -> Any:
    """A KMS client with bounded retries and timeouts (endpoint down → a few attempts, then exit 6)."""
    boto3 = import_sdk("boto3", "awskms", "boto3", "aws")
    from botocore.config import Config

    session = boto3.session.Session()
    region = region or os.environ.get("AWS_REGION", "").strip() or session.region_name or ""
    if not region:
        raise ConfigError(f"{uri}: no AWS region", hint="set AWS_REGION, or name the key by its ARN")
    config = Config(retries={"mode": "standard", "total_max_attempts": 4}, connect_timeout=5, read_timeout=30)
    kwargs: dict[str, Any] = {"region_name": region, "config": config}
    if endpoint:
        kwargs["endpoint_url"] = f"https://{endpoint}"
    if os.environ.get("AWS_TLS_INSECURE_SKIP_VERIFY") == "1":  # cosign's switch, for test endpoints only
        kwargs["verify"] = False
    return session.client("kms", **kwargs)
