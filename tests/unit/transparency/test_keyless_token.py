"""OIDC token handling of the keyless signer (chainmail.signing._fulcio): claims, challenge, file limits."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from chainmail.errors import KeyMaterialError
from chainmail.signing._fulcio import challenge_subject
from chainmail.signing._oidc import MAX_TOKEN_BYTES, token_claims
from chainmail.signing._oidc import read_token_file as read_token


def jwt(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def test_claims_are_read_from_the_middle_part() -> None:
    assert token_claims(jwt({"sub": "a", "iss": "b"})) == {"sub": "a", "iss": "b"}


@pytest.mark.parametrize("token", ["abc", "a.b", "a.!!!.c", jwt(["not", "an", "object"])])
def test_malformed_tokens_are_key_material_errors(token: str) -> None:
    with pytest.raises(KeyMaterialError, match="OIDC token"):
        token_claims(token)


def test_challenge_is_email_for_email_issuers_and_sub_otherwise() -> None:
    assert challenge_subject({"iss": "https://accounts.google.com", "email": "me@x", "sub": "1"}) == "me@x"
    assert challenge_subject({"iss": "https://oauth2.sigstore.dev/auth", "email": "me@x"}) == "me@x"
    assert challenge_subject({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:a:b"}) == \
        "system:serviceaccount:a:b"
    with pytest.raises(KeyMaterialError, match="no 'sub' claim"):
        challenge_subject({"iss": "https://x"})


def test_token_file_is_stripped_bounded_and_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  " + jwt({"sub": "a"}) + "\n")
    assert read_token(path) == jwt({"sub": "a"})
    path.write_text("x" * (MAX_TOKEN_BYTES + 1))
    with pytest.raises(KeyMaterialError, match="larger than") as caught:
        read_token(path)
    assert "xxxx" not in str(caught.value)
    path.write_text("\n")
    with pytest.raises(KeyMaterialError, match="is empty"):
        read_token(path)
    with pytest.raises(KeyMaterialError, match="cannot read"):
        read_token(tmp_path / "missing")
