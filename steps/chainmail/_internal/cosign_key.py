"""cosign's encrypted private key files (``cosign.key``): decrypt and encrypt.

Example::

    pem = encrypt(pkcs8_der, b"s3cret")          # -----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
    der = decrypt(pem, b"s3cret", where="cosign.key")

The PEM body is a compact JSON document (Go field order)::

    {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<b64>"},
     "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}

The secretbox key is scrypt(password, salt, N, r=8, p=1, 32 bytes); the plaintext is the
PKCS#8 DER private key. Only the scrypt costs cosign itself accepts are read
(N = 2^15, 2^16 or 2^17 with r=8, p=1), and only PKCS#8 plaintext, as cosign insists.
Error messages name ``where`` (a path or secret), never the password.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import KeyMaterialError

SIGSTORE_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
LABELS = (SIGSTORE_LABEL, COSIGN_LABEL)

#: scrypt work factors cosign accepts when decrypting (r=8, p=1 always).
ALLOWED_N = (32768, 65536, 131072)
DEFAULT_N = 65536
_R, _P = 8, 1
_SALT_LEN, _NONCE_LEN, _KEY_LEN = 32, 24, 32


def pem_label(data: bytes | str) -> str | None:
    """The label of the first PEM block in ``data`` (``"PUBLIC KEY"``, …), or None."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    start = text.find("-----BEGIN ")
    if start < 0:
        return None
    end = text.find("-----", start + 11)
    return text[start + 11:end].strip() if end > 0 else None


def is_encrypted_key(data: bytes | str) -> bool:
    """True when ``data`` is a cosign encrypted private key PEM (either label)."""
    return pem_label(data) in LABELS


def _pem_body(data: bytes, where: str) -> bytes:
    text = data.decode("ascii", "replace")
    label = pem_label(text)
    if label not in LABELS:
        found = f"'{label}'" if label else "no PEM block"
        raise KeyMaterialError(f"{where}: not an encrypted cosign private key ({found})")
    begin = f"-----BEGIN {label}-----"
    end = f"-----END {label}-----"
    start = text.index(begin) + len(begin)
    stop = text.find(end, start)
    if stop < 0:
        raise KeyMaterialError(f"{where}: PEM block '{label}' has no END line")
    lines = [ln.strip() for ln in text[start:stop].splitlines() if ln.strip()]
    if any(":" in ln for ln in lines):
        raise KeyMaterialError(f"{where}: PEM headers are not allowed in a cosign key")
    try:
        return base64.b64decode("".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{where}: PEM body is not valid base64") from None


def _bytes_field(doc: dict[str, Any], name: str, where: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise KeyMaterialError(f"{where}: encrypted key JSON lacks '{name}'")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{where}: encrypted key field '{name}' is not valid base64") from None


def _parse_envelope(body: bytes, where: str) -> tuple[int, bytes, bytes, bytes]:
    """(N, salt, nonce, ciphertext) from the JSON inside the PEM, checked like cosign does."""
    try:
        doc = load_json(body)
    except ValueError:
        raise KeyMaterialError(f"{where}: encrypted key body is not JSON") from None
    if not isinstance(doc, dict):
        raise KeyMaterialError(f"{where}: encrypted key body is not a JSON object")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise KeyMaterialError(f"{where}: unsupported key derivation (expected scrypt)")
    if not isinstance(cipher, dict) or cipher.get("name") != "nacl/secretbox":
        raise KeyMaterialError(f"{where}: unsupported cipher (expected nacl/secretbox)")
    params = kdf.get("params")
    if not isinstance(params, dict):
        raise KeyMaterialError(f"{where}: scrypt parameters missing")
    n, r, p = params.get("N"), params.get("r"), params.get("p")
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p))
    if not ints or n not in ALLOWED_N or r != _R or p != _P:
        raise KeyMaterialError(
            f"{where}: unsupported scrypt parameters N={n} r={r} p={p} "
            f"(cosign accepts N in {', '.join(map(str, ALLOWED_N))} with r=8, p=1)"
        )
    salt = _bytes_field(kdf, "salt", where)
    nonce = _bytes_field(cipher, "nonce", where)
    if len(nonce) != _NONCE_LEN:
        raise KeyMaterialError(f"{where}: secretbox nonce must be {_NONCE_LEN} bytes, not {len(nonce)}")
    ciphertext = _bytes_field(doc, "ciphertext", where)
    return int(n), salt, nonce, ciphertext  # type: ignore[arg-type]


def _derive(password: bytes, salt: bytes, n: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=_KEY_LEN, n=n, r=_R, p=_P).derive(password)


