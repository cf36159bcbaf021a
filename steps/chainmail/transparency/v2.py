"""Rekor v2 (rekor-tiles): upload ``hashedrekord``/``dsse`` v0.0.2 entries and verify what comes back.

Example::

    rekor = RekorV2Client(url, keys=load_log_keys("trusted_root.json"), retry=ctx.retry)   # v2_client
    entry = rekor.upload(hashedrekord_request(payload, signature, public_key_pem))       # verify_entry'd
    check_signature_binding(entry, payload, signature, public_key_pem)
    entry.to_json()            # the bundle's TransparencyLogEntry (protobuf JSON), kept in signed.json

chainmail talks to a Rekor v2 log when ``chainmail.transparency.rekor-version`` is ``"2"`` (default
``"1"``; anything else is a :class:`ConfigError`, exit 3); ``transparency.url`` is the log's base URL
(a trailing ``/api/v2`` is tolerated) and the trusted root must name that log (a ``tlogs`` entry with
that ``baseUrl``). Rekor v2 answers ``POST /api/v2/log/entries`` with a ``TransparencyLogEntry``
carrying an inclusion proof and a signed checkpoint, and no SET or integrated time. Every entry is
verified before it is used: the checkpoint's signed-note signature with the trusted log key
(:mod:`chainmail.transparency.checkpoint`), the RFC 6962 audit path from the leaf hash of
``canonicalizedBody`` to the checkpoint's root, and that the body logs exactly the signature,
payload digest and key that were sent. Failures are :class:`TransparencyError` (exit 7). An entry
the log already holds (HTTP 409 with its index: chainmail's signatures are deterministic) is read
back from the tile API (:mod:`~chainmail.transparency.v2_client`, :mod:`~chainmail.transparency.tiles`)
and verified the same way.

Keyless signing needs a signed time that only a TSA can give with Rekor v2; chainmail has no RFC 3161
client, so keyless signing with Rekor v2 is refused (:func:`require_key_signed`, exit 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chainmail.errors import ConfigError, InputError, TransparencyError
from chainmail.transparency.checkpoint import key_name, verify_signed_checkpoint
from chainmail.transparency.merkle import leaf_hash, root_from_proof
from chainmail.transparency.trust import LogKey

if TYPE_CHECKING:
    from chainmail.config import Config

#: The chains-config key that selects the Rekor API: "1" (default) or "2".
REKOR_VERSION_KEY = "chainmail.transparency.rekor-version"
API_VERSION = "0.0.2"
ENTRIES_PATH = "/api/v2/log/entries"


def rekor_version(config: Config) -> str:
    """``"1"`` or ``"2"``: which Rekor API ``transparency.url`` speaks."""
    value = config.get(REKOR_VERSION_KEY).strip()
    if value not in ("1", "2"):
        raise ConfigError(f"{REKOR_VERSION_KEY}: invalid value '{value}'; expected 1 or 2")
    return value


def base_url(url: str) -> str:
    """The log's base URL: ``transparency.url`` without a trailing slash or ``/api/v2``."""
    return url.rstrip("/").removesuffix("/api/v2").rstrip("/")


def require_trusted_log(url: str, keys: list[LogKey]) -> None:
    """The trusted root must name the Rekor v2 log at ``url`` (by ``baseUrl``): else :class:`ConfigError`."""
    name = key_name(base_url(url))
    if not any(k.base_url and key_name(k.base_url) == name for k in keys):
        raise ConfigError(
            f"transparency.url {url!r} is a Rekor v2 log the trusted root does not name; nothing was signed",
            hint="set chainmail.transparency.trusted-root to a trusted_root.json whose tlogs list this log "
                 "(baseUrl and public key)")


def require_key_signed(keyless_kinds: list[str]) -> None:
    """Refuse keyless signing with Rekor v2: its entries carry no time, and chainmail has no TSA client."""
    if keyless_kinds:
        raise ConfigError(
            f"keyless signing ({', '.join(sorted(keyless_kinds))}) with a Rekor v2 log needs an RFC 3161 "
            "timestamp, and chainmail has no TSA client; nothing was signed",
            hint=f"sign with a key, or set {REKOR_VERSION_KEY} to 1 (a Rekor v1 log's SET gives the time)")


# -- requests -----------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TransparencyError(f"Rekor v2 entry: '{what}' is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # protobuf JSON also accepts URL-safe base64
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise TransparencyError(f"Rekor v2 entry: '{what}' is not base64") from None


