"""Who can reach the signing key, checked against the RBAC YAML the project ships.

The API double runs in strict mode (``KubeApiDouble(rbac=True)``): it enforces the Roles,
ClusterRoles and bindings from the samples and ``pipelines/chainmail-watcher/rbac.yaml`` the way
the API server does, and every ``chainmail`` command runs through the CLI with a kubeconfig
carrying one service account's token.

- The finally samples run every build task as an account that gets 403 on the key Secret; only
  the finally task's account can read it, and it can sign the run.
- The watcher's ``chainmail-signer`` can sweep and sign runs in any namespace with exactly the
  grants of ``rbac.yaml``, and reads no Secret outside its own namespace.
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
    DOCKER_CONFIG when that is forbidden; granting it would need Secret reads in every
    namespace, which the watcher must not have.
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
    # Known gap, left to the grant design: the pull-secret lookup of each run's ServiceAccount is
    # denied (and the oci backend falls back to DOCKER_CONFIG). Nothing else is.
    assert _signer_denials(api) == {("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")
                                    for ns in ("team-a", "team-b", "team-c")}
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
