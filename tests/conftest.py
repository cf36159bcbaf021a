"""Shared fixtures: paths to the repo and ../shared, plus the real-service doubles.

The registry fixture (``tests/doubles/registry.py``) starts Debian's docker-registry on
127.0.0.1; the Kubernetes API double (``tests/doubles/kube.py``) is a small HTTP server
that follows the real API's status codes and resourceVersion rules.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["doubles.registry", "doubles.kube"]

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """``../shared`` (or ``$CHAINMAIL_SHARED``)."""
    return Path(os.environ.get("CHAINMAIL_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared reference material; tests that need it skip with a reason when it is absent."""
    path = shared_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"shared reference material not found at {path} (set CHAINMAIL_SHARED)")
    return path


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def key(shared: Path) -> str:
    """The shared cosign key directory (cosign.key, cosign.pub, cosign.password = s3cret)."""
    path = shared / "fixtures" / "cosign-keys" / "ecdsa-p256-password"
    if not (path / "cosign.key").exists():
        pytest.skip(f"cosign test key not found at {path}")
    return str(path)
