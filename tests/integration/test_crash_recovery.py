"""Crash recovery: chainmail killed with SIGKILL between stages, then a normal sweep finishes the job.

``CHAINMAIL_CRASH_AT=<point>`` makes the process kill itself at that point of
:func:`chainmail.job.sign_run` (see ``chainmail/_internal/crashpoints.py``); ``after-store`` is the
nasty one: the ``.sig``/``.att`` layers are in the registry, the run's annotations are not. The
follow-up sweep must take over the dead signer's claim once its lease has passed, finish every
run, and write **no second layer**: ECDSA signing is deterministic (RFC 6979) and the payloads are
the same, so the oci backend finds its layers already there.
"""

from __future__ import annotations

import time

import pytest

pytest.register_assert_rewrite("doubles.faultproxy")
from doubles.faultproxy import Fleet, run_chainmail  # noqa: E402 - after register_assert_rewrite

pytestmark = pytest.mark.registry

POINTS = ("after-snapshot", "after-format", "after-sign", "after-store")
RUNS = 6
#: The follow-up sweep's --lease: the crashed signer's claims are older than this when it starts.
LEASE = "1s"


def _claimed(fleet: Fleet) -> list[str]:
    return [r.name for r in fleet.runs if "chainmail.dev/claim" in fleet.annotations(r)]


def _signed(fleet: Fleet) -> list[str]:
    return [r.name for r in fleet.runs if fleet.annotations(r).get("chains.tekton.dev/signed") == "true"]


@pytest.mark.parametrize("point", POINTS)
def test_a_sweep_killed_at_each_stage_is_finished_by_the_next(registry, kube_api, tmp_path, key, point):
    fleet = Fleet(kube_api, registry, tmp_path, prefix=f"crash-{point}")
    fleet.add(RUNS, namespaces=1, repos=2)

    crashed = run_chainmail(fleet.sweep_args(key, concurrency=2), tmp_path, env={"CHAINMAIL_CRASH_AT": point},
                            timeout=60)
    assert crashed.returncode == -9, str(crashed)
    stuck = _claimed(fleet)
    assert stuck, "the killed sweep left no claim behind"
    assert not set(stuck) & set(_signed(fleet))
    if point == "after-store":
        # The registry has the signatures of the run that was being marked when the process died.
        assert any(fleet.layers(r, "sig") and fleet.layers(r, "att") for r in fleet.runs if r.name in stuck)

    # While the lease (default 10 min) runs, another sweep leaves the dead signer's runs alone.
    polite = run_chainmail(fleet.sweep_args(key), tmp_path, timeout=60)
    assert polite.returncode == 0, str(polite)
    assert polite.json()["skipped"].get("claimed by another signer") == len(stuck)
    assert set(_claimed(fleet)) == set(stuck)

    time.sleep(2.0)  # the claims are now older than LEASE
    recovery = run_chainmail(fleet.sweep_args(key, "--lease", LEASE), tmp_path, timeout=60)
    assert recovery.returncode == 0, str(recovery)
    assert recovery.json()["signed"] == len(stuck) and recovery.json()["failed"] == []
    assert fleet.problems() == []  # signed once, no duplicate layer, annotations complete, no claim left


@pytest.mark.parametrize("point", POINTS)
def test_chainmail_run_killed_at_each_stage_then_a_sweep(registry, kube_api, tmp_path, key, point):
    fleet = Fleet(kube_api, registry, tmp_path, prefix=f"crash-run-{point}")
    run, _other = fleet.add(2, namespaces=1)

    crashed = run_chainmail(fleet.run_args(run, key), tmp_path, env={"CHAINMAIL_CRASH_AT": point}, timeout=60)
    assert crashed.returncode == -9, str(crashed)
    notes = fleet.annotations(run)
    assert "chains.tekton.dev/signed" not in notes and "chainmail.dev/claim" not in notes  # `run` does not claim
    stored = (len(fleet.layers(run, "sig")), len(fleet.layers(run, "att")))
    assert stored == ((1, 1) if point == "after-store" else (0, 0))

    sweep = run_chainmail(fleet.sweep_args(key), tmp_path, timeout=60)
    assert sweep.returncode == 0, str(sweep)
    assert sweep.json()["signed"] == 2
    assert fleet.problems() == []
