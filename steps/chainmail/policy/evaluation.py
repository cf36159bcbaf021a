"""Evaluating a policy on verified statements, and the variables each rule sees."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, Protocol

from chainmail.policy._shapes import as_dict, as_list
from chainmail.policy.cel import eval_error_text, import_celpy, to_cel
from chainmail.policy.model import Policy, PolicyResult, Rule, RuleResult
from chainmail.policy.runs import run_identity
from chainmail.policy.signer import cert_identity
from chainmail.policy.statement import statement_facts
from chainmail.policy.trust import trust_facts


class VerifiedLike(Protocol):
    """What :func:`evaluate` reads from each ``chainmail.verify.Verified``."""

    ref: str
    statement: dict[str, Any] | None
    key_id: str
    cert: str


def evaluate(policy: Policy, verified: list[Any], *, now: dt.datetime | None = None) -> PolicyResult:
    """Evaluate every rule against every verified statement.

    Entries without an in-toto statement (plain image signatures) are not checked. A rule that
    cannot be evaluated (missing field, wrong type) fails with the CEL error text; when nothing
    carries a statement, every rule fails with a message saying so.
    """
    celpy = import_celpy()
    now = now or dt.datetime.now(dt.UTC)
    results: list[RuleResult] = []
    statements = [v for v in verified if isinstance(getattr(v, "statement", None), dict)]
    if not statements:
        for rule in policy.rules:
            message = f"{rule.message} (no verified provenance statement to check)"
            results.append(RuleResult(rule.name, False, message, "", rule.severity,
                                      "no verified provenance statement"))
        return PolicyResult(policy.name, tuple(results))
    for item in statements:
        inputs = policy_inputs(item, now=now)
        activation = {name: to_cel(value) for name, value in inputs.items()}
        artifact = str(getattr(item, "ref", "") or "")
        for rule in policy.rules:
            result = _run_rule(celpy, rule, activation, artifact)
            results.append(replace(result, kind=inputs["run"]["kind"]))
    return PolicyResult(policy.name, tuple(results))


def _run_rule(celpy: Any, rule: Rule, activation: dict[str, Any], artifact: str) -> RuleResult:
    try:
        value = rule._program.evaluate(activation)
    except celpy.CELEvalError as exc:
        value = exc
    except Exception as exc:  # celpy surfaces some type errors as plain Python exceptions
        value = celpy.CELEvalError(f"{type(exc).__name__}: {exc}")
    if isinstance(value, celpy.CELEvalError):
        return _errored(rule, artifact, eval_error_text(value))
    from celpy import celtypes

    if not isinstance(value, bool | celtypes.BoolType):  # BoolType subclasses int, not bool
        type_name = type(value).__name__.removesuffix("Type").lower()
        return _errored(rule, artifact, f"the expression returned {type_name}, not a bool")
    return RuleResult(rule.name, bool(value), rule.message, artifact, rule.severity)


def _errored(rule: Rule, artifact: str, error: str) -> RuleResult:
    return RuleResult(rule.name, False, f"{rule.message} (error: {error})", artifact, rule.severity, error)


def policy_inputs(item: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The variables a rule sees for one verified statement, as plain Python values.

    Everything comes from the signed statement and from verification (key id, certificate), never
    from the unsigned object the statement was found on. Timestamps are aware datetimes or None;
    everything else is JSON-shaped. ``docs/policy.md`` lists each name and its trust class.
    """
    statement: dict[str, Any] = getattr(item, "statement", None) or {}
    facts = statement_facts(statement)
    cert = str(getattr(item, "cert", "") or "")
    identity, issuer = cert_identity(cert)
    signer = {"keyId": str(getattr(item, "key_id", "") or ""), "cert": cert, "identity": identity,
              "issuer": issuer}
    split = trust_facts(statement, facts, signer, run_identity(item, as_dict(statement.get("predicate"))))
    platform = split["platform"]
    run = {**platform["run"], "serviceAccount": platform["serviceAccount"]}
    ref = str(getattr(item, "ref", "") or "")
    repository, _, digest = ref.partition("@") if "@" in ref else ("", "", "")
    return {
        "facts": split,
        "statement": statement,
        "predicate": as_dict(statement.get("predicate")),
        "predicateType": str(statement.get("predicateType") or ""),
        "subject": as_list(statement.get("subject")),
        "artifact": ref,
        "builder": platform["builder"],
        "buildType": platform["buildType"],
        "configSource": facts["configSource"],
        "stepImages": platform["stepImages"],
        "run": run,
        "namespace": run["namespace"],
        "serviceAccount": platform["serviceAccount"],
        "startedOn": platform["startedOn"],
        "finishedOn": platform["finishedOn"],
        "signer": signer,
        "image": {"ref": ref if digest else "", "repository": repository, "digest": digest},
        "now": now or dt.datetime.now(dt.UTC),
    }
