"""How AWS KMS's JSON errors map to exit codes, at botocore's Stubber (the SDK's own response double).

The integration tests cover moto's answers; these are the error codes moto cannot produce (a disabled
or pending-deletion key, throttling after retries) in the exact shape the real service sends.
"""

from __future__ import annotations

import pytest

from chainmail.errors import KeyMaterialError, SigningError
from chainmail.signing._awskms import AWSKMSSigner

boto3 = pytest.importorskip("boto3", reason="install chainmail[aws] or chainmail[test]")
stub = pytest.importorskip("botocore.stub")

KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
URI = f"awskms:///{KEY}"


def _client() -> object:
    return boto3.client("kms", region_name="us-east-1", aws_access_key_id="AKIATEST", aws_secret_access_key="x")


def _public_key_response() -> dict[str, object]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"KeyId": KEY, "PublicKey": der, "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY",
            "SigningAlgorithms": ["ECDSA_SHA_256"]}


@pytest.mark.parametrize(("code", "error"), [
    ("AccessDeniedException", SigningError),
    ("DisabledException", SigningError),
    ("KMSInvalidStateException", SigningError),
    ("KMSInternalException", SigningError),
    ("NotFoundException", KeyMaterialError),
    ("InvalidKeyUsageException", KeyMaterialError),
])
def test_sign_errors(code: str, error: type[Exception]) -> None:
    client = _client()
    with stub.Stubber(client) as stubber:
        stubber.add_response("get_public_key", _public_key_response(), {"KeyId": KEY})
        stubber.add_client_error("sign", service_error_code=code, service_message=f"{code} for {KEY}",
                                 http_status_code=400)
        signer = AWSKMSSigner(URI, client, KEY)
        with pytest.raises(error) as info:
            signer.sign(b"payload")
    assert str(info.value) == f"signing with {URI}: AWS KMS said {code}: {code} for {KEY}"


def test_sign_request_is_a_digest_with_the_keys_algorithm() -> None:
    import hashlib

    client = _client()
    with stub.Stubber(client) as stubber:
        stubber.add_response("get_public_key", _public_key_response(), {"KeyId": KEY})
        stubber.add_client_error("sign", service_error_code="KMSInternalException", expected_params={
            "KeyId": KEY, "Message": hashlib.sha256(b"payload").digest(), "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256"})
        signer = AWSKMSSigner(URI, client, KEY)
        with pytest.raises(SigningError):
            signer.sign(b"payload")
        stubber.assert_no_pending_responses()


def test_a_key_without_the_algorithm_is_refused() -> None:
    client = _client()
    response = {**_public_key_response(), "KeySpec": "RSA_2048", "SigningAlgorithms": ["RSASSA_PSS_SHA_256"]}
    with stub.Stubber(client) as stubber:
        stubber.add_response("get_public_key", response, {"KeyId": KEY})
        with pytest.raises(KeyMaterialError, match="does not offer RSASSA_PKCS1_V1_5_SHA_256"):
            AWSKMSSigner(URI, client, KEY)
