"""Stand-ins and fixtures for the policy and report tests.

``StandIn`` has the fields of ``chainmail.verify.Verified`` that policy and report read, so these
tests do not depend on verification: they feed genuine Chains statements (the conformance
payloads and the real chains-run fixture) straight to the policy engine.
"""

from __future__ import annotations

import base64
import copy
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INTOTO = "application/vnd.in-toto+json"
CHAINS_RUN_IMAGE = "127.0.0.1:5000/demo/app@sha256:188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb"
FORMATS = ("v1", "v2alpha3", "v2alpha4")


@dataclass
class StandIn:
    """A verified statement, as chainmail.verify returns it."""

    ref: str
    statement: dict[str, Any] | None
    layout: str = "dsse"
    payload_type: str = INTOTO
    payload: bytes = b""
    key_id: str = "SHA256:test-key"
    cert: str = ""

    def __post_init__(self) -> None:
        if not self.payload and self.statement is not None:
            self.payload = json.dumps(self.statement, sort_keys=True).encode()


@pytest.fixture(scope="session")
def conformance(shared: Path) -> Callable[[str, str], dict[str, Any]]:
    """``conformance(case, fmt)`` → a deep copy of Chains' statement for that case and format."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def load(case: str, fmt: str) -> dict[str, Any]:
        if (case, fmt) not in cache:
            path = shared / "conformance" / "chains-formats" / case / f"expected-slsa-{fmt}.json"
            cache[(case, fmt)] = json.loads(path.read_text())["payload"]
        return copy.deepcopy(cache[(case, fmt)])

    return load


@pytest.fixture(scope="session")
def conformance_cases(shared: Path) -> list[str]:
    base = shared / "conformance" / "chains-formats"
    return sorted(p.name for p in base.iterdir() if (p / "expected-slsa-v1.json").exists())


@pytest.fixture(scope="session")
def chains_run_statement(shared: Path) -> tuple[bytes, dict[str, Any]]:
    """The statement the real Chains controller stored on the fixture TaskRun (raw bytes, parsed)."""
    run = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    uid = run["metadata"]["uid"]
    raw = base64.b64decode(run["metadata"]["annotations"][f"chains.tekton.dev/payload-taskrun-{uid}"])
    return raw, json.loads(raw)


@pytest.fixture
def chains_run_verified(chains_run_statement: tuple[bytes, dict[str, Any]]) -> StandIn:
    raw, statement = chains_run_statement
    return StandIn(CHAINS_RUN_IMAGE, copy.deepcopy(statement), payload=raw)


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[..., Path]:
    """``write_policy(rules_yaml, name=…, extra_spec=…)`` → path of a policy file."""
    counter = iter(range(1000))

    def write(rules: str, *, name: str = "test", spec_extra: str = "") -> Path:
        body = textwrap.indent(textwrap.dedent(rules).strip("\n"), "    ")
        text = (f"apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: {name}\nspec:\n"
                f"{textwrap.indent(textwrap.dedent(spec_extra), '  ')}  rules:\n{body}\n")
        path = tmp_path / f"policy-{next(counter)}.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def standin() -> type[StandIn]:
    """The StandIn class (a fixture, so test modules need not import this conftest)."""
    return StandIn


@pytest.fixture(scope="session")
def examples(repo: Path) -> Path:
    """examples/policies/."""
    return repo / "examples" / "policies"
