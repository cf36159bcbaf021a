"""The policy model: rules, policies and their results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]
SEVERITIES: tuple[str, ...] = ("error", "warning")



@dataclass(frozen=True)
class Rule:
    """One CEL rule; ``expression`` must evaluate to a bool (true = pass)."""

    name: str
    expression: str
    message: str
    severity: Severity = "error"
    _program: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Policy:
    """A loaded, compiled policy."""

    name: str
    rules: tuple[Rule, ...]
    source: str = "<policy>"
    description: str = ""


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule on one verified statement."""

    rule: str
    passed: bool
    #: The rule's message; for a runtime error, followed by ``(error: …)``.
    message: str
    #: The artifact the statement was verified for (``repo@sha256:…`` or the run).
    artifact: str
    severity: Severity = "error"
    #: CEL evaluation error text, when the rule could not be evaluated.
    error: str | None = None
    #: What the statement describes (``TaskRun``/``PipelineRun``), to tell apart statements for one artifact.
    kind: str = ""

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL``, or ``WARN`` (a failed warning-severity rule)."""
        if self.passed:
            return "PASS"
        return "WARN" if self.severity == "warning" else "FAIL"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"rule": self.rule, "passed": self.passed, "message": self.message,
                               "artifact": self.artifact, "severity": self.severity, "kind": self.kind}
        if self.error is not None:
            doc["error"] = self.error
        return doc


@dataclass(frozen=True)
class PolicyResult:
    """Every rule's result on every verified statement."""

    policy: str
    results: tuple[RuleResult, ...]

    @property
    def passed(self) -> bool:
        """True when no error-severity rule failed (warnings do not fail the policy)."""
        return all(r.passed or r.severity == "warning" for r in self.results)

    @property
    def failures(self) -> list[RuleResult]:
        """The error-severity results that failed."""
        return [r for r in self.results if not r.passed and r.severity != "warning"]

    def summary(self) -> str:
        """One line, e.g. ``policy release: FAILED (4/5 passed)``."""
        ok = sum(1 for r in self.results if r.passed)
        verdict = "passed" if self.passed else "FAILED"
        return f"policy {self.policy}: {verdict} ({ok}/{len(self.results)} passed)"

    def to_text(self) -> str:
        """One line per result: ``PASS name [artifact]: message`` (``FAIL``/``WARN`` likewise)."""
        lines = []
        for r in self.results:
            where = f" [{r.artifact}]" if r.artifact else ""
            lines.append(f"{r.status} {r.rule}{where}: {r.message}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "passed": self.passed, "results": [r.to_json() for r in self.results]}
