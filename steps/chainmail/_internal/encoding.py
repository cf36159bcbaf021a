"""Byte-exact JSON and base64 helpers shared by formats, signing and storage."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


def compact_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON as Go's ``encoding/json`` writes it (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


def b64encode(data: bytes) -> str:
    """Standard, padded base64 (what Go writes for ``[]byte``)."""
    return base64.b64encode(data).decode()


def b64decode(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, padded or not (what go-securesystemslib accepts)."""
    if isinstance(text, bytes):
        text = text.decode()
    text = "".join(text.split())
    padded = text + "=" * (-len(text) % 4)
    if "-" in padded or "_" in padded:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


#: Deepest JSON nesting accepted from outside (registries, run objects, annotations, workspace
#: files). Kubernetes objects and Sigstore documents nest fewer than 30 levels; the bound keeps
#: every recursive walk in chainmail far from Python's recursion limit.
MAX_JSON_DEPTH = 128


class JSONLimitError(ValueError):
    """A JSON document is nested deeper than :data:`MAX_JSON_DEPTH`.

    A :class:`ValueError`, like :class:`json.JSONDecodeError`, so every caller that treats
    undecodable JSON as malformed input treats this the same way.
    """


def _depth_exceeds(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def load_json(data: str | bytes | bytearray, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted input: nesting deeper than ``max_depth`` is a
    :class:`JSONLimitError` (never a ``RecursionError``); bad JSON is ``json.JSONDecodeError``;
    bytes that are not UTF-8 raise ``UnicodeDecodeError``, also a ``ValueError``."""
    opens = data.count("[" if isinstance(data, str) else b"[") + data.count("{" if isinstance(data, str) else b"{")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels") from None
    if opens > max_depth and _depth_exceeds(doc, max_depth):
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels")
    return doc
