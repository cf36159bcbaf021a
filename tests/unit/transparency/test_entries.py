"""Log entries made here with a throwaway log key: parsing, SET checks, bindings, cosign/Chains encodings.

The SET is signed over ``rfc8785`` output (an independent RFC 8785 implementation), so chainmail's own
canonical JSON is checked against it rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chainmail.errors import InputError, TransparencyError
from chainmail.transparency import (
    LogEntry,
    LogKey,
    check_envelope_binding,
    check_signature_binding,
    kinds,
    load_log_keys,
    transparency_annotation,
    verify_entry,
)
from chainmail.transparency.merkle import leaf_hash

rfc8785 = pytest.importorskip("rfc8785")

LOG = ec.generate_private_key(ec.SECP256R1())
LOG_DER = LOG.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
LOG_ID = hashlib.sha256(LOG_DER).digest()
SIGNER = ec.generate_private_key(ec.SECP256R1())
SIGNER_PEM = SIGNER.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode()
OTHER = ec.generate_private_key(ec.SECP256R1())
OTHER_PEM = OTHER.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
PAYLOAD = b'{"critical":{"type":"cosign container image signature"},"optional":null}'
NOW = 1_790_000_000


def keys(**kw: Any) -> list[LogKey]:
    return [LogKey(LOG_ID, LOG.public_key(), **kw)]


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def response(body: dict[str, Any], *, log_index: int = 7, when: int = NOW, uuid: str | None = None,
             set_key: ec.EllipticCurvePrivateKey = LOG, with_proof: bool = True) -> dict[str, Any]:
    """What Rekor answers for ``body`` in a one-leaf tree."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    b64 = base64.b64encode(raw).decode()
    signed = rfc8785.dumps({"body": b64, "integratedTime": when, "logID": LOG_ID.hex(), "logIndex": log_index})
    item: dict[str, Any] = {
        "body": b64, "integratedTime": when, "logID": LOG_ID.hex(), "logIndex": log_index,
        "verification": {"signedEntryTimestamp": base64.b64encode(sign(set_key, signed)).decode()},
    }
    if with_proof:
        item["verification"]["inclusionProof"] = {"logIndex": 0, "treeSize": 1, "rootHash": leaf_hash(raw).hex(),
                                                  "hashes": []}
    return {uuid or ("0123456789abcdef" + leaf_hash(raw).hex()): item}


def hashedrekord(payload: bytes = PAYLOAD, key: ec.EllipticCurvePrivateKey = SIGNER,
                 pem: str = SIGNER_PEM) -> tuple[dict[str, Any], bytes]:
    sig = sign(key, payload)
    return kinds.hashedrekord(payload, sig, pem), sig


def dsse_body(envelope: dict[str, Any], pem: str = SIGNER_PEM) -> dict[str, Any]:
    """The canonical dsse body real Rekor stores for ``envelope``."""
    text = json.dumps(envelope)
    return {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(text.encode()).hexdigest()},
        "payloadHash": {"algorithm": "sha256",
                        "value": hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()},
        "signatures": [{"signature": s["sig"], "verifier": base64.b64encode(pem.encode()).decode()}
                       for s in envelope["signatures"]],
    }}


def envelope(payload: bytes = b'{"_type":"https://in-toto.io/Statement/v1"}',
             key: ec.EllipticCurvePrivateKey = SIGNER) -> dict[str, Any]:
    ptype = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)
    return {"payloadType": ptype, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(sign(key, pae)).decode()}]}


# -- proposed entries ------------------------------------------------------------------------------------


def test_hashedrekord_proposal_has_rekor_v001_shape() -> None:
    proposed, sig = hashedrekord()
    assert proposed == {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(PAYLOAD).hexdigest()}},
        "signature": {"content": base64.b64encode(sig).decode(),
                      "publicKey": {"content": base64.b64encode(SIGNER_PEM.encode()).decode()}}}}


def test_dsse_proposal_carries_the_envelope_as_a_string() -> None:
    env = json.dumps(envelope()).encode()
    proposed = kinds.dsse(env, [SIGNER_PEM])
    assert proposed["kind"] == "dsse" and proposed["apiVersion"] == "0.0.1"
    assert proposed["spec"]["proposedContent"]["envelope"] == env.decode()
    assert base64.b64decode(proposed["spec"]["proposedContent"]["verifiers"][0]).decode() == SIGNER_PEM


