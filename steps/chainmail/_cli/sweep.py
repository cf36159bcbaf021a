"""`chainmail sweep` and `chainmail finally` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add sweep and finally to the root app."""
