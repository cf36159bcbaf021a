"""What the API double serves for kubectl (discovery, JSON patches, Deployments and their scale) is as strict
as the rest of it: what it does not serve is a 404, a body it cannot apply a 415, a bad patch a 422."""

from __future__ import annotations

import json

import pytest
import requests

from doubles.json_patch import JsonPatchError, json_patch
from doubles.kube import KubeApiDouble, completed_taskrun

DEPLOY = "/apis/apps/v1/namespaces/tekton-chains/deployments/controller"
CM = "/api/v1/namespaces/chainmail/configmaps/chainmail-config"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def _req(api: KubeApiDouble, method: str, path: str, body: object = None, *, ctype: str | None = None,
         accept: str | None = None, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or api.token}"} if token != "" else {}
    if body is not None:
        headers["Content-Type"] = ctype or (MERGE_PATCH if method == "PATCH" else "application/json")
    if accept:
        headers["Accept"] = accept
    with requests.Session() as sess:
        sess.trust_env = False
        return sess.request(method, api.url + path, headers=headers,
                            data=json.dumps(body) if body is not None else None, timeout=5)


@pytest.fixture
def api(kube_api_rbac: KubeApiDouble) -> KubeApiDouble:
    kube_api_rbac.add({"kind": "Deployment", "metadata": {"name": "controller", "namespace": "tekton-chains"},
                       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "chains", "tier": "control"}},
                                "template": {"spec": {"containers": [{"name": "controller", "image": "c"}]}}},
                       "status": {"replicas": 1}})
    kube_api_rbac.add({"kind": "ConfigMap", "metadata": {"name": "chainmail-config", "namespace": "chainmail"},
                       "data": {"chainmail.namespaces": "none-yet"}})
    return kube_api_rbac


def test_discovery_lists_what_the_double_serves(api):
    assert _req(api, "GET", "/api").json()["versions"] == ["v1"]
    groups = {g["name"]: g for g in _req(api, "GET", "/apis").json()["groups"]}
    assert sorted(groups) == ["apps", "tekton.dev"]
    assert [v["version"] for v in groups["tekton.dev"]["versions"]] == ["v1", "v1beta1"]
    assert groups["tekton.dev"]["preferredVersion"]["version"] == "v1"
    core = {r["name"]: r for r in _req(api, "GET", "/api/v1").json()["resources"]}
    assert sorted(core) == ["configmaps", "secrets", "serviceaccounts"]
    assert core["configmaps"]["shortNames"] == ["cm"] and "watch" not in core["configmaps"]["verbs"]
    apps = {r["name"]: r for r in _req(api, "GET", "/apis/apps/v1").json()["resources"]}
    assert sorted(apps) == ["deployments", "deployments/scale", "deployments/status"]
    assert (apps["deployments/scale"]["group"], apps["deployments/scale"]["version"],
            apps["deployments/scale"]["kind"]) == ("autoscaling", "v1", "Scale")
    for version in ("v1", "v1beta1"):
        tekton = {r["name"] for r in _req(api, "GET", f"/apis/tekton.dev/{version}").json()["resources"]}
        assert {"taskruns", "pipelineruns", "taskruns/status"} <= tekton
    assert _req(api, "GET", "/apis/tekton.dev").json()["kind"] == "APIGroup"


def test_what_discovery_does_not_list_is_not_served(api):
    api.add(completed_taskrun("build", "demo"))
    for path in ("/apis/batch/v1", "/apis/autoscaling/v1", "/api/v2", "/openapi/v2",
                 "/apis/apps/v1/namespaces/tekton-chains/statefulsets",
                 "/apis/tekton.dev/v1beta1/namespaces/demo/taskruns/build",  # listed, but not converted
                 f"{DEPLOY}/rollback"):
        resp = _req(api, "GET", path)
        assert resp.status_code == 404 and resp.json()["kind"] == "Status", path
    assert _req(api, "POST", "/apis", {}).status_code == 405


