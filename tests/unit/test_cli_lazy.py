"""The CLI builds only the command it runs; ``chainmail --help`` lists commands without importing them."""

from __future__ import annotations

import subprocess
import sys

import typer.main
from typer.testing import CliRunner

from chainmail import _cli

runner = CliRunner()


def test_root_help_matches_the_full_cli() -> None:
    lean = runner.invoke(_cli.app_for(["--help"]), ["--help"], terminal_width=100)
    full = runner.invoke(_cli.build_app(), ["--help"], terminal_width=100)
    assert lean.exit_code == full.exit_code == 0
    assert lean.stdout == full.stdout


def test_the_table_names_every_command_with_its_own_help_line() -> None:
    group = typer.main.get_command(_cli.build_app())
    assert list(group.list_commands(None)) == list(_cli.COMMANDS)  # type: ignore[attr-defined]
    for name, (_module, _how, line) in _cli.COMMANDS.items():
        command = group.commands[name]  # type: ignore[attr-defined]
        assert (command.help or "").split("\n\n")[0].strip() == line, name


def test_a_command_is_built_alone() -> None:
    group = typer.main.get_command(_cli.app_for(["sweep", "-n", "x"]))
    assert sorted(group.list_commands(None)) == ["finally", "sweep"]  # type: ignore[attr-defined]
    for argv in (["--help"], [], ["--help", "sweep"]):
        group = typer.main.get_command(_cli.app_for(argv))
        assert list(group.list_commands(None)) == list(_cli.COMMANDS), argv  # type: ignore[attr-defined]
    # an unknown name gets the full CLI, so the usage error can list what exists
    group = typer.main.get_command(_cli.app_for(["no-such-command"]))
    assert len(group.list_commands(None)) == len(_cli.COMMANDS)  # type: ignore[attr-defined]


def test_help_and_a_command_import_no_other_command_module() -> None:
    code = ("import sys; from chainmail._cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('MODULES=' + ','.join(sorted(m for m in sys.modules if m.startswith('chainmail._cli.')\n"
            "                                  and m != 'chainmail._cli._options')), file=sys.stderr)")
    for argv, expected in ((["--help"], ""), (["sweep", "--help"], "chainmail._cli.sweep"),
                           (["keys", "--help"], "chainmail._cli.keys")):
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
        assert f"MODULES={expected}\n" in out.stderr, (argv, out.stderr)
