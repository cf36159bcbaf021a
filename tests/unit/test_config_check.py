"""`chainmail config check`: every key of an existing chains-config, and what chainmail does with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainmail import signing, storage
from chainmail.config import KEYS, Config
from chainmail.config_check import check_config
from chainmail.errors import ConfigError, InputError, NotFoundError
from clirun import cli


def _status(data: dict[str, object], key: str) -> str:
    return next(v.status for v in check_config(data).verdicts if v.key == key)


def _one_line_error(err: str) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith(("Hint:", "Warning:"))]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("Error: "), err


def test_chains_defaults_are_usable_as_they_are() -> None:
    """Every key chainmail knows, set to Chains' default, is accepted (none unknown, invalid or refused)."""
    report = check_config({key: spec.default for key, spec in KEYS.items()})
    assert report.ok, [v for v in report.verdicts if v.status in ("unknown", "invalid", "not supported")]
    assert {v.key for v in report.verdicts} == set(KEYS)
    assert _status({"builder.id": "https://x.example/b"}, "builder.id") == "same"


def test_unsupported_backend_comes_from_the_storage_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "UNSUPPORTED", ("grafeas",))
    assert _status({"artifacts.taskrun.storage": "tekton,grafeas"}, "artifacts.taskrun.storage") == "not supported"
    monkeypatch.setattr(storage, "UNSUPPORTED", ())
    assert _status({"artifacts.taskrun.storage": "tekton,grafeas"}, "artifacts.taskrun.storage") == "same"


def test_backend_settings_are_unused_when_the_backend_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "UNSUPPORTED", ("grafeas",))
    verdict = check_config({"storage.grafeas.projectid": "p"}).verdicts[0]
    assert verdict.status == "different" and "unused" in verdict.note and "no storage key selects it" in verdict.note


def test_transparency_follows_the_signing_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(ctx: object) -> None:
        raise ConfigError("no log")

    monkeypatch.setattr(signing, "require_no_transparency", refuse)
    assert _status({"transparency.enabled": "true"}, "transparency.enabled") == "not supported"
    assert _status({"transparency.enabled": "manual"}, "transparency.enabled") == "not supported"
    assert _status({"transparency.enabled": "false"}, "transparency.enabled") == "same"
    monkeypatch.setattr(signing, "require_no_transparency", lambda ctx: None)
    assert _status({"transparency.enabled": "true"}, "transparency.enabled") == "same"


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "True"])
def test_transparency_truthy_spellings_are_refused_not_silently_off(value: str) -> None:
    """Chains reads these as off; chainmail refuses them so a log upload is never silently skipped."""
    verdict = check_config({"transparency.enabled": value}).verdicts[0]
    assert verdict.status == "invalid"
    assert "Chains reads it as off" in verdict.note
    with pytest.raises(ConfigError, match="ambiguous"):
        Config.from_mapping({"transparency.enabled": value})


def test_kms_and_keyless_follow_the_signer_registry() -> None:
    from chainmail.config_check import keyless_supported, kms_supported

    kms = _status({"artifacts.oci.signer": "kms"}, "artifacts.oci.signer")
    assert kms == ("same" if kms_supported() else "not supported")
    fulcio = _status({"signers.x509.fulcio.enabled": "true", "transparency.enabled": "true"},
                     "signers.x509.fulcio.enabled")
    assert fulcio == ("same" if keyless_supported() else "not supported")
    assert _status({"signers.x509.fulcio.enabled": "false"}, "signers.x509.fulcio.enabled") == "same"


def test_keyless_settings_chainmail_refuses() -> None:
    """Keyless without Rekor, cosign's other token providers and a TUF mirror without a trusted root."""
    assert _status({"signers.x509.fulcio.enabled": "true"}, "signers.x509.fulcio.enabled") == "not supported"
    assert _status({"signers.x509.fulcio.provider": "github-actions"}, "signers.x509.fulcio.provider") == \
        "not supported"
    assert _status({"signers.x509.fulcio.provider": "filesystem"}, "signers.x509.fulcio.provider") == "same"
    mirror = {"signers.x509.tuf.mirror.url": "https://tuf.example.com"}
    assert _status(mirror, "signers.x509.tuf.mirror.url") == "not supported"
    assert _status({**mirror, "chainmail.transparency.trusted-root": "/r.json"},
                   "signers.x509.tuf.mirror.url") == "different"


def test_keyless_probe_reads_the_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from chainmail.config_check import keyless_supported

    def refuse(kind: str, ctx: object) -> None:
        raise ConfigError("keyless signing (signers.x509.fulcio.enabled) is not supported by this build yet")

    monkeypatch.setattr(signing, "signer_for", refuse)
    assert keyless_supported() is False
    monkeypatch.setattr(signing, "signer_for", lambda kind, ctx: None)
    assert keyless_supported() is True


