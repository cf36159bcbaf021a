"""The API double is as strict as the API server: RBAC, the status subresource, expired continue tokens."""

from __future__ import annotations

import json

import pytest
import requests

from doubles.kube import KubeApiDouble, completed_taskrun, pipelinerun_with_children

TR = "/apis/tekton.dev/v1/namespaces/{ns}/taskruns"
PR = "/apis/tekton.dev/v1/namespaces/{ns}/pipelineruns"
SECRET = "/api/v1/namespaces/{ns}/secrets/{name}"


def _req(api: KubeApiDouble, method: str, path: str, body: object = None, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or api.token}"}
    if body is not None:  # a merge patch, or a whole object for POST/PUT
        headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
    with requests.Session() as sess:
        sess.trust_env = False
        return sess.request(method, api.url + path, headers=headers,
                            data=json.dumps(body) if body is not None else None, timeout=5)


def _role(name: str, ns: str | None, *rules: dict) -> dict:
    kind = "Role" if ns else "ClusterRole"
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": list(rules)}


def _binding(name: str, ns: str | None, role_kind: str, role: str, *subjects: dict) -> dict:
    kind = "RoleBinding" if ns else "ClusterRoleBinding"
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": list(subjects)}


def _sa(ns: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}


@pytest.fixture
def api(kube_api_rbac: KubeApiDouble) -> KubeApiDouble:
    kube_api_rbac.add({"kind": "Secret", "metadata": {"name": "signing-secrets", "namespace": "team-a"},
                       "data": {"cosign.key": "a2V5"}})
    kube_api_rbac.add({"kind": "Secret", "metadata": {"name": "other", "namespace": "team-a"}, "data": {}})
    kube_api_rbac.add(completed_taskrun("build", "team-a"))
    kube_api_rbac.add(completed_taskrun("build", "team-b"))
    return kube_api_rbac


def test_unbound_service_account_gets_the_api_servers_403(api):
    api.load_rbac(_sa("team-a", "builder"))
    token = api.sa_token("team-a", "builder")
    resp = _req(api, "GET", SECRET.format(ns="team-a", name="signing-secrets"), token=token)
    assert resp.status_code == 403
    body = resp.json()
    assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == ('secrets "signing-secrets" is forbidden: User "system:serviceaccount:team-a:builder" '
                               'cannot get resource "secrets" in API group "" in the namespace "team-a"')
    assert body["details"] == {"name": "signing-secrets", "group": "", "kind": "secrets"}
    listed = _req(api, "GET", "/apis/tekton.dev/v1/taskruns", token=token).json()
    assert listed["message"].endswith('cannot list resource "taskruns" in API group "tekton.dev" at the cluster scope')
    # The admin token is in system:masters.
    assert _req(api, "GET", SECRET.format(ns="team-a", name="signing-secrets")).status_code == 200


def test_resource_names_verbs_and_namespaces(api):
    api.load_rbac(_sa("team-a", "signer"),
                  _role("key", "team-a", {"apiGroups": [""], "resources": ["secrets"],
                                          "resourceNames": ["signing-secrets"], "verbs": ["get"]}),
                  _binding("key", "team-a", "Role", "key", {"kind": "ServiceAccount", "name": "signer"}))
    token = api.sa_token("team-a", "signer")
    assert _req(api, "GET", SECRET.format(ns="team-a", name="signing-secrets"), token=token).status_code == 200
    assert _req(api, "GET", SECRET.format(ns="team-a", name="other"), token=token).status_code == 403
    assert _req(api, "GET", "/api/v1/namespaces/team-a/secrets", token=token).status_code == 403  # list: no name
    assert _req(api, "DELETE", SECRET.format(ns="team-a", name="signing-secrets"), token=token).status_code == 403
    assert _req(api, "GET", SECRET.format(ns="team-b", name="signing-secrets"), token=token).status_code == 403


def test_role_binding_is_namespaced_cluster_role_binding_is_not(api):
    rules = {"apiGroups": ["tekton.dev"], "resources": ["taskruns"], "verbs": ["get", "list"]}
    api.load_rbac(_sa("ops", "local"), _sa("ops", "global"), _role("runs", None, rules),
                  _binding("local", "team-a", "ClusterRole", "runs",
                           {"kind": "ServiceAccount", "name": "local", "namespace": "ops"}),
                  _binding("global", None, "ClusterRole", "runs",
                           {"kind": "ServiceAccount", "name": "global", "namespace": "ops"}))
    local, everywhere = api.sa_token("ops", "local"), api.sa_token("ops", "global")
    assert _req(api, "GET", TR.format(ns="team-a") + "/build", token=local).status_code == 200
    assert _req(api, "GET", TR.format(ns="team-b") + "/build", token=local).status_code == 403
    assert _req(api, "GET", "/apis/tekton.dev/v1/taskruns", token=local).status_code == 403
    assert _req(api, "GET", "/apis/tekton.dev/v1/taskruns", token=everywhere).status_code == 200
    assert _req(api, "PATCH", TR.format(ns="team-a") + "/build", {"metadata": {"labels": {"x": "y"}}},
                token=everywhere).status_code == 403


