"""docs/trust-model.md#permissions says what every account gets; here it is derived from the shipped YAML.

A role the YAML binds by name but does not ship (Tekton Triggers' two EventListener ClusterRoles, which the
watcher no longer binds) is taken with the rules Triggers ships for it (rbac_model.TRIGGERS_CLUSTER_ROLES),
so binding one again shows up here, as a "Triggers" row, even though it is someone else's role.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from rbac_model import TRIGGERS_CLUSTER_ROLES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "trust-model.md"

#: (file, where a RoleBinding without a namespace applies, account namespace when a subject names none)
SOURCES = [
    ("pipelines/chainmail-watcher/rbac.yaml", "chainmail", "chainmail"),
    ("pipelines/chainmail-watcher/opt-in/namespace-credentials.yaml", "each opted-in namespace", "chainmail"),
    ("tasks/chainmail-finally/samples/rbac.yaml", "NS", "NS"),
    ("tasks/chainmail-finally/samples/rbac-chains-configmap.yaml", "NS", "NS"),
    ("tasks/chainmail-sign/samples/rbac.yaml", "NS", "NS"),
]

#: Namespaces the samples use as an example of "the team's namespace".
PLACEHOLDERS = {"team-a": "NS"}

#: Kinds that live outside namespaces: a ClusterRoleBinding grants them at cluster scope, not "in every namespace".
CLUSTER_SCOPED = {"clusterinterceptors", "clustertriggerbindings", "namespaces", "nodes", "clusterroles",
                  "clusterrolebindings", "customresourcedefinitions"}

_VERB_ORDER = ["get", "list", "watch", "create", "patch", "update", "delete", "impersonate"]


def _cell_resources(rule: dict[str, Any]) -> str:
    groups = [g for g in rule.get("apiGroups", [""]) if g]
    text = ", ".join(sorted(rule["resources"]))
    if groups:
        text = f"{', '.join(groups)} {text}"
    if rule.get("resourceNames"):
        text += " " + ", ".join(sorted(rule["resourceNames"]))
    return text


def derived_rows() -> set[tuple[str, ...]]:
    rows: set[tuple[str, ...]] = set()
    for rel, where_default, sa_namespace in SOURCES:
        docs = [d for d in yaml.safe_load_all((REPO / rel).read_text()) if d]
        roles = {(d["kind"], d["metadata"]["name"]): d.get("rules", []) for d in docs
                 if d["kind"] in ("Role", "ClusterRole")}
        bound: set[str] = set()
        for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
            ref = binding["roleRef"]
            rules = roles.get((ref["kind"], ref["name"]))
            source = rel
            if rules is None:
                rules = TRIGGERS_CLUSTER_ROLES[ref["name"]]
                source = f"Triggers ({rel})"
            for subject in binding["subjects"]:
                namespace = subject.get("namespace") or sa_namespace
                account = f"{PLACEHOLDERS.get(namespace, namespace)}/{subject['name']}"
                bound.add(subject["name"])
                for rule in rules:
                    if binding["kind"] == "RoleBinding":
                        where = binding["metadata"].get("namespace") or where_default
                    elif set(rule["resources"]) <= CLUSTER_SCOPED:
                        where = "cluster scope"
                    else:
                        where = "every namespace"
                    verbs = ", ".join(sorted(rule["verbs"], key=_VERB_ORDER.index))
                    rows.add((account, verbs, _cell_resources(rule), where, source))
        for account in (d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] not in bound):
            assert account.get("automountServiceAccountToken") is False, account
            rows.add((f"{sa_namespace}/{account['metadata']['name']}", "(none; no token mounted)", "", "", rel))
    return rows


def documented_rows() -> list[tuple[str, ...]]:
    text = DOC.read_text()
    table = re.search(r"<!-- permissions:begin -->\n(.*?)<!-- permissions:end -->", text, re.S)
    assert table, "docs/trust-model.md has no permissions table"
    lines = [line for line in table.group(1).splitlines() if line.startswith("|")][2:]
    return [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in lines]


def _canonical(row: tuple[str, ...]) -> tuple[str, ...]:
    """Order-free cells: 'get, list' == 'list, get'; 'tekton.dev taskruns, pipelineruns' too."""
    def cell(text: str) -> str:
        return " ".join(sorted(text.replace(",", " ").split()))
    return tuple(cell(c) for c in row)


def test_the_permissions_table_is_what_the_yaml_grants() -> None:
    documented = documented_rows()
    assert len(documented) == len(set(documented)), "a row is listed twice"
    derived = {_canonical(r) for r in derived_rows()}
    listed = {_canonical(r) for r in documented}
    assert listed - derived == set(), "documented but not granted"
    assert derived - listed == set(), "granted but not documented"


def test_no_account_chainmail_defines_reads_secrets_cluster_wide() -> None:
    """Including through a role someone else ships (test_rbac_scope checks every namespace and verb)."""
    for account, verbs, resources, where, _source in derived_rows():
        if "secrets" in resources.replace(",", " ").split():
            assert where != "every namespace", (account, resources)
            assert "list" not in verbs and "watch" not in verbs, (account, verbs)
