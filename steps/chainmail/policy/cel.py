"""CEL: compiling rules, chainmail's extra functions, error text and values for the activation."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from chainmail.errors import ConfigError
from chainmail.policy.model import Rule
from chainmail.policy.urls import normalize_repository


def import_celpy() -> Any:
    """cel-python, imported lazily (only evaluation needs it)."""
    try:
        import celpy
    except ImportError:
        raise ConfigError("policy evaluation needs cel-python",
                          hint="pip install 'chainmail[policy]' (or cel-python>=0.5)") from None
    return celpy


def environment() -> Any:
    return import_celpy().Environment()


def compile_rule(env: Any, rule: Rule, where: str) -> Rule:
    """``rule`` with its compiled program; a syntax error is a ConfigError naming the rule and position."""
    celpy = import_celpy()
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

    def normalize_repo(s: Any) -> Any:
        if not strings(s):
            return CELEvalError("no such overload: normalizeRepo", TypeError, None)
        return celtypes.StringType(normalize_repository(str(s)))

    return {"lowerAscii": lower_ascii, "upperAscii": upper_ascii, "split": split, "trim": trim,
            "replace": replace, "normalizeRepo": normalize_repo}


_OPERATORS = {"addition_add": "+", "addition_sub": "-", "multiplication_mul": "*", "multiplication_div": "/",
              "multiplication_mod": "%", "relation_lt": "<", "relation_le": "<=", "relation_gt": ">",
              "relation_ge": ">=", "relation_eq": "==", "relation_ne": "!=", "relation_in": "in"}


def eval_error_text(exc: BaseException) -> str:
    """celpy's error text without its activation dump and Python class names."""
    text = str(exc.args[0]) if exc.args else str(exc)
    text = text.split(" (in activation", 1)[0]
    text = re.sub(r"Token\('RULE', '(\w+)'\)", lambda m: repr(_OPERATORS.get(m.group(1), m.group(1))), text)
    text = re.sub(r"<class '(?:celpy\.celtypes\.)?(\w+?)(?:Type)?'>",
                  lambda m: "null" if m.group(1) == "None" else m.group(1).lower(), text)
    text = text.replace("applied to '(", "applied to (").replace(")'", ")")
    return " ".join(text.split())[:300] or type(exc).__name__


def to_cel(value: Any) -> Any:
    """A plain Python value (JSON-shaped, with aware datetimes for timestamps) as a CEL value."""
    from celpy import celtypes

    if isinstance(value, dt.datetime):
        return celtypes.TimestampType(value)
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(str(k)): to_cel(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(v) for v in value])
    if value is None or isinstance(value, bool | int | float | str):
        return import_celpy().json_to_cel(value)
    return celtypes.StringType(str(value))
