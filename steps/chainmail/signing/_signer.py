"""The :class:`Signer` interface and the in-memory private key signer behind file/k8s keys."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from chainmail.errors import ConfigError, KeyMaterialError, SigningError

#: Key URI schemes that sign keyless (an ephemeral key certified by Fulcio).
KEYLESS_SCHEMES = ("fulcio",)

if TYPE_CHECKING:
    from chainmail.context import Context

#: How a private key turns bytes into a signature.
#: ``sha256``/``sha384``/``sha512``: ECDSA (DER) or RSA PKCS#1 v1.5 over that digest;
#: ``ed25519``: pure Ed25519; ``ed25519ph``: Ed25519ph (what cosign uses for ed25519 cosign keys).
Algorithm = Literal["sha256", "sha384", "sha512", "ed25519", "ed25519ph"]


class Signer(ABC):
    """Something that signs bytes with one key (securesystemslib-style, addressed by URI).

    ``sign`` returns the raw signature: ECDSA ASN.1 DER over the digest, or the 64-byte
    Ed25519 signature. ``uri`` says where the key came from and never holds a secret.
    """

    #: URI scheme this class loads (``file``, ``k8s``, …); see ``SIGNER_FOR_URI_SCHEME``.
    SCHEME: ClassVar[str]

    uri: str = ""
    #: Signing certificate and chain (PEM) for keyless signers; empty for keys.
    cert: str = ""
    chain: str = ""

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> Signer:
        """Load the signer named by ``uri`` (already known to have this class's scheme).

        Every class registered in ``SIGNER_FOR_URI_SCHEME`` overrides this; the base refuses.
        """
        raise ConfigError(f"signer URI '{uri}': {cls.__name__} has no URI loader")

    @abstractmethod
    def sign(self, data: bytes) -> bytes:
        """Sign ``data``; raise :class:`SigningError` when the signer fails."""

    @property
    @abstractmethod
    def public_key_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM."""

    @property
    def key_id(self) -> str:
        """Chains' key id: the SSH SHA256 fingerprint of the public key (``SHA256:…``)."""
        cached = self.__dict__.get("_key_id")
        if cached is None:
            from chainmail.signing.keys import ssh_fingerprint

            cached = self.__dict__["_key_id"] = ssh_fingerprint(self.public_key_pem)
        return cached

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r})"


def algorithm_for(private_key: Any, *, where: str, chains_x509: bool) -> Algorithm:
    """The signing algorithm for a loaded private key, or :class:`KeyMaterialError`.

    ``chains_x509`` selects Chains' ``x509.pem`` rules (ECDSA over SHA-256 on every curve,
    plus Ed25519 as a chainmail addition); otherwise cosign's defaults for ``cosign.key``
    (SHA-256/384/512 by curve, RSA PKCS#1 v1.5 SHA-256, Ed25519ph).
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        curve = private_key.curve.name
        by_curve: dict[str, Algorithm] = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}
        if curve not in by_curve:
            raise KeyMaterialError(f"{where}: unsupported ECDSA curve {curve} (use P-256, P-384 or P-521)")
        return "sha256" if chains_x509 else by_curve[curve]
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519" if chains_x509 else "ed25519ph"
    if isinstance(private_key, rsa.RSAPrivateKey):
        if chains_x509:
            raise KeyMaterialError(f"{where}: RSA keys are not supported in x509.pem, only ECDSA and Ed25519")
        if private_key.key_size not in (2048, 3072, 4096):
            raise KeyMaterialError(f"{where}: unsupported RSA key size {private_key.key_size}")
        return "sha256"
    raise KeyMaterialError(f"{where}: unsupported private key type {type(private_key).__name__}")


class KeySigner(Signer):
    """A signer holding a private key in memory (from a file, a directory or a Secret)."""

    def __init__(self, private_key: Any, algorithm: Algorithm, uri: str) -> None:
        self._key = private_key
        self.algorithm: Algorithm = algorithm
        self.uri = uri
        from cryptography.hazmat.primitives import serialization

        self._public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def public_key_pem(self) -> str:
        return self._public_pem

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding

        try:
            if self.algorithm == "ed25519":
                return self._key.sign(data)
            if self.algorithm == "ed25519ph":
                return _sign_ed25519ph(self._key, data)
            digests = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
            digest = digests[self.algorithm]()
            if isinstance(self._key, ec.EllipticCurvePrivateKey):
                # RFC 6979: the same payload and key give the same signature, so a retried or
                # concurrent signer produces an identical layer that storage recognises and skips.
                return self._key.sign(data, ec.ECDSA(digest, deterministic_signing=True))
            return self._key.sign(data, padding.PKCS1v15(), digest)
        except Exception as exc:  # cryptography raises assorted types; never include key material
            raise SigningError(f"signing with {self.uri} failed: {type(exc).__name__}") from None


def _sign_ed25519ph(private_key: Any, data: bytes) -> bytes:
    """RFC 8032 Ed25519ph with an empty context (Go's ``ed25519.Options{Hash: crypto.SHA512}``)."""
    from cryptography.hazmat.primitives import serialization
    from nacl import bindings

    seed = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    state = bindings.crypto_sign_ed25519ph_state()
    bindings.crypto_sign_ed25519ph_update(state, data)
    return bindings.crypto_sign_ed25519ph_final_create(state, seed + public)
