"""The adaptive concurrency gate of ``chainmail sweep`` (``chainmail._internal.adaptive``)."""

from __future__ import annotations

import threading

import pytest

from chainmail._internal.adaptive import AdaptiveLimit, LimitError


class Pushback:
    """A stand-in for ``http.pushback_count``: a counter the test bumps."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def finish(gate: AdaptiveLimit, count: int, seconds: float) -> None:
    """``count`` runs start and finish with the same latency."""
    for _ in range(count):
        gate.acquire()
        gate.release(seconds)


def test_grows_by_one_per_window_while_latency_holds_up_to_the_maximum() -> None:
    gate = AdaptiveLimit(4, maximum=6, slow_start=False, clock=lambda: 0.0)
    finish(gate, 3, 0.1)
    assert gate.limit == 4  # a window is `limit` runs
    finish(gate, 1, 0.1)
    assert gate.limit == 5
    finish(gate, 5, 0.12)  # within 1.5 x the best window
    assert gate.limit == 6
    finish(gate, 30, 0.1)
    assert gate.limit == 6 and gate.peak == 6 and gate.grown == 2


def test_gives_a_slot_back_when_latency_rises_but_not_below_the_minimum() -> None:
    gate = AdaptiveLimit(3, minimum=2, maximum=8, slow_start=False, clock=lambda: 0.0)
    finish(gate, 3, 0.1)
    assert gate.limit == 4
    finish(gate, 4, 0.5)  # 5 x the best window: the servers are saturated
    assert gate.limit == 3 and gate.shrunk == 1
    finish(gate, 3, 0.5)
    finish(gate, 2, 0.5)
    finish(gate, 2, 0.5)
    assert gate.limit == 2
    # latency back to the best: growth resumes
    finish(gate, 2, 0.1)
    assert gate.limit == 3


def test_halves_at_once_on_server_pushback() -> None:
    pushback = Pushback()
    gate = AdaptiveLimit(4, maximum=16, pushback=pushback, slow_start=False, clock=lambda: 0.0)
    for _ in range(4):
        finish(gate, gate.limit, 0.1)
    assert gate.limit == 8
    pushback.n += 3  # three 429/503 answers during the next run
    finish(gate, 1, 0.1)
    assert gate.limit == 4 and gate.halved == 1
    finish(gate, 1, 0.1)  # no new pushback: no second halving
    assert gate.limit == 4
    pushback.n += 1
    finish(gate, 1, 0.1)
    pushback.n += 1
    finish(gate, 1, 0.1)
    pushback.n += 1
    finish(gate, 1, 0.1)
    assert gate.limit == 1 and gate.halved == 3  # 4 -> 2 -> 1, then the floor holds


def test_slow_start_grows_by_half_then_goes_back_to_the_last_limit_that_held() -> None:
    gate = AdaptiveLimit(4, maximum=16, clock=lambda: 0.0)
    limits = []
    for _ in range(3):
        finish(gate, gate.limit, 0.1)
        limits.append(gate.limit)
    assert limits == [6, 9, 13]
    finish(gate, 13, 0.4)  # 13 in flight was too many
    assert gate.limit == 9 and not gate.slow_start
    finish(gate, 9, 0.1)  # from now on, one at a time
    assert gate.limit == 10
    finish(gate, 10, 0.1)
    assert gate.limit == 11


def test_slow_start_stops_at_the_maximum_and_on_pushback() -> None:
    gate = AdaptiveLimit(4, maximum=7, clock=lambda: 0.0)
    finish(gate, 4, 0.1)
    finish(gate, 6, 0.1)
    assert gate.limit == 7
    pushback = Pushback()
    gate = AdaptiveLimit(4, maximum=16, pushback=pushback, clock=lambda: 0.0)
    pushback.n = 1
    finish(gate, 1, 0.1)
    assert gate.limit == 2 and not gate.slow_start
    finish(gate, 2, 0.1)
    assert gate.limit == 3


def test_fixed_mode_never_changes_the_limit() -> None:
    pushback = Pushback()
    gate = AdaptiveLimit(3, maximum=3, adaptive=False, pushback=pushback)
    finish(gate, 20, 0.1)
    pushback.n += 5
    finish(gate, 20, 5.0)
    assert gate.limit == 3 and gate.capacity == 3
    assert gate.to_json() == {"mode": "fixed", "start": 3, "final": 3, "peak": 3}
    assert gate.text() == "concurrency: fixed at 3"


def test_report_lists_the_changes_with_their_reasons() -> None:
    ticks = iter(range(100))
    gate = AdaptiveLimit(2, maximum=4, slow_start=False, clock=lambda: float(next(ticks)))
    finish(gate, 2, 0.05)
    report = gate.to_json()
    assert report["mode"] == "adaptive" and report["start"] == 2 and report["final"] == 3
    assert report["maximum"] == 4 and report["grown"] == 1
    [change] = report["changes"]
    assert change["limit"] == 3 and change["reason"] == "latency holds (50 ms)" and change["at"] > 0


def test_acquire_blocks_at_the_limit_until_a_run_finishes() -> None:
    gate = AdaptiveLimit(2, maximum=2)
    gate.acquire()
    gate.acquire()
    entered = threading.Event()

    def third() -> None:
        gate.acquire()
        entered.set()

    worker = threading.Thread(target=third)
    worker.start()
    assert not entered.wait(0.1)
    assert gate.in_flight == 2
    gate.release(0.01)
    assert entered.wait(5)
    worker.join(5)
    assert gate.in_flight == 2


@pytest.mark.parametrize(("start", "minimum", "maximum", "tolerance"),
                         [(0, 1, 4, 1.5), (5, 1, 4, 1.5), (2, 3, 4, 1.5), (2, 1, 4, 0.9)])
def test_impossible_bounds_are_refused(start: int, minimum: int, maximum: int, tolerance: float) -> None:
    with pytest.raises(LimitError):
        AdaptiveLimit(start, minimum=minimum, maximum=maximum, tolerance=tolerance)


def test_pushback_counts_429_and_5xx_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from chainmail._internal import http

    http.reset_request_counts()
    for status in (200, 404, 408, 429, 500, 503):
        http._count_pushback(status)
    assert http.pushback_count() == 3
    http.reset_request_counts()
    assert http.pushback_count() == 0


def test_cli_concurrency_values() -> None:
    from chainmail._cli.sweep import parse_concurrency
    from chainmail.errors import InputError

    assert parse_concurrency("auto") is None and parse_concurrency(" AUTO ") is None
    assert parse_concurrency("8") == 8
    for bad in ("0", "65", "many"):
        with pytest.raises(InputError):
            parse_concurrency(bad)


def test_sweep_report_carries_the_gate() -> None:
    from chainmail.sweep import SweepReport

    report = SweepReport()
    assert report.to_json()["concurrency"] is None
    report.concurrency = AdaptiveLimit(4, maximum=16, clock=lambda: 0.0)
    assert report.to_json()["concurrency"]["mode"] == "adaptive"
    assert "concurrency: adaptive, 4 -> 4 (peak 4, max 16; grown 0, shrunk 0, halved 0)" in report.text()


def test_sweeper_builds_a_fixed_or_adaptive_gate() -> None:
    from chainmail.sweep import Sweeper, SweepOptions

    class Ctx:
        kube = None
        key = None
        config = type("Config", (), {"int": staticmethod(lambda key: 3), "get": staticmethod(lambda key: "")})()

    fixed = Sweeper(Ctx(), SweepOptions(concurrency=3))  # type: ignore[arg-type]
    assert (fixed.limit.adaptive, fixed.limit.capacity) == (False, 3)
    grown = Sweeper(Ctx(), SweepOptions(concurrency=4, adaptive=True, max_concurrency=12))  # type: ignore[arg-type]
    assert (grown.limit.adaptive, grown.limit.limit, grown.limit.capacity) == (True, 4, 12)
    assert grown.report.concurrency is grown.limit


def test_runs_without_a_latency_free_their_slot_but_do_not_count() -> None:
    gate = AdaptiveLimit(2, maximum=8, slow_start=False, clock=lambda: 0.0)
    for _ in range(10):
        gate.acquire()
        gate.release(None)  # skipped runs: instant, and no sample
    assert gate.limit == 2 and gate.in_flight == 0 and gate.best is None
    finish(gate, 2, 0.2)
    assert gate.limit == 3 and gate.best == 0.2
