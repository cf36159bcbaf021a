"""Run the real ``chainmail`` entry point in-process and capture what a user would see."""

from __future__ import annotations

import shlex
from pathlib import Path

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


def doc_line(line: str, capsys: pytest.CaptureFixture[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """A documentation's ``chainmail …`` line through :func:`cli`; a ``> FILE`` redirection writes stdout there
    (relative to ``cwd``, else the current directory) when the command succeeds."""
    words = shlex.split(line.replace("\\\n", " "))
    target = None
    if ">" in words:
        target = words[words.index(">") + 1]
        words = words[: words.index(">")]
    code, out, err = cli(words[1:], capsys)
    if target is not None and code == 0:
        ((cwd or Path.cwd()) / target).write_text(out)
    return code, out, err
