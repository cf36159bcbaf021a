"""`chainmail keys generate` and `chainmail keys public-key` through Typer's CliRunner."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainmail._cli import app, main
from chainmail._internal import cosign_key
from chainmail.context import Context
from chainmail.errors import InputError
from chainmail.signing import load_signer, verify_signature
from chainmail.signing.keys import write_keypair
from conftest import FakeKube

PASSWORD = "Corr3ct-H0rse"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _all_text(directory: Path, *skip: str) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in directory.rglob("*") if p.is_file() and p.name not in skip)


def test_generate_with_password_file(runner: CliRunner, tmp_path: Path) -> None:
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text(PASSWORD + "\n")
    out = tmp_path / "keys"
    result = runner.invoke(app, ["keys", "generate", str(out), "--password-file", str(pw_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"Private key written to {out}/cosign.key\n"
                             f"Public key written to {out}/cosign.pub\n")
    assert result.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == ["cosign.key", "cosign.pub"]
    assert stat.S_IMODE((out / "cosign.key").stat().st_mode) == 0o600
    assert cosign_key.pem_label((out / "cosign.key").read_bytes()) == cosign_key.SIGSTORE_LABEL
    # The trailing newline of the file is not part of the password.
    key = cosign_key.decrypt_key((out / "cosign.key").read_bytes(), PASSWORD.encode())
    assert key.curve.name == "secp256r1"
    assert PASSWORD not in result.stdout + result.stderr
    assert PASSWORD not in _all_text(out)


def test_generate_key_loads_and_signs(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    result = runner.invoke(app, ["keys", "generate", str(tmp_path), "--write-password"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"Password written to {tmp_path}/cosign.password"
    assert (tmp_path / "cosign.password").read_text() == PASSWORD
    assert stat.S_IMODE((tmp_path / "cosign.password").stat().st_mode) == 0o600
    assert PASSWORD not in result.stdout + result.stderr
    monkeypatch.delenv("COSIGN_PASSWORD")
    signer = load_signer(str(tmp_path), Context())
    assert signer.public_key_pem == (tmp_path / "cosign.pub").read_text()
    verify_signature((tmp_path / "cosign.pub").read_text(), signer.sign(b"x"), b"x")


def test_generate_without_password_warns(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["keys", "generate"])
    assert result.exit_code == 0
    assert result.stdout == "Private key written to cosign.key\nPublic key written to cosign.pub\n"
    assert result.stderr.startswith("warning: no --password-file and COSIGN_PASSWORD is unset")
    load_signer(str(tmp_path), Context())


def test_generate_refuses_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "generate", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "cosign.key").read_bytes()
    result = runner.invoke(app, ["keys", "generate", str(tmp_path)])
    assert result.exit_code == InputError.exit_code
    assert "refusing to overwrite" in result.stderr
    assert (tmp_path / "cosign.key").read_bytes() == before
    forced = runner.invoke(app, ["keys", "generate", str(tmp_path), "--force"])
    assert forced.exit_code == 0
    assert (tmp_path / "cosign.key").read_bytes() != before


def test_generate_overwrite_exit_code_through_main(tmp_path: Path, capsys) -> None:
    (tmp_path / "cosign.pub").write_text("x")
    with pytest.raises(SystemExit) as info:
        main(["keys", "generate", str(tmp_path)])
    assert info.value.code == InputError.exit_code
    err = capsys.readouterr().err
    assert err.splitlines()[-2].startswith("Error: refusing to overwrite")
    assert err.splitlines()[-1] == "Hint: pass --force to replace them"
    assert not (tmp_path / "cosign.key").exists()


def test_generate_password_from_stdin(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "generate", str(tmp_path), "--password-file", "-"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.stdout + result.stderr
    cosign_key.decrypt((tmp_path / "cosign.key").read_bytes(), PASSWORD.encode())


def test_generate_missing_password_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "generate", str(tmp_path), "--password-file", str(tmp_path / "no")])
    assert result.exit_code == InputError.exit_code
    assert not (tmp_path / "cosign.key").exists()


def test_generate_to_secret(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    fake = FakeKube()
    monkeypatch.setattr(Context, "kube", property(lambda self: fake))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    result = runner.invoke(app, ["keys", "generate", "k8s://tekton-chains/signing-secrets"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Private key, public key and password written to secret "
                             "k8s://tekton-chains/signing-secrets\nPublic key written to cosign.pub\n")
    assert PASSWORD not in result.stdout + result.stderr
    [(ns, name, data, immutable)] = fake.applied
    assert (ns, name, immutable) == ("tekton-chains", "signing-secrets", True)
    assert sorted(data) == ["cosign.key", "cosign.password", "cosign.pub"]
    assert data["cosign.password"] == PASSWORD.encode()
    assert (tmp_path / "cosign.pub").read_bytes() == data["cosign.pub"]
    ctx = Context()
    monkeypatch.delenv("COSIGN_PASSWORD")
    assert load_signer("k8s://tekton-chains/signing-secrets", ctx).public_key_pem == data["cosign.pub"].decode()
    (tmp_path / "cosign.pub").unlink()
    again = runner.invoke(app, ["keys", "generate", "k8s://tekton-chains/signing-secrets"])
    assert again.exit_code == InputError.exit_code and "already exists" in again.stderr


def test_write_keypair_to_secret_force(ctx: Context, fake_kube: FakeKube) -> None:
    fake_kube.secrets[("ns", "s")] = {"cosign.key": b"old"}
    with pytest.raises(InputError, match="already exists"):
        write_keypair("k8s://ns/s", b"", ctx)
    assert write_keypair("k8s://ns/s", b"", ctx, force=True) == ["k8s://ns/s"]
    assert fake_kube.secrets[("ns", "s")]["cosign.key"] != b"old"


def test_write_keypair_rejects_other_schemes(ctx: Context) -> None:
    with pytest.raises(InputError, match="use a directory or k8s://NS/NAME"):
        write_keypair("gcpkms://x", b"", ctx)


def test_public_key_command(runner: CliRunner, keys_dir: Path, chains_run: Path) -> None:
    pub = (keys_dir / "legacy-cosign-label" / "cosign.pub").read_text()
    for source in (keys_dir / "legacy-cosign-label", keys_dir / "legacy-cosign-label" / "cosign.pub"):
        result = runner.invoke(app, ["keys", "public-key", "--key", str(source)])
        assert result.exit_code == 0, result.output
        assert result.stdout == pub
        assert result.stderr == ""


def test_public_key_default_dir(runner: CliRunner, keys_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHAINMAIL_SIGNING_SECRETS", str(keys_dir / "ecdsa-p256-password"))
    result = runner.invoke(app, ["keys", "public-key"])
    assert result.stdout == (keys_dir / "ecdsa-p256-password" / "cosign.pub").read_text()


def test_cli_import_stays_light() -> None:
    code = ("import sys, chainmail._cli; "
            "print(sorted(m for m in ('cryptography', 'nacl', 'chainmail.signing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.stdout.strip() == "[]"


def test_generate_refuses_to_leave_a_stale_password_file(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "cosign.password").write_text("old")
    result = runner.invoke(app, ["keys", "generate", str(tmp_path), "--force"])
    assert result.exit_code == InputError.exit_code
    assert "would not match the new key" in result.stderr
    ok = runner.invoke(app, ["keys", "generate", str(tmp_path), "--force", "--write-password"])
    assert ok.exit_code == 0
    assert (tmp_path / "cosign.password").read_text() == ""
