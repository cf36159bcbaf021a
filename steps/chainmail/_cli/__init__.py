"""The ``chainmail`` command line (also installed as ``tkn-chainmail`` for ``tkn chainmail``).

Only this package prints or exits. :func:`main` builds only the command it is asked for
(:func:`app_for`): ``chainmail sweep …`` imports ``_cli/sweep.py`` and no other command module, and
``chainmail --help`` imports none (it lists :data:`COMMANDS`). Command modules import their
implementation inside the command body, so a command's own ``--help`` stays fast too.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

#: Every command in help order: name → (module under ``chainmail._cli``, how it is added, one-line help).
#: ``register``: the module's ``register(app)`` adds it (with its siblings); ``group``: its ``app`` is added
#: as a sub-command group. The help lines are what ``chainmail --help`` shows without importing any
#: command module (a unit test checks they match the commands' own help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "snapshot": ("steps", "register",
                 "Capture a finished run (and a PipelineRun's child TaskRuns) into snapshot.json."),
    "format": ("steps", "register",
               "Turn snapshot.json into payloads.json (one payload per run attestation and image)."),
    "sign": ("steps", "register",
             "Sign payloads.json into signed.json (DSSE envelopes for in-toto, raw signatures otherwise)."),
    "store": ("steps", "register", "Store signed.json in the configured backends, then mark the run signed."),
    "run": ("steps", "register",
            "Snapshot, format, sign and store one run in a single process (the fast path)."),
    "sweep": ("sweep", "register",
              "Sign every completed, unsigned run (TaskRuns first, then PipelineRuns), each exactly once."),
    "finally": ("sweep", "register",
                "From a finally task: sign the finished child TaskRuns, then a provisional PipelineRun "
                "attestation."),
    "demo": ("demo", "register",
             "Sign and verify the bundled example PipelineRun (no cluster or registry needed)."),
    "verify": ("verify", "group",
               "Verify signatures and provenance stored by Tekton Chains or chainmail (like cosign verify)."),
    "keys": ("keys", "group", "Create cosign key pairs and show public keys."),
    "catalog": ("catalog", "group", "Publish chainmail's Tasks: Tekton bundles."),
    "report": ("report", "register", "Verify provenance and write a report (Markdown, HTML or JSON)."),
    "config": ("config", "group",
               "Check a chains-config against this build; import OpenShift Pipelines' Chains settings."),
    "policy": ("nodepolicy", "group", "Signature policies for cluster nodes (containers-policy.json, OpenShift)."),
    "tlog": ("tlog", "group", "Search and read a transparency log (Rekor) and verify its entries."),
    "watcher": ("watcher", "group", "Per-namespace opt-ins for the chainmail watcher (pipelines/chainmail-watcher)."),
}
_HELP = "Sign Tekton runs and their images the way Tekton Chains does, without a controller."


def _root() -> typer.Typer:
    root = typer.Typer(name="chainmail", help=_HELP, no_args_is_help=True, rich_markup_mode=None,
                       pretty_exceptions_enable=False, add_completion=False)
    # A root callback keeps `chainmail NAME` a sub-command even when NAME is the only command built (Typer
    # otherwise runs a lone command as the root, and `chainmail demo` fails on "demo").
    root.callback()(_no_options)
    return root


def _no_options() -> None:
    """The root takes no options of its own."""


def _add(root: typer.Typer, name: str, done: set[str]) -> None:
    """Import the module behind command ``name`` and add it to ``root`` (once per module)."""
    module_name, how, _ = COMMANDS[name]
    if module_name in done:
        return
    done.add(module_name)
    module = importlib.import_module(f"chainmail._cli.{module_name}")
    if how == "register":
        module.register(root)
    else:
        root.add_typer(module.app, name=name)


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The CLI with the commands ``names`` (default: all), each command module imported only when named."""
    root = _root()
    done: set[str] = set()
    for name in COMMANDS if names is None else names:
        _add(root, name, done)
    _map_errors(root)
    return root


def _help_app() -> typer.Typer:
    """A root whose commands are placeholders carrying the help lines: ``chainmail --help`` imports nothing."""
    root = _root()
    for name, (_module, _how, line) in COMMANDS.items():
        root.command(name, help=line)(_placeholder)
    return root


def _placeholder() -> None:  # pragma: no cover - never invoked: only listed in the root help
    """Listed in ``chainmail --help``; a real invocation builds the real command."""


_full_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """``chainmail._cli.app``: the full CLI, built on first use (tests, ``CliRunner``)."""
    global _full_app
    if name != "app":
        raise AttributeError(name)
    if _full_app is None:
        _full_app = build_app()
    return _full_app


def _command_name(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names, or None (none, or ``--help`` first: the root's own help)."""
    for arg in argv:
        if arg == "--help":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def app_for(argv: list[str]) -> typer.Typer:
    """The smallest CLI that runs ``argv``: its one command, the help placeholders, or everything."""
    name = _command_name(argv)
    if name is None:
        return _help_app()
    if name in COMMANDS:
        return build_app([name])
    return build_app()  # an unknown command: the full CLI names what exists


def _exit_on_error(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so a chainmail error becomes one stderr line and its exit code."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from chainmail.errors import Error

        try:
            return callback(*args, **kwargs)
        except Error as exc:
            typer.echo(f"Error: {exc.diagnostics()}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _map_errors(group: typer.Typer) -> None:
    """Apply :func:`_exit_on_error` to every command, including sub-groups' (CliRunner sees it too)."""
    for info in group.registered_commands:
        if info.callback is not None:
            info.callback = _exit_on_error(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _map_errors(sub.typer_instance)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map chainmail errors to one stderr line and their exit code."""
    from chainmail.errors import EXIT_BUG, Error
    from chainmail.homedir import ensure_home

    ensure_home()  # arbitrary UIDs (OpenShift restricted-v2): HOME may be unset or read-only
    try:
        args = sys.argv[1:] if argv is None else argv
        app_for(args)(args=args, prog_name="chainmail", standalone_mode=True)
    except Error as exc:
        typer.echo(f"Error: {exc.diagnostics()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: one line, traceback only when asked for
        if os.environ.get("CHAINMAIL_DEBUG"):
            raise
        typer.echo(f"Error: internal error ({type(exc).__name__}: {exc}); set CHAINMAIL_DEBUG=1 for a traceback",
                   err=True)
        sys.exit(EXIT_BUG)
