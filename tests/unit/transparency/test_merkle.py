"""RFC 6962 inclusion proofs and signed checkpoints, checked against a recursive reference tree built here."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chainmail.errors import TransparencyError
from chainmail.transparency.merkle import leaf_hash, root_from_proof, verify_checkpoint


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle tree hash over leaf hashes (the definition, recursively)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path."""
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return _path(m, leaves[:k]) + [_mth(leaves[k:])]
    return _path(m - k, leaves[k:]) + [_mth(leaves[:k])]


LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(17)]


def test_leaf_hash_is_rfc6962() -> None:
    assert leaf_hash(b"abc") == _h(b"\x00abc")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17])
def test_every_leaf_of_every_tree_shape_proves_its_root(size: int) -> None:
    leaves = LEAVES[:size]
    for index in range(size):
        assert root_from_proof(index, size, leaves[index], _path(index, leaves)) == _mth(leaves)


def test_a_wrong_leaf_or_sibling_leads_elsewhere() -> None:
    leaves = LEAVES[:9]
    path = _path(4, leaves)
    assert root_from_proof(4, 9, leaves[5], path) != _mth(leaves)
    bad = [path[0][:-1] + bytes([path[0][-1] ^ 1]), *path[1:]]
    assert root_from_proof(4, 9, leaves[4], bad) != _mth(leaves)
    assert root_from_proof(3, 9, leaves[4], path) != _mth(leaves)


@pytest.mark.parametrize(("index", "size", "cut"), [(0, 5, -1), (0, 5, 1), (5, 5, 0), (-1, 5, 0)])
def test_malformed_proofs_are_errors(index: int, size: int, cut: int) -> None:
    leaves = LEAVES[:size]
    path = _path(max(index, 0) % size, leaves)
    path = path[:cut] if cut < 0 else path + [LEAVES[0]] * cut
    with pytest.raises(TransparencyError, match="inclusion proof"):
        root_from_proof(index, size, leaves[0], path)


def _note(key: ec.EllipticCurvePrivateKey, log_id: bytes, size: int, root: bytes, hint: bytes | None = None) -> str:
    text = f"rekor.local - 42\n{size}\n{base64.b64encode(root).decode()}\nTimestamp: 1\n"
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    return text + "\n\u2014 rekor.local " + base64.b64encode((hint or log_id[:4]) + sig).decode() + "\n"


def _log_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, _h(der)


def test_checkpoint_signed_by_the_log_verifies() -> None:
    key, log_id = _log_key()
    root = _mth(LEAVES[:5])
    checkpoint = verify_checkpoint(_note(key, log_id, 5, root), key.public_key(), log_id)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == ("rekor.local - 42", 5, root)


def test_checkpoint_from_another_key_or_edited_is_rejected() -> None:
    key, log_id = _log_key()
    other, _ = _log_key()
    note = _note(other, log_id, 5, _mth(LEAVES[:5]))
    with pytest.raises(TransparencyError, match="no signature from the log's key"):
        verify_checkpoint(note, key.public_key(), log_id)
    edited = _note(key, log_id, 5, _mth(LEAVES[:5])).replace("\n5\n", "\n6\n", 1)
    with pytest.raises(TransparencyError, match="no signature from the log's key"):
        verify_checkpoint(edited, key.public_key(), log_id)
    wrong_hint = _note(key, log_id, 5, _mth(LEAVES[:5]), hint=b"\0\0\0\0")
    with pytest.raises(TransparencyError, match="no signature from the log's key"):
        verify_checkpoint(wrong_hint, key.public_key(), log_id)
    with pytest.raises(TransparencyError, match="no signature block"):
        verify_checkpoint("rekor.local - 42\n5\nAAAA\n", key.public_key(), log_id)
