"""The cluster-wide watcher (pipelines/chainmail-watcher): Triggers wiring, the CEL filters run
against real event bodies, loop avoidance, least-privilege RBAC, the sweep CronJob and the
configuration it ships."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from catalog_support import PIPELINES, Doc, catalog_image, load_docs, walk_strings

try:
    import celpy
except ImportError:  # pragma: no cover - cel-python comes with the test extra
    celpy = None

needs_cel = pytest.mark.skipif(celpy is None, reason="cel-python (extra 'policy') evaluates the Triggers CEL filters")

WATCHER = PIPELINES / "chainmail-watcher"
DOCS: list[Doc] = [d for p in sorted([*WATCHER.glob("*.yaml"), *WATCHER.glob("opt-in/*.yaml")]) for d in load_docs(p)]
NAMESPACE = "chainmail"
EL_NAME = "chainmail-watcher"


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d.obj["metadata"]["name"]: d.obj for d in DOCS if d.kind == kind}


GRANT = "namespace-credentials.yaml"  # opt-in/: the per-namespace grant, applied with `-n NAMESPACE`


def test_everything_lives_in_the_watcher_namespace() -> None:
    for doc in DOCS:
        if doc.kind in ("Namespace", "ClusterRole", "ClusterRoleBinding") or doc.path.name == GRANT:
            assert "namespace" not in doc.obj["metadata"]
        else:
            assert doc.obj["metadata"].get("namespace") == NAMESPACE, doc.where
    assert list(by_kind("Namespace")) == [NAMESPACE]


def test_namespace_credentials_grant_is_get_only_and_bound_per_namespace() -> None:
    docs = {d.kind: d.obj for d in DOCS if d.path.name == GRANT}
    assert set(docs) == {"ClusterRole", "RoleBinding"}
    assert docs["ClusterRole"]["rules"] == [{"apiGroups": [""], "resources": ["serviceaccounts", "secrets"],
                                             "verbs": ["get"]}]
    binding = docs["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": docs["ClusterRole"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chainmail-signer", "namespace": NAMESPACE}]
    assert not [d for d in DOCS if d.kind == "ClusterRoleBinding"
                and d.obj["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]]


# ------------------------------------------------------------------------------------- wiring


def test_eventlistener_wiring() -> None:
    (el,) = by_kind("EventListener").values()
    assert el["metadata"]["name"] == EL_NAME
    triggers = by_kind("Trigger")
    assert {t["triggerRef"] for t in el["spec"]["triggers"]} == set(triggers) == {
        "chainmail-taskrun-done", "chainmail-pipelinerun-done"}
    assert el["spec"]["serviceAccountName"] in by_kind("ServiceAccount")
    bindings, templates = by_kind("TriggerBinding"), by_kind("TriggerTemplate")
    for trigger in triggers.values():
        for b in trigger["spec"]["bindings"]:
            assert b["kind"] == "TriggerBinding" and b["ref"] in bindings
        assert trigger["spec"]["template"]["ref"] in templates
        (interceptor,) = trigger["spec"]["interceptors"]
        assert interceptor["ref"] == {"name": "cel", "kind": "ClusterInterceptor"}


def test_bindings_provide_every_template_param() -> None:
    (template,) = by_kind("TriggerTemplate").values()
    declared = {p["name"] for p in template["spec"]["params"]}
    required = {p["name"] for p in template["spec"]["params"] if "default" not in p}
    used = {m for s in walk_strings(template["spec"]["resourcetemplates"]) for m in re.findall(r"\$\(tt\.params\.([a-z-]+)\)", s)}
    assert used <= declared and used == declared
    for name, binding in by_kind("TriggerBinding").items():
        provided = {p["name"] for p in binding["spec"]["params"]}
        assert required <= provided <= declared, name
        kind = next(p["value"] for p in binding["spec"]["params"] if p["name"] == "kind")
        assert kind in ("taskrun", "pipelinerun"), "the run kind is fixed by the binding, never read from the body"
        body_key = {"taskrun": "taskRun", "pipelinerun": "pipelineRun"}[kind]
        for p in binding["spec"]["params"]:
            if p["name"] in ("name", "namespace", "uid"):
                assert p["value"] == f"$(body.{body_key}.metadata.{p['name']})"


def test_signing_pipelinerun_is_named_from_the_uid_and_fits() -> None:
    (template,) = by_kind("TriggerTemplate").values()
    (pr,) = template["spec"]["resourcetemplates"]
    name = pr["metadata"]["name"]
    assert name == "chainmail-sign-$(tt.params.uid)"
    rendered = name.replace("$(tt.params.uid)", str(uuid.uuid4()))
    assert len(rendered) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rendered)
    assert "generateName" not in pr["metadata"], "a deterministic name turns duplicate events into AlreadyExists"
    assert pr["metadata"]["labels"]["chainmail.dev/skip"] == "true"


def test_signing_pipelinerun_matches_the_pipeline() -> None:
    (template,) = by_kind("TriggerTemplate").values()
    (pr,) = template["spec"]["resourcetemplates"]
    pipelines = by_kind("Pipeline")
    pipeline = pipelines[pr["spec"]["pipelineRef"]["name"]]
    params = {p["name"]: p for p in pipeline["spec"]["params"]}
    passed = {p["name"] for p in pr["spec"]["params"]}
    assert passed <= set(params)
    assert {n for n, p in params.items() if "default" not in p} <= passed
    workspaces = {w["name"]: w for w in pipeline["spec"]["workspaces"]}
    bound = {w["name"]: w for w in pr["spec"]["workspaces"]}
    assert set(bound) <= set(workspaces)
    assert {n for n, w in workspaces.items() if not w.get("optional")} <= set(bound)
    assert bound["namespace-keys"]["configMap"]["name"] in by_kind("ConfigMap")
    assert pr["spec"]["taskRunTemplate"]["serviceAccountName"] == "chainmail-signer"
    security = pr["spec"]["taskRunTemplate"]["podTemplate"]["securityContext"]
    assert security["runAsNonRoot"] is True and not {"runAsUser", "runAsGroup", "fsGroup"} & set(security)


def test_pipeline_checks_the_run_before_it_sweeps() -> None:
    pipeline = by_kind("Pipeline")["chainmail-watcher"]
    (task,) = pipeline["spec"]["tasks"]
    check, sweep = task["taskSpec"]["steps"]
    assert check["name"] == "check-run" and sweep["name"] == "sweep", "the uid check must come first"
    assert check["args"][:2] == ["snapshot", "--$(params.RUN_KIND)"]
    assert check["args"][check["args"].index("--uid") + 1] == "$(params.RUN_UID)"
    assert sweep["args"][0] == "sweep" and "--all-namespaces" not in sweep["args"]
    assert sweep["args"][sweep["args"].index("--namespace") + 1] == "$(params.RUN_NAMESPACE)"
    assert "--namespace-keys" in sweep["args"]
    assert task["taskSpec"]["stepTemplate"]["image"] == "$(params.CHAINMAIL_IMAGE)"
    image = next(p for p in pipeline["spec"]["params"] if p["name"] == "CHAINMAIL_IMAGE")
    assert image["default"] == catalog_image()


# ------------------------------------------------------------------------------------------ CEL



def _filters() -> dict[str, str]:
    out = {}
    for name, trigger in by_kind("Trigger").items():
        (interceptor,) = trigger["spec"]["interceptors"]
        out[name] = next(p["value"] for p in interceptor["params"] if p["name"] == "filter")
    return out


def _canonical(header: Any, name: Any) -> Any:
    """Triggers' header.canonical(): the first value of a header, looked up case-insensitively."""
    for key, values in header.items():
        if str(key).lower() == str(name).lower():
            return celpy.celtypes.StringType(values[0])
    return celpy.celtypes.StringType("")


