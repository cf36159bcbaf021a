"""What the RBAC YAML chainmail ships lets each ServiceAccount do, decided as the API server's RBAC
authoriser decides it (Roles, ClusterRoles, RoleBindings, ClusterRoleBindings; no aggregation).

Files are placed in namespaces first: a namespaced object without ``metadata.namespace`` lands where
``kubectl apply -n`` would put it (:data:`RBAC_FILES`). A binding whose role is not in the loaded
files must name one of :data:`TRIGGERS_CLUSTER_ROLES`, which are judged by the rules Tekton Triggers
ships for them; any other unknown role is an error, because what it grants cannot be checked.

Kept free of pytest, like catalog_support.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from doubles.rbac_docs import RBAC_KINDS, as_applied

REPO = Path(__file__).resolve().parents[2]

#: Where the objects of each RBAC file land when applied as documented. ``TEAM`` is a namespace that
#: uses the Tasks (the samples name it team-a); ``OPTED_IN`` one that lent its registry credentials to
#: the watcher (opt-in/); ``E2E`` the e2e workflow's namespace. A new file that ships RBAC must be
#: added here, or test_rbac_scope fails.
TEAM, OPTED_IN, E2E, WATCHER = "team-a", "team-b", "chainmail-e2e", "chainmail"
RBAC_FILES: dict[str, str] = {
    "pipelines/chainmail-watcher/rbac.yaml": WATCHER,
    "pipelines/chainmail-watcher/opt-in/namespace-credentials.yaml": OPTED_IN,
    "tasks/chainmail-finally/samples/rbac.yaml": TEAM,
    "tasks/chainmail-finally/samples/rbac-chains-configmap.yaml": TEAM,
    "tasks/chainmail-sign/samples/rbac.yaml": TEAM,
    "tasks/chainmail-finally/tests/rbac.yaml": E2E,
    "tasks/chainmail-sign/tests/rbac.yaml": E2E,
}

CLUSTER = None  # the namespace of a cluster-scoped (or all-namespaces) request

#: Tekton Triggers' two EventListener ClusterRoles, with the rules Triggers v0.37.0 ships for them
#: (its config/200-clusterrole.yaml; the Secrets rule has been in the second one since v0.20.0).
#: chainmail binds neither. They are here so that a binding to either is judged by what it grants.
TRIGGERS_CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "tekton-triggers-eventlistener-roles": [
        {"apiGroups": ["triggers.tekton.dev"],
         "resources": ["eventlisteners", "triggerbindings", "interceptors", "triggertemplates", "triggers"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns", "pipelineresources", "taskruns"],
         "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ],
    "tekton-triggers-eventlistener-clusterroles": [
        {"apiGroups": ["triggers.tekton.dev"], "resources": ["clustertriggerbindings", "clusterinterceptors"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    ],
}


class UncheckableRoleError(Exception):
    """A binding names a role whose rules are not known here (or one built by aggregation)."""


@dataclass(frozen=True)
class Grant:
    """One verb on one resource, granted in one namespace (``CLUSTER``: every namespace and cluster scope)."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    names: tuple[str, ...] = ()  # resourceNames; empty = any object

    def __str__(self) -> str:
        where = "cluster-wide" if self.namespace is CLUSTER else f"in {self.namespace}"
        what = f"{self.group}/{self.resource}" if self.group else self.resource
        named = f" named {', '.join(self.names)}" if self.names else ""
        return f"{self.verb} {what}{named} {where}"


