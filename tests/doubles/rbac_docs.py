"""RBAC objects as ``kubectl apply -n NAMESPACE`` stores them (shared by the API double and the static model)."""

from __future__ import annotations

import copy
from typing import Any

RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
NAMESPACED = ("Role", "RoleBinding", "ServiceAccount")


def as_applied(doc: object, namespace: str) -> dict[str, Any] | None:
    """A copy of an RBAC object or ServiceAccount with its namespace filled in as ``apply -n`` would; None otherwise."""
    if not isinstance(doc, dict) or doc.get("kind") not in (*RBAC_KINDS, "ServiceAccount"):
        return None
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    if doc["kind"] in NAMESPACED:
        meta.setdefault("namespace", namespace)
    return doc
