"""The CLI shell: help, lean imports, one-line errors with distinct exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from chainmail import errors
from chainmail._cli import app
from clirun import cli as _main

runner = CliRunner()


def test_help_lists_the_steps() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("snapshot", "format", "sign", "store", "run", "verify", "keys"):
        assert cmd in result.stdout


def test_cli_import_stays_lean() -> None:
    code = ("import sys, chainmail._cli; heavy = [m for m in ('requests', 'cryptography', 'nacl', 'yaml', "
            "'sigstore', 'oras', 'celpy') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_exit_codes_are_distinct() -> None:
    public = [cls for cls in errors.all_errors() if cls.__module__ == "chainmail.errors" and cls is not errors.Error]
    codes = [cls.exit_code for cls in public]
    assert len(codes) == len(set(codes))
    assert errors.EXIT_BUG not in codes and 2 not in codes  # 2 is the usage-error code


def test_error_is_one_line_with_its_code(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = _main(["format", "--workspace", str(tmp_path)], capsys)
    assert code == errors.WorkspaceError.exit_code
    assert err.startswith("Error: ") and "snapshot.json is missing" in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_bad_config_value(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _main(["format", "-w", str(tmp_path), "--set", "artifacts.taskrun.format=tekton-v9"], capsys)
    assert code == errors.ConfigError.exit_code
    assert "artifacts.taskrun.format" in err


def test_usage_error_exits_2(capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, _ = _main(["run", "--no-such-flag"], capsys)
    assert code == 2


def test_every_command_runs_as_its_own_subcommand_from_the_entry_point() -> None:
    """`chainmail NAME` builds only NAME; a lone command must still be `chainmail NAME`, not the root
    (once, `chainmail demo` — the README's first command — failed with "unexpected extra argument (demo)")."""
    from chainmail._cli import COMMANDS

    code = ("import sys; from chainmail._cli import main; main(sys.argv[1:])")
    for name in COMMANDS:
        out = subprocess.run([sys.executable, "-c", code, name, "--help"], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0, (name, out.stderr)
        assert out.stdout.startswith(f"Usage: chainmail {name} "), (name, out.stdout[:200])
