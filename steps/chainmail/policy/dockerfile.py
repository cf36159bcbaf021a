"""Did the build point the image build at another Dockerfile or build context?

Build Tasks take the Dockerfile and context as params (buildah/kaniko ``DOCKERFILE``/``CONTEXT``, s2i
``PATH_CONTEXT``, pipeline-level ``dockerfile``/``dockerfile-location``/``path-context``) and pass
free-form flags through ``EXTRA_ARGS``/``BUILD_EXTRA_ARGS``, where ``--file``/``-f``,
``--dockerfile``, ``--context``/``-c`` or ``--build-context`` override them too. Every such param
with a value other than the default is evidence; anything that cannot be read (a list where a path
is expected, unbalanced quotes, a flag without its value) counts as an override (fail closed).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import Any

DOCKERFILE_DEFAULTS = frozenset({"./Dockerfile", "Dockerfile", "./Containerfile", "Containerfile"})
CONTEXT_DEFAULTS = frozenset({".", "./", ""})

_DOCKERFILE_PARAM = re.compile(r"^(?:path_?)?(?:docker|container)_?file(?:_?(?:path|location|name))?$")
_CONTEXT_PARAM = re.compile(r"^(?:(?:build|path|docker|source)_?)?context(?:_?(?:dir|directory|path|sub_?path))?$")
#: Long flags that name a Dockerfile / a context, in buildah, docker, podman and kaniko.
_FILE_FLAGS = frozenset({"file", "dockerfile", "containerfile"})
_CONTEXT_FLAGS = frozenset({"context", "context-sub-path", "build-context"})
#: Short flags: -f (file; kaniko --dockerfile), -c (kaniko --context).
_SHORT = {"f": DOCKERFILE_DEFAULTS, "c": CONTEXT_DEFAULTS}
_MAX_SHOWN = 80


def dockerfile_evidence(params: Iterable[tuple[str, str, Any]]) -> list[str]:
    """One line per override found in ``(where, name, value)`` params (``where`` is ``""`` or ``task build: ``)."""
    evidence: list[str] = []
    for where, name, value in params:
        key = name.lower().replace("-", "_")
        if _DOCKERFILE_PARAM.match(key):
            evidence += _path_param(where, name, value, DOCKERFILE_DEFAULTS)
        elif _CONTEXT_PARAM.match(key):
            evidence += _path_param(where, name, value, CONTEXT_DEFAULTS)
        elif key.endswith("extra_args") and not key.startswith("push"):
            evidence += [f"{where}param {name}: {problem}" for problem in _extra_args(value)]
    return evidence


def _path_param(where: str, name: str, value: Any, defaults: frozenset[str]) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}param {name} is not a string"]
    if value in defaults:
        return []
    return [f"{where}param {name}={_shown(value)}"]


def _extra_args(value: Any) -> list[str]:
    tokens: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, str):
            return ["holds something other than strings"]
        try:
            tokens += shlex.split(item)
        except ValueError:
            return [f"cannot be parsed ({_shown(item)})"]
    problems: list[str] = []
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        problems += _flag_problems(token, following)
    return problems


def _flag_problems(token: str, following: str | None) -> list[str]:
    if not token.startswith("-") or token in ("-", "--"):
        return []
    name, eq, attached = token.lstrip("-").partition("=")
    if name in _FILE_FLAGS or name in _CONTEXT_FLAGS:  # --file x, --file=x, and Go's single-dash -file
        defaults = DOCKERFILE_DEFAULTS if name in _FILE_FLAGS else CONTEXT_DEFAULTS
        return _flag_value(token, attached if eq else following, defaults)
    if token.startswith("--"):
        return []
    letters = token[1:]
    for position, letter in enumerate(letters):  # a cluster such as -qf FILE or -fFILE
        if letter in _SHORT:
            attached = letters[position + 1:].removeprefix("=")
            return _flag_value(token, attached or following, _SHORT[letter])
    return []


def _flag_value(token: str, value: str | None, defaults: frozenset[str]) -> list[str]:
    if value is None:
        return [f"{_shown(token)} without a value"]
    if value in defaults:
        return []
    return [f"{_shown(token)} {_shown(value)}" if not token.endswith(value) else _shown(token)]


def _shown(text: str) -> str:
    text = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"
    return repr(text) if any(not c.isprintable() or c.isspace() for c in text) else text
