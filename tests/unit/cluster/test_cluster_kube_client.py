"""KubeClient against the API double: auth sources, TLS, paging, error mapping, retries."""

from __future__ import annotations

import base64
import gc
import os
import stat
import time
from pathlib import Path

import pytest
import yaml

from chainmail._internal.http import RetryPolicy
from chainmail._internal.kube import MAX_RESPONSE_BYTES, ConflictError, KubeClient
from chainmail.errors import ClusterAuthError, ClusterError, ConfigError, NotFoundError
from doubles.hostile import HostileServer, flood, redirect, reply, trickle
from doubles.kube import completed_taskrun

# ------------------------------------------------------------------ basic calls


def test_get_returns_the_object(kube_api, kube):
    kube_api.add(completed_taskrun("build", "demo"))
    obj = kube.get("taskruns", "demo", "build")
    assert obj["kind"] == "TaskRun"
    assert obj["metadata"]["name"] == "build"
    assert kube.namespace == "default"
    assert kube.source == f"api:{kube_api.url}"


def test_list_pages_and_fills_kind(kube_api, kube):
    for i in range(23):
        kube_api.add(completed_taskrun(f"tr-{i:02d}", "demo"))
    kube_api.add(completed_taskrun("other", "elsewhere"))
    items, token = kube.list("taskruns", "demo", limit=10)
    assert len(items) == 10 and token
    assert all(item["kind"] == "TaskRun" and item["apiVersion"] == "tekton.dev/v1" for item in items)
    kube_api.request_log.clear()
    names = [o["metadata"]["name"] for o in kube.iter_all("taskruns", "demo", page=10)]
    assert names == sorted(f"tr-{i:02d}" for i in range(23))
    assert len(kube_api.request_log) == 3
    assert [r.query.get("limit") for r in kube_api.request_log] == ["10", "10", "10"]
    everywhere = list(kube.iter_all("taskruns", None, page=7))
    assert len(everywhere) == 24


def test_iter_all_is_lazy(kube_api, kube):
    for i in range(30):
        kube_api.add(completed_taskrun(f"tr-{i:02d}"))
    kube_api.request_log.clear()
    it = kube.iter_all("taskruns", "default", page=10)
    first = [next(it) for _ in range(10)]
    assert len(first) == 10
    assert len(kube_api.request_log) == 1


def test_list_with_label_selector(kube_api, kube):
    kube_api.add(completed_taskrun("a", labels={"tekton.dev/pipelineRunUID": "u1", "tekton.dev/memberOf": "tasks"}))
    kube_api.add(completed_taskrun("b", labels={"tekton.dev/pipelineRunUID": "u1", "tekton.dev/memberOf": "finally"}))
    kube_api.add(completed_taskrun("c", labels={"tekton.dev/pipelineRunUID": "u2"}))
    items, _ = kube.list("taskruns", "default", label_selector="tekton.dev/pipelineRunUID=u1,tekton.dev/memberOf=tasks")
    assert [i["metadata"]["name"] for i in items] == ["a"]
    items, _ = kube.list("taskruns", "default", label_selector={"tekton.dev/pipelineRunUID": "u1"})
    assert sorted(i["metadata"]["name"] for i in items) == ["a", "b"]
    items, _ = kube.list("taskruns", "default", label_selector="tekton.dev/memberOf in (tasks, finally)")
    assert sorted(i["metadata"]["name"] for i in items) == ["a", "b"]


def test_patch_merge_with_and_without_precondition(kube_api, kube):
    kube_api.add(completed_taskrun("build", annotations={"keep": "me"}))
    obj = kube.get("taskruns", "default", "build")
    rv = obj["metadata"]["resourceVersion"]
    out = kube.patch_merge("taskruns", "default", "build", {"metadata": {"annotations": {"x": "1"}}},
                           resource_version=rv)
    assert out["metadata"]["annotations"] == {"keep": "me", "x": "1"}
    assert out["metadata"]["resourceVersion"] != rv
    with pytest.raises(ConflictError, match=r"cannot patch taskruns default/build: HTTP 409 Conflict"):
        kube.patch_merge("taskruns", "default", "build", {"metadata": {"annotations": {"x": "2"}}},
                         resource_version=rv)
    out = kube.patch_merge("taskruns", "default", "build", {"metadata": {"annotations": {"x": None}}})
    assert out["metadata"]["annotations"] == {"keep": "me"}
    sent = kube_api.writes("taskruns")[0]
    assert sent.body["metadata"]["resourceVersion"] == rv


