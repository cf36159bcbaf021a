"""Registry logins held by the Secrets of a run's service account, as Tekton's creds-init reads them.

Two kinds of Secret count:

* ``kubernetes.io/dockerconfigjson`` / ``kubernetes.io/dockercfg`` (and any Secret with a
  ``.dockerconfigjson``, ``.dockercfg`` or ``config.json`` key): every ``auths`` entry;
* ``kubernetes.io/basic-auth`` Secrets annotated ``tekton.dev/docker-<n>: https://registry``
  (Tekton's "Configuring basic-auth authentication for Docker"): ``username``/``password`` for each
  annotated registry.

Precedence for one registry: a docker-config Secret wins over a basic-auth Secret, and within a kind
the first Secret listed (``imagePullSecrets`` before ``secrets``) wins. The caller's explicit docker
config (``--docker-config``, the workspace) wins over both (see :meth:`RegistryClient.credentials`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chainmail._internal.encoding import b64decode, load_json
from chainmail._internal.registry import Credentials, normalize_host, parse_docker_config
from chainmail.errors import ConfigError

BASIC_AUTH_TYPE = "kubernetes.io/basic-auth"
DOCKER_ANNOTATION_PREFIX = "tekton.dev/docker-"


def _secret_data(secret: dict[str, Any]) -> dict[str, Any]:
    """``data`` (base64-decoded) merged with ``stringData``, or the mapping itself when it is neither."""
    if not (isinstance(secret.get("data"), dict) or isinstance(secret.get("stringData"), dict)):
        return secret
    data: dict[str, Any] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = b64decode(value) if isinstance(value, str) else value
        except ValueError:
            continue
    data.update(secret.get("stringData") or {})
    return data


def secret_docker_configs(secret: Any) -> list[dict[str, Any]]:
    """The docker configs held by a Secret object (or a plain key → value mapping)."""
    if not isinstance(secret, dict):
        return []
    data = _secret_data(secret)
    out = []
    for key in (".dockerconfigjson", ".dockercfg", "config.json"):
        value = data.get(key)
        if value is None:
            continue
        try:
            doc = load_json(value)
        except (ValueError, TypeError):
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return ""
    return value if isinstance(value, str) else ""


def basic_auth_logins(secret: Any) -> dict[str, Credentials]:
    """Host → login of a Tekton ``tekton.dev/docker-*`` basic-auth Secret ({} for any other Secret)."""
    if not isinstance(secret, dict) or secret.get("type") != BASIC_AUTH_TYPE:
        return {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, dict):
        return {}
    data = _secret_data(secret)
    username, password = _text(data.get("username")), _text(data.get("password"))
    if not username and not password:
        return {}
    out: dict[str, Credentials] = {}
    for key in sorted(annotations):
        value = annotations[key]
        if str(key).startswith(DOCKER_ANNOTATION_PREFIX) and isinstance(value, str) and value.strip():
            host = normalize_host(value)
            if host:
                out.setdefault(host, Credentials(username, password))
    return out


def logins_from_secrets(secrets: Iterable[tuple[str, Any]], namespace: str) -> dict[str, Credentials]:
    """Host → login from ``(name, Secret)`` pairs in service-account order, with the precedence above."""
    docker: dict[str, Credentials] = {}
    basic: dict[str, Credentials] = {}
    for name, secret in secrets:
        for doc in secret_docker_configs(secret):
            try:
                creds, _helpers = parse_docker_config(doc, f"secret {namespace}/{name}")
            except ConfigError:
                continue
            for host, login in creds.items():
                docker.setdefault(host, login)
        for host, login in basic_auth_logins(secret).items():
            basic.setdefault(host, login)
    return {**basic, **docker}
