"""Named points between stages where a test can kill the process, to prove crash recovery.

Set ``CHAINMAIL_CRASH_AT=<point>`` (e.g. ``after-store``) and the process sends itself
SIGKILL when it reaches that point, as ``kill -9`` would. Unset, this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after-snapshot", "after-format", "after-sign", "after-store")


def reached(point: str) -> None:
    """Die here if the environment asks for it."""
    if os.environ.get("CHAINMAIL_CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