def test_patch_does_not_mutate_the_callers_patch(kube_api, kube):
    kube_api.add(completed_taskrun("build"))
    rv = kube.get("taskruns", "default", "build")["metadata"]["resourceVersion"]
    patch = {"metadata": {"annotations": {"x": "1"}}}
    kube.patch_merge("taskruns", "default", "build", patch, resource_version=rv)
    assert patch == {"metadata": {"annotations": {"x": "1"}}}


def test_secrets_configmaps_serviceaccounts(kube_api, kube):
    kube_api.use_admin_token()  # `chainmail keys generate k8s://…` is run by an admin
    kube.apply_secret("keys", "signing-secrets", {"cosign.key": b"\x00key", "cosign.password": b"pw"},
                      immutable=False)
    assert kube.get_secret("keys", "signing-secrets") == {"cosign.key": b"\x00key", "cosign.password": b"pw"}
    kube.apply_secret("keys", "signing-secrets", {"cosign.key": b"new"}, immutable=False)
    assert kube.get_secret("keys", "signing-secrets") == {"cosign.key": b"new"}
    assert [r.method for r in kube_api.request_log if "secrets" in r.path][:3] == ["POST", "GET", "POST"]
    kube.apply_secret("keys", "frozen", {"k": b"1"})
    with pytest.raises(ClusterError, match="immutable"):
        kube.apply_secret("keys", "frozen", {"k": b"2"})
    kube_api.add({"kind": "ConfigMap", "metadata": {"name": "chains-config", "namespace": "tekton-chains"},
                  "data": {"artifacts.taskrun.format": "slsa/v1"}})
    assert kube.get_configmap("tekton-chains", "chains-config") == {"artifacts.taskrun.format": "slsa/v1"}
    kube_api.add({"kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "demo"},
                  "imagePullSecrets": [{"name": "regcred"}]})
    assert kube.get_service_account("demo", "default")["imagePullSecrets"] == [{"name": "regcred"}]


# ------------------------------------------------------------------ error mapping


def test_not_found(kube):
    with pytest.raises(NotFoundError, match=r"cannot get taskruns default/missing: HTTP 404 NotFound") as err:
        kube.get("taskruns", "default", "missing")
    assert err.value.exit_code == 20


def test_wrong_token_is_401_and_the_token_is_not_in_the_message(kube_api, tmp_path, fast_retry):
    client = KubeClient.from_environment(kube_api.kubeconfig(tmp_path, token="s3cr3t-wrong-token"),
                                         retry=fast_retry())
    with pytest.raises(ClusterAuthError) as err:
        client.get("taskruns", "default", "x")
    assert "s3cr3t" not in err.value.diagnostics()
    assert "cannot get taskruns default/x: HTTP 401 Unauthorized" in str(err.value)


def test_no_token_is_401(kube_api, fast_retry):
    client = KubeClient(kube_api.url, retry=fast_retry())
    with pytest.raises(ClusterAuthError, match="401"):
        client.list("taskruns", None)


def test_forbidden_names_verb_and_resource(kube_api, kube):
    kube_api.add(completed_taskrun("build"))
    kube_api.forbid("patch", "taskruns")
    assert kube.get("taskruns", "default", "build")
    with pytest.raises(ClusterAuthError) as err:
        kube.patch_merge("taskruns", "default", "build", {"metadata": {"annotations": {"a": "b"}}})
    text = err.value.diagnostics()
    assert "cannot patch taskruns default/build: HTTP 403 Forbidden" in text
    assert "grant the service account 'patch' on taskruns" in text
    assert kube_api.token not in text
    assert err.value.exit_code == 19


