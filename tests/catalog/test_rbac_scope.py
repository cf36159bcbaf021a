"""Who may read Secrets where, and what the watcher's EventListener account needs, from the shipped YAML.

Two promises are checked here, over every RBAC file chainmail ships (rbac_model.RBAC_FILES):

- no ServiceAccount chainmail ships or binds (the watcher's listener and signer, the sweep CronJob,
  which runs as the signer, and the Tasks' sample and e2e accounts) can get, list or watch Secrets
  outside its own namespace and the namespaces that opted in, none can list or watch them anywhere,
  and none holds a grant that leads to other accounts' Secrets (impersonation, tokens, RBAC writes,
  pods);
- the EventListener's account holds exactly what Tekton Triggers' sink does for this EventListener
  (LISTENER_NEEDS, one row per call), so dropping a needed grant fails here as surely as adding one.

The checks are plain functions returning what is wrong; the last tests feed them broken RBAC (the
Triggers ClusterRoleBinding the watcher used to have, a missing watch, a Trigger with its own
ServiceAccount) to show that they fail.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from catalog_support import PIPELINES, load_docs
from rbac_model import (
    CLUSTER,
    OPTED_IN,
    RBAC_FILES,
    REPO,
    TEAM,
    TRIGGERS_CLUSTER_ROLES,
    WATCHER,
    Grant,
    Rbac,
    UncheckableRoleError,
    rbac_files_in_repo,
)

LISTENER = (WATCHER, "chainmail-listener")
SIGNER = (WATCHER, "chainmail-signer")
WATCHER_DIR = PIPELINES / "chainmail-watcher"
OPT_IN_FILE = "pipelines/chainmail-watcher/opt-in/namespace-credentials.yaml"
TRIGGERS = "triggers.tekton.dev"
READ = ("get", "list", "watch")

#: Namespaces no chainmail file mentions: a Secret there must be out of every account's reach.
STRANGERS = ("kube-system", "tekton-pipelines", "default", "unrelated-team")

#: What Tekton Triggers' EventListener sink (cmd/eventlistenersink, pkg/adapter, pkg/sink) asks the API
#: server for, under the EventListener's ServiceAccount, for the watcher's EventListener: no
#: namespaceSelector (so -is-multi-ns=false and the namespaced caches are scoped to its namespace),
#: triggerRefs, a ClusterInterceptor (cel), TriggerBindings and a TriggerTemplate that creates a
#: PipelineRun, no Trigger with its own ServiceAccount. Read from Triggers v0.17.0 to v0.37.0: since
#: v0.24.0 each kind below is an informer started (list + watch) before the sink serves, and the
#: pod never becomes Ready while one is forbidden; v0.20.0-v0.23.0 made the same reads as live
#: get/list calls. The interceptor's own work (CEL, and Secrets for GitHub/GitLab/Bitbucket
#: secretRefs) runs in the core-interceptors Deployment under Triggers' own ServiceAccount: the sink
#: only POSTs to it. Rows: (verbs, API group, resource, namespace or CLUSTER).
LISTENER_NEEDS: list[tuple[tuple[str, ...], str, str, str | None]] = [
    # HandleEvent reads its own EventListener (EventListenerLister) for every request
    (READ, TRIGGERS, "eventlisteners", WATCHER),
    # merge() resolves each spec.triggers[].triggerRef through the Trigger lister
    (READ, TRIGGERS, "triggers", WATCHER),
    # template.ResolveTrigger looks up each binding of kind TriggerBinding
    (READ, TRIGGERS, "triggerbindings", WATCHER),
    # template.ResolveTrigger looks up the Trigger's TriggerTemplate
    (READ, TRIGGERS, "triggertemplates", WATCHER),
    # namespaced Interceptor informer (v0.22.0+): getCertFromInterceptor lists them for https
    # caBundles at start-up and every minute; ExecuteInterceptors resolves kind Interceptor refs
    (READ, TRIGGERS, "interceptors", WATCHER),
    # ClusterInterceptor informer (a cluster-scoped kind, so a cluster-wide list): the sink's HTTP
    # client trusts the caBundles listed by getCertFromInterceptor, and ExecuteInterceptors resolves
    # the cel ref to the core-interceptors Service through it
    (READ, TRIGGERS, "clusterinterceptors", CLUSTER),
    # ClusterTriggerBinding informer (cluster-scoped): started whatever kind the bindings are, and
    # read by template.ResolveTrigger for ClusterTriggerBinding refs
    (READ, TRIGGERS, "clustertriggerbindings", CLUSTER),
    # resources.Create posts the TriggerTemplate's PipelineRun with the dynamic client, as the
    # listener itself (CreateResources impersonates only for a Trigger with serviceAccountName)
    (("create",), "tekton.dev", "pipelineruns", WATCHER),
    # the sink's event recorder writes Events on the EventListener (its namespace) when the Triggers
    # controller runs with -el-events=enable
    (("create", "patch"), "", "events", WATCHER),
]

#: Kinds the TriggerTemplate may create, as (API group, resource).
TEMPLATE_KINDS = {"PipelineRun": ("tekton.dev", "pipelineruns"), "TaskRun": ("tekton.dev", "taskruns")}

#: Grants that reach other accounts' Secrets without naming Secrets: acting as another account,
#: minting its token, granting oneself more, or starting a pod under another account.
ESCALATIONS: list[tuple[str, str, str]] = [
    ("impersonate", "", "serviceaccounts"),
    ("impersonate", "", "users"),
    ("impersonate", "", "groups"),
    ("create", "", "serviceaccounts/token"),
    ("create", "", "pods"),
    ("create", "", "pods/exec"),
    ("create", "apps", "deployments"),
    ("create", "batch", "jobs"),
    *((verb, "rbac.authorization.k8s.io", resource) for verb in ("create", "update", "patch", "bind", "escalate")
      for resource in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")),
]


def _secret_homes(account: tuple[str, str]) -> set[str]:
    """Namespaces whose Secrets ``account`` may read: its own, and (the watcher's signer) those that opted in."""
    homes = {account[0]}
    if account == SIGNER:
        homes.add(OPTED_IN)
    return homes


# ------------------------------------------------------------------------------------ the checks


def secret_violations(rbac: Rbac) -> list[str]:
    """Every Secret read an account holds outside its homes, and every list/watch of Secrets anywhere."""
    found = []
    namespaces = sorted(rbac.namespaces() | set(STRANGERS))
    for account in sorted(rbac.accounts):
        who = "/".join(account)
        for verb in READ:
            if rbac.allows_any_name(account, verb, "", "secrets", CLUSTER):
                found.append(f"{who} may {verb} Secrets cluster-wide")
            for namespace in namespaces:
                if namespace not in _secret_homes(account) and rbac.allows_any_name(account, verb, "", "secrets",
                                                                                     namespace):
                    found.append(f"{who} may {verb} Secrets in {namespace}")
                elif verb != "get" and rbac.allows(account, verb, "", "secrets", namespace):
                    found.append(f"{who} may {verb} (every) Secret in {namespace}")
    return found


def escalation_violations(rbac: Rbac) -> list[str]:
    found = []
    for account in sorted(rbac.accounts):
        for namespace in [CLUSTER, *sorted(rbac.namespaces() | set(STRANGERS))]:
            for verb, group, resource in ESCALATIONS:
                if rbac.allows_any_name(account, verb, group, resource, namespace):
                    found.append(f"{'/'.join(account)} may {verb} {group}/{resource} in {namespace or 'the cluster'}")
    return found


def listener_needs() -> set[Grant]:
    return {Grant(verb, group, resource, where) for verbs, group, resource, where in LISTENER_NEEDS for verb in verbs}


def listener_violations(rbac: Rbac) -> list[str]:
    """What the listener lacks of LISTENER_NEEDS, and what it holds beyond them."""
    needs, held = listener_needs(), rbac.grants(LISTENER)
    found = [f"lacks {g}" for g in sorted(needs - held, key=str)]
    found += [f"holds {g}, which the sink does not use" for g in sorted(held - needs, key=str)]
    for grant in needs:
        if grant.namespace is not CLUSTER and rbac.allows(LISTENER, grant.verb, grant.group, grant.resource, TEAM):
            found.append(f"may {grant.verb} {grant.resource} outside {WATCHER} (in {TEAM})")
    return found


def wiring_violations(rbac: Rbac, docs: list[dict[str, Any]]) -> list[str]:
    """What the watcher's Triggers objects make the sink do that the listener may not."""
    found = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for el in by_kind.get("EventListener", []):
        spec = el["spec"]
        if spec["serviceAccountName"] != LISTENER[1]:
            found.append(f"EventListener {el['metadata']['name']} runs as {spec['serviceAccountName']}")
        selectors = [spec.get("namespaceSelector")] + [g.get("triggerSelector", {}).get("namespaceSelector")
                                                       for g in spec.get("triggerGroups") or []]
        if any(s and s.get("matchNames") for s in selectors):
            found.append("a namespaceSelector makes the sink watch Triggers in every namespace")
        for entry in spec.get("triggers") or []:
            if entry.get("serviceAccountName"):
                found.append(f"EventListener trigger {entry.get('name')} impersonates {entry['serviceAccountName']}")
    for trigger in by_kind.get("Trigger", []):
        spec, name = trigger["spec"], trigger["metadata"]["name"]
        if spec.get("serviceAccountName"):
            found.append(f"Trigger {name} impersonates {spec['serviceAccountName']}")
        for interceptor in spec.get("interceptors") or []:
            ref = interceptor.get("ref") or {}
            kind = ref.get("kind", "ClusterInterceptor")
            resource, where = (("clusterinterceptors", CLUSTER) if kind == "ClusterInterceptor"
                               else ("interceptors", WATCHER))
            if not rbac.allows(LISTENER, "get", TRIGGERS, resource, where, ref.get("name")):
                found.append(f"Trigger {name}: interceptor {kind} {ref.get('name')} is not readable")
        for binding in spec.get("bindings") or []:
            kind = binding.get("kind", "TriggerBinding")
            if "ref" in binding:
                resource, where = (("clustertriggerbindings", CLUSTER) if kind == "ClusterTriggerBinding"
                                   else ("triggerbindings", WATCHER))
                if not rbac.allows(LISTENER, "get", TRIGGERS, resource, where, binding["ref"]):
                    found.append(f"Trigger {name}: {kind} {binding['ref']} is not readable")
        template = spec["template"].get("ref")
        if template and not rbac.allows(LISTENER, "get", TRIGGERS, "triggertemplates", WATCHER, template):
            found.append(f"Trigger {name}: TriggerTemplate {template} is not readable")
    for template in by_kind.get("TriggerTemplate", []):
        for resource in template["spec"]["resourcetemplates"]:
            group, plural = TEMPLATE_KINDS.get(resource["kind"], ("?", resource["kind"].lower() + "s"))
            if not rbac.allows(LISTENER, "create", group, plural, WATCHER):
                found.append(f"TriggerTemplate {template['metadata']['name']} creates a {resource['kind']}, "
                             "which the listener may not create")
    return found


def _watcher_docs() -> list[dict[str, Any]]:
    return [d.obj for p in sorted(WATCHER_DIR.glob("*.yaml")) for d in load_docs(p)]


# ----------------------------------------------------------------------------- the shipped YAML


def test_every_rbac_file_is_placed() -> None:
    """A new file with Roles or bindings must say where it is applied, so that the checks see it."""
    assert sorted(rbac_files_in_repo()) == sorted(RBAC_FILES)


def test_no_account_reads_secrets_outside_its_namespaces() -> None:
    rbac = Rbac.from_files()
    assert {("chainmail", "chainmail-listener"), SIGNER, (TEAM, "pipeline-signer"), (TEAM, "chainmail-signer")} \
        <= rbac.accounts
    assert secret_violations(rbac) == []


def test_the_cronjob_and_the_signing_runs_use_a_checked_account() -> None:
    """The sweep CronJob and the PipelineRuns the template creates run as an account checked above."""
    docs = _watcher_docs()
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    (template,) = [d for d in docs if d["kind"] == "TriggerTemplate"]
    accounts = {cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]}
    accounts |= {r["spec"]["taskRunTemplate"]["serviceAccountName"] for r in template["spec"]["resourcetemplates"]}
    assert {(WATCHER, a) for a in accounts} <= Rbac.from_files().accounts


