"""docs/trust-model.md#permissions says what every account gets; here it is derived from the shipped YAML.

Roles the YAML binds by name but does not ship (Tekton Triggers' two EventListener ClusterRoles) are
taken with the rules Triggers ships in its release (config/200-clusterrole.yaml), so a change in what
chainmail binds shows up here even when it is someone else's role.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

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

_RUNS = {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns", "pipelineresources", "taskruns"],
         "verbs": ["create"]}
TRIGGERS_ROLES: dict[str, list[dict[str, Any]]] = {
    "tekton-triggers-eventlistener-roles": [
        {"apiGroups": ["triggers.tekton.dev"],
         "resources": ["eventlisteners", "triggerbindings", "interceptors", "triggertemplates", "triggers"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        _RUNS,
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ],
    "tekton-triggers-eventlistener-clusterroles": [
        {"apiGroups": ["triggers.tekton.dev"], "resources": ["clustertriggerbindings", "clusterinterceptors"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    ],
}

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
                rules = TRIGGERS_ROLES[ref["name"]]
                source = f"Triggers ({rel})"
            if binding["kind"] == "ClusterRoleBinding":
                where = "every namespace"
            else:
                where = binding["metadata"].get("namespace") or where_default
            for subject in binding["subjects"]:
                namespace = subject.get("namespace") or sa_namespace
                account = f"{PLACEHOLDERS.get(namespace, namespace)}/{subject['name']}"
                bound.add(subject["name"])
                for rule in rules:
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
    for account, verbs, resources, where, source in derived_rows():
        if source.startswith("Triggers"):
            continue
        if "secrets" in resources.replace(",", " ").split():
            assert where != "every namespace", (account, resources)
            assert "list" not in verbs and "watch" not in verbs, (account, verbs)
