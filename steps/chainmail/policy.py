"""Policy gate: CEL rules over verified provenance ("verify what the provenance says").

Signature verification proves *who* signed a statement; a policy checks *what* the statement
claims: the builder, the source repository and commit, pinned step images, the predicate type,
timestamps. A policy is a small YAML file (``docs/policy.md``)::

    apiVersion: chainmail.dev/v1alpha1
    kind: Policy
    metadata: {name: release}
    spec:
      predicateTypes: [https://slsa.dev/provenance/v1]
      rules:
        - name: trusted-builder
          expression: builder == 'https://tekton.dev/chains/v2'
          message: the image must be built by the cluster's chainmail builder

Use it on what :func:`chainmail.verify.verify_attestation` returned::

    from chainmail.policy import evaluate, load_policy

    result = evaluate(load_policy(Path("release.yaml")), verified)
    print(result.to_text())            # one PASS/FAIL line per rule and statement
    if not result.passed: ...

Every rule sees the whole statement plus helpers normalised from SLSA v0.2 (``slsa/v1``,
``in-toto``) and SLSA v1.0 (``slsa/v2alpha3``/``v2alpha4``), so one policy works for both formats;
:func:`policy_inputs` computes them and ``docs/policy.md`` lists them.

**Why cel-python (``celpy``).** CEL is what Tekton users already write (Triggers
interceptors, ``when`` expressions, Kubernetes validating admission policies), so rules read
the same here. cel-python is maintained, pure Python (no compiled extension in the step
image) and covers the CEL standard library and macros (``all``, ``exists``, ``filter``,
``map``, ``has``, ``matches``, timestamps and durations). It is imported lazily: only policy
evaluation needs it (extra ``chainmail[policy]``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from chainmail.errors import ConfigError

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

Severity = Literal["error", "warning"]
SEVERITIES: tuple[str, ...] = ("error", "warning")

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_METADATA_FIELDS = ("name", "description", "labels", "annotations")
_SPEC_FIELDS = ("description", "predicateTypes", "rules")
_RULE_FIELDS = ("name", "expression", "message", "severity")

#: Run params that name the branch or ref that was built, most specific first.
_REF_PARAMS = ("CHAINS-GIT_REF", "revision", "git-revision", "GIT_REVISION", "gitRevision", "GIT_REF",
               "git-ref", "branch", "GIT_BRANCH")
_REF_SUFFIX = re.compile(r"(?i)[-_](ref|branch|revision)$")


class VerifiedLike(Protocol):
    """What :func:`evaluate` reads from each ``chainmail.verify.Verified``."""

    ref: str
    layout: str
    payload_type: str
    payload: bytes
    statement: dict[str, Any] | None
    key_id: str
    cert: str


# --------------------------------------------------------------------------- model


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


# --------------------------------------------------------------------------- loading


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

    env = _cel_environment()
    compiled = tuple(_compile(env, rule, where) for rule in rules)
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


# --------------------------------------------------------------------------- CEL


def _import_celpy() -> Any:
    try:
        import celpy
    except ImportError:
        raise ConfigError("policy evaluation needs cel-python",
                          hint="pip install 'chainmail[policy]' (or cel-python>=0.5)") from None
    return celpy


def _cel_environment() -> Any:
    return _import_celpy().Environment()


def _compile(env: Any, rule: Rule, where: str) -> Rule:
    celpy = _import_celpy()
    try:
        ast = env.compile(rule.expression)
    except celpy.CELParseError as exc:
        detail = _syntax_error_text(rule.expression, exc)
        raise ConfigError(f"{where}: rule '{rule.name}': {detail}") from None
    program = env.program(ast, _extra_functions())
    return Rule(rule.name, rule.expression, rule.message, rule.severity, program)


def _syntax_error_text(expression: str, exc: Any) -> str:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    if line is None or column is None:
        first = str(exc.args[0] if exc.args else exc).strip().splitlines()
        return f"CEL syntax error: {first[0] if first else 'invalid expression'}"
    lines = expression.splitlines() or [""]
    offset = sum(len(x) + 1 for x in lines[: line - 1]) + column - 1
    rest = expression[offset:].strip()
    near = rest[:20].splitlines()[0] if rest else ""
    if not rest:
        what = "unexpected end of expression"
    elif len(rest) <= 3 and " " not in rest:  # the parser stopped at the last token: something is missing
        what = f"unexpected end of expression after {rest!r}"
    else:
        what = f"unexpected {near!r}"
    return f"CEL syntax error at {line}:{column}: {what}"


def _extra_functions() -> dict[str, Callable[..., Any]]:
    """The CEL ``strings`` extension functions Tekton/Kubernetes users reach for."""
    from celpy import CELEvalError, celtypes

    def strings(*args: Any) -> bool:
        return all(isinstance(a, str) for a in args)

    def lower_ascii(s: Any) -> Any:
        if not strings(s):
            return CELEvalError("no such overload: lowerAscii", TypeError, None)
        return celtypes.StringType(str(s).lower())

    def upper_ascii(s: Any) -> Any:
        if not strings(s):
            return CELEvalError("no such overload: upperAscii", TypeError, None)
        return celtypes.StringType(str(s).upper())

    def split(s: Any, sep: Any) -> Any:
        if not strings(s, sep):
            return CELEvalError("no such overload: split", TypeError, None)
        return celtypes.ListType([celtypes.StringType(p) for p in str(s).split(str(sep))])

    def trim(s: Any) -> Any:
        if not strings(s):
            return CELEvalError("no such overload: trim", TypeError, None)
        return celtypes.StringType(str(s).strip())

    def replace(s: Any, old: Any, new: Any) -> Any:
        if not strings(s, old, new):
            return CELEvalError("no such overload: replace", TypeError, None)
        return celtypes.StringType(str(s).replace(str(old), str(new)))

    return {"lowerAscii": lower_ascii, "upperAscii": upper_ascii, "split": split, "trim": trim,
            "replace": replace}


_OPERATORS = {"addition_add": "+", "addition_sub": "-", "multiplication_mul": "*", "multiplication_div": "/",
              "multiplication_mod": "%", "relation_lt": "<", "relation_le": "<=", "relation_gt": ">",
              "relation_ge": ">=", "relation_eq": "==", "relation_ne": "!=", "relation_in": "in"}


def _eval_error_text(exc: BaseException) -> str:
    """celpy's error text without its activation dump and Python class names."""
    text = str(exc.args[0]) if exc.args else str(exc)
    text = text.split(" (in activation", 1)[0]
    text = re.sub(r"Token\('RULE', '(\w+)'\)", lambda m: repr(_OPERATORS.get(m.group(1), m.group(1))), text)
    text = re.sub(r"<class '(?:celpy\.celtypes\.)?(\w+?)(?:Type)?'>",
                  lambda m: "null" if m.group(1) == "None" else m.group(1).lower(), text)
    text = text.replace("applied to '(", "applied to (").replace(")'", ")")
    return " ".join(text.split())[:300] or type(exc).__name__


