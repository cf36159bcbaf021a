"""Rekor v2 pieces without a network: signed-note checkpoints, tile read-back, entries, bindings, requests.

Entries come from the in-memory log of tests/sigstore/rekor_v2.py (the HTTP test server's state), which builds
and canonicalizes them as rekor-tiles does with the ``rfc8785`` package, not with chainmail's code.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from chainmail.config import Config
from chainmail.errors import ConfigError, TransparencyError
from chainmail.signing import dsse
from chainmail.signing._signer import KeySigner
from chainmail.transparency import LogKey
from chainmail.transparency.checkpoint import key_name, note_key_id, parse_note, verify_signed_checkpoint
from chainmail.transparency.tiles import TileReader, tile_index_path
from chainmail.transparency.trust import keys_from_trusted_root
from chainmail.transparency.v2 import (
    RekorV2Entry,
    check_envelope_binding,
    check_signature_binding,
    dsse_request,
    hashedrekord_request,
    is_v2_tlog,
    key_details,
    rekor_version,
    verify_entry,
)

_spec = importlib.util.spec_from_file_location("rekor_v2_fixture",
                                               Path(__file__).resolve().parents[2] / "sigstore" / "rekor_v2.py")
assert _spec is not None and _spec.loader is not None
server = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(server)

URL = "https://log2025-1.rekor.example.dev"
ORIGIN = "log2025-1.rekor.example.dev"


@pytest.fixture
def log() -> Any:
    return server.RekorV2Log(ORIGIN)


@pytest.fixture
def keys(log: Any) -> list[LogKey]:
    return keys_from_trusted_root(json.dumps(log.trusted_root(URL)).encode(), "test root")


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()), "sha256", "test://p256")


def _upload(log: Any, request: dict[str, Any]) -> RekorV2Entry:
    status, doc = log.create(request)
    assert status == 201, doc
    return RekorV2Entry.from_json(doc)


# -- signed notes -------------------------------------------------------------------------------------------

def test_key_ids_follow_the_signed_note_spec() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = ed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert note_key_id("example.com/log", ed) == hashlib.sha256(b"example.com/log\n\x01" + raw).digest()[:4]
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = p256.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert note_key_id("any name", p256) == hashlib.sha256(spki).digest()[:4]  # the spec's ECDSA exception
    assert key_name("https://log2025-1.rekor.sigstore.dev/") == "log2025-1.rekor.sigstore.dev"


def test_a_checkpoint_signed_by_the_trusted_log_verifies(log: Any, keys: list[LogKey]) -> None:
    root = hashlib.sha256(b"root").digest()
    checkpoint, key = verify_signed_checkpoint(log.checkpoint(7, root), keys)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (ORIGIN, 7, root)
    assert key is keys[0]


def test_an_ecdsa_log_checkpoint_verifies_with_the_spki_key_id() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = LogKey(b"\x00" * 32, private.public_key(), base_url=URL)
    text = f"{ORIGIN}\n3\n{base64.b64encode(bytes(32)).decode()}\n"
    sig = private.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    note = f"{text}\n\u2014 {ORIGIN} {base64.b64encode(note_key_id(ORIGIN, key.public_key) + sig).decode()}\n"
    assert verify_signed_checkpoint(note, [key])[0].size == 3


def test_unknown_signers_are_ignored_and_a_known_bad_signature_fails(log: Any, keys: list[LogKey]) -> None:
    note = log.checkpoint(1, bytes(32))
    text, line = note.split("\n\n")
    line = line.strip()
    stranger = f"{text}\n\n\u2014 other.example {line.rsplit(' ', 1)[1]}\n"
    with pytest.raises(TransparencyError, match="signed by no trusted log key"):
        verify_signed_checkpoint(stranger, keys)
    both = f"{text}\n\n\u2014 other.example {line.rsplit(' ', 1)[1]}\n{line}\n"  # extra unknown signer: fine
    assert verify_signed_checkpoint(both, keys)[0].size == 1
    blob = bytearray(base64.b64decode(line.rsplit(" ", 1)[1]))
    blob[-1] ^= 1
    with pytest.raises(TransparencyError, match="does not verify"):
        verify_signed_checkpoint(f"{text}\n\n\u2014 {ORIGIN} {base64.b64encode(bytes(blob)).decode()}\n", keys)
    with pytest.raises(TransparencyError, match="signed by no trusted log key"):
        verify_signed_checkpoint(log.checkpoint(1, bytes(32), log.stranger), keys)


def test_the_checkpoint_origin_must_be_the_logs_key_name(log: Any, keys: list[LogKey]) -> None:
    text = f"someone.else\n1\n{base64.b64encode(bytes(32)).decode()}\n"
    sig = log.key.sign(text.encode())
    note = f"{text}\n\u2014 {ORIGIN} {base64.b64encode(log._key_id(log.key) + sig).decode()}\n"
    with pytest.raises(TransparencyError, match="origin"):
        verify_signed_checkpoint(note, keys)


@pytest.mark.parametrize("note", [
    "origin\n1\nAAAA\n",                                   # no signature block
    "origin\n1\nAAAA\n\n\u2014 name AAAA\n",               # signature too short
    "origin\n1\nAAAA\n\n\u2014 name !!!\n",                # not base64
    "origin\n1\nAAAA\n\n- name AAAAAAAA\n",                # not an em dash
    "origin\x07\n1\nAAAA\n\n\u2014 name AAAAAAAA\n",       # control character
    "origin\n1\nAAAA\n\n" + "\u2014 n AAAAAAAA\n" * 40,    # too many signatures
])
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(TransparencyError, match="checkpoint"):
        parse_note(note)


# -- tiles --------------------------------------------------------------------------------------------------

def test_tile_paths() -> None:
    assert tile_index_path(5) == "005"
    assert tile_index_path(1234067) == "x001/x234/067"
    assert tile_index_path(1000) == "x001/000"


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 700])
def test_inclusion_proofs_from_tiles_match_rfc_6962(size: int, log: Any) -> None:
    log.seed(size)

    def get(path: str) -> bytes:
        status, data = log.read(path)
        assert status == 200, path
        return data

    tiles = TileReader(get, size)
    for index in sorted(i for i in {0, 1, size // 2, size - 2, size - 1} if 0 <= i < size):
        assert tiles.inclusion_proof(index) == server.audit_path(index, log.leaves)
        assert tiles.entry(index) == log.bodies[index]
    with pytest.raises(TransparencyError):
        tiles.entry(size)


def test_proofs_over_three_tile_levels_lead_to_the_root_with_few_reads(log: Any) -> None:
    from chainmail.transparency.merkle import root_from_proof

    size = 65536 + 471  # level 2 holds one full height-16 node; levels 0 and 1 end in partial tiles
    log.bodies = [b"e%d" % i for i in range(size)]
    log.leaves = [server._leaf(b) for b in log.bodies]
    root = server.tree_hash(log.leaves)
    reads: list[str] = []

    def get(path: str) -> bytes:
        reads.append(path)
        status, data = log.read(path)
        assert status == 200, path
        return data

    for index in (0, 256, 65535, 65536, 65999, size - 1):
        reads.clear()
        tiles = TileReader(get, size)
        proof = tiles.inclusion_proof(index)
        assert root_from_proof(index, size, log.leaves[index], proof) == root
        assert tiles.entry(index) == log.bodies[index]
        assert len(reads) <= 6, reads  # a handful of tiles, never the whole tree
    assert any(".p/" in r for r in reads)


# -- entries, verification, bindings ------------------------------------------------------------------------

def test_hashedrekord_and_dsse_entries_verify_and_bind(log: Any, keys: list[LogKey], signer: KeySigner) -> None:
    log.seed(2)
    payload = b"simple signing payload"
    signature = signer.sign(payload)
    entry = _upload(log, hashedrekord_request(payload, signature, signer.public_key_pem))
    assert verify_entry(entry, keys) is keys[0]
    check_signature_binding(entry, payload, signature, signer.public_key_pem)
    assert RekorV2Entry.from_json(entry.to_json()) == entry and is_v2_tlog(entry.to_json())
    assert "inclusionPromise" not in entry.to_json() and "integratedTime" not in entry.to_json()

    env = dsse.envelope("application/vnd.in-toto+json", b'{"_type": "statement"}', signer)
    dentry = _upload(log, dsse_request(env, [signer.public_key_pem]))
    verify_entry(dentry, keys)
    check_envelope_binding(dentry, env, signer.public_key_pem)

    with pytest.raises(TransparencyError, match="another payload"):
        check_signature_binding(entry, payload + b"!", signature, signer.public_key_pem)
    with pytest.raises(TransparencyError, match="another signature"):
        check_signature_binding(entry, payload, signer.sign(b"x"), signer.public_key_pem)
    other = KeySigner(ec.generate_private_key(ec.SECP256R1()), "sha256", "test://other")
    with pytest.raises(TransparencyError, match="another public key"):
        check_signature_binding(entry, payload, signature, other.public_key_pem)
    with pytest.raises(TransparencyError, match="not dsse"):
        check_envelope_binding(entry, env, signer.public_key_pem)
    other_env = dsse.envelope("application/vnd.in-toto+json", b'{"_type": "other"}', signer)
    with pytest.raises(TransparencyError, match="another payload"):
        check_envelope_binding(dentry, other_env, signer.public_key_pem)


def _spoiled(entry: RekorV2Entry, **changes: Any) -> RekorV2Entry:
    doc = entry.to_json()
    for path, value in changes.items():
        target = doc
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        target[leaf] = value
    return RekorV2Entry.from_json(doc)


def test_an_entry_that_does_not_add_up_is_rejected(log: Any, keys: list[LogKey], signer: KeySigner) -> None:
    log.seed(3)
    entry = _upload(log, hashedrekord_request(b"p", signer.sign(b"p"), signer.public_key_pem))
    cases = {
        "log id": _spoiled(entry, logId={"keyId": base64.b64encode(bytes(32)).decode()}),
        "inclusion proof is for log index": _spoiled(entry, inclusionProof__logIndex="0"),
        "another tree": _spoiled(entry, inclusionProof__treeSize="99"),
        "does not lead": _spoiled(entry, logIndex="1", inclusionProof__logIndex="1"),
        "expected a hashedrekord 0.0.2 body": _spoiled(entry, kindVersion={"kind": "hashedrekord",
                                                                           "version": "0.0.1"}),
    }
    for message, spoiled in cases.items():
        with pytest.raises(TransparencyError, match=message):
            verify_entry(spoiled, keys)
    with pytest.raises(TransparencyError, match="no inclusion proof"):
        RekorV2Entry.from_json({"logIndex": "1", "canonicalizedBody": "e30="})
    with pytest.raises(TransparencyError, match="no checkpoint"):
        RekorV2Entry.from_json({**entry.to_json(), "inclusionProof": {"logIndex": "1", "hashes": []}})


def test_a_log_key_outside_its_validity_window_is_rejected(log: Any, keys: list[LogKey], signer: KeySigner) -> None:
    from datetime import UTC, datetime

    entry = _upload(log, hashedrekord_request(b"q", signer.sign(b"q"), signer.public_key_pem))
    with pytest.raises(TransparencyError, match="not valid at"):
        verify_entry(entry, keys, now=datetime(2001, 1, 1, tzinfo=UTC))


# -- requests and configuration -----------------------------------------------------------------------------

def test_key_details_for_what_rekor_v2_can_check() -> None:
    assert key_details(ec.generate_private_key(ec.SECP256R1()).public_key(), dsse=False) == "PKIX_ECDSA_P256_SHA_256"
    assert key_details(ed25519.Ed25519PrivateKey.generate().public_key(), dsse=True) == "PKIX_ED25519"
    with pytest.raises(TransparencyError, match="no key type"):
        key_details(ed25519.Ed25519PrivateKey.generate().public_key(), dsse=False)  # v2 checks Ed25519ph there
    with pytest.raises(TransparencyError, match="secp384r1"):
        key_details(ec.generate_private_key(ec.SECP384R1()).public_key(), dsse=False)


def test_the_request_shapes(signer: KeySigner) -> None:
    request = hashedrekord_request(b"payload", b"sig", signer.public_key_pem)["hashedRekordRequestV002"]
    assert base64.b64decode(request["digest"]) == hashlib.sha256(b"payload").digest()
    assert request["signature"]["verifier"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    assert set(request["signature"]["verifier"]) == {"publicKey", "keyDetails"}
    env = dsse.envelope("text/plain", b"hi", signer)
    body = dsse_request(env, [signer.public_key_pem])["dsseRequestV002"]
    assert base64.b64decode(body["envelope"]["payload"]) == b"hi" and len(body["verifiers"]) == 1


def test_requests_round_trip_through_the_protobuf_specs_models(signer: KeySigner) -> None:
    # sigstore-python's generated Rekor v2 models (sigstore_models, from protobuf-specs/rekor-tiles) as the schema
    from sigstore_models.rekor.v2.entry import CreateEntryRequest

    env = dsse.envelope("application/vnd.in-toto+json", b'{"_type": "s"}', signer)
    for request in (hashedrekord_request(b"p", signer.sign(b"p"), signer.public_key_pem),
                    dsse_request(env, [signer.public_key_pem])):
        assert json.loads(CreateEntryRequest.from_json(json.dumps(request)).to_json()) == request


def test_rekor_version_is_1_or_2() -> None:
    assert rekor_version(Config.from_mapping({})) == "1"
    assert rekor_version(Config.from_mapping({"chainmail.transparency.rekor-version": "2"})) == "2"
    with pytest.raises(ConfigError, match="rekor-version") as err:
        Config.from_mapping({"chainmail.transparency.rekor-version": "v2"})
    assert err.value.exit_code == 3


def test_oci_storage_keeps_v2_entries_out_of_the_cosign_bundle_annotation(log: Any, signer: KeySigner) -> None:
    from chainmail.storage.oci import rekor_bundle_annotation, tlog_entry

    tlog = _upload(log, hashedrekord_request(b"r", signer.sign(b"r"), signer.public_key_pem)).to_json()
    assert rekor_bundle_annotation(tlog) is None
    assert tlog_entry(tlog) == tlog


# -- real Rekor v2 data -------------------------------------------------------------------------------------

#: Entry 412114 of Sigstore's production Rekor v2 log log2025-1.rekor.sigstore.dev, as the log returned it
#: (kept as test data in sigstore-js, packages/sign/src/__tests__/external/rekor-v2.test.ts): public log data.
REAL_ENTRY = {
    "logIndex": "412114", "logId": {"keyId": "zxGZFVvd0FEmjR8WrFwMdcAJ9vtaY/QXf44Y1wUeP6A="},
    "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"}, "integratedTime": "0", "inclusionPromise": None,
    "inclusionProof": {
        "logIndex": "412114", "rootHash": "+8vUkEgBK/ansexBUomzocaWoPEmPIzxJC/y+xNMQN4=", "treeSize": "412115",
        "hashes": ["KIoYVJ0TqmaEkFboP7YWTjSh8vFjVECmokcTOAByfIM=", "Umf0h0cK2hegTzNnSgsXszyiA4bp5OvEvP+GrWq3C8w=",
                   "vNQeSNBfepYZI2Ez3ViKdCft0JH87ZS8IGKwixxUVjc=", "JBAugd5awOqmHXIKgz1MOjlR5f37VqmP0bWoRVcHX5M=",
                   "xYH2mAxGxfOgvSOLnItT2LsJt+Z2a2egjf8QJFwK7jA=", "PbZWM3NitzChx9A22m/kddDtzh2bAKX5Fy7j76l3z2k=",
                   "sKX9Sbsahvw5DiC2oP6pbZsDi1NzuNS1nIULXkCC57o=", "pfTCxXHnCM253jwYxVJcuUhmoTTtDxznn92QhN0M4Ws=",
                   "cJ8uk2ZvZyfg+HRILKOHcyHu2pvI8Fz3R1MyMvyzWtA="],
        "checkpoint": {"envelope": "log2025-1.rekor.sigstore.dev\n412115\n+8vUkEgBK/ansexBUomzocaWoPEmPIzxJC/y+xNMQN4="
                                   "\n\n\u2014 log2025-1.rekor.sigstore.dev zxGZFahCZ/+MqTjH4rC5MWcdLDWbpetE5l30RZfQc4"
                                   "BQkRjWSoKipEUPjvHENeZDHIlAsuezJcLzUVvItpNjaSRoMAs=\n"}},
    "canonicalizedBody": (
        "eyJhcGlWZXJzaW9uIjoiMC4wLjIiLCJraW5kIjoiaGFzaGVkcmVrb3JkIiwic3BlYyI6eyJoYXNoZWRSZWtvcmRWMDAyIjp7ImRhdGEiOnsi"
        "YWxnb3JpdGhtIjoiU0hBMl8yNTYiLCJkaWdlc3QiOiI1ZEoyU2FrVWVPWFk0dXQxaEJIUG9teitoVG42dGMwS1R6Y0dvc0ErZXBFPSJ9LCJz"
        "aWduYXR1cmUiOnsiY29udGVudCI6Ik1FWUNJUURjSk84Mm56MXJydHUxRHhTcHJ1WDFvZ0p1bThkbDRJaUdCTVB6M2pZY2JnSWhBS3dROHdO"
        "dTFPbjhwWWZoQUpDSzhPcVQwT09HVGgveUFRK0FuL2UzZC9kVSIsInZlcmlmaWVyIjp7ImtleURldGFpbHMiOiJQS0lYX0VDRFNBX1AyNTZf"
        "U0hBXzI1NiIsInB1YmxpY0tleSI6eyJyYXdCeXRlcyI6Ik1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRTBxOVErdGRHMTk1"
        "Q1hLZm1VeDFZYXR2Wi9tTjNyaGpwT2ZtMWx2c2tXcHJIOVB4cGU5WGM2TGpFSmJCY1ZQaHV0a2ZVdkJCOVJEays0MlNORTYvNXhnPT0ifX19"
        "fX19"),
}


def _production_keys() -> list[LogKey]:
    from chainmail.transparency import load_log_keys
    from chainmail.verify.trusted_root import embedded_trusted_root_path

    path = embedded_trusted_root_path("production")
    assert path is not None, "sigstore (a dependency of chainmail) ships the production trusted root"
    return load_log_keys(path)


def test_the_production_trusted_roots_v2_log_id_is_the_c2sp_key_hash() -> None:
    v2_log = next(k for k in _production_keys() if "log2025-1" in k.base_url)
    name = key_name(v2_log.base_url)
    raw = v2_log.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert hashlib.sha256(name.encode() + b"\n\x01" + raw).digest() == v2_log.log_id
    assert note_key_id(name, v2_log.public_key) == v2_log.log_id[:4]


def test_a_real_production_rekor_v2_entry_verifies_and_any_flipped_bit_fails() -> None:
    keys = _production_keys()
    entry = RekorV2Entry.from_json(REAL_ENTRY)
    assert verify_entry(entry, keys).base_url == "https://log2025-1.rekor.sigstore.dev"
    body = entry.body_json["spec"]["hashedRekordV002"]
    assert body["data"]["algorithm"] == "SHA2_256" and body["signature"]["verifier"]["keyDetails"] == \
        "PKIX_ECDSA_P256_SHA_256"  # the shapes chainmail sends and checks
    spoiled = json.loads(json.dumps(REAL_ENTRY))
    spoiled["inclusionProof"]["hashes"][3] = spoiled["inclusionProof"]["hashes"][4]
    with pytest.raises(TransparencyError, match="does not lead"):
        verify_entry(RekorV2Entry.from_json(spoiled), keys)
    note = REAL_ENTRY["inclusionProof"]["checkpoint"]["envelope"]  # type: ignore[index]
    with pytest.raises(TransparencyError, match="does not verify"):
        verify_signed_checkpoint(note.replace("\n412115\n", "\n412116\n"), keys)
