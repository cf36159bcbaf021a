"""Bundles in protobuf's JSON form as other signers write them (sigstore-js): omitted defaults, the v0.2 chain."""

from __future__ import annotations

import base64
import copy
from typing import Any

from chainmail.verify.bundles import bundle_envelope
from chainmail.verify.sigstore_bundle import with_proto_defaults

ENTRY: dict[str, Any] = {
    "integratedTime": "1796457132",
    "inclusionProof": {"rootHash": "cm9vdA==", "treeSize": "1", "checkpoint": {"envelope": "note\n"}},
    "canonicalizedBody": "e30=",
}


def _bundle(entry: dict[str, Any], material: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {**(material or {}), "tlogEntries": [entry]},
            "dsseEnvelope": {"payload": "e30=", "payloadType": "application/vnd.in-toto+json",
                             "signatures": [{"sig": "c2ln"}]}}


def test_omitted_zero_index_and_empty_proof_are_filled_in() -> None:
    """An entry at index 0 of a one-leaf tree: logIndex and hashes absent, as protobuf JSON writes them."""
    bundle = _bundle(copy.deepcopy(ENTRY))
    filled = with_proto_defaults(bundle)
    [entry] = filled["verificationMaterial"]["tlogEntries"]
    assert entry["logIndex"] == "0"
    assert entry["inclusionProof"]["logIndex"] == "0" and entry["inclusionProof"]["hashes"] == []
    assert "logIndex" not in bundle["verificationMaterial"]["tlogEntries"][0]  # the input is left alone


def test_present_values_are_kept() -> None:
    entry = copy.deepcopy(ENTRY)
    entry["logIndex"] = "9595402"
    entry["inclusionProof"].update(logIndex="7", hashes=["aGFzaA=="], treeSize="9")
    assert with_proto_defaults(_bundle(entry)) == _bundle(entry)
    no_log = _bundle(ENTRY)
    del no_log["verificationMaterial"]["tlogEntries"]
    assert with_proto_defaults(no_log) == no_log


def test_certificate_from_a_v02_chain() -> None:
    """``x509CertificateChain`` (v0.1/v0.2, sigstore-js's certificateChain option): its first certificate."""
    der = b"\x30\x03\x02\x01\x01"
    chain = {"x509CertificateChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()},
                                                       {"rawBytes": "AAAA"}]}}
    bundle = _bundle(ENTRY, chain)
    bundle["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
    _, pem = bundle_envelope(bundle)
    assert pem == f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(der).decode()}\n-----END CERTIFICATE-----\n"
    _, pem = bundle_envelope(_bundle(ENTRY, {"certificate": {"rawBytes": base64.b64encode(der).decode()}}))
    assert base64.b64encode(der).decode() in pem
    assert bundle_envelope(_bundle(ENTRY, {"publicKey": {"hint": "k"}}))[1] == ""
