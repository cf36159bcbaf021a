"""Fixtures for the cluster tests: a client wired to the API double with fast retries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainmail._internal.http import RetryPolicy
from chainmail._internal.kube import KubeClient


def _fast(deadline: float = 2.0) -> RetryPolicy:
    return RetryPolicy(deadline=deadline, initial_backoff=0.01, max_backoff=0.05, timeout=(2.0, 5.0))


@pytest.fixture
def fast_retry() -> Callable[..., RetryPolicy]:
    """Make retry policies that give up quickly, so fault tests stay fast."""
    return _fast


@pytest.fixture
def kube(kube_api, tmp_path: Path) -> KubeClient:
    """A client for the API double, built from a kubeconfig as a user would."""
    return KubeClient.from_environment(kube_api.kubeconfig(tmp_path), retry=_fast())