def test_no_account_can_reach_other_accounts_secrets() -> None:
    assert escalation_violations(Rbac.from_files()) == []


def test_the_listener_reads_no_secret_at_all() -> None:
    """Not even in its own namespace, where the signing keys are."""
    rbac = Rbac.from_files()
    for verb in READ:
        for namespace in (WATCHER, CLUSTER):
            assert not rbac.allows_any_name(LISTENER, verb, "", "secrets", namespace), (verb, namespace)
            assert not rbac.allows(LISTENER, verb, "", "secrets", namespace, "signing-secrets")


def test_the_signer_reads_keys_only_by_name_and_credentials_only_where_lent() -> None:
    rbac = Rbac.from_files()
    assert rbac.allows(SIGNER, "get", "", "secrets", WATCHER, "signing-secrets")
    assert not rbac.allows(SIGNER, "get", "", "secrets", WATCHER, "someone-elses-secret")
    assert rbac.allows(SIGNER, "get", "", "secrets", OPTED_IN, "regcred")
    assert not rbac.allows_any_name(SIGNER, "get", "", "secrets", TEAM), "a namespace that did not opt in"


@pytest.mark.parametrize(("verbs", "group", "resource", "where"), LISTENER_NEEDS,
                         ids=[f"{r[2]}@{r[3] or 'cluster'}" for r in LISTENER_NEEDS])