@pytest.mark.parametrize("bad", [lambda: kinds.dsse(b"{}", []), lambda: kinds.hashedrekord(b"x", b"s", "not pem"),
                                 lambda: kinds.hashedrekord_for_digest("sha256:zz", b"s", SIGNER_PEM)])
def test_bad_proposals_are_input_errors(bad: Any) -> None:
    with pytest.raises(InputError):
        bad()


# -- parsing and verification ---------------------------------------------------------------------------


def test_a_well_formed_entry_verifies_and_parses() -> None:
    proposed, _ = hashedrekord()
    entry = LogEntry.from_response(response(proposed))
    assert verify_entry(entry, keys()).log_id == LOG_ID
    assert (entry.kind, entry.api_version, entry.log_index, entry.integrated_time) == ("hashedrekord", "0.0.1", 7, NOW)
    assert entry.proof is not None and entry.proof.tree_size == 1
    assert LogEntry.from_response(entry.to_json()) == entry


def test_an_entry_without_an_inclusion_proof_still_needs_its_set() -> None:
    proposed, _ = hashedrekord()
    verify_entry(LogEntry.from_response(response(proposed, with_proof=False)), keys())
    doc = response(proposed)
    del next(iter(doc.values()))["verification"]["signedEntryTimestamp"]
    with pytest.raises(TransparencyError, match="no signed entry timestamp"):
        verify_entry(LogEntry.from_response(doc), keys())


@pytest.mark.parametrize("field", ["body", "integratedTime", "logIndex", "signedEntryTimestamp"])
def test_tampering_with_what_the_set_covers_is_rejected(field: str) -> None:
    proposed, _ = hashedrekord()
    doc = response(proposed, with_proof=False)
    item = next(iter(doc.values()))
    if field == "body":
        other, _ = hashedrekord(b"another payload")
        item["body"] = next(iter(response(other).values()))["body"]
    elif field == "signedEntryTimestamp":
        raw = bytearray(base64.b64decode(item["verification"]["signedEntryTimestamp"]))
        raw[-1] ^= 1
        item["verification"]["signedEntryTimestamp"] = base64.b64encode(bytes(raw)).decode()
    else:
        item[field] += 1
    with pytest.raises(TransparencyError, match=r"signed entry timestamp \(SET\) does not verify"):
        verify_entry(LogEntry.from_response(doc), keys())


def test_a_set_from_another_key_or_an_untrusted_log_is_rejected() -> None:
    proposed, _ = hashedrekord()
    with pytest.raises(TransparencyError, match="does not verify"):
        verify_entry(LogEntry.from_response(response(proposed, set_key=OTHER)), keys())
    with pytest.raises(TransparencyError, match="is not a trusted log"):
        verify_entry(LogEntry.from_response(response(proposed)), [LogKey(b"\1" * 32, LOG.public_key())])
    later = datetime.fromtimestamp(NOW, UTC) + timedelta(days=1)
    with pytest.raises(TransparencyError, match="not valid at"):
        verify_entry(LogEntry.from_response(response(proposed)), keys(start=later))


def test_a_proof_to_another_root_or_a_uuid_of_another_body_is_rejected() -> None:
    proposed, _ = hashedrekord()
    doc = response(proposed)
    next(iter(doc.values()))["verification"]["inclusionProof"]["rootHash"] = "00" * 32
    with pytest.raises(TransparencyError, match="inclusion proof does not lead"):
        verify_entry(LogEntry.from_response(doc), keys())
    with pytest.raises(TransparencyError, match="UUID is not the hash"):
        verify_entry(LogEntry.from_response(response(proposed, uuid="ab" * 32)), keys())


@pytest.mark.parametrize("doc", [[], {}, {"a": 1, "b": 2}, {"u": {"body": "!!", "integratedTime": 1, "logID": "00",
                                                                 "logIndex": 1}},
                                 {"u": {"body": "e30=", "integratedTime": -1, "logID": "00", "logIndex": 1}},
                                 {"u": {"body": "e30=", "integratedTime": 1, "logID": "xyz", "logIndex": 1}}])