@dataclass
class Rbac:
    """The RBAC objects in force, and the ServiceAccounts the files define or bind."""

    docs: list[dict[str, Any]]
    accounts: set[tuple[str, str]] = field(default_factory=set)

    # --------------------------------------------------------------------------------- building

    @classmethod
    def from_files(cls, files: dict[str, str] | None = None) -> Rbac:
        """The objects of ``files`` (repo-relative path → namespace), as applied to a cluster."""
        rbac = cls([])
        for rel, namespace in (RBAC_FILES if files is None else files).items():
            rbac.add(yaml.safe_load_all((REPO / rel).read_text()), namespace)
        return rbac

    def add(self, docs: Iterable[dict[str, Any] | None], namespace: str) -> Rbac:
        """Apply ``docs`` with ``kubectl apply -n namespace`` (namespaced objects default there)."""
        for source in docs:
            doc = as_applied(source, namespace)
            if doc is None:
                continue
            meta = doc["metadata"]
            if doc["kind"] == "ServiceAccount":
                self.accounts.add((meta["namespace"], meta["name"]))
                continue
            self.docs.append(doc)
            if doc["kind"].endswith("Binding"):
                for subject in doc.get("subjects") or []:
                    if subject.get("kind") == "ServiceAccount":
                        self.accounts.add((subject.get("namespace") or meta.get("namespace"), subject["name"]))
        return self

    # ------------------------------------------------------------------------------- evaluation

    def _roles(self) -> dict[tuple[str, str | None, str], dict[str, Any]]:
        return {(d["kind"], d["metadata"].get("namespace") if d["kind"] == "Role" else None, d["metadata"]["name"]): d
                for d in self.docs if d["kind"] in ("Role", "ClusterRole")}

    def _rules(self, binding: dict[str, Any], roles: dict[tuple[str, str | None, str], dict[str, Any]],
               ) -> list[dict[str, Any]]:
        ref = binding["roleRef"]
        b_ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        if ref["kind"] == "Role" and binding["kind"] == "ClusterRoleBinding":
            return []  # the API server rejects this; it grants nothing
        role = roles.get((ref["kind"], b_ns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            if ref["kind"] == "ClusterRole" and ref["name"] in TRIGGERS_CLUSTER_ROLES:
                return TRIGGERS_CLUSTER_ROLES[ref["name"]]
            raise UncheckableRoleError(f"{binding['kind']}/{binding['metadata']['name']} binds {ref['kind']} "
                                  f"{ref['name']!r}, which no checked file defines")
        if role.get("aggregationRule"):
            raise UncheckableRoleError(f"{ref['kind']} {ref['name']!r} is aggregated; its rules are not in the YAML")
        return role.get("rules") or []

    @staticmethod
    def _binds(binding: dict[str, Any], account: tuple[str, str]) -> bool:
        namespace, name = account
        b_ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        groups = {"system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"}
        for subject in binding.get("subjects") or []:
            kind = subject.get("kind")
            if kind == "ServiceAccount" and (subject.get("namespace") or b_ns, subject["name"]) == account:
                return True
            if kind == "User" and subject["name"] == f"system:serviceaccount:{namespace}:{name}":
                return True
            if kind == "Group" and subject["name"] in groups:
                return True
        return False

    def grants(self, account: tuple[str, str]) -> set[Grant]:
        """Every (verb, group, resource, namespace, names) the account holds; wildcards stay ``*``."""
        out: set[Grant] = set()
        roles = self._roles()
        for binding in self.docs:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") or not self._binds(binding, account):
                continue
            namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else CLUSTER
            for rule in self._rules(binding, roles):
                names = tuple(sorted(rule.get("resourceNames") or ()))
                for verb in rule.get("verbs") or []:
                    for group in rule.get("apiGroups") or []:
                        for resource in rule.get("resources") or []:
                            out.add(Grant(verb, group, resource, namespace, names))
        return out

    def allows(self, account: tuple[str, str], verb: str, group: str, resource: str, namespace: str | None,
               name: str | None = None) -> bool:
        """The authoriser's answer for one request. ``namespace=CLUSTER`` is a cluster-scoped request
        (or a list across all namespaces): only ClusterRoleBindings can allow it. ``name`` is the
        object's name (None for list, watch and create, which a resourceNames rule does not cover)."""
        return any(_covers(g, verb, group, resource, namespace, name) for g in self.grants(account))

    def allows_any_name(self, account: tuple[str, str], verb: str, group: str, resource: str,
                        namespace: str | None) -> bool:
        """Whether ``verb`` reaches at least one object of the kind there (a resourceNames rule counts)."""
        return any(_covers(g, verb, group, resource, namespace, g.names[0] if g.names else None)
                   for g in self.grants(account))

    def namespaces(self) -> set[str]:
        """Every namespace the files name or are applied to."""
        found = {ns for ns, _ in self.accounts}
        for doc in self.docs:
            if doc["metadata"].get("namespace"):
                found.add(doc["metadata"]["namespace"])
            found.update(s["namespace"] for s in doc.get("subjects") or [] if s.get("namespace"))
        return found


def _covers(grant: Grant, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> bool:
    if grant.verb not in ("*", verb) or grant.group not in ("*", group):
        return False
    if grant.resource != "*" and grant.resource != resource:
        sub = resource.partition("/")[2]
        if not (sub and grant.resource == f"*/{sub}"):
            return False
    if grant.namespace is not CLUSTER and grant.namespace != namespace:
        return False
    return not grant.names or (name is not None and name in grant.names)


def rbac_files_in_repo() -> Iterator[str]:
    """Repo-relative paths of every YAML file outside the test suite (tests/) that holds an RBAC object."""
    for path in sorted(REPO.rglob("*.y*ml")):
        rel = path.relative_to(REPO)
        if rel.parts[0] == "tests" or {".git", ".venv", "node_modules"} & set(rel.parts) or not path.is_file():
            continue
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # test_yaml_lint reports it
        if any(isinstance(d, dict) and d.get("kind") in RBAC_KINDS for d in docs):
            yield rel.as_posix()