def test_conflict_on_create_then_update(kube_api, kube):
    kube_api.use_admin_token()  # `chainmail keys generate k8s://…` is run by an admin
    kube_api.add({"kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {}})
    kube.apply_secret("default", "s", {"a": b"b"}, immutable=False)
    assert kube.get_secret("default", "s") == {"a": b"b"}


def test_other_status_is_cluster_error(kube_api, kube):
    kube_api.add(completed_taskrun("build"))
    with pytest.raises(ClusterError, match="HTTP 422 Invalid: .*Too long") as err:
        kube.patch_merge("taskruns", "default", "build",
                         {"metadata": {"annotations": {"big": "x" * (300 * 1024)}}})
    assert type(err.value) is ClusterError


def test_transient_errors_are_retried(kube_api, kube):
    kube_api.add(completed_taskrun("build"))
    kube_api.fail_next(2, 503)
    kube_api.drop_next(1)
    assert kube.get("taskruns", "default", "build")["metadata"]["name"] == "build"
    assert kube.retry.retries == 3


def test_persistent_5xx_gives_cluster_error(kube_api, tmp_path, fast_retry):
    client = KubeClient.from_environment(kube_api.kubeconfig(tmp_path), retry=fast_retry(0.3))
    kube_api.fail_next(1000, 500)
    with pytest.raises(ClusterError, match="HTTP 500"):
        client.get("taskruns", "default", "x")


def test_unreachable_api(kube_api, tmp_path, fast_retry):
    client = KubeClient.from_environment(kube_api.kubeconfig(tmp_path), retry=fast_retry(0.3))
    kube_api.stop()
    with pytest.raises(ClusterError, match=r"cannot reach the Kubernetes API at http://127\.0\.0\.1:\d+"):
        client.get("taskruns", "default", "x")


# ------------------------------------------------------------------ configuration sources


def _kubeconfig(path: Path, user: dict, cluster: dict, namespace: str | None = "team-a") -> Path:
    ctx = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": ctx}],
    }))
    return path


def test_kubeconfig_namespace_and_token_file(kube_api, tmp_path, fast_retry):
    (tmp_path / "tok").write_text(kube_api.token + "\n")
    cfg = _kubeconfig(tmp_path / "config", {"tokenFile": "tok"}, {"server": kube_api.url})
    client = KubeClient.from_environment(cfg, retry=fast_retry())
    assert client.namespace == "team-a"
    kube_api.add(completed_taskrun("x", "team-a"))
    assert client.get("taskruns", client.namespace, "x")


def test_kubeconfig_env_list_and_default(kube_api, tmp_path, monkeypatch, fast_retry):
    cfg = kube_api.kubeconfig(tmp_path, namespace="from-env")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{cfg}")
    assert KubeClient.from_environment(retry=fast_retry()).namespace == "from-env"
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match="no Kubernetes configuration found"):
        KubeClient.from_environment()


