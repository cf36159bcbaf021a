"""README.md's exit-code table names every code an error type can end the CLI with, and nothing else."""

from __future__ import annotations

import inspect
import re

from chainmail import errors
from tooling import REPO


def _documented() -> set[int]:
    text = (REPO / "README.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    codes: set[int] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        codes.update(int(n) for n in re.findall(r"\d+", first))
    return codes


def _raised() -> set[int]:
    return {cls.exit_code for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.Error)}


def test_every_error_type_has_a_row() -> None:
    assert _raised() - _documented() == set()


def test_every_row_is_a_code_something_exits_with() -> None:
    beyond_errors = {0, 2, 70}  # success, a usage error (Typer), a bug
    assert _documented() - _raised() - beyond_errors == set()
