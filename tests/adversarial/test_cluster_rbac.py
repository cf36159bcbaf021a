"""Who can reach the signing key, checked against the RBAC YAML the project ships.

The API double runs in strict mode (``KubeApiDouble(rbac=True)``): it enforces the Roles,
ClusterRoles and bindings from the samples and ``pipelines/chainmail-watcher/rbac.yaml`` the way
the API server does, and every ``chainmail`` command runs through the CLI with a kubeconfig
carrying one service account's token.

- The finally samples run every build task as an account that gets 403 on the key Secret; only
  the finally task's account can read it, and it can sign the run.
- The watcher's ``chainmail-signer`` can sweep and sign runs in any namespace with exactly the
  grants of ``rbac.yaml``, and reads no Secret outside its own namespace.
- A namespace that applies ``namespace-credentials.yaml`` lets it push with the run's pull secrets;
  one that does not gets one warning naming ``chainmail watcher enable`` and DOCKER_CONFIG is used.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from conftest import REPO, assert_rejected, chainmail
from doubles.kube import KubeApiDouble, completed_taskrun, pipelinerun_with_children
from doubles.registry import RegistryServer, push_test_image

FINALLY_RBAC = REPO / "tasks" / "chainmail-finally" / "samples" / "rbac.yaml"
FINALLY_RUN = REPO / "tasks" / "chainmail-finally" / "samples" / "pipelinerun-with-finally.yaml"
BUILD_AND_SIGN = REPO / "pipelines" / "build-and-sign" / "build-and-sign.yaml"
BUILD_AND_SIGN_RUN = REPO / "pipelines" / "build-and-sign" / "samples" / "build-and-sign-run.yaml"
WATCHER = REPO / "pipelines" / "chainmail-watcher"
#: chainmail.image_check HEADs claimed images with DOCKER_CONFIG only, before storage reads the run's pull secrets.
NO_IMAGE_CHECK = ["--set", "chainmail.sign.verify-images-exist=false"]
TEKTON_ONLY = ["--set", "artifacts.taskrun.storage=tekton", "--set", "artifacts.pipelinerun.storage=tekton",
               "--set", "artifacts.oci.storage=tekton"]


def _key_secret(key_dir: Path, ns: str, name: str) -> dict[str, Any]:
    data = {f: base64.b64encode((key_dir / f).read_bytes()).decode()
            for f in ("cosign.key", "cosign.password", "cosign.pub")}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data}


def _get(api: KubeApiDouble, path: str, token: str) -> requests.Response:
    with requests.Session() as sess:
        sess.trust_env = False
        return sess.get(api.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=5)


def _account_per_task(run: dict[str, Any], pipeline_spec: dict[str, Any]) -> dict[str, str]:
    """The ServiceAccount Tekton gives each pipeline task: taskRunSpecs, else taskRunTemplate."""
    default = run["spec"]["taskRunTemplate"]["serviceAccountName"]
    override = {s["pipelineTaskName"]: s["serviceAccountName"] for s in run["spec"].get("taskRunSpecs") or []
                if s.get("serviceAccountName")}
    tasks = [t["name"] for t in (*pipeline_spec.get("tasks", ()), *pipeline_spec.get("finally", ()))]
    return {name: override.get(name, default) for name in tasks}


def _signer_tasks(pipeline_spec: dict[str, Any]) -> set[str]:
    return {t["name"] for t in pipeline_spec.get("finally", ())
            if (t.get("taskRef") or {}).get("name") == "chainmail-finally"}


SAMPLES = {
    "finally-sample": lambda: (yaml.safe_load(FINALLY_RUN.read_text()),
                               yaml.safe_load(FINALLY_RUN.read_text())["spec"]["pipelineSpec"]),
    "build-and-sign": lambda: (yaml.safe_load(BUILD_AND_SIGN_RUN.read_text()),
                               yaml.safe_load(BUILD_AND_SIGN.read_text())["spec"]),
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_only_the_finally_task_account_can_read_the_key(kube_api_rbac, key, sample):
    api = kube_api_rbac
    api.load_rbac(FINALLY_RBAC, namespace="team-a")
    api.add(_key_secret(Path(key), "team-a", "signing-secrets"))
    run, pipeline_spec = SAMPLES[sample]()
    accounts = _account_per_task(run, pipeline_spec)
    signers = _signer_tasks(pipeline_spec)
    assert signers and set(accounts) - signers, "the sample needs build tasks and a finally signer"
    secret = "/api/v1/namespaces/team-a/secrets/signing-secrets"
    for task, account in accounts.items():
        resp = _get(api, secret, api.sa_token("team-a", account))
        if task in signers:
            assert resp.status_code == 200, f"{task} ({account}) cannot read the key it signs with"
        else:
            assert resp.status_code == 403, f"build task {task} ({account}) can read the signing key"
            assert f'User "system:serviceaccount:team-a:{account}" cannot get resource "secrets"' in \
                resp.json()["message"]
            # Nor can a build step rewrite the runs' chains.tekton.dev/* annotations.
            assert not api.can(f"system:serviceaccount:team-a:{account}", "patch", "taskruns", "team-a", "x")


def test_finally_signer_signs_and_a_build_step_cannot(kube_api_rbac, key, tmp_path):
    api = kube_api_rbac
    api.load_rbac(FINALLY_RBAC, namespace="team-a")
    api.add(_key_secret(Path(key), "team-a", "signing-secrets"))
    pr, children = pipelinerun_with_children("app-1", "team-a", tasks=("build",), finished=False,
                                             finally_tasks=("sign",))
    for child in children:
        child["status"]["results"] = []  # tekton storage only: no image to reach
    for obj in (pr, *children):
        api.add(obj)
    uid = pr["metadata"]["uid"]
    args = ["finally", "--pipelinerun", "app-1", "-n", "team-a", "--uid", uid,
            "--key", "k8s://team-a/signing-secrets", *TEKTON_ONLY]

    builder = api.kubeconfig(tmp_path, namespace="team-a", token=api.sa_token("team-a", "pipeline-builder"),
                             name="builder")
    out = chainmail([*args, "--kubeconfig", str(builder)])
    assert_rejected(out, 19, mentions="forbidden")
    assert not [r for r in api.request_log if "/secrets/" in r.path and r.status == 200]
    assert api.signed_writes() == {}

    signer = api.kubeconfig(tmp_path, namespace="team-a", token=api.sa_token("team-a", "pipeline-signer"),
                            name="signer")
    out = chainmail([*args, "--kubeconfig", str(signer)])
    assert out.code == 0, out.stderr[-2000:]
    assert api.signed_writes() == {("taskruns", "team-a", "app-1-build"): 1}
    assert not [r for r in api.request_log if r.status == 403 and r.user.endswith(":pipeline-signer")]


# ------------------------------------------------------------------ the watcher's chainmail-signer


def _image_run(name: str, ns: str, ref: str, **kwargs: Any) -> dict[str, Any]:
    image, digest = ref.split("@", 1)
    return completed_taskrun(name, ns, image=image, digest=digest, **kwargs)


def _with_image(run: dict[str, Any], ref: str) -> dict[str, Any]:
    image, digest = ref.split("@", 1)
    run["spec"]["params"] = [{"name": "IMAGE", "value": image}]
    run["status"]["results"] = [{"name": "IMAGE_URL", "type": "string", "value": image},
                                {"name": "IMAGE_DIGEST", "type": "string", "value": digest}]
    return run


@pytest.fixture
def watcher(kube_api_rbac: KubeApiDouble, key: str, tmp_path: Path) -> tuple[KubeApiDouble, Path, Path]:
    """The strict double with the watcher's rbac.yaml and config.yaml applied and its key Secrets."""
    api = kube_api_rbac
    api.load_rbac(WATCHER / "rbac.yaml", namespace="chainmail")
    keys = None
    for doc in yaml.safe_load_all((WATCHER / "config.yaml").read_text()):
        api.add(doc)
        if doc["metadata"]["name"] == "chainmail-namespace-keys":
            keys = tmp_path / "namespace-keys.yaml"
            keys.write_text(doc["data"]["namespace-keys.yaml"])
    assert keys is not None
    for name in ("signing-secrets", "signing-secrets-team-a"):
        api.add(_key_secret(Path(key), "chainmail", name))
    api.add(_key_secret(Path(key), "team-b", "signing-secrets"))  # a user's own key: not the watcher's to read
    kubeconfig = api.kubeconfig(tmp_path, token=api.sa_token("chainmail", "chainmail-signer"), name="signer",
                                namespace="chainmail")
    return api, kubeconfig, keys