def test_exec_plugin_is_a_clear_config_error(tmp_path):
    cfg = _kubeconfig(tmp_path / "config",
                      {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
                      {"server": "https://example.invalid"})
    with pytest.raises(ConfigError, match=r"exec credential plugin \(aws\), which chainmail does not support yet"):
        KubeClient.from_environment(cfg)
    cfg = _kubeconfig(tmp_path / "config2", {"auth-provider": {"name": "gcp"}}, {"server": "https://x.invalid"})
    with pytest.raises(ConfigError, match="auth-provider"):
        KubeClient.from_environment(cfg)


def test_kubeconfig_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("clusters: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        KubeClient.from_environment(bad)
    cfg = tmp_path / "noctx"
    cfg.write_text(yaml.safe_dump({"clusters": [], "users": [], "contexts": [
        {"name": "a", "context": {"cluster": "c"}}, {"name": "b", "context": {"cluster": "c"}}]}))
    with pytest.raises(ConfigError, match="current-context is not set"):
        KubeClient.from_environment(cfg)
    cfg = _kubeconfig(tmp_path / "noserver", {"token": "t"}, {})
    with pytest.raises(ConfigError, match="has no server"):
        KubeClient.from_environment(cfg)
    cfg = _kubeconfig(tmp_path / "nocert", {"client-certificate": "missing.crt", "client-key": "k"},
                      {"server": "https://x.invalid"})
    with pytest.raises(ConfigError, match="client-certificate .*missing.crt does not exist"):
        KubeClient.from_environment(cfg)


def test_in_cluster_with_rotating_token(kube_api_tls, tmp_path, fast_retry):
    api = kube_api_tls
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(api.token)
    (sa / "ca.crt").write_bytes(api.pki["ca_cert"])
    (sa / "namespace").write_text("tekton-chains\n")
    host, port = api.url.removeprefix("https://").split(":")
    client = KubeClient.in_cluster(root=sa, env={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
                                   retry=fast_retry())
    assert client.namespace == "tekton-chains"
    assert client.verify == str(sa / "ca.crt")
    api.add(completed_taskrun("x", "tekton-chains"))
    assert client.get("taskruns", "tekton-chains", "x")
    # The kubelet rotates the projected token: the client follows without a restart.
    api.tokens = {"rotated-token": "system:serviceaccount:tekton-chains:chainmail"}
    (sa / "token").write_text("rotated-token")
    assert client.get("taskruns", "tekton-chains", "x")
    assert "rotated-token" not in repr(client.__dict__.get("_token"))


def test_in_cluster_needs_the_environment(tmp_path):
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        KubeClient.in_cluster(root=tmp_path, env={})
    with pytest.raises(ConfigError, match="no service-account token"):
        KubeClient.in_cluster(root=tmp_path, env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})


def test_tls_with_ca_data_and_token(kube_api_tls, tmp_path, fast_retry):
    kube_api_tls.add(completed_taskrun("x"))
    client = KubeClient.from_environment(kube_api_tls.kubeconfig(tmp_path), retry=fast_retry())
    assert client.get("taskruns", "default", "x")


def test_tls_with_ca_file_relative_to_the_kubeconfig(kube_api_tls, tmp_path, fast_retry):
    (tmp_path / "ca.pem").write_bytes(kube_api_tls.pki["ca_cert"])
    cfg = _kubeconfig(tmp_path / "config", {"token": kube_api_tls.token},
                      {"server": kube_api_tls.url, "certificate-authority": "ca.pem"})
    client = KubeClient.from_environment(cfg, retry=fast_retry())
    assert client.verify == str(tmp_path / "ca.pem")
    assert client.list("taskruns", None) == ([], None)


def test_tls_client_certificate_data(kube_api_tls, tmp_path, fast_retry):
    kube_api_tls.add(completed_taskrun("x"))
    client = KubeClient.from_environment(kube_api_tls.kubeconfig(tmp_path, client_cert=True), retry=fast_retry())
    assert client.get("taskruns", "default", "x")
    assert kube_api_tls.request_log[-1].user == "chainmail-client"
    cert_file, key_file = client.cert
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(Path(key_file).parent).st_mode) == 0o700
    assert Path(key_file).read_bytes() == kube_api_tls.pki["client_key"]
    del client
    gc.collect()
    assert not Path(key_file).exists()


def test_tls_client_certificate_files(kube_api_tls, tmp_path, fast_retry):
    (tmp_path / "client.crt").write_bytes(kube_api_tls.pki["client_cert"])
    (tmp_path / "client.key").write_bytes(kube_api_tls.pki["client_key"])
    cfg = _kubeconfig(tmp_path / "config", {"client-certificate": str(tmp_path / "client.crt"),
                                            "client-key": "client.key"},
                      {"server": kube_api_tls.url,
                       "certificate-authority-data": base64.b64encode(kube_api_tls.pki["ca_cert"]).decode()})
    client = KubeClient.from_environment(cfg, retry=fast_retry())
    assert client.cert == (str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
    assert client.list("taskruns", "default")[0] == []


def test_tls_insecure_skip_verify(kube_api_tls, tmp_path, fast_retry):
    cfg = _kubeconfig(tmp_path / "config", {"token": kube_api_tls.token},
                      {"server": kube_api_tls.url, "insecure-skip-tls-verify": True})
    client = KubeClient.from_environment(cfg, retry=fast_retry())
    assert client.verify is False
    with pytest.warns(Warning):  # urllib3 says so on every request
        assert client.list("taskruns", None) == ([], None)


def test_tls_unknown_ca_fails(kube_api_tls, tmp_path, fast_retry):
    cfg = _kubeconfig(tmp_path / "config", {"token": kube_api_tls.token}, {"server": kube_api_tls.url})
    client = KubeClient.from_environment(cfg, retry=fast_retry(0.3))
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API"):
        client.get("taskruns", "default", "x")


# ------------------------------------------------------------------ hostile API servers


@pytest.fixture
def evil():
    server = HostileServer(max_lifetime=60)
    yield server
    server.close()


def _evil_client(server: HostileServer) -> KubeClient:
    policy = RetryPolicy(deadline=1.0, attempt_limit=1.0, initial_backoff=0.05, max_backoff=0.1)
    return KubeClient(server.url, token="attacker-token-value", retry=policy)


def test_oversized_api_response_is_a_cluster_error(evil):
    evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns/big", flood(MAX_RESPONSE_BYTES + 1))
    with pytest.raises(ClusterError, match="over the 64 MiB limit") as info:
        _evil_client(evil).get("taskruns", "demo", "big")
    assert "attacker-token-value" not in info.value.diagnostics()


def test_deeply_nested_api_response_is_a_cluster_error(evil):
    evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns/deep", reply(200, b'{"a":' + b"[" * 100_000 + b"]" * 100_000
                                                                         + b"}"))
    evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns/err", reply(500, b"[" * 100_000 + b"]" * 100_000))
    client = _evil_client(evil)
    with pytest.raises(ClusterError, match="nested deeper than 128"):
        client.get("taskruns", "demo", "deep")
    with pytest.raises(ClusterError, match="HTTP 500"):
        client.get("taskruns", "demo", "err")


