"""Which branch the build says it built: a fixed list of params, and no precedence games.

Chains records commits, never branches. Git-clone style Tasks take the branch as a param, and the
build's author picks the param names; so the branch fact is read from a fixed list of names and is
**absent** (rules needing it fail closed) when a listed param is not a non-empty string or when two
listed params disagree. Another param is never consulted in place of a bad one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The params that name the branch, in the order reported (all that are present must agree).
BRANCH_PARAMS = ("revision", "git-revision", "GIT_REVISION", "gitRevision", "GIT_REF", "git-ref", "branch",
                 "GIT_BRANCH", "CHAINS-GIT_REF")


@dataclass(frozen=True)
class BranchFact:
    #: The branch or ref, or "" when absent.
    value: str
    #: The param it was read from (the first listed one present).
    param: str = ""
    #: Why it is absent, when a listed param was present but unusable.
    problem: str = ""


def branch_from_params(params: Mapping[str, Any]) -> BranchFact:
    """The branch named by :data:`BRANCH_PARAMS`, all present ones agreeing, else an absent fact."""
    present = [(name, params[name]) for name in BRANCH_PARAMS if name in params]
    if not present:
        return BranchFact("")
    for name, value in present:
        if not isinstance(value, str) or not value:
            kind = "empty" if value == "" else ("given twice" if value is None else f"a {_type(value)}")
            return BranchFact("", name, f"param {name} is {kind}, not a branch name")
    values = {str(v) for _, v in present}
    if len(values) > 1:
        names = ", ".join(name for name, _ in present)
        return BranchFact("", present[0][0], f"params {names} name different branches")
    return BranchFact(str(present[0][1]), present[0][0])


def _type(value: object) -> str:
    return {list: "list", dict: "map", bool: "bool", int: "number", float: "number"}.get(type(value), "value")
