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
