"""Fixtures for the Tekton packaging tests: the CRD schemas from ../shared and the generator."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from catalog_support import TASKS

from tooling import require_tool


@pytest.fixture(scope="session")
def schemas(shared: Path) -> Path:
    """The Tekton CRD schemas (skips, with the reason, when ../shared is absent)."""
    path = shared / "schemas" / "tekton-pipeline"
    if not (path / "300-task.yaml").exists():
        require_tool("../shared", f"Tekton CRD schemas not found under {path} (set CHAINMAIL_SHARED)")
    return shared


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    """tasks/generate_stepactions.py, imported as a module."""
    spec = importlib.util.spec_from_file_location("generate_stepactions", TASKS / "generate_stepactions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_stepactions"] = module
    spec.loader.exec_module(module)
    return module