# --------------------------------------------------------------------------- evaluation


def evaluate(policy: Policy, verified: list[Any], *, now: dt.datetime | None = None) -> PolicyResult:
    """Evaluate every rule against every verified statement.

    Entries without an in-toto statement (plain image signatures) are not checked. A rule that
    cannot be evaluated (missing field, wrong type) fails with the CEL error text; when nothing
    carries a statement, every rule fails with a message saying so.
    """
    celpy = _import_celpy()
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
        activation = _to_cel(inputs)
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
        error = _eval_error_text(value)
        return _errored(rule, artifact, error)
    from celpy import celtypes

    if not isinstance(value, bool | celtypes.BoolType):  # BoolType subclasses int, not bool
        type_name = type(value).__name__.removesuffix("Type").lower()
        error = f"the expression returned {type_name}, not a bool"
        return _errored(rule, artifact, error)
    return RuleResult(rule.name, bool(value), rule.message, artifact, rule.severity)


def _errored(rule: Rule, artifact: str, error: str) -> RuleResult:
    return RuleResult(rule.name, False, f"{rule.message} (error: {error})", artifact, rule.severity, error)


def _to_cel(inputs: dict[str, Any]) -> dict[str, Any]:
    import celpy
    from celpy import celtypes

    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if name in ("startedOn", "finishedOn", "now"):
            out[name] = celtypes.TimestampType(value) if isinstance(value, dt.datetime) else None
        else:
            out[name] = celpy.json_to_cel(value)
    return out