def test_trickling_api_response_ends_at_the_deadline(evil):
    evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns/slow", trickle(b"{}" * 500, 0.2))
    started = time.monotonic()
    with pytest.raises(ClusterError, match="timed out"):
        _evil_client(evil).get("taskruns", "demo", "slow")
    assert time.monotonic() - started < 3


def test_repeated_continue_token_stops_paging(evil):
    page = b'{"kind":"TaskRunList","items":[],"metadata":{"continue":"again"}}'
    evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns", reply(200, page))
    with pytest.raises(ClusterError, match="paging without progress"):
        list(_evil_client(evil).iter_all("taskruns", "demo"))


def test_malformed_list_and_secret_are_cluster_errors(evil):
    evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns", reply(200, b'{"items":"nope"}'))
    evil.on("/api/v1/namespaces/demo/secrets/s", reply(200, b'{"data":["x"]}'))
    client = _evil_client(evil)
    with pytest.raises(ClusterError, match="malformed list"):
        client.list("taskruns", "demo")
    with pytest.raises(ClusterError, match="'data' is not a mapping"):
        client.get_secret("demo", "s")


def test_redirect_to_another_host_gets_no_token(evil):
    other = HostileServer(max_lifetime=60)
    try:
        other.on("/elsewhere", reply(200, b'{"kind":"TaskRun"}'))
        evil.on("/apis/tekton.dev/v1/namespaces/demo/taskruns/moved", redirect(f"{other.url}/elsewhere"))
        assert _evil_client(evil).get("taskruns", "demo", "moved") == {"kind": "TaskRun"}
        assert [s.authorization for s in other.seen] == [""]
    finally:
        other.close()