def test_group_subjects(api):
    rules = {"apiGroups": ["tekton.dev"], "resources": ["*"], "verbs": ["*"]}
    api.load_rbac(_sa("team-a", "any"), _sa("team-b", "any"), _role("all", "team-a", rules),
                  _binding("all", "team-a", "Role", "all", {"kind": "Group", "name": "system:serviceaccounts:team-a"}))
    assert _req(api, "GET", TR.format(ns="team-a") + "/build", token=api.sa_token("team-a", "any")).status_code == 200
    assert _req(api, "GET", TR.format(ns="team-a") + "/build", token=api.sa_token("team-b", "any")).status_code == 403


def test_subresources_need_their_own_grant(api):
    pr, _ = pipelinerun_with_children("release", "team-a")
    api.add(pr)
    api.load_rbac(_sa("team-a", "annotator"),
                  _role("annotate", "team-a", {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"],
                                               "verbs": ["get", "patch"]}),
                  _binding("annotate", "team-a", "Role", "annotate", {"kind": "ServiceAccount", "name": "annotator"}))
    token = api.sa_token("team-a", "annotator")
    status = PR.format(ns="team-a") + "/release/status"
    resp = _req(api, "PATCH", status, {"status": {"conditions": []}}, token=token)
    assert resp.status_code == 403
    assert 'cannot patch resource "pipelineruns/status" in API group "tekton.dev"' in resp.json()["message"]
    assert _req(api, "PATCH", PR.format(ns="team-a") + "/release", {"metadata": {"labels": {"a": "b"}}},
                token=token).status_code == 200


def test_status_is_a_subresource(kube_api):
    kube_api.use_admin_token()  # creates a TaskRun, as a user (not the signer) does
    tr = kube_api.add(completed_taskrun("build"))
    path = TR.format(ns="default") + "/build"
    forged = {"status": {"results": [{"name": "IMAGE_DIGEST", "type": "string", "value": "sha256:" + "0" * 64}]},
              "metadata": {"labels": {"patched": "yes"}}}
    after = _req(kube_api, "PATCH", path, forged).json()
    assert after["status"] == tr["status"] and after["metadata"]["labels"]["patched"] == "yes"
    after = _req(kube_api, "PATCH", path + "/status", {**forged, "metadata": {"labels": {"via": "status"}}}).json()
    assert after["status"]["results"] == forged["status"]["results"]
    assert "via" not in after["metadata"]["labels"]
    assert kube_api.get("taskruns", "default", "build")["status"]["results"] == forged["status"]["results"]
    # A create never sets status; secrets have no status subresource.
    created = _req(kube_api, "POST", TR.format(ns="default"), {"metadata": {"name": "new"}, "spec": {},
                                                                  "status": {"podName": "x"}})
    assert created.status_code == 201 and "status" not in created.json()
    assert _req(kube_api, "GET", SECRET.format(ns="default", name="s") + "/status").status_code == 404


def test_expired_continue_token_is_410(kube_api):
    for i in range(5):
        kube_api.add(completed_taskrun(f"run-{i}"))
    first = _req(kube_api, "GET", TR.format(ns="default") + "?limit=2").json()
    token = first["metadata"]["continue"]
    assert _req(kube_api, "GET", TR.format(ns="default") + f"?limit=2&continue={token}").status_code == 200
    kube_api.expire_continue_tokens()
    gone = _req(kube_api, "GET", TR.format(ns="default") + f"?limit=2&continue={token}")
    assert gone.status_code == 410
    assert gone.json()["reason"] == "Expired" and gone.json()["kind"] == "Status"
    fresh = _req(kube_api, "GET", TR.format(ns="default") + "?limit=2").json()["metadata"]["continue"]
    kube_api.max_token_age = 0.0
    assert _req(kube_api, "GET", TR.format(ns="default") + f"?limit=2&continue={fresh}").status_code == 410


def test_no_default_service_account_unless_created(kube_api_rbac):
    assert _req(kube_api_rbac, "GET", "/api/v1/namespaces/default/serviceaccounts/default").status_code == 404
    with pytest.raises(KeyError):
        kube_api_rbac.sa_token("default", "default")


def test_unknown_token_is_401_in_rbac_mode(kube_api_rbac):
    assert _req(kube_api_rbac, "GET", TR.format(ns="default"), token="nope").status_code == 401
