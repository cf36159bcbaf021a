"""Signatures made by the real Tekton Chains controller verify with our code, and ours look like Chains'."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from chainmail.context import Context
from chainmail.errors import NoMatchingSignatureError, VerificationError
from chainmail.models import INTOTO_PAYLOAD_TYPE
from chainmail.signing import dsse, load_signer, verify_signature
from chainmail.signing.keys import key_hint, ssh_fingerprint


def _annotations(chains_run: Path) -> tuple[bytes, bytes]:
    """(signature annotation decoded = DSSE envelope, payload annotation decoded = statement)."""
    run = json.loads((chains_run / "taskrun-after-chains.json").read_text())
    notes = run["metadata"]["annotations"]
    key = "taskrun-" + run["metadata"]["uid"]
    return (base64.b64decode(notes[f"chains.tekton.dev/signature-{key}"]),
            base64.b64decode(notes[f"chains.tekton.dev/payload-{key}"]))


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def test_annotation_envelope_verifies(chains_run: Path) -> None:
    envelope, payload = _annotations(chains_run)
    pub = (chains_run / "cosign.pub").read_text()
    assert dsse.verify_envelope(envelope, [pub]) == (INTOTO_PAYLOAD_TYPE, payload)


def test_annotation_envelope_fails_when_changed_or_other_key(chains_run: Path, keys_dir: Path) -> None:
    envelope, _ = _annotations(chains_run)
    pub = (chains_run / "cosign.pub").read_text()
    doc = json.loads(envelope)
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    doc["signatures"][0]["sig"] = base64.b64encode(_flip(sig, len(sig) - 5)).decode()
    with pytest.raises(NoMatchingSignatureError):
        dsse.verify_envelope(json.dumps(doc), [pub])
    payload = base64.b64decode(json.loads(envelope)["payload"])
    tampered = dict(json.loads(envelope), payload=base64.b64encode(_flip(payload, 40)).decode())
    with pytest.raises(NoMatchingSignatureError):
        dsse.verify_envelope(json.dumps(tampered), [pub])
    other = (keys_dir / "ecdsa-p256-empty-password" / "cosign.pub").read_text()
    with pytest.raises(NoMatchingSignatureError):
        dsse.verify_envelope(envelope, [other])


def test_att_layer_envelope_verifies(chains_run: Path) -> None:
    pub = (chains_run / "cosign.pub").read_text()
    payload_type, payload = dsse.verify_envelope((chains_run / "att-layer0.json").read_bytes(), [pub])
    assert payload_type == INTOTO_PAYLOAD_TYPE
    assert json.loads(payload)["predicateType"] == "https://slsa.dev/provenance/v0.2"


def test_sig_layer_signature_verifies(chains_run: Path, keys_dir: Path) -> None:
    manifest = json.loads((chains_run / "sig-manifest.json").read_text())
    sig = base64.b64decode(manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"])
    layer = (chains_run / "sig-layer0.json").read_bytes()
    pub = (chains_run / "cosign.pub").read_text()
    verify_signature(pub, sig, layer)
    with pytest.raises(VerificationError):
        verify_signature(pub, sig, _flip(layer, 10))
    with pytest.raises(VerificationError):
        verify_signature(pub, _flip(sig, len(sig) - 3), layer)
    with pytest.raises(VerificationError):
        verify_signature((keys_dir / "legacy-cosign-label" / "cosign.pub").read_text(), sig, layer)


def test_keyid_is_chains_ssh_fingerprint(chains_run: Path, keys_dir: Path) -> None:
    envelope, _ = _annotations(chains_run)
    chains_keyid = json.loads(envelope)["signatures"][0]["keyid"]
    assert ssh_fingerprint((chains_run / "cosign.pub").read_text()) == chains_keyid
    signer = load_signer(str(keys_dir / "ecdsa-p256-password"), Context())
    assert signer.key_id == chains_keyid


def test_our_envelope_matches_chains_shape(chains_run: Path, keys_dir: Path) -> None:
    chains_envelope, payload = _annotations(chains_run)
    signer = load_signer(str(keys_dir / "ecdsa-p256-password"), Context())
    ours = dsse.envelope(INTOTO_PAYLOAD_TYPE, payload, signer)
    theirs_doc, ours_doc = json.loads(chains_envelope), json.loads(ours)
    assert list(ours_doc) == list(theirs_doc)
    assert ours_doc["payload"] == theirs_doc["payload"]
    assert ours_doc["payloadType"] == theirs_doc["payloadType"]
    assert [list(s) for s in ours_doc["signatures"]] == [list(s) for s in theirs_doc["signatures"]]
    assert ours_doc["signatures"][0]["keyid"] == theirs_doc["signatures"][0]["keyid"]
    # ECDSA signatures are randomised, so only the frame can be byte-compared.
    frame = ours.split(b'"sig":"')[0]
    assert chains_envelope.startswith(frame)
    assert dsse.verify_envelope(ours, [(chains_run / "cosign.pub").read_text()]) == (INTOTO_PAYLOAD_TYPE, payload)


def test_securesystemslib_verifies_chains_and_our_envelopes(chains_run: Path, keys_dir: Path) -> None:
    chains_envelope, payload = _annotations(chains_run)
    pub = (chains_run / "cosign.pub").read_text()
    key = SSlibKey(ssh_fingerprint(pub), "ecdsa", "ecdsa-sha2-nistp256", {"public": pub})
    assert list(Envelope.from_dict(json.loads(chains_envelope)).verify([key], 1)) == [key.keyid]
    signer = load_signer(str(keys_dir / "ecdsa-p256-password"), Context())
    ours = dsse.envelope(INTOTO_PAYLOAD_TYPE, payload, signer)
    assert list(Envelope.from_dict(json.loads(ours)).verify([key], 1)) == [key.keyid]


def test_key_hint(chains_run: Path) -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    pub = (chains_run / "cosign.pub").read_text()
    der = serialization.load_pem_public_key(pub.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_hint(pub) == base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert len(base64.b64decode(key_hint(pub))) == 32