# --------------------------------------------------------------------------- normalised inputs


def policy_inputs(item: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The variables a rule sees for one verified statement, as plain Python values.

    Timestamps (``startedOn``, ``finishedOn``, ``now``) are aware datetimes or None; everything
    else is JSON-shaped. See ``docs/policy.md`` for the meaning of each name.
    """
    statement: dict[str, Any] = getattr(item, "statement", None) or {}
    predicate = _dict(statement.get("predicate"))
    facts = statement_facts(statement)
    run = dict(facts["run"])
    namespace, name = _run_of(item)
    run["namespace"] = namespace or run["namespace"]
    run["name"] = name or run["name"]
    ref = str(getattr(item, "ref", "") or "")
    repository, _, digest = ref.partition("@") if "@" in ref else ("", "", "")
    cert = str(getattr(item, "cert", "") or "")
    identity, issuer = cert_identity(cert)
    return {
        "statement": statement,
        "predicate": predicate,
        "predicateType": str(statement.get("predicateType") or ""),
        "subject": _list(statement.get("subject")),
        "artifact": ref,
        "builder": facts["builder"],
        "buildType": facts["buildType"],
        "source": facts["source"],
        "sources": facts["sources"],
        "configSource": facts["configSource"],
        "params": facts["params"],
        "stepImages": facts["stepImages"],
        "materials": facts["materials"],
        "run": run,
        "namespace": run["namespace"],
        "serviceAccount": run["serviceAccount"],
        "startedOn": _timestamp(facts["startedOn"]),
        "finishedOn": _timestamp(facts["finishedOn"]),
        "signer": {"keyId": str(getattr(item, "key_id", "") or ""), "cert": cert,
                   "identity": identity, "issuer": issuer},
        "image": {"ref": ref if digest else "", "repository": repository, "digest": digest},
        "now": now or dt.datetime.now(dt.UTC),
    }


def statement_facts(statement: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise a Chains statement (SLSA v0.2 or v1.0) into version-independent facts.

    Returns ``builder``, ``buildType``, ``source``, ``sources``, ``configSource``, ``params``,
    ``stepImages``, ``materials``, ``run`` (``kind``, ``name``, ``namespace``,
    ``serviceAccount``, ``uid``), ``startedOn``/``finishedOn`` (strings as written, or ""), and
    ``tasks`` (PipelineRun children, for reports).
    """
    predicate = _dict(statement.get("predicate"))
    if "buildDefinition" in predicate or "runDetails" in predicate:
        return _facts_v1(predicate)
    return _facts_v02(predicate)


def _facts_v02(predicate: dict[str, Any]) -> dict[str, Any]:
    invocation = _dict(predicate.get("invocation"))
    build_config = _dict(predicate.get("buildConfig"))
    metadata = _dict(predicate.get("metadata"))
    params = _dict(invocation.get("parameters"))
    build_type = str(predicate.get("buildType") or "")
    tasks = [_dict(t) for t in _list(build_config.get("tasks"))]
    steps = [_dict(s) for s in _list(build_config.get("steps"))]
    for task in tasks:
        steps.extend(_dict(s) for s in _list(task.get("steps")))
    step_images = _unique(str(_dict(s.get("environment")).get("image") or "") for s in steps)

    materials = [_material(m) for m in _list(predicate.get("materials"))]
    config = _config_source_v02(_dict(invocation.get("configSource")))
    definitions = {(config["uri"], config["commit"])}
    for task in tasks:
        task_config = _config_source_v02(_dict(_dict(task.get("invocation")).get("configSource")))
        definitions.add((task_config["uri"], task_config["commit"]))
    kind = "PipelineRun" if build_type.endswith("/PipelineRun") or tasks else (
        "TaskRun" if build_type.endswith("/TaskRun") or steps else "")
    git_inputs = [m for m in materials if _is_git(m) and (m["uri"], _commit_of(m)) not in definitions]
    if kind == "PipelineRun":  # the pipeline-level CHAINS-GIT material comes last
        git_inputs.reverse()
    source = _pick_source(params, git_inputs, config)

    service_account = next((str(t["serviceAccountName"]) for t in tasks if t.get("serviceAccountName")), "")
    return {
        "builder": str(_dict(predicate.get("builder")).get("id") or ""),
        "buildType": build_type,
        "source": source,
        "sources": _sources(git_inputs),
        "configSource": config,
        "params": params,
        "stepImages": step_images,
        "materials": materials,
        "run": {"kind": kind, "name": "", "namespace": "", "serviceAccount": service_account, "uid": ""},
        "startedOn": str(metadata.get("buildStartedOn") or ""),
        "finishedOn": str(metadata.get("buildFinishedOn") or ""),
        "tasks": [_task_v02(t) for t in tasks],
    }


def _facts_v1(predicate: dict[str, Any]) -> dict[str, Any]:
    definition = _dict(predicate.get("buildDefinition"))
    details = _dict(predicate.get("runDetails"))
    metadata = _dict(details.get("metadata"))
    external = _dict(definition.get("externalParameters"))
    run_spec = _dict(external.get("runSpec"))
    params = _params_list(run_spec.get("params"))
    deps = [_dict(d) for d in _list(definition.get("resolvedDependencies"))]
    materials = [_material(d) for d in deps]

    step_images = _unique(_image_ref(m) for m in materials if not m["name"] and m["uri"].startswith("oci://"))
    git_inputs = [m for m in materials if m["name"] == "inputs/result" and _is_git(m)]
    is_pipeline = any(k in run_spec for k in ("pipelineRef", "pipelineSpec")) or any(
        m["name"] in ("pipeline", "pipelineTask") for m in materials)
    if is_pipeline:  # the pipeline-level CHAINS-GIT input comes last
        git_inputs.reverse()
    definition_dep = next((m for m in materials if m["name"] in ("task", "pipeline")), None)
    config = _config_source_v1(_dict(external.get("buildConfigSource")), definition_dep, run_spec)
    source = _pick_source(params, git_inputs, config)

    template = _dict(run_spec.get("taskRunTemplate"))
    service_account = str(run_spec.get("serviceAccountName") or template.get("serviceAccountName") or "")
    tasks = [_task_v1(d) for d in deps if d.get("name") == "pipelineTask"]
    namespace = next((t["namespace"] for t in tasks if t.get("namespace")), "")
    return {
        "builder": str(_dict(details.get("builder")).get("id") or ""),
        "buildType": str(definition.get("buildType") or ""),
        "source": source,
        "sources": _sources(git_inputs),
        "configSource": config,
        "params": params,
        "stepImages": step_images,
        "materials": materials,
        "run": {"kind": "PipelineRun" if is_pipeline else ("TaskRun" if run_spec or deps else ""),
                "name": "", "namespace": namespace, "serviceAccount": service_account,
                "uid": str(metadata.get("invocationId") or "")},
        "startedOn": str(metadata.get("startedOn") or ""),
        "finishedOn": str(metadata.get("finishedOn") or ""),
        "tasks": tasks,
    }


def _pick_source(params: Mapping[str, Any], git_inputs: list[dict[str, Any]],
                 config: dict[str, str]) -> dict[str, str]:
    """The code that was built: a git input material, else CHAINS-GIT params, else the definition's source.

    Materials come first because Chains builds the CHAINS-GIT material from the Task's param
    defaults, then the run's params, then its results (later wins), so it is the final value.
    """
    ref = _ref_param(params)
    if git_inputs:
        m = git_inputs[0]
        return {"repository": normalize_repository(m["uri"]), "uri": m["uri"], "commit": _commit_of(m),
                "ref": ref, "origin": "materials"}
    url, commit = params.get("CHAINS-GIT_URL"), params.get("CHAINS-GIT_COMMIT")
    if isinstance(url, str) and url and isinstance(commit, str) and commit:
        return {"repository": normalize_repository(url), "uri": url, "commit": commit, "ref": ref,
                "origin": "params"}
    if config["uri"]:
        return {"repository": config["repository"], "uri": config["uri"], "commit": config["commit"],
                "ref": ref or config["ref"], "origin": "configSource"}
    return {"repository": "", "uri": "", "commit": "", "ref": ref, "origin": ""}


def _sources(git_inputs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"repository": normalize_repository(m["uri"]), "uri": m["uri"], "commit": _commit_of(m)}
            for m in git_inputs]


