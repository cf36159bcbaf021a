"""Check a log entry before trusting it: its SET, inclusion proof, UUID, and what it binds.

Example::

    keys = load_log_keys("trusted_root.json")
    verify_entry(entry, keys)                                   # SET + proof (+ checkpoint) + UUID
    check_signature_binding(entry, payload, signature, pub_pem)  # hashedrekord: this exact signature
    check_envelope_binding(entry, envelope_bytes, pub_pem)       # dsse: this exact envelope
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from chainmail.errors import InputError, KeyMaterialError, TransparencyError
from chainmail.transparency.entry import LogEntry
from chainmail.transparency.merkle import leaf_hash, root_from_proof, verify_checkpoint
from chainmail.transparency.trust import LogKey


def canonical_json(doc: dict[str, Any]) -> bytes:
    """RFC 8785 for a flat object of ASCII strings and integers (all a SET covers)."""
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int | str) or (isinstance(value, str)
                                                                              and not value.isascii()):
            raise TransparencyError(f"Rekor entry: '{key}' cannot be canonicalized")
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _verify_sig(key: Any, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def log_key_for(entry: LogEntry, keys: list[LogKey]) -> LogKey:
    """The trusted key with the entry's log id, valid at its integrated time."""
    when = datetime.fromtimestamp(entry.integrated_time, UTC)
    log_id = bytes.fromhex(entry.log_id)
    for key in keys:
        if key.log_id == log_id and key.valid_at(when):
            return key
    raise TransparencyError(
        f"Rekor entry {entry.uuid}: log {entry.log_id[:16]}… is not a trusted log "
        f"(or its key was not valid at {when:%Y-%m-%dT%H:%M:%SZ}); check --trusted-root"
    )


def verify_set(entry: LogEntry, keys: list[LogKey]) -> LogKey:
    """Check the Signed Entry Timestamp; returns the log key that signed it."""
    if not entry.set:
        raise TransparencyError(f"Rekor entry {entry.uuid}: no signed entry timestamp (SET)")
    key = log_key_for(entry, keys)
    if not _verify_sig(key.public_key, entry.set, canonical_json(entry.set_payload())):
        raise TransparencyError(f"Rekor entry {entry.uuid}: the signed entry timestamp (SET) does not verify "
                                "with the log's key")
    return key


def verify_inclusion(entry: LogEntry, key: LogKey) -> None:
    """Check the RFC 6962 audit path and, when present, the checkpoint signed by the log key."""
    proof = entry.proof
    if proof is None:
        return
    root = root_from_proof(proof.log_index, proof.tree_size, leaf_hash(entry.body), list(proof.hashes))
    if root != proof.root_hash:
        raise TransparencyError(f"Rekor entry {entry.uuid}: the inclusion proof does not lead to the root hash")
    if proof.checkpoint:
        checkpoint = verify_checkpoint(proof.checkpoint, key.public_key, key.log_id)
        if checkpoint.size != proof.tree_size or checkpoint.root_hash != proof.root_hash:
            raise TransparencyError(f"Rekor entry {entry.uuid}: the checkpoint is for another tree than the proof")


def verify_uuid(entry: LogEntry) -> None:
    """A Rekor UUID (optionally prefixed by a 16-hex tree id) is the leaf hash of the body."""
    uuid = entry.uuid.lower()
    if len(uuid) in (64, 80) and all(c in "0123456789abcdef" for c in uuid):
        if bytes.fromhex(uuid[-64:]) != leaf_hash(entry.body):
            raise TransparencyError(f"Rekor entry {entry.uuid}: the UUID is not the hash of the logged body")


def verify_entry(entry: LogEntry, keys: list[LogKey]) -> LogKey:
    """SET, inclusion proof (with checkpoint) and UUID; returns the log key. :class:`TransparencyError` else."""
    key = verify_set(entry, keys)
    verify_inclusion(entry, key)
    verify_uuid(entry)
    return key


def _same_key(b64_pem: Any, public_key_pem: str) -> bool:
    from chainmail.signing.keys import public_key_object

    def spki(pem: Any) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return public_key_object(pem).public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    try:
        theirs = base64.b64decode(str(b64_pem))
        if b"CERTIFICATE" in theirs and b"CERTIFICATE" in public_key_pem.encode():
            return _cert_der(theirs) == _cert_der(public_key_pem.encode())
        return spki(theirs) == spki(public_key_pem)
    except (ValueError, TypeError, KeyMaterialError):
        return False


def _cert_der(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _spec_value(spec: dict[str, Any], *path: str) -> Any:
    value: Any = spec
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def check_signature_binding(entry: LogEntry, payload_sha256: str, signature: bytes, public_key_pem: str) -> None:
    """The entry is a hashedrekord of exactly this signature, payload digest and key/certificate."""
    spec = entry.spec
    if entry.kind != "hashedrekord":
        raise TransparencyError(f"Rekor entry {entry.uuid} is a {entry.kind or 'unknown'} entry, not hashedrekord")
    digest = payload_sha256.removeprefix("sha256:").lower()
    if str(_spec_value(spec, "data", "hash", "value")).lower() != digest:
        raise TransparencyError(f"Rekor entry {entry.uuid} is for another payload (sha256 differs)")
    try:
        logged = base64.b64decode(str(_spec_value(spec, "signature", "content")))
    except ValueError:
        logged = b""
    if logged != signature:
        raise TransparencyError(f"Rekor entry {entry.uuid} is for another signature")
    if not _same_key(_spec_value(spec, "signature", "publicKey", "content"), public_key_pem):
        raise TransparencyError(f"Rekor entry {entry.uuid} names another public key or certificate")


def check_envelope_binding(entry: LogEntry, envelope: bytes, public_key_pem: str) -> None:
    """The entry is a dsse entry of exactly this envelope's payload and one of its signatures, by this key."""
    from chainmail.signing import dsse

    if entry.kind != "dsse":
        raise TransparencyError(f"Rekor entry {entry.uuid} is a {entry.kind or 'unknown'} entry, not dsse")
    try:
        env = dsse.parse(envelope)
    except InputError:
        raise TransparencyError(f"Rekor entry {entry.uuid}: the envelope to check is not a DSSE envelope") from None
    spec = entry.spec
    if str(_spec_value(spec, "payloadHash", "value")).lower() != hashlib.sha256(env["payload"]).hexdigest():
        raise TransparencyError(f"Rekor entry {entry.uuid} is for another payload (sha256 differs)")
    ours = {sig["sig"] for sig in env["signatures"]}
    for item in spec.get("signatures") or []:
        if not isinstance(item, dict):
            continue
        try:
            logged = base64.b64decode(str(item.get("signature")))
        except ValueError:
            continue
        if logged in ours and _same_key(item.get("verifier"), public_key_pem):
            return
    raise TransparencyError(f"Rekor entry {entry.uuid} is for another signature (no logged signature/key pair "
                            "matches the envelope)")