def accepts(trigger: str, ce_type: str, body: dict[str, Any]) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(_filters()[trigger]), functions={"canonical": _canonical})
    activation = {"header": celpy.json_to_cel({"Ce-Type": [ce_type], "Content-Type": ["application/json"]}),
                  "body": celpy.json_to_cel(body)}
    result = program.evaluate(activation)
    if isinstance(result, Exception):  # a CEL error: Triggers drops the event
        return False
    return bool(result)


TR_OK, TR_FAIL = "dev.tekton.event.taskrun.successful.v1", "dev.tekton.event.taskrun.failed.v1"
PR_OK, PR_FAIL = "dev.tekton.event.pipelinerun.successful.v1", "dev.tekton.event.pipelinerun.failed.v1"


def _run(labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "build-7x2kq", "namespace": "team-a", "uid": str(uuid.uuid4())}
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta, "spec": {}, "status": {}}


@needs_cel
def test_filters_compile() -> None:
    env = celpy.Environment()
    for name, expr in _filters().items():
        env.compile(expr)  # raises on a syntax error
        assert "header.canonical('Ce-Type')" in expr, name


@pytest.mark.parametrize(("ce_type", "labels", "expected"), [
    (TR_OK, None, True),
    (TR_FAIL, {"app": "x"}, True),
    ("dev.tekton.event.taskrun.started.v1", None, False),
    ("dev.tekton.event.taskrun.running.v1", None, False),
    ("dev.tekton.event.taskrun.unknown.v1", None, False),
    (PR_OK, None, False),
    (TR_OK, {"tekton.dev/pipelineRun": "release-run", "tekton.dev/memberOf": "tasks"}, False),
    (TR_OK, {"triggers.tekton.dev/eventlistener": EL_NAME}, False),
    (TR_OK, {"triggers.tekton.dev/eventlistener": "github-push"}, True),
    (TR_OK, {"chainmail.dev/skip": "true"}, False),
    (TR_OK, {"chainmail.dev/skip": "false"}, True),
], ids=lambda v: str(v))
@needs_cel
def test_taskrun_trigger(ce_type: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert accepts("chainmail-taskrun-done", ce_type, {"taskRun": _run(labels)}) is expected


@pytest.mark.parametrize(("ce_type", "labels", "expected"), [
    (PR_OK, None, True),
    (PR_FAIL, {"tekton.dev/pipeline": "release"}, True),
    ("dev.tekton.event.pipelinerun.started.v1", None, False),
    ("dev.tekton.event.pipelinerun.queued.v1", None, False),
    (TR_OK, None, False),
    (PR_OK, {"triggers.tekton.dev/eventlistener": EL_NAME, "chainmail.dev/watcher": "true"}, False),
    (PR_OK, {"triggers.tekton.dev/eventlistener": "github-push"}, True),
    (PR_OK, {"chainmail.dev/skip": "true"}, False),
], ids=lambda v: str(v))
@needs_cel
def test_pipelinerun_trigger(ce_type: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert accepts("chainmail-pipelinerun-done", ce_type, {"pipelineRun": _run(labels)}) is expected


@needs_cel
def test_malformed_bodies_are_dropped() -> None:
    assert not accepts("chainmail-taskrun-done", TR_OK, {})
    assert not accepts("chainmail-taskrun-done", TR_OK, {"pipelineRun": _run()})
    assert not accepts("chainmail-pipelinerun-done", PR_OK, {"pipelineRun": {"metadata": {"name": "x"}}})


@needs_cel
def test_watchers_own_runs_never_retrigger() -> None:
    """The PipelineRun the template creates, as Triggers labels it, and its TaskRun (labels propagate)."""
    (template,) = by_kind("TriggerTemplate").values()
    labels = dict(template["spec"]["resourcetemplates"][0]["metadata"]["labels"])
    labels.update({"triggers.tekton.dev/eventlistener": EL_NAME, "triggers.tekton.dev/trigger": "chainmail-taskrun-done",
                   "triggers.tekton.dev/triggers-eventid": str(uuid.uuid4())})
    for ce_type in (PR_OK, PR_FAIL):
        assert not accepts("chainmail-pipelinerun-done", ce_type, {"pipelineRun": _run(labels)})
    child = {**labels, "tekton.dev/pipelineRun": "chainmail-sign-x", "tekton.dev/pipelineTask": "sign"}
    for ce_type in (TR_OK, TR_FAIL):
        assert not accepts("chainmail-taskrun-done", ce_type, {"taskRun": _run(child)})
    # Even if the listener were renamed, the template's own opt-out label still stops the loop.
    renamed = {**labels, "triggers.tekton.dev/eventlistener": "renamed"}
    assert not accepts("chainmail-pipelinerun-done", PR_OK, {"pipelineRun": _run(renamed)})


@needs_cel
def test_real_runs_signed_by_chains(shared: Path) -> None:
    """Bodies from the Chains-signed fixtures: a standalone TaskRun, a PipelineRun and its child."""
    fixtures = shared / "fixtures"
    standalone = json.loads((fixtures / "chains-run" / "taskrun-after-chains.json").read_text())
    pipelinerun = json.loads((fixtures / "chains-pipelinerun" / "pipelinerun-after-chains.json").read_text())
    child = json.loads((fixtures / "chains-pipelinerun" / "taskrun-build-after-chains.json").read_text())
    assert accepts("chainmail-taskrun-done", TR_OK, {"taskRun": standalone})
    assert accepts("chainmail-pipelinerun-done", PR_OK, {"pipelineRun": pipelinerun})
    assert not accepts("chainmail-taskrun-done", TR_OK, {"taskRun": child})


# ----------------------------------------------------------------------------------------- RBAC


def test_listener_is_bound_to_chainmails_own_roles_only() -> None:
    """Not to Triggers' EventListener ClusterRoles (Secrets everywhere, impersonation); test_rbac_scope checks the rules."""
    subject = [{"kind": "ServiceAccount", "name": "chainmail-listener", "namespace": NAMESPACE}]
    bindings = [d for kind in ("RoleBinding", "ClusterRoleBinding") for d in by_kind(kind).values()
                if d["subjects"] == subject]
    assert sorted((b["kind"], b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings) == [
        ("ClusterRoleBinding", "ClusterRole", "chainmail-listener"), ("RoleBinding", "Role", "chainmail-listener")]
    assert by_kind("Role")["chainmail-listener"]["metadata"]["namespace"] == NAMESPACE
    for b in bindings:
        assert not b["roleRef"]["name"].startswith("tekton-triggers-"), b["metadata"]["name"]


def test_signer_cluster_role_is_least_privilege() -> None:
    role = by_kind("ClusterRole")["chainmail-signer"]
    assert role["rules"] == [{"apiGroups": ["tekton.dev"], "resources": ["taskruns", "pipelineruns"],
                              "verbs": ["get", "list", "patch"]}]
    crb = by_kind("ClusterRoleBinding")["chainmail-signer"]
    assert crb["roleRef"]["kind"] == "ClusterRole" and crb["roleRef"]["name"] == "chainmail-signer"
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "chainmail-signer", "namespace": NAMESPACE}]


def test_no_cluster_wide_secret_access() -> None:
    """A ClusterRole may name Secrets only if nothing binds it cluster-wide (RoleBindings scope it)."""
    bound = {b["roleRef"]["name"] for b in by_kind("ClusterRoleBinding").values()}
    assert "chainmail-run-credentials" not in bound and "chainmail-signer" in bound
    for name, role in by_kind("ClusterRole").items():
        for rule in role["rules"]:
            assert "*" not in rule.get("resources", []) and "*" not in rule["verbs"], name
            if name in bound:
                assert "secrets" not in rule.get("resources", []), name


def test_secrets_readable_only_by_name_in_the_watcher_namespace() -> None:
    role = by_kind("Role")["chainmail-signer"]
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = {tuple(r["resources"]): r for r in role["rules"]}
    secrets = rules[("secrets",)]
    assert secrets["verbs"] == ["get"] and secrets["resourceNames"]
    keys = yaml.safe_load(by_kind("ConfigMap")["chainmail-namespace-keys"]["data"]["namespace-keys.yaml"])
    local = {uri.split("/")[-1] for uri in keys.values() if uri.startswith(f"k8s://{NAMESPACE}/")}
    assert all(uri.startswith(f"k8s://{NAMESPACE}/") for uri in keys.values() if uri.startswith("k8s://")), \
        "per-namespace key Secrets live in the watcher's namespace"
    pipeline = by_kind("Pipeline")["chainmail-watcher"]
    default_secret = next(p["default"] for p in pipeline["spec"]["params"] if p["name"] == "DEFAULT_KEY_SECRET")
    assert local | {default_secret} <= set(secrets["resourceNames"])
    configmaps = rules[("configmaps",)]
    assert configmaps["verbs"] == ["get"] and "chainmail-config" in configmaps["resourceNames"]
    rb = by_kind("RoleBinding")["chainmail-signer"]
    assert rb["roleRef"]["kind"] == "Role" and rb["subjects"][0]["name"] == "chainmail-signer"


def test_network_policy_admits_only_the_events_controller() -> None:
    (policy,) = by_kind("NetworkPolicy").values()
    assert policy["spec"]["podSelector"]["matchLabels"] == {"eventlistener": EL_NAME}
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tekton-pipelines"}}}]


# ---------------------------------------------------------------------------------- the CronJob


def test_cronjob_sweeps_everything_and_retries() -> None:
    (cron,) = by_kind("CronJob").values()
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "chainmail-signer" and pod["restartPolicy"] == "Never"
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and not {"runAsUser", "runAsGroup", "fsGroup"} & set(security)
    (container,) = pod["containers"]
    assert container["image"] == catalog_image()
    assert container["command"] == ["chainmail"]
    args = container["args"]
    assert args[0] == "sweep" and "--all-namespaces" in args and "--retry-failed" in args
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CHAINMAIL_KEY"] == f"k8s://{NAMESPACE}/signing-secrets"
    assert env["CHAINMAIL_CONFIGMAP"] == f"{NAMESPACE}/chainmail-config"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    keys_file = args[args.index("--namespace-keys") + 1]
    assert str(Path(keys_file).parent) in mounts and env["DOCKER_CONFIG"] in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(Path(keys_file).parent)]]["configMap"]["name"] == "chainmail-namespace-keys"
    assert volumes[mounts[env["DOCKER_CONFIG"]]]["secret"]["optional"] is True