def _ref_param(params: Mapping[str, Any]) -> str:
    for name in _REF_PARAMS:
        value = params.get(name)
        if isinstance(value, str) and value:
            return value
    for name, value in params.items():
        if (_REF_SUFFIX.search(str(name)) and "image" not in str(name).lower()
                and isinstance(value, str) and value):
            return value
    return ""


def _config_source_v02(config: dict[str, Any]) -> dict[str, str]:
    uri = str(config.get("uri") or "")
    digest = _dict(config.get("digest"))
    return {"repository": normalize_repository(uri) if uri else "", "uri": uri,
            "commit": str(digest.get("sha1") or next(iter(digest.values()), "") or ""),
            "entryPoint": str(config.get("entryPoint") or ""), "ref": ""}


def _config_source_v1(build_config: dict[str, Any], dep: dict[str, Any] | None,
                      run_spec: dict[str, Any]) -> dict[str, str]:
    ref_params = _params_list(_dict(run_spec.get("pipelineRef") or run_spec.get("taskRef")).get("params"))
    revision = ref_params.get("revision")
    revision = revision if isinstance(revision, str) else ""
    if build_config:
        uri = str(build_config.get("repository") or "")
        commit = str(build_config.get("ref") or "").partition(":")[2] or str(build_config.get("ref") or "")
        return {"repository": normalize_repository(uri) if uri else "", "uri": uri, "commit": commit,
                "entryPoint": str(build_config.get("path") or ""), "ref": revision}
    if dep is not None:
        return {"repository": normalize_repository(dep["uri"]) if dep["uri"] else "", "uri": dep["uri"],
                "commit": _commit_of(dep), "entryPoint": "", "ref": revision}
    return {"repository": "", "uri": "", "commit": "", "entryPoint": "", "ref": revision}


