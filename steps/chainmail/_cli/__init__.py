"""The ``chainmail`` command line (also installed as ``tkn-chainmail`` for ``tkn chainmail``).

Only this package prints or exits. Command modules import their implementation inside
the command body, so ``chainmail --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from chainmail._cli import catalog, demo, keys, report, steps, sweep, verify

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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map chainmail errors to one stderr line and their exit code."""
    from chainmail.errors import EXIT_BUG, Error

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