# ------------------------------------------------------------------------------- configuration


def test_chainmail_config_is_valid_for_chainmail() -> None:
    config = pytest.importorskip("chainmail.config", reason="the chainmail package validates chains-config")
    data = by_kind("ConfigMap")["chainmail-config"]["data"]
    cfg = config.Config.from_mapping(data)  # rejects unknown keys and bad values
    assert cfg.get("chainmail.sign-successful-only") in ("true", "false")
    assert "chainmail.sign-successful-only" in data, "ship the success-only switch, documented"


def test_inline_chains_config_values_are_valid() -> None:
    """Every CHAINS_CONFIG param value in samples, tests and Pipelines parses as chains-config."""
    config = pytest.importorskip("chainmail.config", reason="the chainmail package validates chains-config")
    from catalog_support import all_docs

    seen = 0
    for doc in all_docs():
        for holder in _param_holders(doc.obj):
            for p in holder:
                if p.get("name") == "CHAINS_CONFIG":
                    text = p.get("value", p.get("default"))
                    if text and "$(" not in text:
                        config.Config.from_mapping(yaml.safe_load(text))
                        seen += 1
    assert seen >= 6


def test_inline_policies_are_valid() -> None:
    policy = pytest.importorskip("chainmail.policy", reason="the chainmail package parses policies")
    if celpy is None:
        pytest.skip("cel-python (extra 'policy') compiles policy rules")
    from catalog_support import all_docs

    seen = 0
    for doc in all_docs():
        texts = [p["value"] for h in _param_holders(doc.obj) for p in h if p.get("name") == "POLICY" and p.get("value")]
        if doc.kind == "ConfigMap":
            texts += [v for k, v in doc.obj.get("data", {}).items() if k.endswith((".yaml", ".yml"))
                      and "kind: Policy" in v]
        for text in texts:
            policy.parse_policy(text, source=doc.where)
            seen += 1
    assert seen >= 3


