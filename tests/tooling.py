"""Honest skips: a test that needs a missing tool skips locally but fails under ``CI=true``.

A CI run that silently skipped the registry, Chromium or the npm verifiers would report green
without having checked anything; under CI the missing tool is a failure that names it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """``../shared`` (or ``$CHAINMAIL_SHARED``)."""
    return Path(os.environ.get("CHAINMAIL_SHARED", REPO.parent / "shared")).resolve()


def under_ci() -> bool:
    """True when ``$CI`` says so (GitHub Actions, GitLab and most CIs set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str, reason: str) -> NoReturn:
    """Skip the test because ``name`` is missing; under ``CI=true`` fail it instead."""
    message = f"{name} is missing: {reason}"
    if under_ci():
        pytest.fail(f"{message} (CI=true: a missing tool fails the run; `make system-deps` installs it)",
                    pytrace=False)
    pytest.skip(message)
