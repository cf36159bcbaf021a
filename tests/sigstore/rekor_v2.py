"""A Rekor v2 (rekor-tiles) test log on a loopback port, plus its ``trusted_root.json``; pytest fixture ``rekor_v2``.

``tests/sigstore`` is not a package (see fixture.py): a test module loads this file by path.

What follows the specs (sigstore/rekor-tiles ``api/proto/rekor/v2``, protobuf-specs ``TransparencyLogEntry``,
C2SP signed-note/tlog-checkpoint, RFC 6962):

- ``POST /api/v2/log/entries`` takes a ``CreateEntryRequest`` (protobuf JSON) with ``hashedRekordRequestV002``
  (the signature must verify over the digest with the verifier's key, as rekor-tiles checks) or
  ``dsseRequestV002`` (every envelope signature must verify over the DSSE PAE with one of the verifiers);
- the logged ``Entry`` is ``{"kind", "apiVersion": "0.0.2", "spec": {"hashedRekordV002"|"dsseV002": …}}`` in
  protobuf JSON, canonicalized with RFC 8785 (the ``rfc8785`` package, not chainmail's code), appended to an
  RFC 6962 Merkle tree (leaf ``sha256(0x00‖body)``); an identical entry again is HTTP 409;
- the answer is a ``TransparencyLogEntry``: logIndex, logId (the full C2SP key hash), kindVersion,
  inclusionProof {logIndex, rootHash, treeSize, hashes, checkpoint {envelope}}, canonicalizedBody; no
  inclusionPromise, no integratedTime;
- the checkpoint is a signed note: origin (the key name = base URL without scheme), size, base64 root,
  signed with the log's own Ed25519 key; key ID ``sha256(name‖0x0A‖0x01‖key)[:4]``;
- the trusted root lists the log in ``tlogs`` (baseUrl, PKIX_ED25519 key, logId = the full key hash).

- the read API chainmail uses after a 409 (C2SP tlog-tiles): ``GET /api/v2/checkpoint``,
  ``/api/v2/tile/<L>/<N>[.p/<W>]`` (hashes of height-8L subtrees) and ``/api/v2/tile/entries/<N>[.p/<W>]``
  (uint16-length-prefixed entries), computed from the leaves on each request.

What is ours (a test hook, not Rekor): ``fault(mode)`` spoils the next answer — ``bad-checkpoint-sig``,
``bad-root`` (a proof that leads elsewhere), ``bad-hashes``, ``other-entry`` (another entry's body and proof),
``unknown-key`` (checkpoint signed by a key the trusted root does not name), ``status-400``; ``status-500``
answers 500 until ``fault(None)``; ``read-bad-checkpoint-sig`` and ``read-bad-tile`` spoil the next read of the
checkpoint or of a hash tile (and leave uploads alone). No sharding, witnesses or consistency proofs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _leaf(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_hash(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle tree hash over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def audit_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path for leaf ``m``."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*audit_path(m, leaves[:k]), tree_hash(leaves[k:])]
    return [*audit_path(m - k, leaves[k:]), tree_hash(leaves[:k])]


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _verify(verifier: dict[str, Any], signature: bytes, data: bytes, *, prehashed: bool) -> None:
    """Rekor v2's check of one signature with one ``Verifier`` (raises on failure)."""
    from cryptography import x509

    if "publicKey" in verifier:
        key: Any = serialization.load_der_public_key(base64.b64decode(verifier["publicKey"]["rawBytes"]))
    else:
        key = x509.load_der_x509_certificate(base64.b64decode(verifier["x509Certificate"]["rawBytes"])).public_key()
    details = verifier.get("keyDetails", "")
    algo: Any = Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePublicKey) and details == "PKIX_ECDSA_P256_SHA_256":
        key.verify(signature, data, ec.ECDSA(algo))
    elif isinstance(key, rsa.RSAPublicKey) and details.startswith("PKIX_RSA_PKCS1V15_"):
        key.verify(signature, data, padding.PKCS1v15(), algo)
    elif isinstance(key, ed25519.Ed25519PublicKey) and details == "PKIX_ED25519" and not prehashed:
        key.verify(signature, data)
    else:
        raise ValueError(f"unsupported verifier {details}")


