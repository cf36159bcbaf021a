"""The adversarial suite: attacks on chainmail's trust boundaries, end to end through the CLI.

Every case runs the real ``chainmail`` command in a subprocess (so a hang is a hang and a
traceback is a traceback) and checks, with :func:`assert_rejected`, what a user relies on: the
attack is refused with its documented exit code, on one line that names the problem, within its
time bound, with no traceback and no secret in any output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Strings that must never appear in any output: the shared test key's password, and
#: what tests plant as registry or API credentials.
SECRETS = ("s3cret", "hunter2-registry-password", "attacker-token-value")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def chainmail(args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
              timeout: float = 60.0, stdin: str | None = None) -> Outcome:
    """``chainmail ARGS`` in a subprocess; fails the test (instead of hanging) after ``timeout`` s."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINMAIL_")}
    full_env.update({"PYTHONPATH": str(REPO / "steps"), "NO_COLOR": "1"})
    full_env.update(env or {})
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "chainmail", *args], cwd=cwd, env=full_env,
                              capture_output=True, text=True, timeout=timeout, input=stdin)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chainmail {' '.join(args)} did not finish within {timeout} s")
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def assert_rejected(out: Outcome, code: int, *, mentions: str = "", within: float | None = None,
                    secrets: Sequence[str] = ()) -> None:
    """Refused with exit ``code``, a one-line ``Error:`` naming the problem, no traceback, no secret."""
    text = out.stdout + out.stderr
    assert out.code == code, f"exit {out.code}, expected {code}: {text[-2000:]}"
    assert "Traceback" not in text, text[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one Error: line on stderr, got {out.stderr!r}"
    if mentions:
        assert mentions.lower() in errors[0].lower(), f"{mentions!r} not in {errors[0]!r}"
    if within is not None:
        assert out.seconds <= within, f"took {out.seconds:.1f} s, bound {within} s"
    for secret in (*SECRETS, *secrets):
        assert secret not in text, f"secret {secret!r} leaked into output"


def files_under(root: Path) -> set[Path]:
    """Every file below ``root`` (to show an attack wrote nothing, or nothing outside a directory)."""
    return {p for p in root.rglob("*") if p.is_file()}
