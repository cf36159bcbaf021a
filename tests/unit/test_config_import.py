"""`chainmail config import`: TektonConfig.spec.chain / TektonChain.spec → chains-config."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from chainmail.config import KEYS, Config
from chainmail.config_import import CHAIN_PROPERTIES, OPENSHIFT, OPERATOR_DEFAULTS, import_tektonconfig
from chainmail.errors import ConfigError, InputError
from clirun import cli

TEKTONCONFIG = {
    "apiVersion": "operator.tekton.dev/v1alpha1",
    "kind": "TektonConfig",
    "metadata": {"name": "config"},
    "spec": {
        "targetNamespace": "openshift-pipelines",
        "profile": "all",
        "pipeline": {"enable-api-fields": "beta"},
        "chain": {
            "disabled": False,
            "generateSigningSecret": True,
            "artifacts.taskrun.format": "slsa/v1",
            "artifacts.taskrun.storage": "tekton,oci",
            "artifacts.pipelinerun.enable-deep-inspection": True,
            "storage.oci.repository.insecure": False,
            "transparency.enabled": "false",
            "builder.id": "https://ci.example/builder",
            "performance": {"disable-ha": False, "threads-per-controller": 4},
            "controllerEnvs": [{"name": "MONGO_SERVER_URL", "value": "mongodb://db"}],
            "options": {"configMaps": {"chains-config": {"data": {"builder.id": "https://override.example/b"}}},
                        "deployments": {"tekton-chains-controller": {"spec": {"replicas": 2}}}},
        },
    },
}
TEKTONCHAIN = {
    "apiVersion": "operator.tekton.dev/v1alpha1",
    "kind": "TektonChain",
    "metadata": {"name": "chain"},
    "spec": {
        "targetNamespace": "tekton-pipelines",
        "disabled": True,
        "config": {"nodeSelector": {"role": "infra"}},
        "artifacts.oci.storage": "",
        "artifacts.taskrun.storage": "oci",
    },
}


def _write(tmp_path: Path, doc: object, name: str = "tc.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_operator_properties_are_chains_config_keys() -> None:
    """Everything the operator copies into chains-config is a key chainmail knows."""
    assert set(CHAIN_PROPERTIES) <= set(KEYS)
    assert set(OPERATOR_DEFAULTS) <= set(CHAIN_PROPERTIES)


def test_tektonconfig_chain_becomes_chains_config() -> None:
    result = import_tektonconfig(TEKTONCONFIG)
    assert result.namespace == "openshift-pipelines" and result.name == "chains-config"
    assert result.data == {
        "artifacts.taskrun.format": "slsa/v1",
        "artifacts.taskrun.storage": "tekton,oci",
        "artifacts.pipelinerun.enable-deep-inspection": "true",
        "storage.oci.repository.insecure": "false",
        "transparency.enabled": "false",
        # options.configMaps.chains-config.data is applied last, as the operator does
        "builder.id": "https://override.example/b",
        # the operator's defaults, which differ from Chains' (storage tekton) for storage
        "artifacts.pipelinerun.format": "in-toto",
        "artifacts.pipelinerun.storage": "oci",
        "artifacts.oci.format": "simplesigning",
        "artifacts.oci.storage": "oci",
    }
    assert sorted(result.defaulted) == sorted(k for k in OPERATOR_DEFAULTS if k not in TEKTONCONFIG["spec"]["chain"])
    assert set(result.operator_only) == {"disabled", "generateSigningSecret", "performance", "controllerEnvs",
                                         "options"}
    assert "k8s://openshift-pipelines/signing-secrets" in result.operator_only["generateSigningSecret"]
    Config.from_mapping(result.data)


def test_tektonchain_spec_holds_the_keys() -> None:
    result = import_tektonconfig(TEKTONCHAIN, operator_defaults=False)
    assert result.namespace == "tekton-pipelines"
    assert result.data == {"artifacts.oci.storage": "", "artifacts.taskrun.storage": "oci"}
    assert result.operator_only["disabled"].startswith("true:")
    assert {"config", "targetNamespace", "disabled"} == set(result.operator_only)
    assert result.configmap()["metadata"] == {"name": "chains-config", "namespace": "tekton-pipelines",
                                              "annotations": {"chainmail.dev/imported-from": "TektonChain/chain"}}


def test_unknown_chain_field_is_an_error_naming_it() -> None:
    doc = {**TEKTONCONFIG, "spec": {"chain": {"artifacts.taskrun.fromat": "slsa/v1"}}}
    with pytest.raises(ConfigError, match=r"spec\.chain\.artifacts\.taskrun\.fromat"):
        import_tektonconfig(doc)
    tektonchain_only = {**TEKTONCONFIG, "spec": {"chain": {"targetNamespace": "x"}}}
    with pytest.raises(ConfigError, match="spec.chain.targetNamespace"):
        import_tektonconfig(tektonchain_only)


def test_bad_values_and_wrong_resources() -> None:
    with pytest.raises(ConfigError, match="artifacts.taskrun.format"):
        import_tektonconfig({**TEKTONCONFIG, "spec": {"chain": {"artifacts.taskrun.format": "tekton"}}})
    with pytest.raises(ConfigError, match="expected a TektonConfig or TektonChain"):
        import_tektonconfig({"apiVersion": "v1", "kind": "ConfigMap"})
    with pytest.raises(ConfigError, match="apiVersion"):
        import_tektonconfig({**TEKTONCONFIG, "apiVersion": "example.com/v1"})
    with pytest.raises(ConfigError, match="found 2"):
        import_tektonconfig([TEKTONCONFIG, TEKTONCHAIN])
    with pytest.raises(ConfigError, match="expected a string or boolean"):
        import_tektonconfig({**TEKTONCONFIG, "spec": {"chain": {"builder.id": ["a"]}}})


def test_cli_writes_a_configmap_and_reports_operator_fields(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["config", "import", "--tektonconfig", _write(tmp_path, TEKTONCONFIG)], capsys)
    assert code == 0
    cm = yaml.safe_load(out)
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["namespace"] == OPENSHIFT.namespace
    assert cm["metadata"]["name"] == OPENSHIFT.configmap
    assert cm["data"]["artifacts.taskrun.storage"] == "tekton,oci"
    assert "not copied: generateSigningSecret" in err and "not copied: performance" in err
    assert "operator defaults filled in" in err and "Traceback" not in err


def test_cli_flat_output_round_trips_through_config_check(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "chains-config.yaml"
    code, _, err = cli(["config", "import", "--tektonconfig", _write(tmp_path, TEKTONCONFIG), "--flat",
                        "--out", str(flat)], capsys)
    assert code == 0 and str(flat) in err
    assert stat.S_IMODE(os.stat(flat).st_mode) == 0o600
    assert Config.load(flat).get("builder.id") == "https://override.example/b"
    code, out, _ = cli(["config", "check", "--config", str(flat)], capsys)
    assert code == 0 and "chainmail can use this config" in out


def test_cli_list_from_oc_get(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [TEKTONCONFIG]}
    code, out, _ = cli(["config", "import", "--tektonconfig", _write(tmp_path, listing), "--flat",
                        "--no-operator-defaults"], capsys)
    assert code == 0
    data = yaml.safe_load(out)
    assert "artifacts.oci.storage" not in data and data["artifacts.taskrun.format"] == "slsa/v1"


def test_cli_secrets_stay_off_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {**TEKTONCONFIG, "spec": {"chain": {"signers.kms.auth.token": "vault-t0ken"}}}
    path = _write(tmp_path, doc)
    code, out, err = cli(["config", "import", "--tektonconfig", path], capsys)
    assert code == 0 and "vault-t0ken" not in out + err and "REDACTED" in out and "--out" in err
    target = tmp_path / "cm.yaml"
    code, out, err = cli(["config", "import", "--tektonconfig", path, "--out", str(target)], capsys)
    assert code == 0 and "vault-t0ken" not in out + err
    assert yaml.safe_load(target.read_text())["data"]["signers.kms.auth.token"] == "vault-t0ken"


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {**TEKTONCONFIG, "spec": {"chain": {"artifacts.taskrun.fromat": "x"}}}
    code, out, err = cli(["config", "import", "--tektonconfig", _write(tmp_path, bad)], capsys)
    assert code == ConfigError.exit_code and out == ""
    assert err.startswith("Error: ") and "spec.chain.artifacts.taskrun.fromat" in err and "Traceback" not in err
    code, _, err = cli(["config", "import", "--tektonconfig", str(tmp_path / "nope.yaml")], capsys)
    assert code == InputError.exit_code and len(err.strip().splitlines()) == 1
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    code, _, err = cli(["config", "import", "--tektonconfig", str(tmp_path / "broken.yaml")], capsys)
    assert code == ConfigError.exit_code and len(err.strip().splitlines()) == 1
    code, _, _ = cli(["config", "import"], capsys)
    assert code == 2
