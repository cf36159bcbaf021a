"""Basic auth (htpasswd, bcrypt) against the real ``docker-registry``, and logins from the run's ServiceAccount.

The ServiceAccount's Secrets are read through the strict API double (``kube_api``: the watcher's
``chainmail-signer`` with rbac.yaml, plus the namespace's opt-in ``namespace-credentials.yaml``).
Tekton's ``kubernetes.io/basic-auth`` Secrets annotated ``tekton.dev/docker-0`` count as logins;
an explicit ``--docker-config`` wins over every Secret, a docker-config Secret over a basic-auth one.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from regauth_support import REPO, STORE, no_ambient_docker_config, run_file

from chainmail.errors import RegistryAuthError
from clirun import cli
from doubles.kube import KubeApiDouble, completed_taskrun
from doubles.registry import PASSWORD, USERNAME, RegistryServer, push_test_image

pytestmark = pytest.mark.registry

WATCHER = REPO / "pipelines" / "chainmail-watcher"


@pytest.fixture(autouse=True)
def _no_ambient_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_ambient_docker_config(monkeypatch, tmp_path)


def _sig_stored(server: RegistryServer, image: str) -> bool:
    repo, digest = image.split("/", 1)[1].split("@")
    return server.get_manifest(repo, digest.replace(":", "-") + ".sig") is not None


def test_htpasswd_sign_store_and_verify(auth_registry: RegistryServer, key: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(auth_registry, "basic/app", "htpasswd-run")
    config = auth_registry.docker_config(tmp_path / "docker").parent
    code, _out, err = cli(["run", "--from-file", str(run_file(tmp_path, image)), "--key", key,
                           "-w", str(tmp_path / "ws"), "--docker-config", str(config), *STORE], capsys)
    assert code == 0, err
    assert _sig_stored(auth_registry, image)
    pub = str(Path(key, "cosign.pub"))
    code, _out, err = cli(["verify", "image", image, "--insecure-ignore-tlog", "--key", pub, "--docker-config", str(config)], capsys)
    assert code == 0, err
    wrong = auth_registry.docker_config(tmp_path / "wrong", password="not-the-pass").parent
    code, _out, err = cli(["verify", "image", image, "--insecure-ignore-tlog", "--key", pub, "--docker-config", str(wrong)], capsys)
    assert code == RegistryAuthError.exit_code and "not-the-pass" not in err and PASSWORD not in err


# -- the run's ServiceAccount ------------------------------------------------------------------------

def _basic_auth_secret(ns: str, name: str, registry_url: str, user: str, password: str) -> dict[str, Any]:
    return {"kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": ns, "annotations": {"tekton.dev/docker-0": registry_url}},
            "data": {"username": base64.b64encode(user.encode()).decode(),
                     "password": base64.b64encode(password.encode()).decode()}}


def _pull_secret(ns: str, name: str, host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    return {"kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": ns},
            "data": {".dockerconfigjson": base64.b64encode(config).decode()}}


def _granted_namespace(api: KubeApiDouble, ns: str, secrets: list[dict[str, Any]], pull: list[str]) -> None:
    api.load_rbac(WATCHER / "opt-in" / "namespace-credentials.yaml", namespace=ns)
    for secret in secrets:
        api.add(secret)
    api.add({"kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": ns},
             "imagePullSecrets": [{"name": n} for n in pull],
             "secrets": [{"name": s["metadata"]["name"]} for s in secrets if s["metadata"]["name"] not in pull]})


def _run_in_cluster(api: KubeApiDouble, server: RegistryServer, image: str, key: str, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    repo, digest = image.split("@")
    run = completed_taskrun("build", "team-a", image=repo, digest=digest)
    run["spec"]["serviceAccountName"] = "builder"
    api.add(run)
    kubeconfig = api.kubeconfig(tmp_path, namespace="team-a")
    code, _out, err = cli(["run", "--taskrun", "build", "-n", "team-a", "--kubeconfig", str(kubeconfig),
                           "--key", key, *STORE, *extra], capsys)
    return code, err


def test_tekton_basic_auth_secret_is_a_login(kube_api: KubeApiDouble, auth_registry: RegistryServer, key: str,
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = auth_registry.host
    _granted_namespace(kube_api, "team-a", [_basic_auth_secret("team-a", "tekton-basic", f"http://{host}",
                                                               USERNAME, PASSWORD)], pull=[])
    image = push_test_image(auth_registry, "basic/tekton-secret", "tekton-basic-auth")
    code, err = _run_in_cluster(kube_api, auth_registry, image, key, tmp_path, capsys)
    assert code == 0, err
    assert _sig_stored(auth_registry, image)
    assert PASSWORD not in err
    reads = {r.path for r in kube_api.request_log if "/secrets/" in r.path and r.status == 200}
    assert "/api/v1/namespaces/team-a/secrets/tekton-basic" in reads


def test_pull_secret_wins_over_basic_auth_secret(kube_api: KubeApiDouble, auth_registry: RegistryServer, key: str,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = auth_registry.host
    _granted_namespace(kube_api, "team-a", [
        _pull_secret("team-a", "regcred", host, USERNAME, "stale-pull-secret"),
        _basic_auth_secret("team-a", "tekton-basic", f"https://{host}", USERNAME, PASSWORD),
    ], pull=["regcred"])
    image = push_test_image(auth_registry, "basic/precedence", "precedence")
    code, err = _run_in_cluster(kube_api, auth_registry, image, key, tmp_path, capsys,
                                "--set", "chainmail.sign.verify-images-exist=false")
    assert code == RegistryAuthError.exit_code, err  # the (wrong) dockerconfigjson login was used
    assert "stale-pull-secret" not in err and PASSWORD not in err


def test_explicit_docker_config_wins_over_secrets(kube_api: KubeApiDouble, auth_registry: RegistryServer, key: str,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = auth_registry.host
    _granted_namespace(kube_api, "team-a", [
        _basic_auth_secret("team-a", "tekton-basic", f"http://{host}", USERNAME, "wrong-in-secret"),
    ], pull=[])
    image = push_test_image(auth_registry, "basic/explicit", "explicit")
    config = auth_registry.docker_config(tmp_path / "docker").parent
    code, err = _run_in_cluster(kube_api, auth_registry, image, key, tmp_path, capsys, "--docker-config", str(config))
    assert code == 0, err
    assert _sig_stored(auth_registry, image)