def to_entry(request: dict[str, Any]) -> dict[str, Any]:
    """The ``Entry`` rekor-tiles logs for a ``CreateEntryRequest`` (ValueError: HTTP 400)."""
    if "hashedRekordRequestV002" in request:
        hr = request["hashedRekordRequestV002"]
        digest, sig = base64.b64decode(hr["digest"]), hr["signature"]
        _verify(sig["verifier"], base64.b64decode(sig["content"]), digest, prehashed=True)
        return {"kind": "hashedrekord", "apiVersion": "0.0.2", "spec": {"hashedRekordV002": {
            "data": {"algorithm": "SHA2_256", "digest": hr["digest"]}, "signature": sig}}}
    if "dsseRequestV002" in request:
        ds = request["dsseRequestV002"]
        env, verifiers = ds["envelope"], ds["verifiers"]
        payload = base64.b64decode(env["payload"])
        message = _pae(env["payloadType"], payload)
        signatures = []
        for item in env["signatures"]:
            sig = base64.b64decode(item["sig"])
            for v in verifiers:
                try:
                    _verify(v, sig, message, prehashed=False)
                except (InvalidSignature, ValueError):
                    continue
                signatures.append({"content": item["sig"], "verifier": v})
                break
            else:
                raise ValueError("all signatures must have a key that verifies it")
        if not signatures:
            raise ValueError("envelope missing signatures")
        return {"kind": "dsse", "apiVersion": "0.0.2", "spec": {"dsseV002": {
            "payloadHash": {"algorithm": "SHA2_256", "digest": _b64(hashlib.sha256(payload).digest())},
            "signatures": signatures}}}
    raise ValueError("invalid type, must be either hashedrekord or dsse")


