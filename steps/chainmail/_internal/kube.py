"""A small typed Kubernetes client: just the calls chainmail makes, over one HTTP session.

Example::

    kube = KubeClient.from_environment()              # in-cluster, else $KUBECONFIG / ~/.kube/config
    run = kube.get("taskruns", "demo", "build-app")
    kube.patch_merge("taskruns", "demo", "build-app",
                     {"metadata": {"annotations": {"chains.tekton.dev/signed": "true"}}},
                     resource_version=run["metadata"]["resourceVersion"])

Every call goes through :func:`chainmail._internal.http.request`, so transient failures
(connection errors, 429, 5xx) are retried until the policy's deadline. Other statuses map to
typed errors: 401/403 → :class:`~chainmail.errors.ClusterAuthError`, 404 →
:class:`~chainmail.errors.NotFoundError`, 409 → :class:`~chainmail.errors.ConflictError` (re-exported
here), anything else →
:class:`~chainmail.errors.ClusterError`. Messages name the verb and the resource, never a
credential.
"""

from __future__ import annotations

import base64
import copy
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chainmail._internal.encoding import JSONLimitError, load_json
from chainmail._internal.http import BadResponseError, RetryPolicy, TransientError, request
from chainmail.errors import ClusterAuthError, ClusterError, ConfigError, ConflictError, NotFoundError

if TYPE_CHECKING:
    import requests

__all__ = ["CORE", "TEKTON", "ConflictError", "KubeClient"]

log = logging.getLogger("chainmail.kube")

#: The API group and version of Tekton runs.
TEKTON = "tekton.dev/v1"
#: Core resources chainmail reads or writes.
CORE = "v1"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
USER_AGENT = "chainmail/0.1"
#: Largest API response read (a page of 500 big PipelineRuns fits many times over).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Pages in a row without a single item before :meth:`KubeClient.iter_all` gives up on a list.
MAX_EMPTY_PAGES = 50

Selector = str | Mapping[str, str] | None
_Entry = tuple[dict[str, Any], Path]

_GROUPS = {
    "taskruns": TEKTON,
    "pipelineruns": TEKTON,
    "customruns": TEKTON,
    "secrets": CORE,
    "configmaps": CORE,
    "serviceaccounts": CORE,
}


