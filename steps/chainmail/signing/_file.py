"""Key-file signers: a key file, a signing-secrets directory, or a Kubernetes Secret.

A directory or Secret is read the way Chains' x509 signer reads ``/etc/signing-secrets``:
``x509.pem`` (unencrypted PKCS#8, ECDSA or Ed25519) first, else ``cosign.key`` with
``cosign.password``. The password comes from ``cosign.password`` next to the key, else
``$COSIGN_PASSWORD``, else the empty password. A password file's trailing newline is
forgiven when the exact bytes do not decrypt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal import cosign_key
from chainmail.errors import KeyMaterialError, NotFoundError
from chainmail.signing._signer import Algorithm, KeySigner, algorithm_for
from chainmail.signing.keys import (
    PASSWORD_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    X509_FILE,
    parse_k8s_uri,
    public_key_pem,
    read_password_env,
    require_text_password,
)

if TYPE_CHECKING:
    from chainmail.context import Context

_NAMES = (X509_FILE, PRIVATE_KEY_FILE, PASSWORD_FILE, PUBLIC_KEY_FILE)

#: A loaded private key and how it signs.
LoadedKey = tuple[Any, Algorithm]


@dataclass(frozen=True)
class KeyMaterial:
    """The key files found in one directory or Secret."""

    #: ``/etc/signing-secrets`` or ``k8s://ns/name``: named in error messages.
    where: str
    files: Mapping[str, bytes]
    secret: bool = False

    def locate(self, name: str) -> str:
        """How to name one file of this material in a message."""
        return f"{self.where} key '{name}'" if self.secret else str(Path(self.where) / name)

    @classmethod
    def from_dir(cls, path: Path) -> KeyMaterial:
        """Read the known key files of a directory (Secret mounts use symlinks; they are followed)."""
        return cls(str(path), {name: _read(path / name) for name in _NAMES if (path / name).is_file()})

    @classmethod
    def from_secret(cls, uri: str, ctx: Context) -> KeyMaterial:
        """Read the known key files of ``k8s://NAMESPACE/NAME`` through ``ctx.kube``."""
        namespace, name = parse_k8s_uri(uri)
        where = f"k8s://{namespace}/{name}"
        try:
            data = ctx.kube.get_secret(namespace, name)
        except NotFoundError:
            raise KeyMaterialError(f"signing secret {where} not found") from None
        files = {k: (v.encode() if isinstance(v, str) else bytes(v)) for k, v in data.items() if k in _NAMES}
        return cls(where, files, secret=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None


def load_x509(pem: bytes, where: str) -> LoadedKey:
    """An unencrypted PKCS#8 PEM (Chains' ``x509.pem``): ECDSA on any curve, or Ed25519."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    label = cosign_key.pem_label(pem) or ""
    if label == "EC PRIVATE KEY":
        raise KeyMaterialError(
            f"{where}: SEC1 'EC PRIVATE KEY' is not supported; Chains expects PKCS#8 'PRIVATE KEY'",
            hint="convert it with: openssl pkcs8 -topk8 -nocrypt -in KEY -out x509.pem",
        )
    if label == "RSA PRIVATE KEY":
        raise KeyMaterialError(f"{where}: RSA keys are not supported in x509.pem, only ECDSA and Ed25519")
    if label in ("PUBLIC KEY", "CERTIFICATE"):
        raise KeyMaterialError(f"{where} holds a {label.lower()}, not a private key")
    if label != "PRIVATE KEY":
        found = f"'{label}'" if label else "no PEM block"
        raise KeyMaterialError(f"{where}: expected an unencrypted PKCS#8 'PRIVATE KEY' PEM, found {found}")
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"{where}: the PKCS#8 private key cannot be parsed") from None
    except Exception as exc:  # UnsupportedAlgorithm
        raise KeyMaterialError(f"{where}: unsupported private key ({type(exc).__name__})") from None
    return key, algorithm_for(key, where=where, chains_x509=True)


def load_cosign(pem: bytes, password: bytes | None, where: str, *, password_from: str) -> LoadedKey:
    """An encrypted cosign key; ``password`` None means no password file (then env, then empty)."""
    if password is None:
        env = read_password_env()
        if env is not None:
            password, password_from = env, "COSIGN_PASSWORD"
    else:
        require_text_password(password, password_from)
    candidates = [b""] if password is None else [password]
    if password is not None and password.endswith(b"\n"):
        candidates.append(password.rstrip(b"\r\n"))
    for candidate in candidates:
        key = cosign_key.try_decrypt_key(pem, candidate, where=where)
        if key is not None:
            return key, algorithm_for(key, where=where, chains_x509=False)
    if password is None:
        raise KeyMaterialError(
            f"cosign key {where} is password protected and no password was given",
            hint=f"add {PASSWORD_FILE} next to the key or set COSIGN_PASSWORD",
        )
    raise KeyMaterialError(f"wrong password for cosign key {where} (password from {password_from})")


def load_material(material: KeyMaterial) -> LoadedKey:
    """Chains' order: ``x509.pem``, else ``cosign.key`` + ``cosign.password``."""
    files = material.files
    if X509_FILE in files:
        return load_x509(files[X509_FILE], material.locate(X509_FILE))
    if PRIVATE_KEY_FILE in files:
        where, source = material.locate(PRIVATE_KEY_FILE), material.locate(PASSWORD_FILE)
        return load_cosign(files[PRIVATE_KEY_FILE], files.get(PASSWORD_FILE), where, password_from=source)
    raise KeyMaterialError(
        f"no valid private key found in {material.where}, looked for: {X509_FILE}, {PRIVATE_KEY_FILE}",
        hint="mount the signing secret there, or pass --key DIR|FILE|k8s://NAMESPACE/SECRET",
    )


def load_file(path: Path) -> LoadedKey:
    """One key file: an encrypted cosign key (password as for a directory) or a PKCS#8 PEM."""
    pem = _read(path)
    if cosign_key.is_encrypted_key(pem):
        sibling = path.parent / PASSWORD_FILE
        password = _read(sibling) if sibling.is_file() else None
        return load_cosign(pem, password, str(path), password_from=str(sibling))
    return load_x509(pem, str(path))


def public_key_from_material(material: KeyMaterial) -> str:
    """The public key of a directory or Secret: of ``x509.pem`` if present (it signs), else ``cosign.pub``,
    else derived from ``cosign.key``."""
    files = material.files
    if X509_FILE not in files and PUBLIC_KEY_FILE in files:
        return public_key_pem(files[PUBLIC_KEY_FILE], material.locate(PUBLIC_KEY_FILE))
    if X509_FILE not in files and PRIVATE_KEY_FILE not in files:
        looked = ", ".join((X509_FILE, PUBLIC_KEY_FILE, PRIVATE_KEY_FILE))
        raise KeyMaterialError(f"no public key found in {material.where}, looked for: {looked}")
    key, _ = load_material(material)
    return public_key_pem(key.public_key())


def file_path(uri: str) -> Path:
    """The path named by ``file:///abs``, ``file:rel`` or a bare path."""
    rest = uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:")
    if not rest:
        raise KeyMaterialError(f"'{uri}': no path given")
    return Path(os.path.expanduser(rest))


def canonical_file_uri(uri: str) -> str:
    """``file://`` plus the absolute path, so one key loads once whatever spelling named it."""
    return "file://" + os.path.abspath(file_path(uri))


class FileSigner(KeySigner):
    """``file:`` URIs and bare paths: a key file or a signing-secrets directory."""

    SCHEME = "file"

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> FileSigner:
        path = file_path(uri)
        if path.is_dir():
            key, algorithm = load_material(KeyMaterial.from_dir(path))
        elif path.exists():
            key, algorithm = load_file(path)
        else:
            raise KeyMaterialError(f"signing key {path} does not exist")
        return cls(key, algorithm, canonical_file_uri(uri))


class K8sSigner(KeySigner):
    """``k8s://NAMESPACE/SECRET``: the same files, read from a Secret."""

    SCHEME = "k8s"

    @classmethod
    def from_uri(cls, uri: str, ctx: Context) -> K8sSigner:
        material = KeyMaterial.from_secret(uri, ctx)
        key, algorithm = load_material(material)
        return cls(key, algorithm, material.where)