def _signer_denials(api: KubeApiDouble) -> set[tuple[str, str]]:
    return {(r.method, r.path) for r in api.request_log
            if r.status == 403 and r.user == "system:serviceaccount:chainmail:chainmail-signer"}


def _known_gap(denials: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Denials other than the pull-secret lookup (GET serviceaccounts/NAME), which rbac.yaml does not grant.

    The oci backend reads the run's ServiceAccount for imagePullSecrets and falls back to
    DOCKER_CONFIG when that is forbidden; a namespace opts in with namespace-credentials.yaml
    (``chainmail watcher enable NAMESPACE``), never with cluster-wide Secret reads.
    """
    return {(m, p) for m, p in denials if not (m == "GET" and "/serviceaccounts/" in p)}


@pytest.mark.registry
def test_watcher_signer_sweeps_every_namespace_with_rbac_yaml(watcher, registry: RegistryServer):
    api, kubeconfig, keys = watcher
    refs = [push_test_image(registry, f"rbac/app-{i}", f"rbac-sweep-{i}") for i in range(3)]
    api.add(_image_run("build-a", "team-a", refs[0]))
    api.add(_image_run("build-b", "team-b", refs[1]))
    pr, children = pipelinerun_with_children("release", "team-c", tasks=("build",))
    api.add(pr)
    api.add(_with_image(children[0], refs[2]))

    out = chainmail(["sweep", "-A", "--kubeconfig", str(kubeconfig), "--key", "k8s://chainmail/signing-secrets",
                     "--configmap", "chainmail/chainmail-config", "--namespace-keys", str(keys), "-o", "json"],
                    timeout=120)
    assert out.code == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["signed"] == 4 and not report["failed"], report
    assert set(api.signed_writes().values()) == {1} and len(api.signed_writes()) == 4
    for ref in refs:
        repo, digest = ref.split("/", 1)[1].split("@")
        assert registry.get_manifest(repo, digest.replace(":", "-") + ".sig") is not None, ref
    # No namespace opted in (namespace-credentials.yaml): the pull-secret lookup of each run's
    # ServiceAccount is denied, warned about once per namespace, and DOCKER_CONFIG is used. Nothing else is.
    assert _signer_denials(api) == {("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")
                                    for ns in ("team-a", "team-b", "team-c")}
    for ns in ("team-a", "team-b", "team-c"):
        assert out.stderr.count(f"chainmail watcher enable {ns}") == 1, out.stderr[-2000:]
    # It read keys only in its own namespace.
    reads = {r.path for r in api.request_log if "/secrets/" in r.path and r.status == 200}
    assert reads and all(p.startswith("/api/v1/namespaces/chainmail/secrets/") for p in reads)


@pytest.mark.registry
def test_watcher_signer_runs_one_run(watcher, registry: RegistryServer):
    api, kubeconfig, _ = watcher
    ref = push_test_image(registry, "rbac/one", "rbac-run-one")
    api.add(_image_run("build-one", "team-b", ref))
    out = chainmail(["run", "--taskrun", "build-one", "-n", "team-b", "--kubeconfig", str(kubeconfig),
                     "--key", "k8s://chainmail/signing-secrets", "--configmap", "chainmail/chainmail-config"],
                    timeout=120)
    assert out.code == 0, out.stderr[-2000:]
    assert api.signed_writes() == {("taskruns", "team-b", "build-one"): 1}
    assert _known_gap(_signer_denials(api)) == set()


def test_watcher_signer_cannot_reach_user_keys(watcher, tmp_path):
    api, kubeconfig, _ = watcher
    api.add(completed_taskrun("build", "team-b", image=""))
    # A user's own key Secret, through the CLI: refused, and nothing leaks.
    out = chainmail(["run", "--taskrun", "build", "-n", "team-b", "--kubeconfig", str(kubeconfig),
                     "--key", "k8s://team-b/signing-secrets", *TEKTON_ONLY])
    assert_rejected(out, 19, mentions="secrets")
    assert api.signed_writes() == {}
    user = "system:serviceaccount:chainmail:chainmail-signer"
    assert not api.can(user, "get", "secrets", "team-b", "signing-secrets")
    assert not api.can(user, "get", "secrets", "chainmail", "registry-credentials")
    assert not api.can(user, "list", "secrets", "chainmail")
    assert not api.can(user, "patch", "pipelineruns", "team-b", "x", "status")
    assert not api.can(user, "delete", "taskruns", "team-b", "x")
    assert not api.can(user, "create", "pipelineruns", "team-b")
    assert not api.can(user, "watch", "taskruns", None)
    # What the sweep needs, cluster-wide:
    for verb in ("get", "list", "patch"):
        assert api.can(user, verb, "taskruns", "team-b", "x" if verb != "list" else None)
    assert api.can(user, "list", "pipelineruns", None)
    assert api.can(user, "get", "configmaps", "chainmail", "chainmail-config")


# ------------------------------------------------------- per-namespace opt-in to the run's pull secrets


def _pull_secret(ns: str, name: str, config: Path) -> dict[str, Any]:
    data = {".dockerconfigjson": base64.b64encode(config.read_bytes()).decode()}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "kubernetes.io/dockerconfigjson",
            "data": data}


def _run_as(run: dict[str, Any], account: str) -> dict[str, Any]:
    run["spec"]["serviceAccountName"] = account
    return run


@pytest.mark.registry
def test_ungranted_namespaces_warn_once_and_push_with_docker_config(watcher, auth_registry: RegistryServer,
                                                                    tmp_path: Path):
    api, kubeconfig, keys = watcher
    docker = tmp_path / "docker"
    auth_registry.docker_config(docker)
    refs = [push_test_image(auth_registry, f"rbac/ungranted-{i}", f"rbac-ungranted-{i}") for i in range(3)]
    api.add(_image_run("build-1", "team-a", refs[0]))
    api.add(_image_run("build-2", "team-a", refs[1]))
    api.add(_image_run("build-3", "team-b", refs[2]))
    out = chainmail(["sweep", "-A", "--kubeconfig", str(kubeconfig), "--key", "k8s://chainmail/signing-secrets",
                     "--configmap", "chainmail/chainmail-config", "--namespace-keys", str(keys), "-o", "json"],
                    env={"DOCKER_CONFIG": str(docker)}, timeout=120)
    assert out.code == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["signed"] == 3
    for ref in refs:
        repo, digest = ref.split("/", 1)[1].split("@")
        assert auth_registry.get_manifest(repo, digest.replace(":", "-") + ".sig") is not None, ref
    warnings = [line for line in out.stderr.splitlines() if "chainmail watcher enable" in line]
    assert len(warnings) == 2, out.stderr[-2000:]  # one per namespace, not one per run
    assert sum("chainmail watcher enable team-a" in w for w in warnings) == 1
    assert sum("chainmail watcher enable team-b" in w for w in warnings) == 1
    assert "Traceback" not in out.stderr and auth_registry.auth[1] not in out.stdout + out.stderr


@pytest.mark.registry
def test_granted_namespace_pushes_with_the_run_accounts_pull_secret(watcher, auth_registry: RegistryServer,
                                                                   tmp_path: Path):
    api, kubeconfig, keys = watcher
    assert api.load_rbac(WATCHER / "opt-in" / "namespace-credentials.yaml", namespace="team-a") == [
        "ClusterRole/chainmail-run-credentials", "RoleBinding/chainmail-run-credentials"]
    enabled = chainmail(["watcher", "enable", "team-a", "-o", "json"])
    assert enabled.code == 0, enabled.stderr
    binding = json.loads(enabled.stdout)
    # The CLI prints the same RoleBinding as the shipped template, in the namespace asked for.
    template = [d for d in yaml.safe_load_all((WATCHER / "opt-in" / "namespace-credentials.yaml").read_text())
                if d["kind"] == "RoleBinding"][0]
    assert binding["metadata"]["namespace"] == "team-a"
    assert {k: binding[k] for k in ("roleRef", "subjects")} == {k: template[k] for k in ("roleRef", "subjects")}

    login = auth_registry.docker_config(tmp_path / "team-a-login")
    api.add({"kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "team-a"},
             "imagePullSecrets": [{"name": "regcred"}]})
    api.add(_pull_secret("team-a", "regcred", login))
    api.add(_pull_secret("team-b", "regcred", login))  # not granted: must stay unread
    ref = push_test_image(auth_registry, "rbac/granted", "rbac-granted")
    api.add(_run_as(_image_run("build-granted", "team-a", ref), "builder"))
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    # the image check before signing asks the registry with the same pull secret (no DOCKER_CONFIG at all)
    out = chainmail(["run", "--taskrun", "build-granted", "-n", "team-a", "--kubeconfig", str(kubeconfig),
                     "--key", "k8s://chainmail/signing-secrets", "--configmap", "chainmail/chainmail-config"],
                    env={"DOCKER_CONFIG": str(empty)}, timeout=120)
    assert out.code == 0, out.stderr[-2000:]
    repo, digest = ref.split("/", 1)[1].split("@")
    assert auth_registry.get_manifest(repo, digest.replace(":", "-") + ".sig") is not None
    assert "chainmail watcher enable" not in out.stderr
    assert _signer_denials(api) == set()
    reads = {r.path for r in api.request_log if "/secrets/" in r.path and r.status == 200}
    assert "/api/v1/namespaces/team-a/secrets/regcred" in reads
    assert all(p.startswith(("/api/v1/namespaces/chainmail/secrets/", "/api/v1/namespaces/team-a/secrets/"))
               for p in reads), reads
    user = "system:serviceaccount:chainmail:chainmail-signer"
    assert api.can(user, "get", "secrets", "team-a", "regcred")
    assert not api.can(user, "get", "secrets", "team-b", "regcred")
    assert not api.can(user, "list", "secrets", "team-a")


@pytest.mark.registry
def test_ungranted_namespace_refused_push_says_so(watcher, auth_registry: RegistryServer, tmp_path: Path):
    api, kubeconfig, _ = watcher
    ref = push_test_image(auth_registry, "rbac/refused", "rbac-refused")
    api.add(_image_run("build-refused", "team-b", ref))
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    out = chainmail(["run", "--taskrun", "build-refused", "-n", "team-b", "--kubeconfig", str(kubeconfig),
                     "--key", "k8s://chainmail/signing-secrets", "--configmap", "chainmail/chainmail-config",
                     *NO_IMAGE_CHECK], env={"DOCKER_CONFIG": str(empty)}, timeout=120)
    assert_rejected(out, 17, mentions="denied", secrets=(auth_registry.auth[1],))
    # One warning names the missing grant and its fix; the error (and so the run's reason) says it again.
    warnings = [line for line in out.stderr.splitlines() if line.startswith("namespace team-b has not granted")]
    assert len(warnings) == 1 and "chainmail watcher enable team-b" in warnings[0], out.stderr[-2000:]
    (error,) = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert "has not granted its registry credentials" in error and "chainmail watcher enable team-b" in error
    reason = api.get("taskruns", "team-b", "build-refused")["metadata"]["annotations"].get(
        "chainmail.dev/failure-reason", "")
    assert "chainmail watcher enable team-b" in reason, reason
    assert api.signed_writes() == {}


def test_watcher_enable_prints_yaml_and_refuses_bad_names():
    out = chainmail(["watcher", "enable", "team-c"])
    assert out.code == 0, out.stderr
    (doc,) = yaml.safe_load_all(out.stdout)
    assert doc["kind"] == "RoleBinding" and doc["metadata"]["namespace"] == "team-c"
    assert doc["roleRef"]["name"] == "chainmail-run-credentials"
    assert_rejected(chainmail(["watcher", "enable", "Team_C"]), 4, mentions="Team_C")
    assert_rejected(chainmail(["watcher", "enable", "team-c", "-o", "xml"]), 4, mentions="xml")