def _param_holders(obj: Any) -> list[list[dict[str, Any]]]:
    """Every list stored under a 'params' key, anywhere in the object."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "params" and isinstance(v, list):
                found.append([p for p in v if isinstance(p, dict)])
            found += _param_holders(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _param_holders(v)
    return found


def test_readme_documents_the_sink_and_the_switches() -> None:
    readme = (WATCHER / "README.md").read_text()
    sink = f"http://el-{EL_NAME}.{NAMESPACE}.svc.cluster.local:8080"
    assert "config-events" in readme and sink in readme
    assert "chainmail.sign-successful-only" in readme and "chainmail.dev/skip" in readme
    # the fallback to Triggers' own roles, for older Triggers, names both
    assert "tekton-triggers-eventlistener-roles" in readme and "tekton-triggers-eventlistener-clusterroles" in readme
    sample = yaml.safe_load((WATCHER / "samples" / "config-events.yaml").read_text())
    assert sample["metadata"] == {**sample["metadata"], "name": "config-events", "namespace": "tekton-pipelines"}
    assert sample["data"]["sink"] == sink
    (el,) = by_kind("EventListener").values()
    assert sink.startswith(f"http://el-{el['metadata']['name']}.{el['metadata']['namespace']}.")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.lstrip("v").split("."))


def test_readme_and_e2e_agree_on_the_triggers_version() -> None:
    """The README's minimum Triggers version is one the e2e could test, and the e2e waits for the listener pod."""
    readme = (WATCHER / "README.md").read_text()
    (minimum,) = re.findall(r"Minimum Triggers version: (v[0-9.]+[0-9])", readme)
    assert f"Tekton Triggers ≥ {minimum}" in readme
    workflow = (WATCHER.parents[1] / ".github" / "workflows" / "e2e.yaml").read_text()
    (installed,) = re.findall(r"^\s*TRIGGERS_VERSION: (v[0-9.]+)$", workflow, re.M)
    assert _version(installed) >= _version(minimum)
    # a forbidden informer keeps the sink from serving: the pod must become Ready, with nothing refused
    assert "--for=condition=Ready --timeout=300s pod -l eventlistener=chainmail-watcher" in workflow
    assert "forbidden" in workflow and "auth can-i" in workflow