def _task_v02(task: dict[str, Any]) -> dict[str, Any]:
    results = {}
    for r in _list(task.get("results")):
        r = _dict(r)
        if r.get("name"):
            results[str(r["name"])] = r.get("value")
    return {"name": str(task.get("name") or ""), "after": [str(a) for a in _list(task.get("after"))],
            "status": str(task.get("status") or ""), "results": results, "namespace": "",
            "ref": _dict(task.get("ref")).get("name") or "", "uri": "", "digest": ""}


def _task_v1(dep: dict[str, Any]) -> dict[str, Any]:
    """A ``pipelineTask`` resolvedDependency; with buildType slsa-tekton its content is the TaskRun."""
    material = _material(dep)
    task: dict[str, Any] = {"name": "", "after": [], "status": "", "results": {}, "namespace": "",
                            "ref": "", "uri": material["uri"], "digest": material["digest"]}
    content = dep.get("content")
    if isinstance(content, str) and content:
        try:
            taskrun = json.loads(base64.b64decode(content, validate=True))
        except (ValueError, binascii.Error):
            taskrun = None
        if isinstance(taskrun, dict):
            md = _dict(taskrun.get("metadata"))
            labels = _dict(md.get("labels"))
            task["name"] = str(labels.get("tekton.dev/pipelineTask") or md.get("name") or "")
            task["namespace"] = str(md.get("namespace") or "")
            status = _dict(taskrun.get("status"))
            for r in _list(status.get("results")):
                r = _dict(r)
                if r.get("name"):
                    task["results"][str(r["name"])] = r.get("value")
            conditions = [_dict(c) for c in _list(status.get("conditions"))]
            task["status"] = next(
                (str(c.get("reason") or "") for c in conditions if c.get("type") == "Succeeded"), "")
    return task


