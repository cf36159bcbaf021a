"""The transparency log rules of verification (chainmail.verify.tlog): which entry binds which signature,
and the exit code of each way an entry can fail."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chainmail.errors import (
    NoMatchingSignatureError,
    TlogEntryInvalidError,
    TlogInclusionError,
    TlogMismatchError,
    TlogMissingError,
    TlogUnknownLogError,
)
from chainmail.transparency import kinds
from chainmail.transparency.entry import InclusionProof, LogEntry
from chainmail.transparency.merkle import leaf_hash
from chainmail.transparency.trust import LogKey, key_from_pem
from chainmail.transparency.verify import canonical_json
from chainmail.verify.search import Search, outcome
from chainmail.verify.tlog import (
    TlogCheck,
    check_certificate_time,
    entry_from_bundle,
    entry_from_cosign_bundle,
    parse_transparency_annotation,
)

PAYLOAD = b'{"critical":{"type":"cosign container image signature"},"optional":null}'


def _pem(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _sign(key: Any, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


@pytest.fixture(scope="module")
def log_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def signer() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def trusted(log_key: Any) -> list[LogKey]:
    return [key_from_pem(_pem(log_key).encode())]


def logged(log_key: Any, proposed: dict[str, Any], *, when: int = 1_700_000_000, proof: bool = True) -> LogEntry:
    """An entry as a log holding only it would return: SET by ``log_key``, a one-leaf inclusion proof."""
    if proposed["kind"] == "dsse":  # what Rekor stores for a dsse proposal
        content = proposed["spec"]["proposedContent"]
        env = json.loads(content["envelope"])
        proposed = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(content["envelope"].encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256",
                            "value": hashlib.sha256(base64.b64decode(env["payload"])).hexdigest()},
            "signatures": [{"signature": s["sig"], "verifier": content["verifiers"][0]} for s in env["signatures"]]}}
    body = json.dumps(proposed, sort_keys=True, separators=(",", ":")).encode()
    log_id = key_from_pem(_pem(log_key).encode()).log_id.hex()
    entry = LogEntry(leaf_hash(body).hex(), body, when, log_id, 7)
    entry = dataclasses.replace(entry, set=_sign(log_key, canonical_json(entry.set_payload())))
    if proof:
        entry = dataclasses.replace(entry, proof=InclusionProof(0, 1, leaf_hash(body), ()))
    return entry


def hashed(log_key: Any, signer: Any, payload: bytes = PAYLOAD, **kw: Any) -> tuple[LogEntry, bytes]:
    signature = _sign(signer, payload)
    return logged(log_key, kinds.hashedrekord(payload, signature, _pem(signer)), **kw), signature


def envelope(signer: Any, statement: bytes = b'{"_type":"https://in-toto.io/Statement/v1"}') -> bytes:
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d " % len(statement) + statement
    return json.dumps({"payloadType": "application/vnd.in-toto+json",
                       "payload": base64.b64encode(statement).decode(),
                       "signatures": [{"keyid": "", "sig": base64.b64encode(_sign(signer, pae)).decode()}]}).encode()


def check(trusted: list[LogKey]) -> TlogCheck:
    out = TlogCheck()
    out._keys = trusted
    return out


def test_a_logged_signature_binds(log_key: Any, signer: Any, trusted: list[LogKey]) -> None:
    entry, signature = hashed(log_key, signer)
    assert check(trusted).require_signature(entry, PAYLOAD, signature, [_pem(signer)]) is entry
    # any of several keys may be the one the entry names
    other = ec.generate_private_key(ec.SECP256R1())
    assert check(trusted).require_signature(entry, PAYLOAD, signature, [_pem(other), _pem(signer)]) is entry


def test_the_entry_must_name_this_payload_signature_and_key(log_key: Any, signer: Any,
                                                            trusted: list[LogKey]) -> None:
    entry, signature = hashed(log_key, signer)
    other = ec.generate_private_key(ec.SECP256R1())
    cases = [(PAYLOAD + b" ", signature, _pem(signer), "another payload"),
             (PAYLOAD, _sign(signer, PAYLOAD), _pem(signer), "another signature"),  # ECDSA: a new signature
             (PAYLOAD, signature, _pem(other), "another public key")]
    for payload, sig, pem, message in cases:
        with pytest.raises(TlogMismatchError, match=message) as caught:
            check(trusted).require_signature(entry, payload, sig, [pem])
        assert caught.value.exit_code == 25


def test_dsse_entries_bind_envelopes_and_not_signatures(log_key: Any, signer: Any, trusted: list[LogKey]) -> None:
    env = envelope(signer)
    payload = base64.b64decode(json.loads(env)["payload"])
    entry = logged(log_key, kinds.dsse(env, [_pem(signer)]))
    assert check(trusted).require_envelope(entry, env, payload, [_pem(signer)]) is entry
    with pytest.raises(TlogMismatchError, match="not dsse"):
        check(trusted).require_envelope(hashed(log_key, signer)[0], env, payload, [_pem(signer)])
    with pytest.raises(TlogMismatchError, match="another signature"):
        check(trusted).require_envelope(entry, envelope(signer), payload, [_pem(signer)])
    with pytest.raises(TlogMismatchError, match="another payload"):
        check(trusted).require_envelope(entry, envelope(signer, b"{}"), b"{}", [_pem(signer)])


def test_each_failure_has_its_exit_code(log_key: Any, signer: Any, trusted: list[LogKey]) -> None:
    entry, signature = hashed(log_key, signer)
    bad_set = dataclasses.replace(entry, set=_sign(log_key, b"something else"))
    later = dataclasses.replace(entry, integrated_time=entry.integrated_time + 1)
    bad_proof = dataclasses.replace(entry, proof=InclusionProof(0, 1, b"\0" * 32, ()))
    stranger = [key_from_pem(_pem(ec.generate_private_key(ec.SECP256R1())).encode())]
    for spoiled, keys, error, code in [(bad_set, trusted, TlogEntryInvalidError, 26),
                                       (later, trusted, TlogEntryInvalidError, 26),
                                       (bad_proof, trusted, TlogInclusionError, 27),
                                       (entry, stranger, TlogUnknownLogError, 28)]:
        with pytest.raises(error) as caught:
            check(keys).require_signature(spoiled, PAYLOAD, signature, [_pem(signer)])
        assert caught.value.exit_code == code and "\n" not in str(caught.value)


def test_no_entry_fails_unless_ignored(signer: Any, trusted: list[LogKey]) -> None:
    with pytest.raises(TlogMissingError, match="--insecure-ignore-tlog") as caught:
        check(trusted).require_signature(None, PAYLOAD, b"sig", [_pem(signer)])
    assert caught.value.exit_code == 24
    assert TlogCheck(ignore=True).require_signature(None, PAYLOAD, b"sig", [_pem(signer)]) is None
    assert TlogCheck(ignore=True).require_envelope(None, b"{}", b"", []) is None


def test_cosign_bundle_annotation_and_bundle_tlog_entries_round_trip(log_key: Any, signer: Any,
                                                                    trusted: list[LogKey]) -> None:
    entry, signature = hashed(log_key, signer)
    from_annotation = entry_from_cosign_bundle(json.dumps(entry.cosign_bundle()))
    assert (from_annotation.body, from_annotation.set, from_annotation.proof) == (entry.body, entry.set, None)
    check(trusted).require_signature(from_annotation, PAYLOAD, signature, [_pem(signer)])
    from_bundle = entry_from_bundle({"verificationMaterial": {"tlogEntries": [entry.bundle_tlog_entry()]}})
    assert from_bundle is not None and from_bundle.proof == entry.proof
    check(trusted).require_signature(from_bundle, PAYLOAD, signature, [_pem(signer)])
    assert entry_from_bundle({"verificationMaterial": {"tlogEntries": []}}) is None
    for junk in ("{}", "not json", json.dumps({"SignedEntryTimestamp": "x", "Payload": {"body": "%%"}})):
        with pytest.raises(TlogEntryInvalidError) as caught:
            entry_from_cosign_bundle(junk)
        assert caught.value.exit_code == 26
    with pytest.raises(TlogEntryInvalidError):
        entry_from_bundle({"verificationMaterial": {"tlogEntries": [{"logIndex": "1"}]}})
    far = entry.cosign_bundle()
    far["Payload"]["integratedTime"] = 10**20
    with pytest.raises(TlogEntryInvalidError, match="not a time"):
        entry_from_cosign_bundle(json.dumps(far))


def test_keyless_integrated_time_must_be_inside_the_certificate(signer: Any) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(signer.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + timedelta(minutes=10))
            .sign(signer, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    check_certificate_time(int((start + timedelta(minutes=5)).timestamp()), pem)
    for outside in (start - timedelta(seconds=1), start + timedelta(minutes=11)):
        with pytest.raises(TlogMismatchError, match="outside the certificate's validity") as caught:
            check_certificate_time(int(outside.timestamp()), pem)
        assert caught.value.exit_code == 25


def test_transparency_annotation_is_parsed_strictly() -> None:
    assert parse_transparency_annotation("https://rekor.example/api/v1/log/entries?logIndex=42") == (
        "https://rekor.example", 42, "1")
    assert parse_transparency_annotation("http://127.0.0.1:3000/r/api/v1/log/entries?logIndex=0") == (
        "http://127.0.0.1:3000/r", 0, "1")
    assert parse_transparency_annotation("https://log2025-1.rekor.example/api/v2/log/entries?logIndex=7") == (
        "https://log2025-1.rekor.example", 7, "2")
    for bad in ("rekor.example/api/v1/log/entries?logIndex=1", "https://rekor.example/api/v1/log/entries",
                "https://rekor.example/api/v3/log/entries?logIndex=1", "https://rekor.example/api/v2/log?logIndex=1",
                "https://rekor.example/api/v1/log/entries?logIndex=-1", "file:///api/v1/log/entries?logIndex=1",
                "https://rekor.example/api/v1/log/entries?logIndex=\u00b2"):
        with pytest.raises(TlogEntryInvalidError):
            parse_transparency_annotation(bad)


def test_search_outcome_says_why_when_every_candidate_failed_the_log() -> None:
    search = Search("img@sha256:" + "a" * 64)
    search.found = 2
    search.fail("layer 0", TlogMissingError("no entry"))
    search.fail("layer 1", TlogEntryInvalidError("bad SET"))
    with pytest.raises(TlogMissingError, match="none of the 2 signatures"):
        outcome(search, "signatures")
    search.fail("layer 2", NoMatchingSignatureError("wrong key"))
    search.found = 3
    with pytest.raises(NoMatchingSignatureError) as caught:
        outcome(search, "signatures")
    assert type(caught.value) is NoMatchingSignatureError


def test_the_entry_must_name_the_key_that_verified() -> None:
    from chainmail.verify.tlog import verifying_pems

    keys = [("PEM-A", "SHA256:a"), ("PEM-B", "SHA256:b"), ("PEM-C", "")]
    assert verifying_pems(keys, "SHA256:b") == ["PEM-B"]
    assert verifying_pems(keys, "unknown") == ["PEM-C"]  # a key without a fingerprint verified
    assert verifying_pems(keys, "SHA256:z") == ["PEM-A", "PEM-B", "PEM-C"]


def test_a_run_entry_must_bind_one_of_its_signatures(monkeypatch: pytest.MonkeyPatch, log_key: Any, signer: Any,
                                                     trusted: list[LogKey]) -> None:
    from chainmail.models import SIMPLESIGNING_PAYLOAD_TYPE
    from chainmail.verify.model import Verified
    from chainmail.verify.run_tlog import TRANSPARENCY, check_children_tlog, check_run_tlog

    entry, signature = hashed(log_key, signer)
    logged_item = Verified("taskrun/ns/c", "annotations", SIMPLESIGNING_PAYLOAD_TYPE, PAYLOAD, signature=signature)
    other_item = Verified("taskrun/ns/c", "annotations", SIMPLESIGNING_PAYLOAD_TYPE, PAYLOAD,
                          signature=_sign(signer, PAYLOAD))
    checker = check(trusted)
    asked: list[tuple[str, int | None]] = []

    def fetch(url: str, *, uuid: str | None = None, log_index: int | None = None) -> LogEntry:
        asked.append((url, log_index))
        return entry

    monkeypatch.setattr(checker, "fetch", fetch)
    marks = {TRANSPARENCY: "https://rekor.example/api/v1/log/entries?logIndex=7"}
    keys = [(_pem(signer), "")]
    assert check_run_tlog("taskrun/ns/r", marks, [other_item, logged_item], [], keys, checker) is entry
    assert asked == [("https://rekor.example", 7)]
    with pytest.raises(TlogMismatchError, match="^taskrun/ns/r: ") as caught:
        check_run_tlog("taskrun/ns/r", marks, [other_item], [], keys, checker)
    assert caught.value.exit_code == 25
    with pytest.raises(TlogMissingError, match="has no chains.tekton.dev/transparency annotation"):
        check_run_tlog("taskrun/ns/r", {}, [logged_item], [logged_item], keys, checker)
    # children: checked when they name an entry, not required to
    check_children_tlog([("taskrun/ns/c", marks, [logged_item]), ("taskrun/ns/d", {}, [other_item])], keys, checker)
    with pytest.raises(TlogMismatchError, match="^taskrun/ns/c: "):
        check_children_tlog([("taskrun/ns/c", marks, [other_item])], keys, checker)


def test_a_lookup_checks_at_most_64_entries_and_takes_the_one_that_binds(
        monkeypatch: pytest.MonkeyPatch, log_key: Any, signer: Any, trusted: list[LogKey]) -> None:
    ours, signature = hashed(log_key, signer)
    theirs, _ = hashed(log_key, ec.generate_private_key(ec.SECP256R1()))  # same payload, another signer
    checker = check(trusted)
    fetched: list[str] = []

    class Index:
        def __init__(self, uuids: list[str]) -> None:
            self.uuids = uuids

        def search(self, *, sha256: str) -> list[str]:
            assert sha256 == hashlib.sha256(PAYLOAD).hexdigest()
            return self.uuids

    def fetch(url: str, *, uuid: str | None = None, log_index: int | None = None) -> LogEntry:
        fetched.append(str(uuid))
        return ours if uuid == "ours" else theirs

    monkeypatch.setattr(checker, "fetch", fetch)
    monkeypatch.setattr(checker, "client", lambda url: Index(["theirs"] * 3 + ["ours"]))
    checker.rekor_url = "https://rekor.example"
    assert checker.require_signature(None, PAYLOAD, signature, [_pem(signer)]) is ours
    assert fetched == ["theirs"] * 3 + ["ours"]
    fetched.clear()
    monkeypatch.setattr(checker, "client", lambda url: Index(["theirs"] * 100 + ["ours"]))
    with pytest.raises(TlogMissingError, match="no entry of transparency log https://rekor.example") as caught:
        checker.require_signature(None, PAYLOAD, signature, [_pem(signer)])
    assert len(fetched) == 64 and caught.value.exit_code == 24


def test_rekor_v2_failures_map_to_verification_codes_but_a_log_that_is_down_stays_7() -> None:
    from chainmail.errors import TlogInclusionError, TlogUnknownLogError, TransparencyError
    from chainmail.transparency.errors import LogUnavailableError, UntrustedLogError
    from chainmail.verify.tlog import _v2_errors

    cases = [(UntrustedLogError("no trusted key"), TlogUnknownLogError),
             (TransparencyError("proof does not lead to the root"), TlogInclusionError),
             (LogUnavailableError("unreachable"), LogUnavailableError)]
    for raised, expected in cases:
        with pytest.raises(expected) as caught, _v2_errors():
            raise raised
        assert caught.value.exit_code == {TlogUnknownLogError: 28, TlogInclusionError: 27}.get(expected, 7)
