"""``chainmail sweep`` with the default ``-j auto``: every run signed once, and the report says what the
concurrency did; 429/503 answers from the registry halve it."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("doubles.faultproxy")
from doubles.faultproxy import Fleet, run_chainmail  # noqa: E402 - after register_assert_rewrite

pytestmark = pytest.mark.registry
#: The ``fault_proxy_factory`` fixture.
pytest_plugins = ["doubles.faultproxy"]

RUNS = 24


def auto_args(fleet: Fleet, key: str, *extra: str) -> list[str]:
    """``sweep`` without ``--concurrency``: the default, adaptive."""
    return ["sweep", "--all-namespaces", "--output", "json", *fleet.common_args(key), *extra]


def test_default_sweep_is_adaptive_and_signs_every_run_once(registry, kube_api, tmp_path, key) -> None:
    fleet = Fleet(kube_api, registry, tmp_path, prefix="adaptive")
    fleet.add(RUNS, namespaces=2, repos=3)
    result = run_chainmail(auto_args(fleet, key, "--max-concurrency", "6"), tmp_path, timeout=120)
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["signed"] == RUNS and report["failed"] == []
    concurrency = report["concurrency"]
    assert concurrency["mode"] == "adaptive" and concurrency["start"] == 4 and concurrency["maximum"] == 6
    assert 1 <= concurrency["final"] <= concurrency["peak"] <= 6
    assert all(c["reason"] for c in concurrency["changes"])
    assert fleet.problems() == []  # one signed patch, one .sig and one .att layer per run, no claim left


def test_registry_pushback_halves_the_concurrency(registry, kube_api, fault_proxy_factory, tmp_path, key) -> None:
    proxy = fault_proxy_factory(registry.host, name="registry-pushback", seed=7)
    fleet = Fleet(kube_api, registry, tmp_path, image_host=proxy.host, prefix="pushback")
    fleet.add(RUNS, namespaces=1, repos=2)
    proxy.configure(0.15, ["429", "503"])
    result = run_chainmail(auto_args(fleet, key, "--set", "chainmail.retry.deadline-seconds=60"), tmp_path,
                           timeout=180)
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["signed"] == RUNS and report["failed"] == []
    concurrency = report["concurrency"]
    assert concurrency["halved"] >= 1, concurrency
    assert any("pushback" in c["reason"] for c in concurrency["changes"])
    assert fleet.problems() == []


def test_fixed_concurrency_is_reported_as_such(registry, kube_api, tmp_path, key) -> None:
    fleet = Fleet(kube_api, registry, tmp_path, prefix="fixed-j")
    fleet.add(4, namespaces=1, repos=1)
    result = run_chainmail(fleet.sweep_args(key, concurrency=3), tmp_path, timeout=60)
    assert result.returncode == 0, str(result)
    assert result.json()["concurrency"] == {"mode": "fixed", "start": 3, "final": 3, "peak": 3}
