"""Run the real ``chainmail`` entry point in-process and capture what a user would see."""

from __future__ import annotations

import pytest


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``chainmail ARGS`` through ``main()``: (exit code, stdout, stderr)."""
    from chainmail._cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
