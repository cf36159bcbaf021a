"""KMS key references: the forms cosign accepts, and one-line errors (exit 5) for the rest."""

from __future__ import annotations

import pytest

from chainmail.errors import KeyMaterialError
from chainmail.signing._awskms import parse_uri as parse_aws
from chainmail.signing._hashivault import parse_uri as parse_vault

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
ARN = f"arn:aws:kms:us-east-2:111122223333:key/{KEY_ID}"


@pytest.mark.parametrize(("uri", "expected"), [
    (f"awskms:///{KEY_ID}", ("", KEY_ID, "")),
    (f"awskms://localhost:4566/{KEY_ID}", ("localhost:4566", KEY_ID, "")),
    ("awskms:///mrk-1234abcd12ab34cd56ef1234567890ab", ("", "mrk-1234abcd12ab34cd56ef1234567890ab", "")),
    (f"awskms:///{ARN}", ("", ARN, "us-east-2")),
    (f"awskms://kms.example:443/{ARN}", ("kms.example:443", ARN, "us-east-2")),
    ("awskms:///alias/ExampleAlias", ("", "alias/ExampleAlias", "")),
    ("awskms:///arn:aws:kms:eu-west-1:111122223333:alias/chains",
     ("", "arn:aws:kms:eu-west-1:111122223333:alias/chains", "eu-west-1")),
    (f"awskms:///arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/{KEY_ID}",
     ("", f"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/{KEY_ID}", "us-gov-west-1")),
    (f"awskms:///arn:aws-cn:kms:cn-north-1:111122223333:key/{KEY_ID}",
     ("", f"arn:aws-cn:kms:cn-north-1:111122223333:key/{KEY_ID}", "cn-north-1")),
])
def test_aws_references(uri: str, expected: tuple[str, str, str]) -> None:
    assert parse_aws(uri) == expected


@pytest.mark.parametrize("uri", [
    "awskms://",
    "awskms:///",
    "awskms://alias/chains",  # the alias taken as the endpoint: cosign needs awskms:///alias/…
    "awskms:///not-a-key-id",
    "awskms:///1234abcd-12ab-34cd-56ef-1234567890",
    "awskms:///arn:aws:kms:us-east-2:1111:key/" + KEY_ID,
    "awskms:///arn:aws:s3:us-east-2:111122223333:key/" + KEY_ID,
    f"awskms:///{KEY_ID} ",
])
def test_bad_aws_references_are_key_errors(uri: str) -> None:
    with pytest.raises(KeyMaterialError) as info:
        parse_aws(uri)
    assert info.value.exit_code == 5
    assert "is not an AWS KMS key reference" in str(info.value)
    assert "alias/NAME" in (info.value.hint or "")


@pytest.mark.parametrize(("uri", "name"), [
    ("hashivault://chains", "chains"), ("hashivault://e2e", "e2e"), ("hashivault://a", "a"),
    ("hashivault://team.signer-key_1", "team.signer-key_1"),
])
def test_vault_references(uri: str, name: str) -> None:
    assert parse_vault(uri) == name


@pytest.mark.parametrize("uri", ["hashivault://", "hashivault://a/b", "hashivault://-key", "hashivault://key.",
                                 "hashivault://key name", "hashivault:///key"])
def test_bad_vault_references_are_key_errors(uri: str) -> None:
    with pytest.raises(KeyMaterialError, match="is not a Vault transit key reference"):
        parse_vault(uri)


@pytest.mark.parametrize("uri", [
    "awskms:///alias/chains?token=t0ps3cret",
    "awskms://user:t0ps3cret@kms.example/alias/chains",
    "hashivault://chains?token=t0ps3cret",
    "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?access_token=t0ps3cret",
    "azurekms://vault.example/k#t0ps3cret",
])
def test_a_secret_in_a_bad_reference_is_never_shown(uri: str) -> None:
    from chainmail.context import Context
    from chainmail.signing import load_signer

    with pytest.raises(KeyMaterialError) as info:
        load_signer(uri, Context())
    assert "is not a" in str(info.value)
    assert "t0ps3cret" not in info.value.diagnostics()


def test_gcp_and_azure_references() -> None:
    from chainmail.signing._azurekms import parse_uri as parse_azure
    from chainmail.signing._gcpkms import parse_uri as parse_gcp

    name = "projects/p-1/locations/us-east1/keyRings/ring_1/cryptoKeys/chains"
    assert parse_gcp(f"gcpkms://{name}") == (name, "")
    assert parse_gcp(f"gcpkms://{name}/versions/3") == (name, "3")
    assert parse_azure("azurekms://myvault.vault.azure.net/chains") == ("myvault.vault.azure.net", "chains", "")
    assert parse_azure("azurekms://myvault.vault.azure.net/chains/0123abcd") == (
        "myvault.vault.azure.net", "chains", "0123abcd")
