"""DSSE: PAE bytes, envelope shape, verification rules, and securesystemslib as an independent verifier."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from chainmail.context import Context
from chainmail.errors import InputError, NoMatchingSignatureError, VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE
from chainmail.signing import dsse, load_signer
from chainmail.signing._signer import KeySigner

STATEMENT = b'{"_type":"https://in-toto.io/Statement/v0.1","predicate":{"x":"<&>"}}'


@pytest.fixture
def p256() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()), "sha256", "test://p256")


@pytest.fixture
def other() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()), "sha256", "test://other")


def test_pae_bytes() -> None:
    assert dsse.pae("t", b"") == b"DSSEv1 1 t 0 "
    assert dsse.pae(INTOTO_PAYLOAD_TYPE, b"hello world") == (
        b"DSSEv1 28 application/vnd.in-toto+json 11 hello world")
    env = Envelope(STATEMENT, INTOTO_PAYLOAD_TYPE, {})
    assert dsse.pae(INTOTO_PAYLOAD_TYPE, STATEMENT) == env.pae()


def test_envelope_shape(p256: KeySigner) -> None:
    raw = dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256)
    assert raw.startswith(b'{"payloadType":"application/vnd.in-toto+json","payload":"')
    assert b" " not in raw and b"\n" not in raw
    doc = json.loads(raw)
    assert list(doc) == ["payloadType", "payload", "signatures"]
    assert list(doc["signatures"][0]) == ["keyid", "sig"]
    assert doc["signatures"][0]["keyid"] == p256.key_id
    assert base64.b64decode(doc["payload"], validate=True) == STATEMENT


def test_our_envelope_verifies_with_securesystemslib(p256: KeySigner) -> None:
    raw = dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256)
    key = SSlibKey(p256.key_id, "ecdsa", "ecdsa-sha2-nistp256", {"public": p256.public_key_pem})
    accepted = Envelope.from_dict(json.loads(raw)).verify([key], 1)
    assert list(accepted) == [p256.key_id]


def test_our_ed25519_envelope_verifies_with_securesystemslib(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "x509.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signer = load_signer(str(tmp_path), Context())
    raw = dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, signer)
    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    sslib_key = SSlibKey(signer.key_id, "ed25519", "ed25519", {"public": public_hex})
    assert list(Envelope.from_dict(json.loads(raw)).verify([sslib_key], 1)) == [signer.key_id]


def test_verify_envelope(p256: KeySigner, other: KeySigner) -> None:
    raw = dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256)
    assert dsse.verify_envelope(raw, [p256.public_key_pem]) == (INTOTO_PAYLOAD_TYPE, STATEMENT)
    assert dsse.verify_envelope(raw.decode(), [other.public_key_pem, p256.public_key_pem])[1] == STATEMENT
    with pytest.raises(NoMatchingSignatureError) as info:
        dsse.verify_envelope(raw, [other.public_key_pem])
    assert info.value.exit_code == 12


def test_verify_envelope_ignores_keyid(p256: KeySigner) -> None:
    doc = json.loads(dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256))
    doc["signatures"][0]["keyid"] = "something-else"
    assert dsse.verify_envelope(json.dumps(doc).encode(), [p256.public_key_pem])[1] == STATEMENT
    del doc["signatures"][0]["keyid"]
    assert dsse.verify_envelope(json.dumps(doc).encode(), [p256.public_key_pem])[1] == STATEMENT


def test_verify_envelope_any_signature(p256: KeySigner, other: KeySigner) -> None:
    mine = json.loads(dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256))
    theirs = json.loads(dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, other))
    mine["signatures"] = theirs["signatures"] + mine["signatures"]
    assert dsse.verify_envelope(json.dumps(mine), [p256.public_key_pem])[1] == STATEMENT


def test_verify_envelope_urlsafe_base64(p256: KeySigner) -> None:
    payload = b"\xfb\xff\xfe" * 20  # encodes with '+' and '/'
    doc = json.loads(dsse.envelope("application/octet-stream", payload, p256))
    doc["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(base64.b64decode(doc["signatures"][0]["sig"])).decode()
    assert "-" in doc["payload"] or "_" in doc["payload"]
    assert dsse.verify_envelope(json.dumps(doc), [p256.public_key_pem]) == ("application/octet-stream", payload)


def test_verify_envelope_raw_r_s_signature(p256: KeySigner) -> None:
    doc = json.loads(dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256))
    r, s = decode_dss_signature(base64.b64decode(doc["signatures"][0]["sig"]))
    doc["signatures"][0]["sig"] = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
    assert dsse.verify_envelope(json.dumps(doc), [p256.public_key_pem])[1] == STATEMENT


def test_verify_envelope_tampering(p256: KeySigner) -> None:
    doc = json.loads(dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256))
    for field, value in (("payload", base64.b64encode(STATEMENT + b" ").decode()), ("payloadType", "text/plain")):
        bad = dict(doc, **{field: value})
        with pytest.raises(NoMatchingSignatureError):
            dsse.verify_envelope(json.dumps(bad), [p256.public_key_pem])
    with pytest.raises(NoMatchingSignatureError, match="no signatures"):
        dsse.verify_envelope(json.dumps(dict(doc, signatures=[])), [p256.public_key_pem])
    with pytest.raises(NoMatchingSignatureError, match="no public key"):
        dsse.verify_envelope(json.dumps(doc), [])


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"payload":"e30="}', "payloadType"),
        (b'{"payloadType":"t","payload":"%%%","signatures":[]}', "'payload' is not valid base64"),
        (b'{"payloadType":"t","payload":"e30=","signatures":{}}', "'signatures' must be a list"),
        (b'{"payloadType":"t","payload":"e30=","signatures":[{"keyid":"k"}]}', r"signatures\[0\].sig"),
    ],
)
def test_malformed_envelopes(raw: bytes, match: str, p256: KeySigner) -> None:
    with pytest.raises(InputError, match=match):
        dsse.parse(raw)
    with pytest.raises(VerificationError, match=match) as info:
        dsse.verify_envelope(raw, [p256.public_key_pem])
    assert not isinstance(info.value, NoMatchingSignatureError)


def test_parse_returns_decoded_values(p256: KeySigner) -> None:
    doc = dsse.parse(dsse.envelope(INTOTO_PAYLOAD_TYPE, STATEMENT, p256))
    assert doc["payloadType"] == INTOTO_PAYLOAD_TYPE
    assert doc["payload"] == STATEMENT
    assert doc["signatures"][0]["keyid"] == p256.key_id
    assert isinstance(doc["signatures"][0]["sig"], bytes)
