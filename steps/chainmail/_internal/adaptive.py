"""Adaptive concurrency for ``chainmail sweep``: as many runs in flight as the servers keep up with.

:class:`AdaptiveLimit` gates how many runs are signed at once. It starts at ``start`` (4) and
looks at completed runs in windows of ``limit`` runs:

- a window whose mean run latency stays within ``tolerance`` × the best window mean seen so far
  ("latency holds": the servers absorbed the extra work) grows the limit, up to ``maximum``: by half
  of itself until latency first rises or a server pushes back ("slow start", as TCP does it: a
  100-run backlog would be half drained before +1 steps got anywhere), by one after that;
- a window slower than that gives one slot back (never below ``minimum``); the first slow window
  after slow start goes back to the last limit whose window held;
- pushback from a server (an HTTP 429 or 5xx answer anywhere in the process, counted by
  :func:`chainmail._internal.http.pushback_count`) halves the limit at once.

A fixed limit (``chainmail sweep -j N``) is the same gate with ``adaptive=False``. The gate is
thread-safe: the dispatching thread calls :meth:`acquire`, each finished run :meth:`release`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_START = 4
DEFAULT_MAXIMUM = 16
#: A window's mean latency may be this many times the best window's and still count as "holding".
DEFAULT_TOLERANCE = 1.5
#: Changes remembered for the report (the first ones; later ones are only counted).
HISTORY_LIMIT = 64


class LimitError(ValueError):
    """Bounds that cannot work (start outside [minimum, maximum], a tolerance below 1)."""


@dataclass(frozen=True)
class Change:
    """One change of the limit: when (seconds since start), the new limit, and why."""

    at: float
    limit: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "limit": self.limit, "reason": self.reason}


class AdaptiveLimit:
    """A concurrency gate whose limit follows run latency and server pushback (see the module doc)."""

    def __init__(self, start: int = DEFAULT_START, *, minimum: int = 1, maximum: int = DEFAULT_MAXIMUM,
                 adaptive: bool = True, tolerance: float = DEFAULT_TOLERANCE, slow_start: bool = True,
                 pushback: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= minimum <= start <= maximum:
            raise LimitError(f"concurrency: need 1 <= minimum ({minimum}) <= start ({start}) <= maximum ({maximum})")
        if tolerance < 1.0:
            raise LimitError(f"concurrency: tolerance {tolerance} is below 1")
        self.start, self.minimum, self.maximum = start, minimum, maximum
        self.adaptive = adaptive
        self.tolerance = tolerance
        #: Grow by half the limit per window until the first sign of saturation.
        self.slow_start = slow_start
        self._pushback = pushback or (lambda: 0)
        self._clock = clock
        self._began = clock()
        self._cond = threading.Condition()
        self.limit = start
        self.peak = start
        self.in_flight = 0
        self.completed = 0
        self.grown = self.shrunk = self.halved = 0
        self.best: float | None = None
        self.history: list[Change] = []
        self._window: list[float] = []
        #: The last limit whose window held (where a slow start that overshot goes back to).
        self._held = start
        self._seen_pushback = self._pushback()

    @property
    def capacity(self) -> int:
        """The most runs that can ever be in flight (the thread pool's size)."""
        return self.maximum if self.adaptive else self.start

    def acquire(self) -> None:
        """Block until fewer than ``limit`` runs are in flight, then count one more."""
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1

    def release(self, seconds: float | None) -> None:
        """One run finished after ``seconds`` (None: it did no signing work, e.g. it was skipped, so its
        latency says nothing about the servers); adapt the limit and wake the dispatcher."""
        with self._cond:
            self.in_flight -= 1
            self.completed += 1
            if self.adaptive:
                self._adapt(seconds)
            self._cond.notify_all()

    def _adapt(self, seconds: float | None) -> None:
        now = self._pushback()
        if now > self._seen_pushback:
            self._seen_pushback = now
            self._window.clear()
            self.slow_start = False
            if self.limit > self.minimum:
                self.halved += 1
                self._set(max(self.minimum, self.limit // 2), "server pushback (HTTP 429/5xx)")
            return
        if seconds is None:
            return
        self._window.append(seconds)
        if len(self._window) < self.limit:
            return
        mean = sum(self._window) / len(self._window)
        self._window.clear()
        self.best = mean if self.best is None else min(self.best, mean)
        if mean <= self.best * self.tolerance:
            self._held = self.limit
            if self.limit < self.maximum:
                self.grown += 1
                step = max(1, self.limit // 2) if self.slow_start else 1
                self._set(min(self.maximum, self.limit + step), f"latency holds ({mean * 1000:.0f} ms)")
            return
        overshot, self.slow_start = self.slow_start, False
        if self.limit > self.minimum:
            self.shrunk += 1
            back = max(self.minimum, min(self._held, self.limit - 1)) if overshot else self.limit - 1
            self._set(back, f"latency rose ({mean * 1000:.0f} ms, best {self.best * 1000:.0f} ms)")

    def _set(self, limit: int, reason: str) -> None:
        self.limit = limit
        self.peak = max(self.peak, limit)
        if len(self.history) < HISTORY_LIMIT:
            self.history.append(Change(self._clock() - self._began, limit, reason))

    def to_json(self) -> dict[str, Any]:
        """What ``sweep -o json`` reports under ``concurrency``."""
        with self._cond:
            out: dict[str, Any] = {"mode": "adaptive" if self.adaptive else "fixed", "start": self.start,
                                   "final": self.limit, "peak": self.peak}
            if self.adaptive:
                out.update(maximum=self.maximum, grown=self.grown, shrunk=self.shrunk, halved=self.halved,
                           changes=[c.to_json() for c in self.history])
            return out

    def text(self) -> str:
        """One line for the text report."""
        if not self.adaptive:
            return f"concurrency: fixed at {self.start}"
        return (f"concurrency: adaptive, {self.start} -> {self.limit} (peak {self.peak}, max {self.maximum}; "
                f"grown {self.grown}, shrunk {self.shrunk}, halved {self.halved})")