def _key_and_der(pem: str) -> tuple[Any, bytes, bool]:
    """``(public key, DER of the key or certificate, is_certificate)`` from a PEM key or certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    text = pem.strip().encode()
    try:
        if b"CERTIFICATE" in text.split(b"\n", 1)[0]:
            cert = x509.load_pem_x509_certificate(text)
            return cert.public_key(), cert.public_bytes(serialization.Encoding.DER), True
        key = serialization.load_pem_public_key(text)
    except ValueError:
        raise InputError("a Rekor verifier must be a PEM public key or certificate") from None
    return key, key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), False


def key_details(public_key: Any, *, dsse: bool) -> str:
    """The ``PublicKeyDetails`` name for a chainmail signature by ``public_key`` (SHA-256 digests)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        return "PKIX_ECDSA_P256_SHA_256"
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size in (2048, 3072, 4096):
        return f"PKIX_RSA_PKCS1V15_{public_key.key_size}_SHA256"
    if isinstance(public_key, ed25519.Ed25519PublicKey) and dsse:
        return "PKIX_ED25519"
    what = (f"{public_key.curve.name} ECDSA" if isinstance(public_key, ec.EllipticCurvePublicKey)
            else type(public_key).__name__.removeprefix("_"))
    raise TransparencyError(f"Rekor v2 has no key type for a {what} {'DSSE' if dsse else 'raw'} signature "
                            "from chainmail (ECDSA P-256, RSA PKCS#1 v1.5, or Ed25519 for DSSE)")


def verifier(pem: str, *, dsse: bool) -> dict[str, Any]:
    """A Rekor v2 ``Verifier``: the DER public key (or certificate) and its key details."""
    key, der, is_cert = _key_and_der(pem)
    material = {"x509Certificate": {"rawBytes": _b64(der)}} if is_cert else {"publicKey": {"rawBytes": _b64(der)}}
    return {**material, "keyDetails": key_details(key, dsse=dsse)}


def hashedrekord_request(payload: bytes, signature: bytes, verifier_pem: str) -> dict[str, Any]:
    """A ``CreateEntryRequest`` for a raw signature over ``payload`` (hashedrekord v0.0.2)."""
    return {"hashedRekordRequestV002": {
        "digest": _b64(hashlib.sha256(payload).digest()),
        "signature": {"content": _b64(signature), "verifier": verifier(verifier_pem, dsse=False)},
    }}


def _envelope(envelope: bytes) -> dict[str, Any]:
    from chainmail.signing import dsse

    env = dsse.parse(envelope)
    return {
        "payload": _b64(env["payload"]),
        "payloadType": env["payloadType"],
        "signatures": [{"sig": _b64(s["sig"]), "keyid": s.get("keyid", "")} for s in env["signatures"]],
    }


def dsse_request(envelope: bytes, verifier_pems: list[str]) -> dict[str, Any]:
    """A ``CreateEntryRequest`` for a DSSE envelope (dsse v0.0.2)."""
    if not verifier_pems:
        raise InputError("a dsse entry needs at least one verifier (public key or certificate)")
    return {"dsseRequestV002": {"envelope": _envelope(envelope),
                                "verifiers": [verifier(p, dsse=True) for p in verifier_pems]}}


# -- entries ------------------------------------------------------------------------------------

