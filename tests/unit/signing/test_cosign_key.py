"""cosign's encrypted key format: real cosign keys decrypt, our keys have cosign's exact layout."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chainmail._internal import cosign_key
from chainmail.errors import KeyMaterialError
from conftest import FIXTURE_KEYS


def _body(pem: bytes) -> dict:
    lines = pem.decode().strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


def _pub_pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _pkcs8(private_key) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("name", FIXTURE_KEYS)
def test_fixture_keys_decrypt_to_their_public_key(keys_dir: Path, name: str) -> None:
    d = keys_dir / name
    key = cosign_key.decrypt_key((d / "cosign.key").read_bytes(), (d / "cosign.password").read_bytes())
    assert _pub_pem(key) == (d / "cosign.pub").read_text()


@pytest.mark.parametrize("name", FIXTURE_KEYS)
def test_envelope_json_reproduces_cosign_bytes(keys_dir: Path, name: str) -> None:
    pem = (keys_dir / name / "cosign.key").read_bytes()
    doc = _body(pem)
    label = cosign_key.pem_label(pem)
    body = cosign_key.envelope_json(
        doc["kdf"]["params"]["N"], base64.b64decode(doc["kdf"]["salt"]),
        base64.b64decode(doc["cipher"]["nonce"]), base64.b64decode(doc["ciphertext"]),
    )
    assert cosign_key._pem_encode(label, body) == pem


def test_fixture_labels_and_costs(keys_dir: Path) -> None:
    legacy = (keys_dir / "legacy-cosign-label" / "cosign.key").read_bytes()
    current = (keys_dir / "ecdsa-p256-password" / "cosign.key").read_bytes()
    assert cosign_key.pem_label(legacy) == cosign_key.COSIGN_LABEL
    assert _body(legacy)["kdf"]["params"]["N"] == 32768
    assert cosign_key.pem_label(current) == cosign_key.SIGSTORE_LABEL
    assert _body(current)["kdf"]["params"]["N"] == 65536


@pytest.mark.parametrize("n", cosign_key.ALLOWED_N)
def test_encrypt_decrypt_round_trip(n: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = cosign_key.encrypt(_pkcs8(key), b"pw", n=n)
    assert cosign_key.decrypt(pem, b"pw") == _pkcs8(key)
    assert _body(pem)["kdf"]["params"] == {"N": n, "r": 8, "p": 1}


def test_encrypt_layout_matches_cosign() -> None:
    pem = cosign_key.encrypt_key(ec.generate_private_key(ec.SECP256R1()), b"")
    text = pem.decode()
    lines = text.splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert text.endswith("-----\n")
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    raw = base64.b64decode("".join(lines[1:-1]))
    assert raw.startswith(b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"')
    doc = json.loads(raw)
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert list(doc["cipher"]) == ["name", "nonce"]
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    assert b" " not in raw


def test_legacy_label_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = cosign_key.encrypt(_pkcs8(key), b"x", n=32768, label=cosign_key.COSIGN_LABEL)
    assert pem.startswith(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n")
    assert _pub_pem(cosign_key.decrypt_key(pem, b"x")) == _pub_pem(key)


def test_wrong_password(keys_dir: Path) -> None:
    pem = (keys_dir / "ecdsa-p256-password" / "cosign.key").read_bytes()
    with pytest.raises(KeyMaterialError) as info:
        cosign_key.decrypt(pem, b"not-the-password", where="test.key")
    assert str(info.value) == "wrong password for cosign key test.key"
    assert cosign_key.try_decrypt_key(pem, b"nope") is None


def _craft(der: bytes, password: bytes, *, n: int) -> bytes:
    """An encrypted key around any DER bytes (cosign_key.encrypt refuses non-PKCS#8)."""
    import os

    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    from nacl.secret import SecretBox

    salt, nonce = os.urandom(32), os.urandom(24)
    box = SecretBox(Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(password))
    body = cosign_key.envelope_json(n, salt, nonce, box.encrypt(der, nonce).ciphertext)
    return cosign_key._pem_encode(cosign_key.SIGSTORE_LABEL, body)


@pytest.mark.parametrize("params", [
    {"N": 16384, "r": 8, "p": 1},
    {"N": 262144, "r": 8, "p": 1},
    {"N": 65536, "r": 16, "p": 1},
    {"N": 65536, "r": 8, "p": 2},
    {"N": 65536.0, "r": 8, "p": 1},
    {"N": 65536, "r": 8},
])
def test_disallowed_scrypt_parameters(keys_dir: Path, params: dict) -> None:
    doc = _body((keys_dir / "ecdsa-p256-empty-password" / "cosign.key").read_bytes())
    doc["kdf"]["params"] = params
    pem = cosign_key._pem_encode(cosign_key.SIGSTORE_LABEL, json.dumps(doc, separators=(",", ":")).encode())
    with pytest.raises(KeyMaterialError, match=r"k: unsupported scrypt parameters N=\S+ r=\S+ p=\S+ \(cosign accepts"):
        cosign_key.decrypt(pem, b"", where="k")


def test_encrypt_refuses_costs_cosign_cannot_read() -> None:
    der = _pkcs8(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(KeyMaterialError, match="scrypt N=16384"):
        cosign_key.encrypt(der, b"", n=16384)


def test_sec1_inside_wrapper_is_rejected() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sec1 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    pem = _craft(sec1, b"hello", n=32768)
    with pytest.raises(KeyMaterialError) as info:
        cosign_key.decrypt(pem, b"hello", where="sec1.key")
    message = info.value.diagnostics()
    assert "SEC1" in message and "PKCS#8" in message and "hello" not in message
    with pytest.raises(KeyMaterialError):
        cosign_key.encrypt(sec1, b"x")


def test_der_kind() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    assert cosign_key._der_kind(_pkcs8(key)) == "pkcs8"
    sec1 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert cosign_key._der_kind(sec1) == "sec1"
    assert cosign_key._der_kind(b"") == "unknown"
    assert cosign_key._der_kind(b"\x30\x82") == "unknown"


@pytest.mark.parametrize(
    ("pem", "match"),
    [
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not an encrypted cosign private key"),
        (b"garbage", "no PEM block"),
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n!!!!\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
         "not valid base64"),
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGpzb24=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
         "not JSON"),
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n", "no END line"),
    ],
)
def test_malformed_files(pem: bytes, match: str) -> None:
    with pytest.raises(KeyMaterialError, match=match):
        cosign_key.decrypt(pem, b"")


def test_wrong_kdf_or_cipher_name(keys_dir: Path) -> None:
    doc = _body((keys_dir / "ecdsa-p256-empty-password" / "cosign.key").read_bytes())
    for path, value, match in ((("kdf", "name"), "argon2", "scrypt"), (("cipher", "name"), "aes", "secretbox")):
        bad = json.loads(json.dumps(doc))
        bad[path[0]][path[1]] = value
        pem = cosign_key._pem_encode(cosign_key.SIGSTORE_LABEL, json.dumps(bad).encode())
        with pytest.raises(KeyMaterialError, match=match):
            cosign_key.decrypt(pem, b"")
