"""Reading, validating and compiling policy files (every problem is a ConfigError, exit 3)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from chainmail.errors import ConfigError
from chainmail.policy.cel import compile_rule, environment
from chainmail.policy.model import SEVERITIES, Policy, Rule

API_VERSION = "chainmail.dev/v1alpha1"
KIND = "Policy"

SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"

#: cosign's ``--type`` short names, accepted in ``spec.predicateTypes``.
PREDICATE_ALIASES: dict[str, str] = {
    "slsaprovenance": SLSA_V02,
    "slsaprovenance02": SLSA_V02,
    "slsaprovenance1": SLSA_V1,
}

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_METADATA_FIELDS = ("name", "description", "labels", "annotations")
_SPEC_FIELDS = ("description", "predicateTypes", "rules")
_RULE_FIELDS = ("name", "expression", "message", "severity")


def load_policy(path: Path) -> Policy:
    """Read, validate and compile a policy file; every problem is a :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"policy {path}: cannot read it ({exc.strerror or exc})") from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse a policy from YAML (or JSON) text."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at {mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"policy {source}: YAML error{where}: {problem}") from None
    return policy_from_mapping(doc, source)


def policy_from_mapping(doc: object, source: str = "<policy>") -> Policy:
    """Validate a parsed policy document and compile its rules."""
    where = f"policy {source}"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping with apiVersion, kind, metadata and spec")
    _reject_unknown(doc, _TOP_FIELDS, where)
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{where}: apiVersion must be '{API_VERSION}', got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise ConfigError(f"{where}: kind must be '{KIND}', got {doc.get('kind')!r}")
    metadata = _mapping(doc.get("metadata"), f"{where}: metadata")
    _reject_unknown(metadata, _METADATA_FIELDS, f"{where}: metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: metadata.name is required")
    where = f"policy {name} ({source})"
    spec = _mapping(doc.get("spec"), f"{where}: spec")
    _reject_unknown(spec, _SPEC_FIELDS, f"{where}: spec")

    rules: list[Rule] = []
    if spec.get("predicateTypes") is not None:
        rules.append(_predicate_types_rule(spec["predicateTypes"], where))
    raw_rules = spec.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where}: spec.rules must be a list of rules")
    for index, raw in enumerate(raw_rules):
        rules.append(_rule_from_mapping(raw, index, where))
    if not rules:
        raise ConfigError(f"{where}: spec has no rules (an empty policy would pass anything)")
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ConfigError(f"{where}: rule '{rule.name}' is defined twice")
        seen.add(rule.name)

    env = environment()
    compiled = tuple(compile_rule(env, rule, where) for rule in rules)
    description = metadata.get("description") or spec.get("description") or ""
    return Policy(name=name, rules=compiled, source=source, description=str(description))


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _reject_unknown(doc: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in doc:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(allowed)})"
            raise ConfigError(f"{where}: unknown field '{key}'{hint}")


def _rule_from_mapping(raw: object, index: int, where: str) -> Rule:
    label = f"rule #{index + 1}"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"].strip():
        label = f"rule '{raw['name']}'"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {label} must be a mapping with name, expression and message")
    _reject_unknown(raw, _RULE_FIELDS, f"{where}: {label}")
    for key in ("name", "expression", "message"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {label}: '{key}' is required and must be a non-empty string")
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: {label}: severity must be one of {', '.join(SEVERITIES)}, "
                          f"got {severity!r}")
    return Rule(name=raw["name"].strip(), expression=raw["expression"], message=raw["message"].strip(),
                severity=severity)


def _predicate_types_rule(value: object, where: str) -> Rule:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: spec.predicateTypes must be a non-empty list of predicate type URIs")
    types = [PREDICATE_ALIASES.get(v, v) for v in value]
    literal = ", ".join(json.dumps(t) for t in types)
    return Rule(name="predicate-types", expression=f"predicateType in [{literal}]",
                message=f"the predicate type must be one of: {', '.join(types)}")