def test_discovery_needs_credentials_but_version_does_not(api):
    assert _req(api, "GET", "/apis", token="").status_code == 401
    assert _req(api, "GET", "/apis", token="wrong").status_code == 401
    assert _req(api, "GET", "/version", token="").json()["major"] == "1"
    assert _req(api, "GET", "/version", token="wrong").status_code == 401


def test_accept_must_allow_plain_json(api):
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    assert _req(api, "GET", DEPLOY, accept=table).status_code == 406
    assert _req(api, "GET", DEPLOY, accept="application/vnd.kubernetes.protobuf").status_code == 406
    assert _req(api, "GET", DEPLOY, accept=f"{table},application/json").status_code == 200
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert _req(api, "GET", "/apis", accept=aggregated).status_code == 406
    assert _req(api, "GET", "/apis", accept=f"{aggregated},application/json").json()["kind"] == "APIGroupList"


def test_json_patch_on_a_deployment(api):
    add_args = [{"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "controller"},
                {"op": "add", "path": "/spec/template/spec/containers/0/args", "value": ["--namespace=a"]}]
    resp = _req(api, "PATCH", DEPLOY, add_args, ctype=JSON_PATCH)
    assert resp.status_code == 200 and resp.json()["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--namespace=a"]
    rv = resp.json()["metadata"]["resourceVersion"]
    append = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--x"}]
    assert _req(api, "PATCH", DEPLOY, append, ctype=JSON_PATCH).json()["spec"]["template"]["spec"]["containers"][0][
        "args"] == ["--namespace=a", "--x"]
    # all or nothing: a failed test leaves the object as it was
    before = api.get("deployments", "tekton-chains", "controller")
    wrong = [{"op": "replace", "path": "/spec/replicas", "value": 3},
             {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "other"}]
    resp = _req(api, "PATCH", DEPLOY, wrong, ctype=JSON_PATCH)
    assert resp.status_code == 422 and resp.json()["reason"] == "Invalid"
    assert api.get("deployments", "tekton-chains", "controller") == before
    # a resourceVersion the patch sets is a precondition
    stale = [{"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
             {"op": "replace", "path": "/spec/replicas", "value": 2}]
    assert _req(api, "PATCH", DEPLOY, stale, ctype=JSON_PATCH).status_code == 409
    # the result must still be a valid Deployment
    bad = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": 7}]
    resp = _req(api, "PATCH", DEPLOY, bad, ctype=JSON_PATCH)
    assert resp.status_code == 422 and "containers[0].args" in resp.json()["message"]
    assert _req(api, "PATCH", DEPLOY, {"op": "add"}, ctype=JSON_PATCH).status_code == 400  # not an array


def test_patch_types_the_double_does_not_apply_are_415(api):
    resp = _req(api, "PATCH", DEPLOY, {"spec": {"replicas": 2}}, ctype="application/strategic-merge-patch+json")
    assert resp.status_code == 415 and "application/json-patch+json" in resp.json()["message"]
    assert _req(api, "PATCH", CM, {"data": {}}, ctype="application/apply-patch+yaml").status_code == 415
    assert _req(api, "POST", "/api/v1/namespaces/chainmail/configmaps", {"metadata": {"name": "x"}},
                ctype="text/plain").status_code == 415
    assert api.get("deployments", "tekton-chains", "controller")["spec"]["replicas"] == 1


def test_merge_patch_on_a_configmap_keeps_values_strings(api):
    resp = _req(api, "PATCH", CM, {"data": {"chainmail.namespaces": "demo"}})
    assert resp.status_code == 200 and resp.json()["data"] == {"chainmail.namespaces": "demo"}
    assert _req(api, "PATCH", CM, {"data": {"chainmail.namespaces": 1}}).status_code == 400


def test_scale_subresource(api):
    scale = _req(api, "GET", f"{DEPLOY}/scale").json()
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"] == {"replicas": 1} and scale["status"] == {"replicas": 1, "selector": "app=chains,tier=control"}
    resp = _req(api, "PATCH", f"{DEPLOY}/scale", {"spec": {"replicas": 0}})
    assert resp.status_code == 200 and resp.json()["spec"]["replicas"] == 0
    deployment = api.get("deployments", "tekton-chains", "controller")
    assert deployment["spec"]["replicas"] == 0 and deployment["status"] == {"replicas": 1}  # no controller here
    assert resp.json()["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    stale = {**scale, "spec": {"replicas": 2}}  # the resourceVersion read before the patch
    assert _req(api, "PUT", f"{DEPLOY}/scale", stale).status_code == 409
    assert _req(api, "PATCH", f"{DEPLOY}/scale", {"spec": {"replicas": -1}}).status_code == 422
    assert _req(api, "GET", "/apis/apps/v1/namespaces/tekton-chains/deployments/missing/scale").status_code == 404
    assert _req(api, "DELETE", f"{DEPLOY}/scale").status_code == 405


def test_writes_to_a_deployment_leave_its_status_alone(api):
    resp = _req(api, "PATCH", DEPLOY, {"spec": {"replicas": 3}, "status": {"replicas": 9}})
    assert resp.json()["spec"]["replicas"] == 3 and resp.json()["status"] == {"replicas": 1}


def test_scale_needs_its_own_grant(api):
    rules = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}
    api.load_rbac({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ops", "namespace": "x"}},
                  {"kind": "ClusterRole", "metadata": {"name": "deploy"}, "rules": [rules]},
                  {"kind": "ClusterRoleBinding", "metadata": {"name": "deploy"},
                   "roleRef": {"kind": "ClusterRole", "name": "deploy"},
                   "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": "x"}]})
    token = api.sa_token("x", "ops")
    assert _req(api, "GET", DEPLOY, token=token).status_code == 200
    resp = _req(api, "PATCH", f"{DEPLOY}/scale", {"spec": {"replicas": 0}}, token=token)
    assert resp.status_code == 403
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in resp.json()["message"]


def test_an_emptied_finalizer_list_is_dropped(api):
    run = completed_taskrun("build", "demo")
    run["metadata"]["finalizers"] = ["chains.tekton.dev/taskrun"]
    api.add(run)
    path = "/apis/tekton.dev/v1/namespaces/demo/taskruns/build"
    assert "finalizers" not in _req(api, "PATCH", path, {"metadata": {"finalizers": []}}).json()["metadata"]
    assert _req(api, "PATCH", path, {"metadata": {"finalizers": [""]}}).status_code == 422


def test_json_patch_rfc6902():
    doc = {"a": {"b~c": 1, "d/e": [1, 2]}, "f": []}
    ops = [{"op": "add", "path": "/a/d~1e/1", "value": 9},
           {"op": "add", "path": "/f/-", "value": "x"},
           {"op": "copy", "from": "/a/b~0c", "path": "/g"},
           {"op": "move", "from": "/f/0", "path": "/h"},
           {"op": "remove", "path": "/a/b~0c"},
           {"op": "replace", "path": "/a/d~1e/0", "value": 0},
           {"op": "test", "path": "/g", "value": 1}]
    assert json_patch(doc, ops) == {"a": {"d/e": [0, 9, 2]}, "f": [], "g": 1, "h": "x"}
    assert doc == {"a": {"b~c": 1, "d/e": [1, 2]}, "f": []}  # the input is untouched
    for bad in ([{"op": "remove", "path": "/missing"}], [{"op": "replace", "path": "/f/0", "value": 1}],
                [{"op": "add", "path": "/a/d~1e/3", "value": 1}], [{"op": "add", "path": "/a/d~1e/01", "value": 1}],
                [{"op": "add", "path": "a", "value": 1}], [{"op": "add", "path": "/x"}],
                [{"op": "move", "from": "/a", "path": "/a/b"}], [{"op": "frobnicate", "path": "/a"}]):
        with pytest.raises(JsonPatchError):
            json_patch(doc, bad)
