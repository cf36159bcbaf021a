"""RFC 6902 JSON patch, as the Kubernetes API double (tests/doubles/kube.py) applies ``--type json`` patches.

The whole patch applies or none of it does; an operation that does not apply raises
:class:`JsonPatchError`, which the double answers 422 like the API server.
"""

from __future__ import annotations

import copy
import json
from typing import Any


class JsonPatchError(ValueError):
    """A JSON patch that does not apply (the API server's 422)."""


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise JsonPatchError(f"invalid JSON pointer: {json.dumps(path)}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]] if path else []


def _index(node: list[Any], token: str, op: str, path: str, *, end_ok: bool = False) -> int:
    if token.isdigit() and (token == "0" or not token.startswith("0")):
        i = int(token)
        if i < len(node) or (end_ok and i == len(node)):
            return i
    raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')


def _walk(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, op, path)]
        else:
            raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    return node


def json_patch(doc: Any, operations: list[Any]) -> Any:
    """RFC 6902 JSON patch: ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test``, all or nothing."""
    doc = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("op") not in ("add", "remove", "replace", "move",
                                                                             "copy", "test"):
            raise JsonPatchError(f"unexpected operation: {json.dumps(operation)}")
        op, path = operation["op"], operation.get("path")
        tokens = _pointer(path)
        if op in ("add", "replace", "test"):
            if "value" not in operation:
                raise JsonPatchError(f'{op} operation has no value for path "{path}"')
            value = copy.deepcopy(operation["value"])
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            if op == "move" and tokens[: len(source)] == source and tokens != source:
                raise JsonPatchError(f'move operation cannot move "{operation["from"]}" into itself')
            value = copy.deepcopy(_walk(doc, source, op, operation["from"]))
            if op == "move":
                doc = _remove(doc, source, op, operation["from"])
        if op == "test":
            if _walk(doc, tokens, op, path) != value:
                raise JsonPatchError(f'testing value "{path}" failed')
        elif op == "remove":
            doc = _remove(doc, tokens, op, path)
        elif op == "replace":
            doc = _add(_remove(doc, tokens, op, path), tokens, value, op, path)
        else:  # add, and the second half of move and copy
            doc = _add(doc, tokens, value, op, path)
    return doc


def _add(doc: Any, tokens: list[str], value: Any, op: str, path: str) -> Any:
    if not tokens:
        return value
    parent, last = _walk(doc, tokens[:-1], op, path), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else _index(parent, last, op, path, end_ok=True), value)
    else:
        raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    return doc


def _remove(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    if not tokens:
        return None
    parent, last = _walk(doc, tokens[:-1], op, path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, op, path)]
    else:
        raise JsonPatchError(f'{op} operation does not apply: doc is missing path: "{path}"')
    return doc