def _der_kind(der: bytes) -> str:
    """Which private key container ``der`` is: ``pkcs8``, ``sec1``, ``pkcs1`` or ``unknown``.

    PKCS#8 is SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key, … };
    SEC1 has an OCTET STRING and PKCS#1 an INTEGER where PKCS#8 has the algorithm SEQUENCE.
    """

    def header(pos: int) -> tuple[int, int, int]:
        """(tag, content start, content length) of the DER element at ``pos``."""
        tag = der[pos]
        first = der[pos + 1]
        if first < 0x80:
            return tag, pos + 2, first
        count = first & 0x7F
        if count == 0 or count > 4:
            raise IndexError("unsupported length")
        length = int.from_bytes(der[pos + 2:pos + 2 + count], "big")
        return tag, pos + 2 + count, length

    try:
        tag, start, _ = header(0)
        if tag != 0x30:
            return "unknown"
        tag, vstart, vlen = header(start)
        if tag != 0x02:
            return "unknown"
        tag, _, _ = header(vstart + vlen)
    except IndexError:
        return "unknown"
    return {0x30: "pkcs8", 0x04: "sec1", 0x02: "pkcs1"}.get(tag, "unknown")


def _open(pem: bytes, password: bytes, where: str) -> bytes | None:
    """The PKCS#8 DER inside ``pem``, or None when ``password`` is wrong."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    n, salt, nonce, ciphertext = _parse_envelope(_pem_body(pem, where), where)
    try:
        der = SecretBox(_derive(password, salt, n)).decrypt(ciphertext, nonce)
    except CryptoError:
        return None
    kind = _der_kind(der)
    if kind == "sec1":
        raise KeyMaterialError(
            f"{where}: the encrypted key is a SEC1 'EC PRIVATE KEY', not PKCS#8; cosign rejects it too",
            hint="re-wrap it with `cosign import-key-pair`",
        )
    if kind != "pkcs8":
        raise KeyMaterialError(f"{where}: the encrypted key is not a PKCS#8 private key ({kind})")
    return der


def decrypt(pem: bytes, password: bytes, *, where: str = "cosign key") -> bytes:
    """Decrypt a cosign key PEM; return the PKCS#8 DER private key.

    Raises :class:`KeyMaterialError` for a malformed file, disallowed scrypt parameters,
    a wrong password (``wrong password for cosign key <where>``) or non-PKCS#8 content.
    """
    der = _open(pem, password, where)
    if der is None:
        raise KeyMaterialError(f"wrong password for cosign key {where}")
    return der


def _load_der(der: bytes, where: str) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    try:
        return load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"{where}: the decrypted PKCS#8 key cannot be parsed") from None


def decrypt_key(pem: bytes, password: bytes, *, where: str = "cosign key") -> Any:
    """Decrypt a cosign key PEM into a ``cryptography`` private key object."""
    return _load_der(decrypt(pem, password, where=where), where)


def try_decrypt_key(pem: bytes, password: bytes, *, where: str = "cosign key") -> Any | None:
    """Like :func:`decrypt_key`, but None (instead of an error) when the password is wrong."""
    der = _open(pem, password, where)
    return None if der is None else _load_der(der, where)


def _pem_encode(label: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    body_text = "".join(ln + "\n" for ln in lines)
    return f"-----BEGIN {label}-----\n{body_text}-----END {label}-----\n".encode()


def envelope_json(n: int, salt: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """The compact JSON document cosign puts inside the PEM, in Go's field order."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return (
        f'{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":{_R},"p":{_P}}},"salt":"{b64(salt)}"}},'
        f'"cipher":{{"name":"nacl/secretbox","nonce":"{b64(nonce)}"}},"ciphertext":"{b64(ciphertext)}"}}'
    ).encode()


def encrypt(der: bytes, password: bytes, *, n: int = DEFAULT_N, label: str = SIGSTORE_LABEL) -> bytes:
    """Encrypt a PKCS#8 DER private key the way ``cosign generate-key-pair`` does; return the PEM."""
    from nacl.secret import SecretBox

    if n not in ALLOWED_N:
        raise KeyMaterialError(f"scrypt N={n} is not one cosign can read; use one of {ALLOWED_N}")
    if label not in LABELS:
        raise KeyMaterialError(f"unknown cosign key label '{label}'")
    if _der_kind(der) != "pkcs8":
        raise KeyMaterialError("only PKCS#8 private keys can be stored in a cosign key")
    salt = os.urandom(_SALT_LEN)
    nonce = os.urandom(_NONCE_LEN)
    ciphertext = SecretBox(_derive(password, salt, n)).encrypt(der, nonce).ciphertext
    return _pem_encode(label, envelope_json(n, salt, nonce, ciphertext))


def encrypt_key(private_key: Any, password: bytes, *, n: int = DEFAULT_N) -> bytes:
    """Encrypt a ``cryptography`` private key object as a cosign key PEM."""
    from cryptography.hazmat.primitives import serialization

    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return encrypt(der, password, n=n)
