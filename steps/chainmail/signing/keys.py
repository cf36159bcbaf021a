"""Key helpers: fingerprints, raw signature checks, and cosign key pair generation.

Example::

    key_pem, pub_pem = generate_keypair(b"s3cret")   # cosign.key, cosign.pub
    ssh_fingerprint(pub_pem)                         # "SHA256:yHmPkf…" (Chains' DSSE keyid)
    verify_signature(pub_pem, sig, data)             # raises VerificationError on mismatch
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail.errors import InputError, KeyMaterialError, VerificationError

if TYPE_CHECKING:
    from chainmail.context import Context

#: File names in a signing-secrets directory or Secret (the names Chains and cosign use).
PRIVATE_KEY_FILE = "cosign.key"
PUBLIC_KEY_FILE = "cosign.pub"
PASSWORD_FILE = "cosign.password"  # noqa: S105 - a file name, not a password
X509_FILE = "x509.pem"


def public_key_object(pubkey: Any, where: str = "public key") -> Any:
    """A ``cryptography`` public key from PEM (``PUBLIC KEY`` or ``CERTIFICATE``) or a key object."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if not isinstance(pubkey, str | bytes):
        if hasattr(pubkey, "public_bytes") and not hasattr(pubkey, "private_bytes"):
            return pubkey
        raise KeyMaterialError(f"{where}: expected a public key, not {type(pubkey).__name__}")
    data = pubkey.encode() if isinstance(pubkey, str) else pubkey
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            from cryptography import x509  # only here: ~15 ms of a key-file sweep's start

            return x509.load_pem_x509_certificate(data).public_key()
        return load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"{where}: not a PEM public key or certificate") from None
    except Exception as exc:  # UnsupportedAlgorithm and friends
        raise KeyMaterialError(f"{where}: unsupported public key ({type(exc).__name__})") from None


