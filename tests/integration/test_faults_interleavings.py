"""Racing signers, runs that vanish mid-sweep, and keys rotated between runs -- against the real registry.

"One signature set" is checked on the registry's manifests (one ``.sig`` and one ``.att`` layer
per image, the ``.att`` layer byte-for-byte the envelope in the run's annotation) and on the API
double's write log (one successful PATCH set ``signed: "true"``, plus one per answer a proxy threw
away), see :meth:`doubles.faultproxy.Fleet.problems`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("doubles.faultproxy")
from doubles.faultproxy import (  # noqa: E402 - after register_assert_rewrite
    KINDS,
    Fleet,
    finish_chainmail,
    kubeconfig_via,
    run_chainmail,
    start_chainmail,
)

#: The ``fault_proxy_factory`` fixture.
pytest_plugins = ["doubles.faultproxy"]
pytestmark = pytest.mark.registry

RACE_RUNS = 30
RACE_FAULT_RATE = 0.10
#: How long the racing sweeps' PATCHes are held, so `chainmail run` reads a run while it is claimed.
HOLD_SECONDS = 3.0


def _key(shared: Path, name: str) -> str:
    path = shared / "fixtures" / "cosign-keys" / name
    if not (path / "cosign.key").exists():
        pytest.skip(f"cosign test key not found at {path}")
    return str(path)


@pytest.fixture
def key(shared: Path) -> str:
    return _key(shared, "ecdsa-p256-password")


@pytest.fixture
def new_key(shared: Path) -> str:
    return _key(shared, "ecdsa-p256-empty-password")


def figures(name: str, **values: object) -> None:
    print(f"\n[{name}] " + json.dumps(values, sort_keys=True, default=str))


# ------------------------------------------------------------------ racing signers


def test_two_sweeps_racing_through_faults_sign_each_run_once(registry, kube_api, fault_proxy_factory, tmp_path, key):
    reg_proxy = fault_proxy_factory(registry.host, name="registry", seed=3)
    api_proxies = [fault_proxy_factory(kube_api.url, name=f"kube-api-{i}", seed=10 + i) for i in range(2)]
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, api_server=api_proxies[0].url,
                  prefix="race")
    fleet.add(RACE_RUNS, namespaces=2, repos=3)  # few repos: the sweeps also race on the same tags
    reg_proxy.configure(RACE_FAULT_RATE, [k for k in KINDS if k != "lost"])  # lost uploads: see test_faults
    second = kubeconfig_via(kube_api, tmp_path, api_proxies[1].url, name="kubeconfig-second")
    for proxy in api_proxies:
        proxy.configure(RACE_FAULT_RATE)

    args = [fleet.sweep_args(key, concurrency=4),
            [a if a != str(fleet.kubeconfig) else str(second) for a in fleet.sweep_args(key, concurrency=4)]]
    started = time.monotonic()
    procs = [start_chainmail(a, tmp_path, tag=f"sweep-{i}") for i, a in enumerate(args)]
    results = [finish_chainmail(p, f, a, started, timeout=180) for (p, f), a in zip(procs, args, strict=True)]
    figures("two racing sweeps", runs=RACE_RUNS, seconds=round(time.monotonic() - started, 1),
            signed=[r.json()["signed"] for r in results], skipped=[r.json()["skipped"] for r in results],
            faults=reg_proxy.faults_injected + sum(p.faults_injected for p in api_proxies),
            retries=sum(r.retries["total"] for r in results))
    for result in results:
        assert result.returncode == 0, str(result)
        assert result.json()["failed"] == []
    assert sum(r.json()["signed"] for r in results) == RACE_RUNS
    lost = [e for p in api_proxies for e in p.fault_events("lost")]
    assert fleet.problems(api_proxy=_Merged(api_proxies)) == [], lost


class _Merged:
    """The lost answers of several API proxies, for :meth:`Fleet.problems`."""

    def __init__(self, proxies: list) -> None:
        self.proxies = proxies

    def fault_events(self, kind: str | None = None) -> list:
        return [e for p in self.proxies for e in p.fault_events(kind)]


def test_two_sweeps_and_chainmail_run_on_the_same_runs_make_one_signature_set(registry, kube_api,
                                                                              fault_proxy_factory, tmp_path, key):
    """`chainmail run` does not claim: it reads the run while a sweep's claim is on it, and must still sign
    byte-for-byte what the sweep signs (the claim stays out of the provenance), so one set is stored."""
    fleet = Fleet(kube_api, registry, tmp_path, prefix="race-run")
    runs = fleet.add(3, namespaces=1, repos=1)
    # The sweeps' API traffic is held for HOLD_SECONDS per PATCH, so their claims sit on the runs a while.
    api_proxies = [fault_proxy_factory(kube_api.url, name=f"held-{i}", delay_range=(HOLD_SECONDS, HOLD_SECONDS))
                   for i in range(2)]
    for proxy in api_proxies:
        proxy.add_rule("delay", method="PATCH", times=None)
    configs = [kubeconfig_via(kube_api, tmp_path, p.url, name=f"kubeconfig-held-{i}") for i, p in enumerate(api_proxies)]
    sweeps = [[a if a != str(fleet.kubeconfig) else str(c) for a in fleet.sweep_args(key)] for c in configs]
    started = time.monotonic()
    procs = [start_chainmail(a, tmp_path, tag=f"held-sweep-{i}") for i, a in enumerate(sweeps)]
    target = runs[0]
    deadline = time.monotonic() + 60
    while "chainmail.dev/claim" not in fleet.annotations(target):
        assert time.monotonic() < deadline, "no sweep claimed the run"
        time.sleep(0.02)
    # `chainmail run` (a finally task, a user) signs the same run while a sweep holds it.
    direct = run_chainmail(fleet.run_args(target, key), tmp_path, timeout=60)
    results = [finish_chainmail(p, f, a, started, timeout=120) for (p, f), a in zip(procs, sweeps, strict=True)]
    figures("two sweeps and a run", runs=len(runs), seconds=round(time.monotonic() - started, 1),
            signed_by_sweeps=[r.json()["signed"] for r in results], run_returncode=direct.returncode,
            att_layers=[len(fleet.layers(r, "att")) for r in runs])
    assert direct.returncode == 0, str(direct)
    for result in results:
        assert result.returncode == 0, str(result)
        assert result.json()["failed"] == []
    assert sum(r.json()["signed"] for r in results) == len(runs)
    # `run` does not claim, so the target may carry two signed=true PATCHes: same values, one signature set.
    assert fleet.problems(count_patches=False) == []


# ------------------------------------------------------------------ runs deleted mid-sweep


def test_runs_deleted_mid_sweep_are_skipped_and_the_rest_signed(registry, kube_api, fault_proxy_factory, tmp_path,
                                                                key):
    reg_proxy = fault_proxy_factory(registry.host, name="registry", seed=5)
    fleet = Fleet(kube_api, registry, tmp_path, image_host=reg_proxy.host, prefix="deleted")
    runs = fleet.add(12, namespaces=2, repos=3)
    reg_proxy.configure(RACE_FAULT_RATE, [k for k in KINDS if k != "lost"])
    before_claim, while_signing, after_push = runs[2], runs[5], runs[9]
    patches: dict[str, int] = {}

    def delete_mid_sweep(method: str, path: str, query: dict[str, str]) -> None:
        if method != "PATCH":
            return
        for run, nth in ((before_claim, 1), (while_signing, 2)):
            if path == run.path:
                patches[run.name] = patches.get(run.name, 0) + 1
                if patches[run.name] == nth:  # 1: the claim; 2: the mark, after the registry has the layers
                    kube_api.delete(*run.key)

    def delete_on_push(method: str, path: str, status: int) -> None:
        if method == "PUT" and "/manifests/" in path and after_push.digest.replace(":", "-") in path:
            kube_api.delete(*after_push.key)

    kube_api.hooks.append(delete_mid_sweep)
    reg_proxy.on_response.append(delete_on_push)
    result = run_chainmail(fleet.sweep_args(key, concurrency=3), tmp_path, timeout=120)
    assert result.returncode == 0, str(result)
    report = result.json()
    gone = {before_claim, while_signing, after_push}
    assert report["signed"] == len(runs) - len(gone) and report["failed"] == []
    assert report["skipped"] == {"deleted before it was signed": 1, "deleted while it was signed": 2}
    for run in gone:
        assert kube_api.get(*run.key) is None  # nothing re-created it
    assert fleet.problems([r for r in runs if r not in gone]) == []


# ------------------------------------------------------------------ key rotation


def _verify(kind: str, ref: str, key: str, tmp_path: Path) -> int:
    result = run_chainmail(["verify", kind, "--insecure-ignore-tlog", ref, "--key", key], tmp_path, timeout=60)
    return result.returncode


def test_keys_rotated_between_runs(registry, kube_api, tmp_path, key, new_key):
    fleet = Fleet(kube_api, registry, tmp_path, prefix="rotate")
    old_runs = fleet.add(3, namespaces=1, repos=1)
    first = run_chainmail(fleet.sweep_args(key), tmp_path, timeout=60)
    assert first.returncode == 0 and first.json()["signed"] == 3, str(first)
    old_layers = {r.name: (fleet.layers(r, "sig"), fleet.layers(r, "att")) for r in old_runs}

    new_runs = fleet.add(3, namespaces=1, repos=1)
    second = run_chainmail(fleet.sweep_args(new_key), tmp_path, timeout=60)
    assert second.returncode == 0, str(second)
    assert second.json()["signed"] == 3 and second.json()["skipped"] == {"already signed": 3}
    assert fleet.problems() == []
    # The old signatures are untouched, still one layer each, and still verify with the old key only.
    assert {r.name: (fleet.layers(r, "sig"), fleet.layers(r, "att")) for r in old_runs} == old_layers
    for runs, good, bad in ((old_runs, key, new_key), (new_runs, new_key, key)):
        ref = f"{registry.host}/{runs[0].repo}@{runs[0].digest}"
        assert _verify("image", ref, good, tmp_path) == 0
        assert _verify("attestation", ref, good, tmp_path) == 0
        assert _verify("image", ref, bad, tmp_path) == 12  # cosign's "no matching signatures"
    # A verifier that trusts both keys (mid-rotation) accepts both generations.
    both = run_chainmail(["verify", "image", "--insecure-ignore-tlog",
                          f"{registry.host}/{new_runs[1].repo}@{new_runs[1].digest}",
                          "--key", key, "--key", new_key], tmp_path, timeout=60)
    assert both.returncode == 0, str(both)
