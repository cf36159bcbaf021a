"""`chainmail report` commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add report to the root app."""
