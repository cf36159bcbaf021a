"""Never lose provenance: ``chainmail sweep`` through faults and outages, against the real registry.

Measured on Tekton Chains, a 60 s registry outage while 10 runs finished left all 10
``chains.tekton.dev/signed: failed`` for good. Here the registry (Debian's docker-registry) and
the Kubernetes API double sit behind :class:`~doubles.faultproxy.FaultProxy`, and the tests check
on the registry's manifests and the API's write log that every run ends signed exactly once:
one ``.sig`` and one ``.att`` layer per image, one set of annotations, never marked failed.

Each scenario prints its figures (runs, faults injected, retries chainmail's RetryPolicy made,
wall time); run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
import requests

pytest.register_assert_rewrite("doubles.faultproxy")
from doubles.faultproxy import (  # noqa: E402 - after register_assert_rewrite
    KINDS,
    FaultProxy,
    Fleet,
    finish_chainmail,
    run_chainmail,
    start_chainmail,
)

#: The ``fault_proxy_factory`` fixture.
pytest_plugins = ["doubles.faultproxy"]
pytestmark = pytest.mark.registry

#: Runs in the 20 %-faults sweep.
FAULT_RUNS = 200
FAULT_RATE = 0.20
FAULT_CONCURRENCY = 8
#: The full registry outage in the middle of a sweep (the requirement is 60 s).
OUTAGE_SECONDS = 60.0
OUTAGE_RUNS = 24
#: Runs signed before the outage starts.
OUTAGE_AFTER = 4
#: The outage that starts while a blob upload is in flight (its length does not matter to the bug it shows).
CUT_OUTAGE_SECONDS = 5.0


def figures(name: str, **values: object) -> None:
    print(f"\n[{name}] " + json.dumps(values, sort_keys=True, default=str))


# ------------------------------------------------------------------ the proxy itself


def test_proxy_faults_a_share_of_requests_on_keep_alive_connections(registry, fault_proxy_factory):
    proxy = fault_proxy_factory(registry.host, rate=0.2, seed=7)
    session = requests.Session()
    session.trust_env = False
    outcomes: Counter[str] = Counter()
    for _ in range(400):
        try:
            outcomes[str(session.get(f"{proxy.url}/v2/", timeout=5).status_code)] += 1
        except requests.RequestException:
            outcomes["error"] += 1
    stats = proxy.stats()
    assert stats["requests"] == 400
    assert 50 <= stats["faults-total"] <= 110  # 20 % of 400, seeded
    assert set(stats["faults"]) == set(KINDS)
    # One keep-alive connection, replaced only after each fault that closed it.
    closing = sum(stats["faults"][k] for k in ("drop", "reset", "lost"))
    assert stats["connections"] == 1 + closing
    assert outcomes["error"] == sum(stats["faults"][k] for k in ("drop", "reset", "lost"))
    assert outcomes["429"] == stats["faults"]["429"]
    assert outcomes["200"] == 400 - stats["retried-faults"]


@pytest.mark.parametrize("mode", ["reset", "refuse"])
def test_proxy_outage_switches_on_and_off(registry, fault_proxy_factory, mode):
    proxy = fault_proxy_factory(registry.host, outage_mode=mode)
    session = requests.Session()
    session.trust_env = False
    assert session.get(f"{proxy.url}/v2/", timeout=5).status_code == 200
    timer = proxy.outage_for(0.5)
    with pytest.raises(requests.ConnectionError):
        session.get(f"{proxy.url}/v2/", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/v2/", timeout=5)
    timer.join(5)
    assert not proxy.in_outage
    assert session.get(f"{proxy.url}/v2/", timeout=5).status_code == 200
    assert proxy.stats()["outages"] == 1


def test_proxy_only_serves_loopback():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("registry.example:443")


# ------------------------------------------------------------------ 20 % faults

#: Faults where the request never reaches the registry. Lost answers to registry writes have a test of
#: their own below.
REGISTRY_KINDS = tuple(k for k in KINDS if k != "lost")


def test_sweep_through_20_percent_faults_signs_every_run_once(registry, kube_api, fault_proxy_factory, tmp_path, key):
    reg_proxy = fault_proxy_factory(registry.host, name="registry", seed=20)
    api_proxy = fault_proxy_factory(kube_api.url, name="kube-api", seed=21)
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, api_server=api_proxy.url,
                  prefix="faults20")
    fleet.add(FAULT_RUNS)
    reg_proxy.configure(FAULT_RATE, REGISTRY_KINDS)
    api_proxy.configure(FAULT_RATE)  # every kind, lost answers to the claim and mark PATCHes included

    result = run_chainmail(fleet.sweep_args(key, concurrency=FAULT_CONCURRENCY,
                                            sets={"chainmail.retry.deadline-seconds": "120"}),
                           tmp_path, timeout=300)
    reg_stats, api_stats = reg_proxy.stats(), api_proxy.stats()
    figures("20% faults", runs=FAULT_RUNS, seconds=round(result.seconds, 1),
            faults_registry=reg_stats["faults"], faults_api=api_stats["faults"],
            faults_total=reg_stats["faults-total"] + api_stats["faults-total"],
            retries=result.retries["total"], retries_by_problem=dict(result.retries),
            requests_registry=reg_stats["requests"], requests_api=api_stats["requests"])
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["signed"] == FAULT_RUNS and report["failed"] == [], report
    assert fleet.problems(api_proxy=api_proxy) == []
    # The faults were really there, and chainmail retried every one that cost it an answer.
    assert reg_stats["faults-total"] >= FAULT_RUNS and api_stats["faults-total"] >= FAULT_RUNS // 5
    assert result.retries["total"] >= reg_stats["retried-faults"] + api_stats["retried-faults"]


def test_lost_answers_to_registry_uploads_do_not_fail_runs(registry, kube_api, fault_proxy_factory, tmp_path, key):
    reg_proxy = fault_proxy_factory(registry.host, name="registry")
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, prefix="lost")
    fleet.add(4)
    # The first three blob uploads land in the registry, but their answers never reach chainmail.
    reg_proxy.add_rule("lost", method="PUT", path_contains="/blobs/uploads/", times=3)

    result = run_chainmail(fleet.sweep_args(key, concurrency=2), tmp_path, timeout=120)
    figures("lost upload answers", runs=4, faults=reg_proxy.stats()["faults"], retries=result.retries["total"],
            failed=[f["reason"] for f in (result.json()["failed"] if result.stdout.startswith("{") else [])])
    assert reg_proxy.stats()["faults"] == {"lost": 3}
    assert result.returncode == 0, str(result)
    assert fleet.problems() == []


# ------------------------------------------------------------------ a 60 s registry outage


def test_sweep_outlasts_a_60_second_registry_outage(registry, kube_api, fault_proxy_factory, tmp_path, key):
    reg_proxy = fault_proxy_factory(registry.host, name="registry")
    api_proxy = fault_proxy_factory(kube_api.url, name="kube-api")
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, api_server=api_proxy.url,
                  prefix="outage")
    fleet.add(OUTAGE_RUNS)
    outage: dict[str, float] = {}
    done = threading.Event()

    def start_outage_after_the_first_runs() -> None:
        while not done.is_set():
            signed = sum(1 for run in fleet.runs if fleet.annotations(run).get("chains.tekton.dev/signed") == "true")
            if signed >= OUTAGE_AFTER:
                outage["signed-before"] = signed
                outage["start"] = time.monotonic()
                # Between requests: answers already on their way are delivered (the outage that cuts
                # one is the next test).
                reg_proxy.outage_for(OUTAGE_SECONDS, cut_in_flight=False).join(OUTAGE_SECONDS + 5)
                outage["end"] = time.monotonic()
                return
            done.wait(0.05)

    watcher = threading.Thread(target=start_outage_after_the_first_runs, daemon=True)
    started = time.monotonic()
    # Default retry settings: chainmail.retry.deadline-seconds is 300, well past the outage.
    proc, retry_file = start_chainmail(fleet.sweep_args(key, concurrency=4), tmp_path)
    watcher.start()
    result = finish_chainmail(proc, retry_file, fleet.sweep_args(key), started, timeout=OUTAGE_SECONDS + 200)
    done.set()
    watcher.join(OUTAGE_SECONDS + 10)
    stats = reg_proxy.stats()
    figures("60 s outage", runs=OUTAGE_RUNS, outage_seconds=OUTAGE_SECONDS,
            signed_before_outage=outage.get("signed-before"), seconds=round(result.seconds, 1),
            seconds_after_outage_end=round(started + result.seconds - outage.get("end", 0), 1),
            attempts_refused_during_outage=stats["outage-rejected"], retries=result.retries["total"],
            retries_by_problem=dict(result.retries))
    assert "start" in outage, f"the outage never started: {result}"
    assert outage["signed-before"] < OUTAGE_RUNS
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["signed"] == OUTAGE_RUNS and report["failed"] == [], report
    assert result.seconds >= OUTAGE_SECONDS
    assert stats["outage-rejected"] > 0 and result.retries["total"] >= stats["outage-rejected"]
    assert fleet.problems(api_proxy=api_proxy) == []


def test_an_outage_that_cuts_an_upload_in_flight_fails_no_run(registry, kube_api, fault_proxy_factory, tmp_path,
                                                              key):
    reg_proxy = fault_proxy_factory(registry.host, name="registry")
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, prefix="cut")
    fleet.add(6)
    # The outage begins the moment the first blob upload has landed: its answer is lost.
    reg_proxy.arm_outage(CUT_OUTAGE_SECONDS, method="PUT", path_contains="/blobs/uploads/")
    result = run_chainmail(fleet.sweep_args(key, concurrency=2), tmp_path, timeout=CUT_OUTAGE_SECONDS + 120)
    figures("outage cutting an upload", runs=6, outage_seconds=CUT_OUTAGE_SECONDS, seconds=round(result.seconds, 1),
            retries=result.retries["total"], returncode=result.returncode)
    assert reg_proxy.outage_started.is_set()
    assert result.returncode == 0, str(result)
    assert fleet.problems() == []


# ------------------------------------------------------------------ permanent failures


MAX_FAILED = 3


def test_a_permanent_failure_fails_fast_with_its_reason(registry, auth_registry, kube_api, fault_proxy_factory,
                                                         tmp_path, key):
    auth_proxy = fault_proxy_factory(auth_registry.host, name="auth-registry")
    fleet = Fleet(kube_api, registry, tmp_path, prefix="permanent")
    good = fleet.add(6)
    # Two runs whose images live in a registry that wants a login we do not have: HTTP 401.
    bad = fleet.add(2, name="private", registry=auth_registry, image_host=auth_proxy.host)
    sets = {"chainmail.retry.max-failed-attempts": str(MAX_FAILED)}

    first = run_chainmail(fleet.sweep_args(key, concurrency=2, sets=sets), tmp_path, timeout=120)
    figures("permanent failure", runs=8, seconds=round(first.seconds, 1), retries=first.retries["total"],
            requests_to_the_failing_registry=auth_proxy.stats()["requests"])
    assert first.returncode == 8, str(first)  # StorageError: some runs could not be signed
    report = first.json()
    assert report["signed"] == len(good)
    assert sorted(f["run"] for f in report["failed"]) == [f"TaskRun {r.namespace}/{r.name}" for r in
                                                          sorted(bad, key=lambda r: (r.namespace, r.name))]
    assert all("401" in f["reason"] and auth_registry.host.split(":")[0] in f["reason"] for f in report["failed"])
    # Fast: no retry loop on a 401 (the deadline is 300 s), a handful of requests per run.
    assert first.seconds < 30
    assert first.retries["total"] == 0
    assert auth_proxy.stats()["requests"] <= 6 * len(bad)
    assert fleet.problems(good) == []
    for run in bad:
        notes = fleet.annotations(run)
        assert notes["chains.tekton.dev/signed"] == "failed"
        assert notes["chains.tekton.dev/retries"] == "1"
        assert "HTTP 401" in notes["chainmail.dev/failure-reason"]
        assert "chainmail.dev/claim" not in notes

    # A sweep without --retry-failed leaves them alone; with it they are retried up to the limit, then left.
    again = run_chainmail(fleet.sweep_args(key, sets=sets), tmp_path, timeout=60)
    assert again.returncode == 0 and again.json()["signed"] == 0, str(again)
    assert again.json()["skipped"]["failed earlier (use --retry-failed)"] == len(bad)
    outcomes = []
    for _ in range(MAX_FAILED + 1):  # bounded: one more sweep than the limit allows
        retry = run_chainmail(fleet.sweep_args(key, "--retry-failed", sets=sets), tmp_path, timeout=60)
        outcomes.append((retry.returncode, len(retry.json()["failed"])))
    assert outcomes == [(8, len(bad))] * (MAX_FAILED - 1) + [(0, 0)] * 2
    assert retry.json()["skipped"]["failed too often (chainmail.retry.max-failed-attempts)"] == len(bad)
    for run in bad:
        notes = fleet.annotations(run)
        assert notes["chains.tekton.dev/signed"] == "failed"
        assert notes["chains.tekton.dev/retries"] == str(MAX_FAILED)
        assert "HTTP 401" in notes["chainmail.dev/failure-reason"]
    assert fleet.problems(good) == []  # the signed runs were never touched again


def test_an_image_gone_from_the_registry_fails_fast_with_its_reason(registry, kube_api, tmp_path, key):
    """404 from the registry: chainmail looks each claimed image up before signing (``image_check``), so a
    run naming a deleted image fails at once with its reason, and nothing of it is signed."""
    fleet = Fleet(kube_api, registry, tmp_path, prefix="gone")
    good = fleet.add(3, namespaces=1)
    (gone,) = fleet.add(1, namespaces=1, name="gone")
    resp = registry.http.delete(f"{registry.url}/v2/{gone.repo}/manifests/{gone.digest}")
    assert resp.status_code == 202, resp.text
    bundle = {"storage.oci.encoding-format": "sigstore-bundle", "artifacts.oci.storage": "tekton"}

    result = run_chainmail(fleet.sweep_args(key, concurrency=2, sets=bundle), tmp_path, timeout=60)
    assert result.returncode == 8, str(result)
    report = result.json()
    assert report["signed"] == len(good), str(result)
    assert [f["run"] for f in report["failed"]] == [f"TaskRun {gone.namespace}/{gone.name}"]
    assert "does not exist" in report["failed"][0]["reason"] and gone.digest[:20] in report["failed"][0]["reason"]
    assert result.seconds < 30 and result.retries["total"] == 0
    notes = fleet.annotations(gone)
    assert notes["chains.tekton.dev/signed"] == "failed" and "does not exist" in notes["chainmail.dev/failure-reason"]
    assert fleet.problems(good, oci_tags=False) == []


def test_retry_after_a_partial_store_writes_no_second_attestation(registry, kube_api, fault_proxy_factory, tmp_path,
                                                                  key):
    """The retry must sign the same payload as the failed attempt (chainmail.dev/failure-reason and the claim
    stay out of the provenance), so it finds its .att layer already stored instead of adding a second."""
    reg_proxy = fault_proxy_factory(registry.host, name="registry")
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, prefix="partial")
    (run,) = fleet.add(1)
    # The .att is stored, then the .sig tag stays unavailable past a short deadline: the run is marked failed.
    reg_proxy.add_rule("503", method="PUT", path_contains=".sig", times=None)
    first = run_chainmail(fleet.sweep_args(key, sets={"chainmail.retry.deadline-seconds": "2"}), tmp_path,
                          timeout=60)
    assert first.returncode == 8, str(first)
    assert (len(fleet.layers(run, "sig")), len(fleet.layers(run, "att"))) == (0, 1)
    assert fleet.annotations(run)["chains.tekton.dev/signed"] == "failed"

    reg_proxy.clear_rules()
    retry = run_chainmail(fleet.sweep_args(key, "--retry-failed"), tmp_path, timeout=60)
    assert retry.returncode == 0 and retry.json()["signed"] == 1, str(retry)
    assert (len(fleet.layers(run, "sig")), len(fleet.layers(run, "att"))) == (1, 1)