def test_chainmail_keys_file_backend_and_unknown_keys() -> None:
    report = check_config({
        "chainmail.sign-successful-only": "true",
        "artifacts.taskrun.storage": "file",
        "artifacts.taskrun.fromat": "slsa/v1",
        "performance": "disable-ha: false\n",
        "_example": "anything",
    })
    by_key = {v.key: v for v in report.verdicts}
    assert by_key["chainmail.sign-successful-only"].status == "different"
    assert "chainmail's own" in by_key["chainmail.sign-successful-only"].note
    assert by_key["artifacts.taskrun.storage"].status == "different"
    assert by_key["artifacts.taskrun.fromat"].status == "unknown"
    assert by_key["performance"].status in ("unknown", "different")
    assert "operator" in by_key["performance"].note or by_key["performance"].status == "different"
    assert by_key["_example"].status == "same"
    assert not report.ok


def test_invalid_values_are_reported_not_raised() -> None:
    verdict = check_config({"artifacts.pipelinerun.enable-deep-inspection": "maybe"}).verdicts[0]
    assert verdict.status == "invalid" and "Chains ignores a bad boolean" in verdict.note
    verdict = check_config({"artifacts.taskrun.format": "tekton"}).verdicts[0]
    assert verdict.status == "invalid" and "Chains rejects it too" in verdict.note


def test_secrets_are_never_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cm.yaml"
    cfg.write_text("kind: ConfigMap\ndata:\n  signers.kms.auth.token: s3cr3t-token\n"
                   "  storage.docdb.url: mongo://admin:hunter2@db.example:27017/x\n")
    for fmt in ("text", "json"):
        _code, out, err = cli(["config", "check", "--config", str(cfg), "--output", fmt], capsys)
        assert "s3cr3t-token" not in out + err and "hunter2" not in out + err
        if fmt == "json":
            assert "mongo://***@db.example:27017/x" in out and "(redacted)" in out


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("artifacts.taskrun.format: slsa/v1\nartifacts.taskrun.storage: tekton\n")
    code, out, err = cli(["config", "check", "--config", str(good)], capsys)
    assert code == 0 and err == "" and "artifacts.taskrun.format" in out and "chainmail can use" in out

    code, out, err = cli(["config", "check", "--config", str(good), "--set", "no.such.key=1", "-o", "json"], capsys)
    assert code == ConfigError.exit_code
    doc = json.loads(out)
    assert doc["ok"] is False and doc["counts"]["unknown"] == 1
    assert {"key": "no.such.key", "value": "1", "status": "unknown"}.items() <= doc["keys"][-1].items()
    _one_line_error(err)
    assert "no.such.key" in err

    code, _, err = cli(["config", "check"], capsys)
    assert code == ConfigError.exit_code
    _one_line_error(err)
    code, _, err = cli(["config", "check", "--set", "builder.id=x", "--output", "yaml"], capsys)
    assert code == InputError.exit_code
    _one_line_error(err)
    code, _, err = cli(["config", "check", "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == ConfigError.exit_code and "missing.yaml" in err


def test_reads_the_configmap_from_the_cluster(kube_api, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              capsys: pytest.CaptureFixture[str]) -> None:
    kube_api.add({"kind": "ConfigMap", "metadata": {"name": "chains-config", "namespace": "openshift-pipelines"},
                  "data": {"artifacts.taskrun.format": "slsa/v1", "artifacts.oci.storage": "oci"}})
    kube_api.use_admin_token()  # the admin checks the config before switching
    kubeconfig = str(kube_api.kubeconfig(tmp_path))
    code, out, _ = cli(["config", "check", "--configmap", "openshift-pipelines/chains-config",
                        "--kubeconfig", kubeconfig, "-o", "json"], capsys)
    assert code == 0
    assert [k["key"] for k in json.loads(out)["keys"]] == ["artifacts.taskrun.format", "artifacts.oci.storage"]

    code, out, _ = cli(["config", "check", "--preset", "openshift", "--kubeconfig", kubeconfig], capsys)
    assert code == 0 and "artifacts.oci.storage" in out

    code, _, err = cli(["config", "check", "--configmap", "tekton-chains/chains-config", "--kubeconfig", kubeconfig],
                       capsys)
    assert code == NotFoundError.exit_code
    _one_line_error(err)
    code, _, err = cli(["config", "check", "--configmap", "chains-config", "--kubeconfig", kubeconfig], capsys)
    assert code == ConfigError.exit_code and "NAMESPACE/NAME" in err
    code, _, err = cli(["config", "check", "--preset", "gke", "--kubeconfig", kubeconfig], capsys)
    assert code == ConfigError.exit_code and "--preset" in err


def test_kmsref_scheme_follows_the_signer_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "SIGNER_FOR_URI_SCHEME", {"k8s": object})
    data = {"artifacts.taskrun.signer": "kms", "signers.kms.kmsref": "gcpkms://projects/p/keys/k"}
    assert _status(data, "signers.kms.kmsref") == "not supported"
    assert _status({"signers.kms.kmsref": "gcpkms://projects/p/keys/k"}, "signers.kms.kmsref") == "different"
    monkeypatch.setattr(signing, "SIGNER_FOR_URI_SCHEME", {"gcpkms": object})
    assert _status(data, "signers.kms.kmsref") == "same"
    assert _status(data, "artifacts.taskrun.signer") == "same"