class RekorV2Log:
    """The log's state: Ed25519 key, origin, leaves and bodies in order, and the test's fault switch."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.stranger = ed25519.Ed25519PrivateKey.generate()  # signs checkpoints for fault unknown-key
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.log_id = hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()
        self.bodies: list[bytes] = []
        self.leaves: list[bytes] = []
        self.fault: str | None = None
        self.lock = threading.Lock()

    def _key_id(self, key: ed25519.Ed25519PrivateKey) -> bytes:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(self.origin.encode() + b"\n\x01" + raw).digest()[:4]

    def checkpoint(self, size: int, root: bytes, key: ed25519.Ed25519PrivateKey | None = None) -> str:
        """A signed note over ``origin / size / root`` (C2SP tlog-checkpoint)."""
        key = key or self.key
        text = f"{self.origin}\n{size}\n{_b64(root)}\n"
        return f"{text}\n\u2014 {self.origin} {_b64(self._key_id(key) + key.sign(text.encode()))}\n"

    def entry(self, index: int, mode: str | None = None) -> dict[str, Any]:
        """The ``TransparencyLogEntry`` of leaf ``index`` against the current tree (spoiled by ``mode``)."""
        size, root = len(self.leaves), tree_hash(self.leaves)
        hashes_ = audit_path(index, self.leaves)
        body = self.bodies[index]
        if mode == "other-entry" and size > 1:
            index = (index - 1) % size
            body, hashes_ = self.bodies[index], audit_path(index, self.leaves)
        if mode == "bad-hashes" and hashes_:
            hashes_ = [bytes(32)] + hashes_[1:]
        note = self.checkpoint(size, root, self.stranger if mode == "unknown-key" else None)
        if mode == "bad-root":
            root = hashlib.sha256(b"elsewhere").digest()
            note = self.checkpoint(size, root)
        if mode == "bad-checkpoint-sig":
            text, sig = note.split("\n\n")
            blob = bytearray(base64.b64decode(sig.rsplit(" ", 1)[1]))
            blob[-1] ^= 1
            note = f"{text}\n\n\u2014 {self.origin} {_b64(bytes(blob))}\n"
        kind = json.loads(body)
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": kind["kind"], "version": kind["apiVersion"]},
            "inclusionProof": {"logIndex": str(index), "rootHash": _b64(root), "treeSize": str(size),
                               "hashes": [_b64(h) for h in hashes_], "checkpoint": {"envelope": note}},
            "canonicalizedBody": _b64(body),
        }

    def create(self, request: Any) -> tuple[int, dict[str, Any]]:
        """``POST /api/v2/log/entries``: ``(status, JSON answer)``."""
        with self.lock:
            if self.fault and self.fault.startswith("read-"):
                mode = None  # a fault for the read API (checkpoint, tiles) below
            else:
                mode, self.fault = self.fault, (self.fault if self.fault == "status-500" else None)
            if mode in ("status-500", "status-400"):
                code = int(mode[-3:])
                return code, {"code": 13 if code == 500 else 3, "message": "fault injected by the test"}
            try:
                body = rfc8785.dumps(to_entry(request))
            except (KeyError, TypeError, ValueError, InvalidSignature) as exc:
                return 400, {"code": 3, "message": f"invalid request: {type(exc).__name__}: {exc}"}
            leaf = _leaf(body)
            if leaf in self.leaves:
                return 409, {"code": 6, "message": "an equivalent entry already exists in the transparency log "
                                                   f"with index {self.leaves.index(leaf)}"}
            self.bodies.append(body)
            self.leaves.append(leaf)
            return 201, self.entry(len(self.leaves) - 1, mode)

    def seed(self, count: int) -> None:
        """Append ``count`` filler entries (so proofs of the next entries have hashes to spoil)."""
        with self.lock:
            for i in range(count):
                body = rfc8785.dumps({"kind": "hashedrekord", "apiVersion": "0.0.2", "spec": {"filler": i}})
                self.bodies.append(body)
                self.leaves.append(_leaf(body))

    def read(self, path: str) -> tuple[int, bytes]:
        """``GET /api/v2/<path>``: the checkpoint, a hash tile or an entry bundle (C2SP tlog-tiles)."""
        with self.lock:
            mode = self.fault if self.fault and self.fault.startswith("read-") else None
            size = len(self.leaves)
            if path == "checkpoint":
                if mode == "read-bad-checkpoint-sig":
                    self.fault = None
                    return 200, self.checkpoint(size, tree_hash(self.leaves), self.stranger).encode()
                return 200, self.checkpoint(size, tree_hash(self.leaves)).encode()
            match = re.fullmatch(r"tile/(entries|\d+)/((?:x\d{3}/)*\d{3})(?:\.p/(\d+))?", path)
            if match is None:
                return 404, b"not found"
            level, index = match.group(1), int(match.group(2).replace("x", "").replace("/", ""))
            width = int(match.group(3) or 256)
            if level == "entries":
                chunk = self.bodies[index * 256:index * 256 + width]
                if len(chunk) != width:
                    return 404, b"no such entry bundle"
                return 200, b"".join(len(b).to_bytes(2, "big") + b for b in chunk)
            height = 8 * int(level)
            nodes = [tree_hash(self.leaves[i << height:(i + 1) << height])
                     for i in range(index * 256, index * 256 + width)]
            if any((i + 1) << height > size for i in range(index * 256, index * 256 + width)):
                return 404, b"no such tile"
            if mode == "read-bad-tile" and nodes:
                self.fault = None
                nodes[-1] = bytes(32)
            return 200, b"".join(nodes)

    def trusted_root(self, base_url: str) -> dict[str, Any]:
        """A Sigstore trusted root naming this log (and nothing else)."""
        spki = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": base_url, "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": _b64(spki), "keyDetails": "PKIX_ED25519", "validFor": {"start": start}},
                       "logId": {"keyId": _b64(self.log_id)}}],
            "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": [],
        }


class _Handler(BaseHTTPRequestHandler):
    log: RekorV2Log

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if self.path.startswith("/api/v2/"):
            status, data = self.log.read(self.path.removeprefix("/api/v2/"))
        else:
            status, data = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/api/v2/log/entries":
            status, doc = 404, {"code": 5, "message": f"no route POST {self.path}"}
        else:
            try:
                request = json.loads(raw)
            except ValueError:
                status, doc = 400, {"code": 3, "message": "not JSON"}
            else:
                status, doc = self.log.create(request)
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RekorV2Server:
    """A running test log: ``url``, ``trusted_root`` (path), ``log`` (state) and :meth:`fault`."""

    def __init__(self, tmp: Path) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.log = RekorV2Log(f"{host}:{port}")
        self.httpd.RequestHandlerClass = type("Handler", (_Handler,), {"log": self.log})
        self.trusted_root = tmp / "trusted_root.json"
        self.trusted_root.write_text(json.dumps(self.log.trusted_root(self.url), indent=2))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def fault(self, mode: str | None) -> None:
        """Spoil the next answer (see the module docstring); ``status-500`` lasts until ``fault(None)``."""
        with self.log.lock:
            self.log.fault = mode

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def rekor_v2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RekorV2Server]:
    """A fresh, empty Rekor v2 test log per test module."""
    server = RekorV2Server(tmp_path_factory.mktemp("rekor-v2"))
    try:
        yield server
    finally:
        server.close()
