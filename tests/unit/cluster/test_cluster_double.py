"""The API double itself behaves like the API server where chainmail can tell."""

from __future__ import annotations

import json

import pytest
import requests

from doubles.kube import completed_taskrun, merge_patch, parse_selector


def _req(api, method, path, body=None, ctype=None, token=None):
    headers = {"Authorization": f"Bearer {token or api.token}"}
    if body is not None:  # a merge patch, or a whole object for POST/PUT
        headers["Content-Type"] = ctype or ("application/merge-patch+json" if method == "PATCH" else "application/json")
    sess = requests.Session()
    sess.trust_env = False
    return sess.request(method, api.url + path, headers=headers,
                        data=json.dumps(body) if body is not None else None, timeout=5)


def test_merge_patch_rfc7386():
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == \
        {"a": {"c": 2, "e": 3}, "d": [2]}
    assert merge_patch({"a": 1}, {"a": {"b": None}}) == {"a": {}}


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("a=1", {"a": "1"}, True),
    ("a==1", {"a": "2"}, False),
    ("a!=1", {}, True),
    ("a in (1, 2),b", {"a": "2", "b": ""}, True),
    ("a notin (1,2)", {"a": "1"}, False),
    ("!a", {"b": "1"}, True),
    ("", {"x": "y"}, True),
])
def test_label_selectors(selector, labels, expected):
    assert parse_selector(selector)(labels) is expected


def test_status_bodies_and_codes(kube_api):
    kube_api.add(completed_taskrun("build"))
    base = "/apis/tekton.dev/v1/namespaces/default/taskruns"
    resp = _req(kube_api, "GET", f"{base}/missing")
    assert resp.status_code == 404
    assert resp.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": 'taskruns.tekton.dev "missing" not found', "reason": "NotFound",
                           "code": 404, "details": {"name": "missing", "group": "tekton.dev", "kind": "taskruns"}}
    assert _req(kube_api, "GET", "/apis/tekton.dev/v1/namespaces/default/pods").status_code == 404
    assert _req(kube_api, "GET", f"{base}/build", token="nope").json()["reason"] == "Unauthorized"
    resp = _req(kube_api, "PATCH", f"{base}/build", {"metadata": {"labels": {"a": "b"}}},
                ctype="application/strategic-merge-patch+json")
    assert resp.status_code == 415  # CRDs take no strategic merge patch
    resp = _req(kube_api, "PATCH", f"{base}/build", [{"op": "add"}], ctype="application/json-patch+json")
    assert resp.status_code == 422 and resp.json()["reason"] == "Invalid"  # a JSON patch op with no path
    resp = _req(kube_api, "GET", f"{base}?continue=garbage")
    assert resp.status_code == 400
    resp = _req(kube_api, "GET", f"{base}?labelSelector=a%20in%20(")
    assert resp.status_code == 400


def test_resource_version_bumps_only_on_change(kube_api):
    obj = kube_api.add(completed_taskrun("build"))
    rv = obj["metadata"]["resourceVersion"]
    path = "/apis/tekton.dev/v1/namespaces/default/taskruns/build"
    same = _req(kube_api, "PATCH", path, {"metadata": {"labels": {"app.kubernetes.io/managed-by": "tekton-pipelines"}}})
    assert same.json()["metadata"]["resourceVersion"] == rv
    changed = _req(kube_api, "PATCH", path, {"metadata": {"annotations": {"a": "b"}}}).json()
    assert int(changed["metadata"]["resourceVersion"]) > int(rv)
    stale = _req(kube_api, "PATCH", path, {"metadata": {"resourceVersion": rv, "annotations": {"a": "c"}}})
    assert stale.status_code == 409
    assert "the object has been modified" in stale.json()["message"]
    wrong_uid = _req(kube_api, "PATCH", path, {"metadata": {"uid": "someone-else"}})
    assert wrong_uid.status_code == 409
    not_string = _req(kube_api, "PATCH", path, {"metadata": {"annotations": {"n": 1}}})
    assert not_string.status_code == 400


def test_create_update_delete(kube_api):
    kube_api.use_admin_token()  # creating Secrets is an admin's job, not the signer's
    base = "/api/v1/namespaces/keys/secrets"
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}}
    created = _req(kube_api, "POST", base, body)
    assert created.status_code == 201
    assert created.json()["data"] == {"a": "Yg=="}
    again = _req(kube_api, "POST", base, body)
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    assert _req(kube_api, "PUT", f"{base}/s", {**body, "stringData": {"a": "c"}}).json()["data"] == {"a": "Yw=="}
    assert _req(kube_api, "DELETE", f"{base}/s").status_code == 200
    assert _req(kube_api, "DELETE", f"{base}/s").status_code == 404
    listed = _req(kube_api, "GET", "/api/v1/secrets").json()
    assert listed["kind"] == "SecretList" and listed["items"] == []


def test_forbidden_rules(kube_api):
    kube_api.add(completed_taskrun("build"))
    kube_api.forbid("list", "taskruns")
    assert _req(kube_api, "GET", "/apis/tekton.dev/v1/taskruns").status_code == 403
    assert _req(kube_api, "GET", "/apis/tekton.dev/v1/namespaces/default/taskruns/build").status_code == 200


def test_faults_delay_and_hooks(kube_api):
    kube_api.add(completed_taskrun("build"))
    path = "/apis/tekton.dev/v1/namespaces/default/taskruns/build"
    seen = []
    kube_api.hooks.append(lambda method, p, q: seen.append((method, p)))
    kube_api.fail_next(1, 429, retry_after=1)
    resp = _req(kube_api, "GET", path)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    assert _req(kube_api, "GET", path).status_code == 200
    kube_api.drop_next(1, method="GET")
    with pytest.raises(requests.ConnectionError):
        _req(kube_api, "GET", path)
    assert seen[0] == ("GET", path)
    assert [r.status for r in kube_api.request_log] == [429, 200]


def test_list_paging_remaining_count(kube_api):
    for i in range(5):
        kube_api.add(completed_taskrun(f"t{i}"))
    first = _req(kube_api, "GET", "/apis/tekton.dev/v1/taskruns?limit=2").json()
    assert first["metadata"]["remainingItemCount"] == 3
    assert first["kind"] == "TaskRunList"
    assert all(item["kind"] == "TaskRun" for item in first["items"])
    token = first["metadata"]["continue"]
    second = _req(kube_api, "GET", f"/apis/tekton.dev/v1/taskruns?limit=2&continue={token}").json()
    assert [i["metadata"]["name"] for i in second["items"]] == ["t2", "t3"]