def _int(value: Any, what: str) -> int:
    """A protobuf JSON int64 (a decimal string or a number); absent means 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise TransparencyError(f"Rekor v2 entry: '{what}' is not a non-negative integer")
    return int(value)


@dataclass(frozen=True)
class RekorV2Entry:
    """A Rekor v2 ``TransparencyLogEntry`` (protobuf JSON), not yet verified."""

    log_index: int
    log_id: bytes
    kind: str
    version: str
    #: The canonicalized entry: the bytes whose RFC 6962 leaf hash is in the tree.
    body: bytes
    proof_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str

    @classmethod
    def from_json(cls, doc: Any) -> RekorV2Entry:
        """Parse a ``TransparencyLogEntry``; raises :class:`TransparencyError`."""
        if not isinstance(doc, dict):
            raise TransparencyError("Rekor v2 returned an unexpected response: not a TransparencyLogEntry")
        kv = doc.get("kindVersion") or {}
        proof = doc.get("inclusionProof")
        if not isinstance(kv, dict) or not isinstance(proof, dict):
            raise TransparencyError("Rekor v2 entry: no inclusion proof (or no kindVersion)")
        checkpoint = (proof.get("checkpoint") or {}).get("envelope") if isinstance(proof.get("checkpoint"),
                                                                                    dict) else None
        if not isinstance(checkpoint, str) or not checkpoint:
            raise TransparencyError("Rekor v2 entry: the inclusion proof has no checkpoint")
        hashes = proof.get("hashes") or []
        if not isinstance(hashes, list):
            raise TransparencyError("Rekor v2 entry: 'inclusionProof.hashes' is not a list")
        log_id = doc.get("logId") or {}
        return cls(
            log_index=_int(doc.get("logIndex"), "logIndex"),
            log_id=_unb64(log_id.get("keyId"), "logId.keyId") if isinstance(log_id, dict) and log_id else b"",
            kind=str(kv.get("kind") or ""),
            version=str(kv.get("version") or ""),
            body=_unb64(doc.get("canonicalizedBody"), "canonicalizedBody"),
            proof_index=_int(proof.get("logIndex"), "inclusionProof.logIndex"),
            tree_size=_int(proof.get("treeSize"), "inclusionProof.treeSize"),
            root_hash=_unb64(proof["rootHash"], "inclusionProof.rootHash") if proof.get("rootHash") else b"",
            hashes=tuple(_unb64(h, "inclusionProof.hashes") for h in hashes),
            checkpoint=checkpoint,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``TransparencyLogEntry`` as a v0.3 bundle holds it (no inclusionPromise, no integratedTime)."""
        doc: dict[str, Any] = {"logIndex": str(self.log_index)}
        if self.log_id:
            doc["logId"] = {"keyId": _b64(self.log_id)}
        doc["kindVersion"] = {"kind": self.kind, "version": self.version}
        doc["inclusionProof"] = {
            "logIndex": str(self.proof_index),
            "rootHash": _b64(self.root_hash),
            "treeSize": str(self.tree_size),
            "hashes": [_b64(h) for h in self.hashes],
            "checkpoint": {"envelope": self.checkpoint},
        }
        doc["canonicalizedBody"] = _b64(self.body)
        return doc

    @property
    def body_json(self) -> dict[str, Any]:
        """The decoded canonicalized body: ``{"apiVersion", "kind", "spec": {<kind>V002: …}}``."""
        from chainmail._internal.encoding import load_json

        try:
            doc = load_json(self.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
            raise TransparencyError(f"Rekor v2 entry {self.log_index}: the body is not a JSON entry with a spec")
        return doc


def is_v2_tlog(tlog: Any) -> bool:
    """True for a Rekor v2 ``TransparencyLogEntry`` as kept in ``signed.json`` (v1 keeps ``{uuid: {body…}}``)."""
    return isinstance(tlog, dict) and "canonicalizedBody" in tlog and "inclusionProof" in tlog


def verify_entry(entry: RekorV2Entry, keys: list[LogKey], *, now: datetime | None = None) -> LogKey:
    """Checkpoint signature, inclusion proof and kind/version; returns the log key. :class:`TransparencyError` else."""
    checkpoint, key = verify_signed_checkpoint(entry.checkpoint, keys)
    where = f"Rekor v2 entry {entry.log_index}"
    if entry.log_id and entry.log_id != key.log_id:
        raise TransparencyError(f"{where}: its log id is not the id the trusted root gives {checkpoint.origin}")
    when = now or datetime.now(UTC)
    if not key.valid_at(when):
        raise TransparencyError(f"{where}: the key of log {checkpoint.origin} is not valid at "
                                f"{when:%Y-%m-%dT%H:%M:%SZ}; check --trusted-root")
    if entry.proof_index != entry.log_index:
        raise TransparencyError(f"{where}: the inclusion proof is for log index {entry.proof_index}")
    if (entry.tree_size and entry.tree_size != checkpoint.size) or (entry.root_hash
                                                                    and entry.root_hash != checkpoint.root_hash):
        raise TransparencyError(f"{where}: the inclusion proof names another tree than its checkpoint")
    root = root_from_proof(entry.log_index, checkpoint.size, leaf_hash(entry.body), list(entry.hashes))
    if root != checkpoint.root_hash:
        raise TransparencyError(f"{where}: the inclusion proof does not lead to the checkpoint's root hash")
    body = entry.body_json
    if entry.version != API_VERSION or (body.get("kind"), body.get("apiVersion")) != (entry.kind, entry.version):
        raise TransparencyError(f"{where}: expected a {entry.kind or '?'} {API_VERSION} body, got "
                                f"{body.get('kind')} {body.get('apiVersion')} (kindVersion {entry.version})")
    return key


# -- what an entry binds ------------------------------------------------------------------------

def _same_verifier(logged: Any, pem: str, where: str) -> None:
    if not isinstance(logged, dict):
        raise TransparencyError(f"{where} has no verifier")
    _, der, is_cert = _key_and_der(pem)
    field = "x509Certificate" if is_cert else "publicKey"
    material = logged.get(field)
    if not isinstance(material, dict) or _unb64(material.get("rawBytes"), f"{field}.rawBytes") != der:
        raise TransparencyError(f"{where} names another public key or certificate")


def check_signature_binding(entry: RekorV2Entry, payload: bytes, signature: bytes, public_key_pem: str) -> None:
    """The entry is a hashedrekord v0.0.2 of exactly this payload digest, signature and key."""
    where = f"Rekor v2 entry {entry.log_index}"
    if entry.kind != "hashedrekord":
        raise TransparencyError(f"{where} is a {entry.kind or 'unknown'} entry, not hashedrekord")
    spec = entry.body_json["spec"].get("hashedRekordV002")
    if not isinstance(spec, dict) or not isinstance(spec.get("data"), dict):
        raise TransparencyError(f"{where}: the body has no hashedRekordV002 spec")
    data = spec["data"]
    if data.get("algorithm") != "SHA2_256" or _unb64(data.get("digest"), "data.digest") != hashlib.sha256(
            payload).digest():
        raise TransparencyError(f"{where} is for another payload (sha256 differs)")
    sig = spec.get("signature") if isinstance(spec.get("signature"), dict) else {}
    if _unb64(sig.get("content"), "signature.content") != signature:
        raise TransparencyError(f"{where} is for another signature")
    _same_verifier(sig.get("verifier"), public_key_pem, where)


def check_envelope_binding(entry: RekorV2Entry, envelope: bytes, public_key_pem: str) -> None:
    """The entry is a dsse v0.0.2 of exactly this envelope's payload and its signature, by this key."""
    from chainmail.signing import dsse

    where = f"Rekor v2 entry {entry.log_index}"
    if entry.kind != "dsse":
        raise TransparencyError(f"{where} is a {entry.kind or 'unknown'} entry, not dsse")
    try:
        env = dsse.parse(envelope)
    except InputError:
        raise TransparencyError(f"{where}: the envelope to check is not a DSSE envelope") from None
    spec = entry.body_json["spec"].get("dsseV002")
    if not isinstance(spec, dict) or not isinstance(spec.get("payloadHash"), dict):
        raise TransparencyError(f"{where}: the body has no dsseV002 spec")
    digest = spec["payloadHash"]
    if digest.get("algorithm") != "SHA2_256" or _unb64(digest.get("digest"), "payloadHash.digest") != hashlib.sha256(
            env["payload"]).digest():
        raise TransparencyError(f"{where} is for another payload (sha256 differs)")
    logged = spec.get("signatures")
    ours = {s["sig"] for s in env["signatures"]}
    if not isinstance(logged, list) or len(logged) != len(ours):
        raise TransparencyError(f"{where} logs {len(logged) if isinstance(logged, list) else 0} signatures, "
                                f"the envelope holds {len(ours)}")
    for item in logged:
        if not isinstance(item, dict) or _unb64(item.get("content"), "signatures.content") not in ours:
            raise TransparencyError(f"{where} is for another signature")
        _same_verifier(item.get("verifier"), public_key_pem, where)


def transparency_annotation(url: str, entry: RekorV2Entry) -> str:
    """``chains.tekton.dev/transparency`` for a v2 entry: ``<base URL>/api/v2/log/entries?logIndex=N``.

    Chains' v1 shape with the v2 path, so tools that read ``logIndex=`` keep working; Rekor v2 serves
    no GET there (entries are read from tiles), the entry itself is in the stored bundle.
    """
    return f"{base_url(url)}{ENTRIES_PATH}?logIndex={entry.log_index}"
