"""The KMS signer base: local hashing, the self-check of every signature, SDK imports, auth settings."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ConfigError, SigningError
from chainmail.signing._kms import KMSAuth, KMSSigner, import_sdk


class LocalKMS(KMSSigner):
    """A "KMS" backed by a local key: records the digests it is sent, signs them prehashed."""

    SCHEME = "localkms"

    def __init__(self, key: Any, hash_name: Any = "sha256", wrong_key: Any = None) -> None:
        from chainmail.signing.keys import public_key_pem

        self._key, self._wrong = key, wrong_key
        self.digests: list[bytes] = []
        super().__init__("localkms://test", public_key_pem(key.public_key()), hash_name)

    def sign_digest(self, digest: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        self.digests.append(digest)
        algorithm = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}[self.hash_name]()
        return (self._wrong or self._key).sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))


def test_sends_only_the_local_digest_and_returns_a_verifying_signature() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from chainmail.signing.keys import ssh_fingerprint, verify_signature

    for curve, hash_name in [(ec.SECP256R1(), "sha256"), (ec.SECP384R1(), "sha384"), (ec.SECP521R1(), "sha512")]:
        signer = LocalKMS(ec.generate_private_key(curve), hash_name)
        signature = signer.sign(b"payload")
        assert signer.digests == [hashlib.new(hash_name, b"payload").digest()]
        verify_signature(signer.public_key_pem, signature, b"payload")
        assert signer.key_id == ssh_fingerprint(signer.public_key_pem)
        assert (signer.cert, signer.chain) == ("", "")


def test_a_signature_by_another_key_is_a_signing_error() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    signer = LocalKMS(ec.generate_private_key(ec.SECP256R1()), wrong_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SigningError, match="does not verify with the key's public key") as info:
        signer.sign(b"payload")
    assert info.value.exit_code == 6


def test_missing_sdk_names_the_extra() -> None:
    with pytest.raises(ConfigError) as info:
        import_sdk("chainmail_no_such_sdk", "gcpkms", "google-cloud-kms", "gcp")
    assert "gcpkms:// keys need the 'google-cloud-kms' package" in str(info.value)
    assert info.value.hint == "install chainmail[gcp]"
    assert info.value.exit_code == 3


def _auth(tmp_path: Path, **values: str) -> KMSAuth:
    return KMSAuth.from_context(Context(config=Config.from_mapping(values)))


def test_token_path_wins_and_loses_one_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s.from-file\n")
    auth = _auth(tmp_path, **{"signers.kms.auth.token": "s.inline", "signers.kms.auth.token-path": str(path)})
    assert auth.static_token() == "s.from-file"
    assert _auth(tmp_path, **{"signers.kms.auth.token": "s.inline"}).static_token() == "s.inline"
    assert _auth(tmp_path).oidc_token_path == "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_unreadable_or_empty_token_file_is_a_config_error(content: str | None, tmp_path: Path) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    auth = _auth(tmp_path, **{"signers.kms.auth.token-path": str(path)})
    with pytest.raises(ConfigError, match="signers.kms.auth.token-path: "):
        auth.static_token()