def test_malformed_responses_are_transparency_errors(doc: Any) -> None:
    with pytest.raises(TransparencyError):
        LogEntry.from_response(doc)


# -- bindings -------------------------------------------------------------------------------------------


def test_hashedrekord_binds_exactly_its_signature_payload_and_key() -> None:
    proposed, sig = hashedrekord()
    entry = LogEntry.from_response(response(proposed))
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    check_signature_binding(entry, digest, sig, SIGNER_PEM)
    check_signature_binding(entry, "sha256:" + digest, sig, SIGNER_PEM)
    with pytest.raises(TransparencyError, match="another signature"):
        check_signature_binding(entry, digest, sign(SIGNER, PAYLOAD + b" "), SIGNER_PEM)
    with pytest.raises(TransparencyError, match="another payload"):
        check_signature_binding(entry, hashlib.sha256(b"x").hexdigest(), sig, SIGNER_PEM)
    with pytest.raises(TransparencyError, match="another public key"):
        check_signature_binding(entry, digest, sig, OTHER_PEM)


def test_dsse_binds_the_envelope_payload_and_one_signature_by_the_key() -> None:
    env = envelope()
    entry = LogEntry.from_response(response(dsse_body(env)))
    check_envelope_binding(entry, json.dumps(env).encode(), SIGNER_PEM)
    with pytest.raises(TransparencyError, match="another signature"):
        check_envelope_binding(entry, json.dumps(env).encode(), OTHER_PEM)
    resigned = envelope(key=OTHER)
    with pytest.raises(TransparencyError, match="another signature"):
        check_envelope_binding(entry, json.dumps(resigned).encode(), SIGNER_PEM)
    with pytest.raises(TransparencyError, match="another payload"):
        check_envelope_binding(entry, json.dumps(envelope(b"{}")).encode(), SIGNER_PEM)
    with pytest.raises(TransparencyError, match="not dsse"):
        check_envelope_binding(LogEntry.from_response(response(hashedrekord()[0])), b"{}", SIGNER_PEM)


# -- encodings ------------------------------------------------------------------------------------------


def test_cosign_bundle_annotation_and_chains_annotation() -> None:
    proposed, _ = hashedrekord()
    doc = response(proposed, log_index=12345)
    entry = LogEntry.from_response(doc)
    item = next(iter(doc.values()))
    assert entry.cosign_bundle() == {
        "SignedEntryTimestamp": item["verification"]["signedEntryTimestamp"],
        "Payload": {"body": item["body"], "integratedTime": NOW, "logIndex": 12345, "logID": LOG_ID.hex()},
    }
    assert transparency_annotation("https://rekor.example/", entry) == \
        "https://rekor.example/api/v1/log/entries?logIndex=12345"
    tlog = entry.bundle_tlog_entry()
    assert tlog["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.1"}
    assert tlog["logIndex"] == "12345" and base64.b64decode(tlog["logId"]["keyId"]) == LOG_ID
    assert tlog["inclusionPromise"]["signedEntryTimestamp"] == item["verification"]["signedEntryTimestamp"]


# -- trust ----------------------------------------------------------------------------------------------


def test_log_keys_from_a_trusted_root_or_a_pem(tmp_path: Path) -> None:
    pem = tmp_path / "rekor.pub"
    pem.write_bytes(LOG.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    assert [k.log_id for k in load_log_keys(pem)] == [LOG_ID]
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": [{
        "baseUrl": "https://rekor.example", "hashAlgorithm": "SHA2_256", "logId": {"keyId": base64.b64encode(LOG_ID).decode()},
        "publicKey": {"rawBytes": base64.b64encode(LOG_DER).decode(), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                      "validFor": {"start": "2020-01-01T00:00:00Z"}}}]}))
    (key,) = load_log_keys(root)
    assert key.log_id == LOG_ID and key.base_url == "https://rekor.example" and key.start is not None
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    from chainmail.errors import ConfigError

    with pytest.raises(ConfigError, match="not a trusted_root.json or PEM"):
        load_log_keys(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_log_keys(tmp_path / "missing.json")
