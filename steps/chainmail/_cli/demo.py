"""`chainmail demo`: the README's first command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the demo command to the root app."""

    @app.command("demo")
    def demo_cmd(
        out: Annotated[Path, typer.Option("--dir", help="Where to write keys and signatures.")] = Path(
            "chainmail-demo"
        ),
    ) -> None:
        """Sign and verify the bundled example PipelineRun (no cluster or registry needed)."""
        from chainmail.demo import run_demo
        from chainmail.errors import VerificationError

        result = run_demo(out, echo=typer.echo)
        if result.verified != result.signed or result.signed == 0:
            raise VerificationError(f"demo verified {result.verified} of {result.signed} signatures")