# --------------------------------------------------------------------------- small helpers


def normalize_repository(uri: str) -> str:
    """``git+https://github.com/a/b.git`` → ``https://github.com/a/b`` (no ``git+``, ``.git`` or ``/``)."""
    uri = uri.strip()
    uri = uri.removeprefix("git+")
    uri = uri.rstrip("/")
    return uri.removesuffix(".git")


def cert_identity(pem: str) -> tuple[str, str]:
    """The (subject alternative name, OIDC issuer) of a Fulcio-style certificate; ``("", "")`` if none."""
    if not pem or "BEGIN CERTIFICATE" not in pem:
        return "", ""
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem.encode())
    except Exception:  # a malformed cert is reported by verify, not here
        return "", ""
    identity = ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.UniformResourceIdentifier),
                 *san.get_values_for_type(x509.RFC822Name)]
        identity = str(names[0]) if names else ""
    except x509.ExtensionNotFound:
        pass
    issuer = ""
    for oid, der in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        except x509.ExtensionNotFound:
            continue
        raw = getattr(ext, "value", b"")
        if der and len(raw) > 2 and raw[0] == 0x0C:  # DER UTF8String, short or long length form
            length_bytes = raw[1] - 0x80 if raw[1] & 0x80 else 0
            raw = raw[2 + length_bytes:]
        issuer = raw.decode("utf-8", "replace")
        break
    return identity, issuer


_RUN_REF = re.compile(r"(?i)(?:(taskrun|pipelinerun)[/ ])?([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([-a-z0-9.]+)")


def run_of_ref(ref: str) -> tuple[str, str, str] | None:
    """``(kind, namespace, name)`` of a run reference (``taskrun/ns/name``, ``ns/name``); None for images."""
    match = _RUN_REF.fullmatch(ref.strip())
    if match is None or "@" in ref:
        return None
    kind = {"taskrun": "TaskRun", "pipelinerun": "PipelineRun"}.get((match.group(1) or "").lower(), "")
    return kind, match.group(2), match.group(4)


def _run_of(item: Any) -> tuple[str, str]:
    """(namespace, name) of the run a verified item came from, when it says."""
    run = getattr(item, "run", None)
    if isinstance(run, dict):
        md = _dict(run.get("metadata"))
        return str(md.get("namespace") or ""), str(md.get("name") or "")
    parsed = run_of_ref(str(getattr(item, "ref", "") or ""))
    namespace, name = (parsed[1], parsed[2]) if parsed else ("", "")
    direct = getattr(item, "namespace", None)
    if isinstance(direct, str) and direct:
        namespace = direct
    return namespace, name


def _material(raw: object) -> dict[str, Any]:
    m = _dict(raw)
    digest = _dict(m.get("digest"))
    return {"name": str(m.get("name") or ""), "uri": str(m.get("uri") or ""),
            "digest": {str(k): str(v) for k, v in digest.items()}}


def _is_git(m: dict[str, Any]) -> bool:
    return m["uri"].startswith("git+") or "sha1" in m["digest"]


def _commit_of(m: dict[str, Any]) -> str:
    digest = m["digest"]
    return digest.get("sha1") or next(iter(digest.values()), "")


def _image_ref(m: dict[str, Any]) -> str:
    digest = m["digest"]
    if not digest:
        return m["uri"]
    alg = "sha256" if "sha256" in digest else next(iter(digest))
    return f"{m['uri']}@{alg}:{digest[alg]}"


def _params_list(value: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in _list(value):
        p = _dict(p)
        if isinstance(p.get("name"), str):
            out[p["name"]] = p.get("value")
    return out


def _timestamp(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
