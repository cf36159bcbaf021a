"""Logins from a run's ServiceAccount Secrets: docker configs, Tekton basic-auth Secrets, precedence."""

from __future__ import annotations

import base64
import json
from typing import Any

from chainmail.storage.run_credentials import basic_auth_logins, logins_from_secrets, secret_docker_configs


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic(name: str, user: str, password: str, **annotations: str) -> dict[str, Any]:
    return {"type": "kubernetes.io/basic-auth", "metadata": {"name": name, "annotations": annotations},
            "data": {"username": _b64(user), "password": _b64(password)}}


def dockerconfig(host: str, user: str, password: str) -> dict[str, Any]:
    doc = {"auths": {host: {"auth": _b64(f"{user}:{password}")}}}
    return {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": _b64(json.dumps(doc))}}


def test_tekton_basic_auth_secret() -> None:
    secret = basic("b", "robot", "pw", **{"tekton.dev/docker-0": "https://ghcr.io",
                                          "tekton.dev/docker-1": "registry.example:5000",
                                          "tekton.dev/git-0": "https://github.com",
                                          "tekton.dev/docker-hub": "https://index.docker.io/v1/"})
    logins = basic_auth_logins(secret)
    assert set(logins) == {"ghcr.io", "registry.example:5000", "index.docker.io"}
    assert logins["ghcr.io"].username == "robot" and logins["ghcr.io"].password == "pw"
    assert "pw" not in repr(logins["ghcr.io"])


def test_other_secrets_are_not_basic_logins() -> None:
    assert basic_auth_logins({**basic("b", "u", "p", **{"tekton.dev/docker-0": "ghcr.io"}), "type": "Opaque"}) == {}
    assert basic_auth_logins(basic("b", "u", "p")) == {}  # not annotated
    assert basic_auth_logins(basic("b", "", "", **{"tekton.dev/docker-0": "ghcr.io"})) == {}
    assert basic_auth_logins({"type": "kubernetes.io/basic-auth", "metadata": {"annotations": ["x"]}}) == {}
    assert basic_auth_logins("not a secret") == {}
    # stringData is read too (a Secret as written, before the API server encodes it)
    written = {"type": "kubernetes.io/basic-auth", "metadata": {"annotations": {"tekton.dev/docker-0": "q.io"}},
               "stringData": {"username": "u", "password": "p"}}
    assert basic_auth_logins(written)["q.io"].password == "p"


def test_docker_config_secret_wins_over_basic_auth_secret() -> None:
    secrets = [
        ("basic", basic("basic", "from-basic", "b", **{"tekton.dev/docker-0": "https://ghcr.io",
                                                         "tekton.dev/docker-1": "https://quay.io"})),
        ("regcred", dockerconfig("ghcr.io", "from-pull-secret", "d")),
    ]
    logins = logins_from_secrets(secrets, "team-a")
    assert logins["ghcr.io"].username == "from-pull-secret"
    assert logins["quay.io"].username == "from-basic"


def test_first_secret_of_a_kind_wins_and_broken_ones_are_skipped() -> None:
    broken = {"type": "kubernetes.io/dockerconfigjson",
              "data": {".dockerconfigjson": _b64(json.dumps({"auths": {"ghcr.io": {"auth": "%%%"}}}))}}
    secrets = [("broken", broken), ("one", dockerconfig("ghcr.io", "first", "1")),
               ("two", dockerconfig("ghcr.io", "second", "2")),
               ("b1", basic("b1", "basic-first", "x", **{"tekton.dev/docker-0": "quay.io"})),
               ("b2", basic("b2", "basic-second", "y", **{"tekton.dev/docker-0": "quay.io"}))]
    logins = logins_from_secrets(secrets, "team-a")
    assert logins["ghcr.io"].username == "first" and logins["quay.io"].username == "basic-first"


def test_secret_docker_configs_of_objects() -> None:
    assert secret_docker_configs(dockerconfig("ghcr.io", "u", "p")) == [
        {"auths": {"ghcr.io": {"auth": _b64("u:p")}}}]
    assert secret_docker_configs({"type": "Opaque", "data": {"x": "!!notbase64"}}) == []
