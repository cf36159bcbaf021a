"""Shared fixtures: paths to the repo and ../shared, plus the real-service doubles.

The registry fixture (``tests/doubles/registry.py``) starts Debian's docker-registry on
127.0.0.1; the Kubernetes API double (``tests/doubles/kube.py``) is a small HTTP server
that follows the real API's status codes, resourceVersion and (opt-in) RBAC rules.

A test that cannot run because a tool or ``../shared`` is missing calls
:func:`tooling.require_tool`: it skips with the reason locally and fails under ``CI=true``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tooling import REPO, require_tool, shared_dir, under_ci

pytest_plugins = ["doubles.registry", "doubles.kube"]

@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared reference material; tests that need it skip with a reason when it is absent."""
    path = shared_dir()
    if not (path / "README.md").exists():
        require_tool("../shared", f"shared reference material not found at {path} (set CHAINMAIL_SHARED)")
    return path


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def key(shared: Path) -> str:
    """The shared cosign key directory (cosign.key, cosign.pub, cosign.password = s3cret)."""
    path = shared / "fixtures" / "cosign-keys" / "ecdsa-p256-password"
    if not (path / "cosign.key").exists():
        require_tool("../shared", f"cosign test key not found at {path}")
    return str(path)


@pytest.fixture(autouse=True)
def _forget_registry_auth() -> None:
    """Each test starts without the process's remembered registry challenges and tokens.

    They are keyed by ``host:port``; a port reused by a later test's server must not inherit them.
    Only when the registry client is already imported (import-cost tests look at ``sys.modules``).
    """
    import sys

    registry = sys.modules.get("chainmail._internal.registry")
    if registry is not None:
        registry.forget_auth()


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether missing tools skip (local) or fail (CI=true)."""
    return f"chainmail: missing tools {'FAIL the run (CI=true)' if under_ci() else 'skip with a reason'}"