def public_key_pem(pubkey: Any, where: str = "public key") -> str:
    """SubjectPublicKeyInfo PEM (64-character lines, as cosign writes ``cosign.pub``)."""
    from cryptography.hazmat.primitives import serialization

    key = public_key_object(pubkey, where)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def ssh_fingerprint(pubkey: Any) -> str:
    """Chains' DSSE keyid: ``SHA256:`` + unpadded base64 of sha256 over the SSH wire-format key."""
    from cryptography.hazmat.primitives import serialization

    key = public_key_object(pubkey)
    try:
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    except ValueError:
        raise KeyMaterialError(f"no SSH encoding for {type(key).__name__}; cannot compute a key id") from None
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def key_hint(pubkey: Any) -> str:
    """Sigstore bundle ``publicKey.hint``: base64 of sha256 over the SubjectPublicKeyInfo DER."""
    from cryptography.hazmat.primitives import serialization

    der = public_key_object(pubkey).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def verify_signature(public_key_pem: str, signature: bytes, data: bytes) -> None:
    """Check a raw signature over ``data``; raise :class:`VerificationError` when it does not verify.

    ECDSA signatures may be ASN.1 DER or raw ``r‖s`` (as sigstore's Go verifier accepts); the
    digest is the curve's default (SHA-256/384/512) or SHA-256, which Chains uses for every
    curve. Ed25519 accepts pure Ed25519 and Ed25519ph; RSA uses PKCS#1 v1.5 with SHA-256.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    key = public_key_object(public_key_pem)
    if isinstance(key, ec.EllipticCurvePublicKey):
        default = {"secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}.get(key.curve.name, hashes.SHA256)
        digests = [default()] if default is hashes.SHA256 else [default(), hashes.SHA256()]
        candidates: list[bytes] = []
        try:
            decode_dss_signature(signature)
            candidates.append(signature)
        except ValueError:
            size = (key.curve.key_size + 7) // 8
            if len(signature) == 2 * size:
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                candidates.append(encode_dss_signature(r, s))
        for der in candidates:
            for digest in digests:
                try:
                    key.verify(der, data, ec.ECDSA(digest))
                    return
                except InvalidSignature:
                    continue
    elif isinstance(key, ed25519.Ed25519PublicKey):
        try:
            key.verify(signature, data)
            return
        except InvalidSignature:
            if _verify_ed25519ph(key, signature, data):
                return
    elif isinstance(key, rsa.RSAPublicKey):
        try:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return
        except InvalidSignature:
            pass
    else:
        raise KeyMaterialError(f"unsupported public key type {type(key).__name__}")
    raise VerificationError("signature does not verify with the given public key")


def _verify_ed25519ph(key: Any, signature: bytes, data: bytes) -> bool:
    from cryptography.hazmat.primitives import serialization
    from nacl import bindings
    from nacl.exceptions import BadSignatureError

    if len(signature) != 64:
        return False
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    state = bindings.crypto_sign_ed25519ph_state()
    bindings.crypto_sign_ed25519ph_update(state, data)
    try:
        return bool(bindings.crypto_sign_ed25519ph_final_verify(state, signature, raw))
    except BadSignatureError:
        return False


def generate_keypair(password: bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair as (encrypted ``cosign.key`` PEM, ``cosign.pub`` PEM), like cosign."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from chainmail._internal.cosign_key import encrypt_key

    private_key = ec.generate_private_key(ec.SECP256R1())
    return encrypt_key(private_key, password), public_key_pem(private_key.public_key()).encode()


def write_keypair(dest: str, password: bytes, ctx: Context, *, force: bool = False,
                  write_password: bool = False, local_pub: Path | None = None) -> list[str]:
    """Generate a key pair and write it to a directory or to ``k8s://NAMESPACE/NAME``.

    A directory gets ``cosign.key`` (mode 0600), ``cosign.pub`` and, with ``write_password``,
    ``cosign.password`` (0600). A Secret always gets all three (what Chains' signing-secrets
    needs) and is created immutable; ``local_pub`` also receives the public key then (as
    ``cosign generate-key-pair k8s://…`` writes ``./cosign.pub``). Existing files or Secrets
    are kept unless ``force``. Returns the locations written; never the password.
    """
    from chainmail._internal.files import atomic_write

    if dest.startswith("k8s://"):
        namespace, name = parse_k8s_uri(dest)
        if not force:
            if local_pub is not None and local_pub.exists():
                raise InputError(f"refusing to overwrite {local_pub}", hint="pass --force to replace it")
            if _secret_exists(ctx, namespace, name):
                raise InputError(f"secret {dest} already exists; not overwriting it",
                                 hint="pass --force to replace it")
        key_pem, pub_pem = generate_keypair(password)
        ctx.kube.apply_secret(
            namespace, name,
            {PRIVATE_KEY_FILE: key_pem, PUBLIC_KEY_FILE: pub_pem, PASSWORD_FILE: password},
            immutable=True,
        )
        written = [f"k8s://{namespace}/{name}"]
        if local_pub is not None:
            atomic_write(local_pub, pub_pem, mode=0o644)
            written.append(str(local_pub))
        return written
    if "://" in dest:
        raise InputError(f"cannot write a key pair to '{dest.split('://')[0]}://': use a directory or k8s://NS/NAME")
    directory = Path(dest.removeprefix("file:"))
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is not a directory")
    names = [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE] + ([PASSWORD_FILE] if write_password else [])
    existing = [str(directory / n) for n in names if (directory / n).exists()]
    if existing and not force:
        raise InputError(f"refusing to overwrite {', '.join(existing)}", hint="pass --force to replace them")
    if not write_password and (directory / PASSWORD_FILE).exists():
        raise InputError(f"{directory / PASSWORD_FILE} would not match the new key",
                         hint="pass --write-password to replace it, or remove it")
    key_pem, pub_pem = generate_keypair(password)
    contents = {
        PRIVATE_KEY_FILE: (key_pem, 0o600),
        PUBLIC_KEY_FILE: (pub_pem, 0o644),
        PASSWORD_FILE: (password, 0o600),
    }
    for name in names:
        data, mode = contents[name]
        atomic_write(directory / name, data, mode=mode)
    return [str(directory / n) for n in names]


#: What a signing Secret may hold and a copy carries over (nothing else in the Secret is copied).
KEY_SECRET_ENTRIES = (PRIVATE_KEY_FILE, PASSWORD_FILE, PUBLIC_KEY_FILE, X509_FILE)


def copy_keypair(source: str, dest: str, ctx: Context, *, force: bool = False) -> list[str]:
    """Copy a signing key Secret (``k8s://NS/NAME``) to another, after checking that it signs.

    Only the key entries are copied; ``cosign.pub`` is added when the source lacks it. The
    destination is created immutable and kept unless ``force``. Returns the entries copied.
    """
    from chainmail.signing import load_signer

    src_ns, src_name = parse_k8s_uri(source)
    dst_ns, dst_name = parse_k8s_uri(dest)
    if (src_ns, src_name) == (dst_ns, dst_name):
        raise InputError(f"{source}: source and destination are the same Secret")
    signer = load_signer(f"k8s://{src_ns}/{src_name}", ctx)  # refuses a Secret with no usable key
    data = {k: v for k, v in ctx.kube.get_secret(src_ns, src_name).items() if k in KEY_SECRET_ENTRIES}
    if PRIVATE_KEY_FILE in data:
        data.setdefault(PUBLIC_KEY_FILE, signer.public_key_pem.encode())
    if not force and _secret_exists(ctx, dst_ns, dst_name):
        raise InputError(f"secret {dest} already exists; not overwriting it", hint="pass --force to replace it")
    ctx.kube.apply_secret(dst_ns, dst_name, data, immutable=True)
    return sorted(data)


def parse_k8s_uri(uri: str) -> tuple[str, str]:
    """(namespace, name) from ``k8s://NAMESPACE/NAME``; :class:`InputError` otherwise."""
    rest = uri.removeprefix("k8s://").strip("/")
    namespace, _, name = rest.partition("/")
    if not namespace or not name or "/" in name:
        raise InputError(f"'{uri}': expected k8s://NAMESPACE/SECRET")
    return namespace, name


def _secret_exists(ctx: Context, namespace: str, name: str) -> bool:
    from chainmail.errors import NotFoundError

    try:
        ctx.kube.get_secret(namespace, name)
    except NotFoundError:
        return False
    return True


def read_password_env() -> bytes | None:
    """``$COSIGN_PASSWORD`` as bytes, or None when it is not set (an empty value is a password).

    A value that is not UTF-8 text is a :class:`KeyMaterialError` (never shown).
    """
    value = os.environb.get(b"COSIGN_PASSWORD")
    if value is None:
        return None
    return require_text_password(value, "COSIGN_PASSWORD")


def require_text_password(password: bytes, where: str) -> bytes:
    """``password`` unchanged when it is UTF-8 text, else :class:`KeyMaterialError` naming ``where``."""
    try:
        password.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyMaterialError(f"the password in {where} is not valid UTF-8 text",
                               hint="cosign passwords are text; write it again as UTF-8") from None
    return password
