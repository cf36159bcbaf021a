"""Small, total accessors for JSON-shaped statement data (wrong types read as empty)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

#: A full git commit (SHA-1, or SHA-256 for SHA-256 repositories) or an OCI sha256 digest value.
FULL_DIGEST = {"sha1": re.compile(r"^[0-9a-f]{40}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: object) -> str:
    return value if isinstance(value, str) else ""


def material(raw: object) -> dict[str, Any]:
    """``{name, uri, digest: {alg: hex}}`` of a v0.2 material or a v1.0 resolvedDependency."""
    m = as_dict(raw)
    digest = as_dict(m.get("digest"))
    return {"name": as_str(m.get("name")), "uri": as_str(m.get("uri")),
            "digest": {str(k): str(v) for k, v in digest.items()}}


def is_git(m: dict[str, Any]) -> bool:
    return m["uri"].startswith("git+") or "sha1" in m["digest"]


def commit_of(m: dict[str, Any]) -> str:
    digest = m["digest"]
    return digest.get("sha1") or next(iter(digest.values()), "")


def image_ref(m: dict[str, Any]) -> str:
    digest = m["digest"]
    if not digest:
        return m["uri"]
    alg = "sha256" if "sha256" in digest else next(iter(digest))
    return f"{m['uri']}@{alg}:{digest[alg]}"


def pinned(digest: dict[str, str]) -> bool:
    """True when ``digest`` holds a full sha1 (git commit) or sha256."""
    return any(alg in FULL_DIGEST and FULL_DIGEST[alg].match(value) for alg, value in digest.items())


def params_map(value: object) -> dict[str, Any]:
    """A Tekton ``[{name, value}]`` list as a map; a name given twice maps to None (never "the last wins")."""
    out: dict[str, Any] = {}
    for p in as_list(value):
        p = as_dict(p)
        name = p.get("name")
        if isinstance(name, str):
            out[name] = None if name in out else p.get("value")
    return out


def timestamp(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out
