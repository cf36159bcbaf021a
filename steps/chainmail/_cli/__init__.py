"""The ``chainmail`` command line (also installed as ``tkn-chainmail`` for ``tkn chainmail``).

Only this package prints or exits. Command modules import their implementation inside
the command body, so ``chainmail --help`` stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from chainmail._cli import catalog, demo, keys, nodepolicy, report, steps, sweep, tlog, verify, watcher
from chainmail._cli import config as config_cli

app = typer.Typer(
    name="chainmail",
    help="Sign Tekton runs and their images the way Tekton Chains does, without a controller.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
steps.register(app)
app.add_typer(verify.app, name="verify")
app.add_typer(keys.app, name="keys")
sweep.register(app)
app.add_typer(catalog.app, name="catalog")
report.register(app)
demo.register(app)
app.add_typer(config_cli.app, name="config")
app.add_typer(nodepolicy.app, name="policy")
app.add_typer(tlog.app, name="tlog")
app.add_typer(watcher.app, name="watcher")


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


_map_errors(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map chainmail errors to one stderr line and their exit code."""
    from chainmail.errors import EXIT_BUG, Error
    from chainmail.homedir import ensure_home

    ensure_home()  # arbitrary UIDs (OpenShift restricted-v2): HOME may be unset or read-only
    try:
        app(args=argv, prog_name="chainmail", standalone_mode=True)
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