def test_the_listener_may_do_what_the_sink_does(verbs: tuple[str, ...], group: str, resource: str,
                                                where: str | None) -> None:
    rbac = Rbac.from_files()
    for verb in verbs:
        assert rbac.allows(LISTENER, verb, group, resource, where, None if verb in ("list", "watch", "create")
                           else "any-name"), (verb, resource, where)


def test_the_listener_holds_exactly_what_the_sink_needs() -> None:
    assert listener_violations(Rbac.from_files()) == []


def test_the_watchers_triggers_ask_for_nothing_more() -> None:
    docs = _watcher_docs()
    assert {"EventListener", "Trigger", "TriggerBinding", "TriggerTemplate"} <= {d["kind"] for d in docs}
    assert wiring_violations(Rbac.from_files(), docs) == []


def test_the_api_double_agrees(kube_api_rbac: Any) -> None:
    """tests/doubles/kube.py, loaded with the same files, answers every core and tekton.dev question alike.

    The integration tests run the signer against that double, so both must read the YAML the same way.
    """
    rbac = Rbac.from_files()
    for rel, namespace in RBAC_FILES.items():
        kube_api_rbac.load_rbac(REPO / rel, namespace=namespace)
    for name, rules in TRIGGERS_CLUSTER_ROLES.items():  # as a cluster with Triggers installed has them
        kube_api_rbac.load_rbac({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    checked = 0
    for account in sorted(rbac.accounts):
        user = f"system:serviceaccount:{account[0]}:{account[1]}"
        for namespace in [CLUSTER, *sorted(rbac.namespaces() | set(STRANGERS))]:
            for plural, group in (("secrets", ""), ("configmaps", ""), ("serviceaccounts", ""),
                                  ("taskruns", "tekton.dev"), ("pipelineruns", "tekton.dev")):
                for verb in ("get", "list", "watch", "create", "patch", "delete"):
                    for name in (None, "signing-secrets", "chainmail-config", "other"):
                        ours = rbac.allows(account, verb, group, plural, namespace, name)
                        assert kube_api_rbac.can(user, verb, plural, namespace, name) is ours, \
                            (account, verb, plural, namespace, name)
                        checked += 1
    assert checked > 1000


# ------------------------------------------------------------------------ the checks can fail


def _with(extra: list[dict[str, Any]], namespace: str = WATCHER) -> Rbac:
    return Rbac.from_files().add(extra, namespace)


TRIGGERS_CLUSTER_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": "chainmail-listener-triggers"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "tekton-triggers-eventlistener-clusterroles"},
    "subjects": [{"kind": "ServiceAccount", "name": "chainmail-listener", "namespace": WATCHER}],
}


def test_rebinding_triggers_clusterrole_fails_the_checks() -> None:
    """What rbac.yaml bound before chainmail had its own listener roles: Secrets in every namespace."""
    rbac = _with([TRIGGERS_CLUSTER_BINDING])
    assert "chainmail/chainmail-listener may list Secrets cluster-wide" in secret_violations(rbac)
    assert "chainmail/chainmail-listener may get Secrets in kube-system" in secret_violations(rbac)
    assert "holds list secrets cluster-wide, which the sink does not use" in listener_violations(rbac)


def test_binding_triggers_namespaced_role_fails_the_checks() -> None:
    """Its impersonate grant would let the listener act as chainmail-signer, and so read the keys."""
    binding = copy.deepcopy(TRIGGERS_CLUSTER_BINDING)
    binding.update(kind="RoleBinding", metadata={"name": "chainmail-listener-triggers", "namespace": WATCHER})
    binding["roleRef"]["name"] = "tekton-triggers-eventlistener-roles"
    rbac = _with([binding])
    assert "chainmail/chainmail-listener may impersonate /serviceaccounts in chainmail" in escalation_violations(rbac)
    assert any("configmaps" in v for v in listener_violations(rbac))


def test_a_missing_watch_fails_the_checks() -> None:
    """Since Triggers v0.24.0 the sink will not serve until every informer has listed and watched."""
    rbac = Rbac.from_files()
    for doc in rbac.docs:
        if doc["kind"] == "Role" and doc["metadata"]["name"] == LISTENER[1]:
            doc["rules"][0]["verbs"] = ["get", "list"]
    assert listener_violations(rbac) == [f"lacks watch {TRIGGERS}/{r} in {WATCHER}" for r in
                                         sorted(["eventlisteners", "interceptors", "triggerbindings",
                                                 "triggers", "triggertemplates"])]


def test_an_unknown_role_cannot_pass_unchecked() -> None:
    binding = copy.deepcopy(TRIGGERS_CLUSTER_BINDING)
    binding["roleRef"]["name"] = "cluster-admin"
    with pytest.raises(UncheckableRoleError, match="cluster-admin"):
        secret_violations(_with([binding]))


def test_wiring_the_sink_differently_fails_the_checks() -> None:
    docs = copy.deepcopy(_watcher_docs())
    for doc in docs:
        if doc["kind"] == "Trigger":
            doc["spec"]["serviceAccountName"] = "chainmail-signer"
            doc["spec"]["bindings"].append({"kind": "ClusterTriggerBinding", "ref": "github-push"})
        if doc["kind"] == "EventListener":
            doc["spec"]["namespaceSelector"] = {"matchNames": ["*"]}
        if doc["kind"] == "TriggerTemplate":
            doc["spec"]["resourcetemplates"].append({"apiVersion": "tekton.dev/v1", "kind": "TaskRun"})
    found = wiring_violations(Rbac.from_files(), docs)
    assert "a namespaceSelector makes the sink watch Triggers in every namespace" in found
    assert "Trigger chainmail-taskrun-done impersonates chainmail-signer" in found
    assert any("creates a TaskRun" in v for v in found)
    assert not any("github-push" in v for v in found), "a ClusterTriggerBinding is readable cluster-wide"


def test_the_opt_in_file_grants_only_where_it_is_applied() -> None:
    """Applied in one more namespace, the signer's reach grows by exactly that namespace."""
    rbac = Rbac.from_files()
    assert not rbac.allows_any_name(SIGNER, "get", "", "secrets", "team-c")
    rbac.add(yaml.safe_load_all((REPO / OPT_IN_FILE).read_text()), "team-c")
    assert secret_violations(rbac) == ["chainmail/chainmail-signer may get Secrets in team-c"]
