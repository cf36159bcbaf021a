"""A sweep that outlives its continue token (410 Gone, reason Expired) lists again and signs each run once."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainmail._internal.http import RetryPolicy
from chainmail._internal.kube import KubeClient
from chainmail.config import Config
from chainmail.context import Context
from chainmail.errors import ClusterError
from chainmail.sweep import MAX_LIST_RESTARTS, SweepOptions, sweep
from doubles.kube import KubeApiDouble, completed_taskrun

TEKTON_ONLY = {"artifacts.taskrun.storage": "tekton", "artifacts.pipelinerun.storage": "tekton",
               "artifacts.oci.storage": "tekton"}


def _ctx(api: KubeApiDouble, tmp_path: Path, key: str) -> Context:
    ctx = Context(config=Config.from_mapping(TEKTON_ONLY), key=key)
    ctx.kube = KubeClient.from_environment(api.kubeconfig(tmp_path),
                                           retry=RetryPolicy(deadline=10, initial_backoff=0.01, max_backoff=0.1))
    return ctx


def _expire_on_continue(api: KubeApiDouble, times: int) -> list[int]:
    """Expire every outstanding continue token just before the next ``times`` paged list requests."""
    fired = [0]

    def hook(method: str, path: str, query: dict[str, str]) -> None:
        if method == "GET" and query.get("continue") and path.endswith("/taskruns") and fired[0] < times:
            fired[0] += 1
            api.expire_continue_tokens()

    api.hooks.append(hook)
    return fired


def test_expired_continue_token_restarts_the_listing(kube_api, tmp_path, key):
    for i in range(23):
        kube_api.add(completed_taskrun(f"build-{i:02d}", "team-a", image=""))
    fired = _expire_on_continue(kube_api, 2)

    report = sweep(_ctx(kube_api, tmp_path, key), SweepOptions(namespace="team-a", concurrency=2, page=5))

    assert fired[0] == 2
    assert [r.status for r in kube_api.request_log if r.status == 410] == [410, 410]
    assert report.signed == 23 and not report.failed
    assert report.seen == 23  # runs listed twice are looked at once
    writes = kube_api.signed_writes()
    assert len(writes) == 23 and set(writes.values()) == {1}


def test_a_listing_that_keeps_expiring_fails_after_bounded_restarts(kube_api, tmp_path, key):
    for i in range(12):
        kube_api.add(completed_taskrun(f"build-{i:02d}", "team-a", image=""))
    _expire_on_continue(kube_api, 1000)

    with pytest.raises(ClusterError, match="410"):
        sweep(_ctx(kube_api, tmp_path, key), SweepOptions(namespace="team-a", concurrency=1, page=5))

    assert sum(1 for r in kube_api.request_log if r.status == 410) == MAX_LIST_RESTARTS + 1
    writes = kube_api.signed_writes()
    assert len(writes) == 5 and set(writes.values()) == {1}  # the first page, once
