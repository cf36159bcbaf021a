"""Fixtures for the signing tests: fixture key directories and a fake Kubernetes Secret store."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainmail.context import Context
from chainmail.errors import NotFoundError

FIXTURE_KEYS = ("ecdsa-p256-password", "ecdsa-p256-empty-password", "legacy-cosign-label")


class FakeKube:
    """Just the two Secret calls the signing code makes, backed by a dict."""

    def __init__(self, secrets: dict[tuple[str, str], dict[str, bytes]] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.applied: list[tuple[str, str, dict[str, bytes], bool]] = []
        self.reads = 0

    def get_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        self.reads += 1
        try:
            return dict(self.secrets[(namespace, name)])
        except KeyError:
            raise NotFoundError(f"secret {namespace}/{name} not found") from None

    def apply_secret(self, namespace: str, name: str, data: dict[str, bytes], immutable: bool = False) -> None:
        self.applied.append((namespace, name, dict(data), immutable))
        self.secrets[(namespace, name)] = dict(data)


@pytest.fixture
def keys_dir(shared: Path) -> Path:
    return shared / "fixtures" / "cosign-keys"


@pytest.fixture
def chains_run(shared: Path) -> Path:
    return shared / "fixtures" / "chains-run"


@pytest.fixture
def fake_kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def ctx(fake_kube: FakeKube) -> Context:
    context = Context()
    context.kube = fake_kube  # type: ignore[assignment]
    return context


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not see the caller's COSIGN_PASSWORD or signing-secrets override."""
    for name in ("COSIGN_PASSWORD", "CHAINMAIL_SIGNING_SECRETS", "CHAINMAIL_KEY"):
        monkeypatch.delenv(name, raising=False)
