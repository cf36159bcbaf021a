"""chains-config parsing: Chains' keys, defaults and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainmail.config import KEYS, Config
from chainmail.errors import ConfigError


def test_defaults_match_chains() -> None:
    cfg = Config()
    assert cfg.format("taskrun") == "in-toto"
    assert cfg.format("pipelinerun") == "in-toto"
    assert cfg.storage("taskrun") == ("tekton",)
    assert cfg.storage("oci") == ("oci",)
    assert cfg.signer("oci") == "x509"
    assert cfg.get("builder.id") == "https://tekton.dev/chains/v2"
    assert cfg.get("storage.oci.encoding-format") == "dsse"
    assert cfg.transparency() == "off"
    assert not cfg.bool("artifacts.pipelinerun.enable-deep-inspection")


def test_storage_is_a_trimmed_set() -> None:
    cfg = Config.from_mapping({"artifacts.taskrun.storage": " tekton , oci,tekton"})
    assert cfg.storage("taskrun") == ("tekton", "oci")


def test_empty_storage_disables_the_kind() -> None:
    cfg = Config.from_mapping({"artifacts.taskrun.storage": ""})
    assert cfg.storage("taskrun") == ()
    assert not cfg.enabled("taskrun")


def test_signer_none_disables_the_kind() -> None:
    assert not Config.from_mapping({"artifacts.oci.signer": "none"}).enabled("oci")


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("artifacts.taskrun.format", "tekton", "expected one of in-toto, slsa/v1"),
        ("artifacts.taskrun.storage", "tekton,s3", "invalid value 's3'"),
        ("artifacts.pipelinerun.storage", "kafka", "invalid value 'kafka'"),
        ("artifacts.oci.signer", "pgp", "expected one of x509, kms, none"),
        ("builddefinition.buildtype", "https://example.com/x", "expected one of"),
        ("artifacts.pipelinerun.enable-deep-inspection", "yes please", "expected true or false"),
        ("artifacts.taskrun.formt", "slsa/v1", "unknown config key 'artifacts.taskrun.formt'"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({key: value})
    assert needle in str(info.value)
    assert key.split(".")[0] in str(info.value)


def test_unknown_key_hint_lists_neighbours() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({"artifacts.taskrun.formt": "x"})
    assert info.value.hint is not None and "artifacts.taskrun.format" in info.value.hint


def test_underscore_keys_are_ignored() -> None:
    cfg = Config.from_mapping({"_example": "anything at all"})
    assert cfg.values == {}


def test_configmap_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: chains-config}\n"
        "data:\n  artifacts.taskrun.format: slsa/v1\n  transparency.enabled: 'true'\n"
    )
    cfg = Config.load(path, ["artifacts.taskrun.format=slsa/v2alpha4", "builder.id=https://ci.example/b"])
    assert cfg.format("taskrun") == "slsa/v2alpha4"
    assert cfg.transparency() == "on"
    assert cfg.get("builder.id") == "https://ci.example/b"


def test_flat_json_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"artifacts.oci.storage": "tekton", "storage.oci.repository.insecure": true}')
    cfg = Config.load(path)
    assert cfg.storage("oci") == ("tekton",)
    assert cfg.bool("storage.oci.repository.insecure")


def test_malformed_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    assert "\n" not in str(info.value)


def test_set_without_equals() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        Config.load(None, ["artifacts.taskrun.format"])


def test_manual_transparency() -> None:
    assert Config.from_mapping({"transparency.enabled": "manual"}).transparency() == "manual"


def test_every_enum_default_is_allowed() -> None:
    for key, spec in KEYS.items():
        if spec.kind == "enum" and spec.allowed:
            assert spec.default in spec.allowed, key