@dataclass
class _TokenFile:
    """A bearer token read from a file and re-read whenever the file changes (projected SA tokens rotate)."""

    path: Path
    _stamp: tuple[int, int, int] | None = None
    _token: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def token(self, *, force: bool = False) -> str:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read the Kubernetes token file {self.path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if force or stamp != self._stamp:
                try:
                    self._token = self.path.read_text().strip()
                except OSError as exc:
                    raise ConfigError(
                        f"cannot read the Kubernetes token file {self.path}: {exc.strerror}"
                    ) from None
                self._stamp = stamp
            return self._token


class KubeClient:
    """Typed access to Tekton runs and a few core objects.

    Thread-safe: each thread gets its own keep-alive session from the http module.
    """

    def __init__(
        self,
        server: str,
        *,
        namespace: str = "default",
        token: str | None = None,
        token_file: Path | None = None,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        tempdir: Path | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._namespace = namespace or "default"
        self._token = token
        self._token_file = _TokenFile(token_file) if token_file else None
        self.verify = verify
        self.cert = cert
        self._basic = basic_auth
        self.retry = retry or RetryPolicy()
        if tempdir is not None:
            # Owns the private directory holding key material from a kubeconfig; removed with the client.
            weakref.finalize(self, shutil.rmtree, tempdir, True)

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_environment(cls, kubeconfig: Path | None = None, *, retry: RetryPolicy | None = None,
                         context: str | None = None) -> KubeClient:
        """An explicit kubeconfig; else in-cluster config; else ``$KUBECONFIG``; else ``~/.kube/config``."""
        if kubeconfig is not None:
            # --kubeconfig takes $KUBECONFIG too, which may be a list of files.
            text = str(kubeconfig)
            paths = [Path(p).expanduser() for p in text.split(os.pathsep) if p] \
                if os.pathsep in text and not Path(text).exists() else [Path(kubeconfig)]
            return cls.from_kubeconfig(paths, context=context, retry=retry)
        if os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
            return cls.in_cluster(retry=retry)
        env = os.environ.get("KUBECONFIG", "")
        paths = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        if not paths:
            paths = [Path.home() / ".kube" / "config"]
        existing = [p for p in paths if p.exists()]
        if not existing:
            raise ConfigError(
                "no Kubernetes configuration found: not running in a pod, and no kubeconfig at "
                + ", ".join(str(p) for p in paths),
                hint="pass --kubeconfig FILE or set KUBECONFIG",
            )
        return cls.from_kubeconfig(existing, context=context, retry=retry)

    @classmethod
    def in_cluster(cls, *, root: Path = SA_DIR, env: Mapping[str, str] | None = None,
                   retry: RetryPolicy | None = None) -> KubeClient:
        """The pod's service account: token (re-read when rotated), CA and namespace files."""
        env = os.environ if env is None else env
        host = env.get("KUBERNETES_SERVICE_HOST", "")
        port = env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ConfigError("in-cluster config: KUBERNETES_SERVICE_HOST is not set")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        token = root / "token"
        if not token.exists():
            raise ConfigError(f"in-cluster config: no service-account token at {token}")
        ca = root / "ca.crt"
        try:
            namespace = (root / "namespace").read_text().strip()
        except OSError:
            namespace = "default"
        return cls(f"https://{host}:{port}", namespace=namespace, token_file=token,
                   verify=str(ca) if ca.exists() else True, retry=retry)

    @classmethod
    def from_kubeconfig(cls, paths: Path | list[Path], *, context: str | None = None,
                        retry: RetryPolicy | None = None) -> KubeClient:
        """Build a client from kubeconfig file(s), merged as kubectl does (first file wins)."""
        return _from_kubeconfig([paths] if isinstance(paths, Path) else paths, context, retry)

    # ---------------------------------------------------------------- properties

    @property
    def namespace(self) -> str:
        """The default namespace (kubeconfig context, or the pod's)."""
        return self._namespace

    @property
    def source(self) -> str:
        """``api:<server>``: where snapshots taken through this client came from."""
        return f"api:{self.server}"

    # ---------------------------------------------------------------- tekton runs

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """One object, e.g. ``get("taskruns", "demo", "build-app")``."""
        return self._call("GET", self._url(plural, namespace, name), verb="get",
                          what=_what(plural, namespace, name))

    def list(self, plural: str, namespace: str | None, *, label_selector: Selector = None, limit: int = 500,
             continue_: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of objects and the continue token (None on the last page).

        ``namespace=None`` lists across all namespaces. Items get ``apiVersion``/``kind``
        filled in when the server leaves them out.
        """
        params: dict[str, str | int] = {}
        if limit:
            params["limit"] = limit
        selector = _selector(label_selector)
        if selector:
            params["labelSelector"] = selector
        if continue_:
            params["continue"] = continue_
        doc = self._call("GET", self._url(plural, namespace), verb="list", what=_what(plural, namespace),
                         params=params)
        items = doc.get("items") or []
        meta = doc.get("metadata") or {}
        if not isinstance(items, list) or not isinstance(meta, dict):
            raise ClusterError(f"list {_what(plural, namespace)}: malformed list from the Kubernetes API")
        items = [item for item in items if isinstance(item, dict)]
        list_kind = str(doc.get("kind") or "")
        kind = list_kind[:-4] if list_kind.endswith("List") else ""
        api_version = doc.get("apiVersion") or _GROUPS.get(plural, TEKTON)
        for item in items:
            if kind and "kind" not in item:
                item["kind"] = kind
            if "apiVersion" not in item:
                item["apiVersion"] = api_version
        token = meta.get("continue") or None
        return items, str(token) if token is not None else None

    def iter_all(self, plural: str, namespace: str | None, label_selector: Selector = None,
                 page: int = 500) -> Iterator[dict[str, Any]]:
        """Every object, fetched ``page`` at a time (only one page is held in memory)."""
        token: str | None = None
        seen: set[str] = set()
        empty = 0
        while True:
            items, token = self.list(plural, namespace, label_selector=label_selector, limit=page,
                                     continue_=token)
            yield from items
            if not token:
                return
            empty = 0 if items else empty + 1
            if token in seen or empty > MAX_EMPTY_PAGES:
                raise ClusterError(f"list {_what(plural, namespace)}: the Kubernetes API keeps paging "
                                   "without progress (a repeated or endless continue token)")
            seen.add(token)

    def patch_merge(self, plural: str, namespace: str, name: str, patch: dict[str, Any], *,
                    resource_version: str | None = None) -> dict[str, Any]:
        """JSON merge patch (RFC 7386); returns the updated object.

        With ``resource_version`` the patch only applies to that exact version; otherwise
        the server answers 409 and :class:`ConflictError` is raised.
        """
        if resource_version is not None:
            patch = copy.copy(patch)
            meta = dict(patch.get("metadata") or {})
            meta["resourceVersion"] = str(resource_version)
            patch["metadata"] = meta
        return self._call("PATCH", self._url(plural, namespace, name), verb="patch",
                          what=_what(plural, namespace, name), json=patch,
                          headers={"Content-Type": "application/merge-patch+json"})

    # ---------------------------------------------------------------- core objects

    def get_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's data, base64-decoded."""
        doc = self.get("secrets", namespace, name)
        out: dict[str, bytes] = {}
        for key, value in _mapping(doc.get("data"), f"secret {namespace}/{name}").items():
            try:
                out[key] = base64.b64decode(value or "", validate=True)
            except (TypeError, ValueError):
                raise ClusterError(f"secret {namespace}/{name}: key '{key}' is not valid base64") from None
        return out

    def get_secret_object(self, namespace: str, name: str) -> dict[str, Any]:
        """A Secret object as stored: ``type``, ``metadata`` (annotations) and base64 ``data``."""
        return self.get("secrets", namespace, name)

    def apply_secret(self, namespace: str, name: str, data: Mapping[str, bytes], *, immutable: bool = True,
                     labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create an Opaque Secret, or replace it when it already exists."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        if labels:
            body["metadata"]["labels"] = dict(labels)
        if immutable:
            body["immutable"] = True
        what = _what("secrets", namespace, name)
        try:
            return self._call("POST", self._url("secrets", namespace), verb="create", what=what, json=body)
        except ConflictError:
            log.debug("secret %s/%s exists; replacing it", namespace, name)
        return self._call("PUT", self._url("secrets", namespace, name), verb="update", what=what, json=body)

    def get_configmap(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's ``data``."""
        doc = self.get("configmaps", namespace, name)
        return {str(k): str(v) for k, v in _mapping(doc.get("data"), f"configmap {namespace}/{name}").items()}

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """A ServiceAccount object."""
        return self.get("serviceaccounts", namespace, name)

    # ---------------------------------------------------------------- plumbing

    def _url(self, plural: str, namespace: str | None, name: str | None = None) -> str:
        group = _GROUPS.get(plural, TEKTON)
        base = f"{self.server}/api/v1" if group == CORE else f"{self.server}/apis/{group}"
        path = f"{base}/namespaces/{quote(namespace, safe='')}/{plural}" if namespace else f"{base}/{plural}"
        return f"{path}/{quote(name, safe='')}" if name else path

    def _headers(self, extra: Mapping[str, str] | None, *, refresh: bool = False) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        token = self._token_file.token(force=refresh) if self._token_file else self._token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if extra:
            headers.update(extra)
        return headers

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        import requests

        try:
            return request(method, url, policy=self.retry, headers=headers, verify=self.verify,
                           cert=self.cert, auth=self._basic, max_bytes=MAX_RESPONSE_BYTES, **kwargs)
        except TransientError as exc:
            raise ClusterError(f"cannot reach the Kubernetes API at {self.server}: {exc}") from None
        except BadResponseError as exc:
            raise ClusterError(f"the Kubernetes API at {self.server}: {method} {_path(url)}: {exc}") from None
        except requests.RequestException as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.server}: {type(exc).__name__}: {_scrub(str(exc))}"
            ) from None

    def _call(self, method: str, url: str, *, verb: str, what: str, headers: Mapping[str, str] | None = None,
              **kwargs: Any) -> dict[str, Any]:
        resp = self._send(method, url, self._headers(headers), **kwargs)
        if resp.status_code == 401 and self._token_file is not None:
            # The projected token may have rotated between our stat and the server's check.
            resp = self._send(method, url, self._headers(headers, refresh=True), **kwargs)
        if resp.status_code >= 300:
            raise self._error(resp, verb, what)
        try:
            doc = load_json(resp.content)
        except JSONLimitError as exc:
            raise ClusterError(f"{verb} {what}: the Kubernetes API answered with {exc}") from None
        except ValueError:
            raise ClusterError(f"{verb} {what}: the Kubernetes API answered with non-JSON content") from None
        if not isinstance(doc, dict):
            raise ClusterError(f"{verb} {what}: unexpected response from the Kubernetes API")
        return doc

    def _error(self, resp: requests.Response, verb: str, what: str) -> ClusterError:
        code = resp.status_code
        reason, message = "", ""
        try:
            body = load_json(resp.content)
            if isinstance(body, dict):
                reason = str(body.get("reason") or "")[:100]
                message = str(body.get("message") or "")
        except ValueError:
            message = resp.content[:200].decode("utf-8", "replace")
        message = _scrub(" ".join(message.split())[:500])
        if self._token and self._token in message:
            message = message.replace(self._token, "***")
        detail = f"HTTP {code}" + (f" {reason}" if reason else "") + (f": {message}" if message else "")
        text = f"cannot {verb} {what}: {detail}"
        if code in (401, 403):
            hint = ("the credentials were rejected; check the token or client certificate" if code == 401
                    else f"grant the service account '{verb}' on {what.split(' ')[0]}")
            return ClusterAuthError(text, hint=hint)
        if code == 404:
            return NotFoundError(text)
        if code == 409:
            return ConflictError(text)
        return ClusterError(text)


# -------------------------------------------------------------------- helpers


def _mapping(value: object, what: str) -> dict[str, Any]:
    """An object's ``data`` field: a mapping, or absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClusterError(f"{what}: 'data' is not a mapping")
    return value


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def _what(plural: str, namespace: str | None, name: str | None = None) -> str:
    if name is not None:
        return f"{plural} {namespace}/{name}"
    return f"{plural} in namespace {namespace}" if namespace else f"{plural} in all namespaces"


def _selector(value: str | Mapping[str, str] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return ",".join(f"{k}={v}" for k, v in value.items())


def _scrub(text: str) -> str:
    """Drop anything that looks like a credential from an error message."""
    import re

    text = re.sub(r"(?i)(bearer|basic)\s+\S+", r"\1 ***", text)
    text = re.sub(r"(?i)(token|password|secret)=\S+", r"\1=***", text)
    return re.sub(r"://[^/@\s]+@", "://***@", text)


def _load_kubeconfig(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path}: expected a mapping")
    return doc


def _named(doc: dict[str, Any], section: str, path: Path, into: dict[str, _Entry]) -> None:
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise ConfigError(f"kubeconfig {path}: '{section}' must be a list")
    inner = section[:-1]
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"kubeconfig {path}: every entry of '{section}' needs a name")
        body = entry.get(inner) or {}
        if not isinstance(body, dict):
            raise ConfigError(f"kubeconfig {path}: {inner} '{entry['name']}' must be a mapping")
        into.setdefault(str(entry["name"]), (body, path))


def _from_kubeconfig(paths: list[Path], context: str | None, retry: RetryPolicy | None) -> KubeClient:
    clusters: dict[str, _Entry] = {}
    users: dict[str, _Entry] = {}
    contexts: dict[str, _Entry] = {}
    current = context
    if len(paths) > 1:  # a $KUBECONFIG list: missing files are ignored, as kubectl does
        paths = [p for p in paths if p.exists()] or paths[:1]
    for path in paths:
        doc = _load_kubeconfig(path)
        _named(doc, "clusters", path, clusters)
        _named(doc, "users", path, users)
        _named(doc, "contexts", path, contexts)
        if not current and doc.get("current-context"):
            current = str(doc["current-context"])
    where = ", ".join(str(p) for p in paths)
    if not current:
        if len(contexts) != 1:
            raise ConfigError(f"kubeconfig {where}: current-context is not set",
                              hint="run `kubectl config use-context NAME`")
        current = next(iter(contexts))
    if current not in contexts:
        raise ConfigError(f"kubeconfig {where}: context '{current}' is not defined")
    ctx, _ = contexts[current]
    cluster_name = str(ctx.get("cluster") or "")
    if cluster_name not in clusters:
        raise ConfigError(f"kubeconfig {where}: context '{current}' names cluster '{cluster_name}', "
                          "which is not defined")
    cluster, cluster_file = clusters[cluster_name]
    user_name = str(ctx.get("user") or "")
    user, user_file = users.get(user_name, ({}, paths[0]))
    if user_name and user_name not in users:
        raise ConfigError(f"kubeconfig {where}: context '{current}' names user '{user_name}', "
                          "which is not defined")

    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {where}: cluster '{cluster_name}' has no server")
    if cluster.get("proxy-url"):
        raise ConfigError(f"kubeconfig {where}: cluster '{cluster_name}' uses proxy-url, which chainmail "
                          "does not support yet")
    if "exec" in user or "auth-provider" in user:
        plugin = "an exec credential plugin" if "exec" in user else "an auth-provider plugin"
        command = (user.get("exec") or {}).get("command", "") if isinstance(user.get("exec"), dict) else ""
        raise ConfigError(
            f"kubeconfig {where}: user '{user_name}' authenticates with {plugin}"
            + (f" ({command})" if command else "") + ", which chainmail does not support yet",
            hint="use a service-account token instead: `kubectl create token NAME` and put it in the "
                 "kubeconfig's user.token (or user.tokenFile)",
        )

    state: dict[str, Path] = {}

    def private_dir() -> Path:
        if "dir" not in state:
            state["dir"] = Path(tempfile.mkdtemp(prefix="chainmail-kube-"))
        return state["dir"]

    def material(section: dict[str, Any], key: str, base: Path, label: str) -> str | None:
        """A file path for ``key`` or ``key-data`` (decoded into a private temp file)."""
        data = section.get(f"{key}-data")
        if data:
            try:
                raw = base64.b64decode(str(data), validate=True)
            except ValueError:
                raise ConfigError(f"kubeconfig {where}: {label} {key}-data is not valid base64") from None
            target = private_dir() / key
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            return str(target)
        value = section.get(key)
        if value:
            path = Path(str(value)).expanduser()
            path = path if path.is_absolute() else base.parent / path
            if not path.exists():
                raise ConfigError(f"kubeconfig {where}: {label} {key} {path} does not exist")
            return str(path)
        return None

    verify: bool | str = True
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    else:
        ca = material(cluster, "certificate-authority", cluster_file, f"cluster '{cluster_name}'")
        if ca:
            verify = ca
    cert_file = material(user, "client-certificate", user_file, f"user '{user_name}'")
    key_file = material(user, "client-key", user_file, f"user '{user_name}'")
    if bool(cert_file) != bool(key_file):
        raise ConfigError(f"kubeconfig {where}: user '{user_name}' needs both a client certificate and a key")

    token = user.get("token")
    token_file = None
    if not token and user.get("tokenFile"):
        token_file = Path(str(user["tokenFile"])).expanduser()
        token_file = token_file if token_file.is_absolute() else user_file.parent / token_file
    basic = None
    if user.get("username") and user.get("password") and not token:
        basic = (str(user["username"]), str(user["password"]))
    return KubeClient(
        server,
        namespace=str(ctx.get("namespace") or "default"),
        token=str(token) if token else None,
        token_file=token_file,
        verify=verify,
        cert=(cert_file, key_file) if cert_file and key_file else None,
        basic_auth=basic,
        retry=retry,
        tempdir=state.get("dir"),
    )
