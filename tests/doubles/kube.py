"""A local Kubernetes API double for the endpoints chainmail uses.

It follows the real API server where chainmail can tell the difference:

- ``GET``/``LIST``/``PATCH``/``POST``/``PUT``/``DELETE`` of ``taskruns``, ``pipelineruns`` and
  ``customruns`` under ``/apis/tekton.dev/v1/namespaces/{ns}/…`` (and cluster-wide lists under
  ``/apis/tekton.dev/v1/{plural}``), of core ``secrets``, ``configmaps`` and
  ``serviceaccounts`` under ``/api/v1/…``, and of ``deployments`` under ``/apis/apps/v1/…``;
  anything else is a 404;
- discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}/{version}``) lists exactly these
  (tests/doubles/kube_discovery.py) to any authenticated user, as the default ``system:discovery``
  binding does, and ``/version`` answers without credentials, so a real
  ``kubectl`` finds its resources here (it sends a kubeconfig's credentials only over TLS: use
  ``tls=True``, or the ``kube_api_https`` fixture);
- ``Accept`` must allow plain JSON (406 otherwise: no Table, protobuf or aggregated discovery);
- lists honour ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and
  ``limit``/``continue`` paging; an unknown continue token is a 400;
- ``PATCH`` accepts ``application/merge-patch+json`` (RFC 7386: ``null`` deletes) and
  ``application/json-patch+json`` (RFC 6902, all or nothing; an operation that does not apply is a
  422), nothing else (415: no strategic merge or apply patches); a ``metadata.resourceVersion`` (or
  ``uid``) the patch sets is a precondition → 409 Conflict; ``POST``/``PUT`` bodies must be JSON (415);
  ``resourceVersion`` is a cluster-wide counter bumped on every write that changes the object;
  annotations over 256 KiB are rejected with 422 like the real server;
- ``POST`` of an existing name → 409 AlreadyExists; ``PUT`` of an immutable Secret's data → 422;
- ``status`` is a subresource of the Tekton kinds, as in Tekton's CRDs, and of Deployments: a write
  to the object itself never changes ``.status`` (nor does a create set it); ``…/{name}/status``
  reads and writes only ``.status``; a Deployment's ``…/{name}/scale`` is an ``autoscaling/v1``
  Scale whose ``spec.replicas`` reads and writes the Deployment's (RBAC: ``deployments/scale``);
- writes are validated where a client could get them wrong: string annotation, label and
  ConfigMap values, non-empty finalizers (an emptied list is dropped), a Deployment's replicas
  and container ``args``/``command``;
- a ``continue`` token older than :attr:`KubeApiDouble.max_token_age` seconds, or issued before
  :meth:`KubeApiDouble.expire_continue_tokens`, is answered 410 Gone (reason ``Expired``);
- bearer-token auth (401 without or with an unknown token, 403 for rules added with
  :meth:`KubeApiDouble.forbid`); with ``tls=True`` it serves HTTPS from its own CA and also
  accepts client certificates signed by that CA (the user is the certificate's CN);
- with ``rbac=True`` every request is authorised like the API server's RBAC authoriser: Roles,
  ClusterRoles, RoleBindings and ClusterRoleBindings loaded with :meth:`KubeApiDouble.load_rbac`
  (e.g. the YAML the project ships), service-account tokens from :meth:`KubeApiDouble.sa_token`
  (user ``system:serviceaccount:NS:NAME``, groups ``system:serviceaccounts`` and
  ``system:serviceaccounts:NS``); the admin token ``KubeApiDouble.token`` (group
  ``system:masters``) is allowed everything. The ``kube_api`` fixture turns this on by default and
  makes ``token`` the watcher's ``chainmail-signer`` account under the shipped rbac.yaml. Anything not granted is a 403 naming the user,
  verb, resource (with subresource) and namespace, like the real server;
- there is no ``default`` service account (nor any object) unless a test adds one;
- every error body is a real ``Status`` object.

Fault injection for retry tests: :meth:`KubeApiDouble.fail_next` (answer the next N matching
requests with a status), :meth:`KubeApiDouble.drop_next` (close the connection without an
answer), :attr:`KubeApiDouble.delay` (seconds before each answer) and :attr:`KubeApiDouble.hooks`
(callables run before each request is handled, e.g. to delete a run mid-sweep).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from doubles import kube_discovery
from doubles.json_patch import JsonPatchError, json_patch
from doubles.pki import TestCA
from doubles.rbac_docs import as_applied

TEKTON = "tekton.dev/v1"
CORE = "v1"
APPS = "apps/v1"
KINDS = {
    "taskruns": ("TaskRun", TEKTON),
    "pipelineruns": ("PipelineRun", TEKTON),
    "customruns": ("CustomRun", TEKTON),
    "secrets": ("Secret", CORE),
    "configmaps": ("ConfigMap", CORE),
    "serviceaccounts": ("ServiceAccount", CORE),
    "deployments": ("Deployment", APPS),
}
#: Subresources per plural: ``status`` as Tekton's CRDs and the Deployment API have it, and a
#: Deployment's ``scale`` (an ``autoscaling/v1`` Scale, what ``kubectl scale`` writes).
SUBRESOURCES: dict[str, frozenset[str]] = {
    "taskruns": frozenset({"status"}),
    "pipelineruns": frozenset({"status"}),
    "customruns": frozenset({"status"}),
    "deployments": frozenset({"status", "scale"}),
}
PLURALS = {kind: plural for plural, (kind, _) in KINDS.items()}
MAX_ANNOTATIONS = 256 * 1024
ADMIN_USER = "kubernetes-admin"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")

Key = tuple[str, str, str]  # (plural, namespace, name)
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``meta/v1 Status`` as the API server writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# ------------------------------------------------------------------ label selectors

_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_selector(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    return terms


def parse_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Compile a label selector; raises ValueError on bad syntax (the server's 400)."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_selector(text or ""):
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"unable to parse requirement: {term.strip()!r}")
        neg, key, op, value, setop, values = m.groups()
        if neg and (op or setop):
            raise ValueError(f"unable to parse requirement: {term.strip()!r}")
        if neg:
            checks.append(lambda labels, k=key: k not in labels)
        elif op in ("=", "=="):
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif setop:
            options = {v.strip() for v in values.split(",") if v.strip()}
            if setop == "in":
                checks.append(lambda labels, k=key, o=options: labels.get(k) in o)
            else:
                checks.append(lambda labels, k=key, o=options: labels.get(k) not in o)
        else:
            checks.append(lambda labels, k=key: k in labels)
    return lambda labels: all(check(labels) for check in checks)


# ------------------------------------------------------------------ the server


@dataclass
class LoggedRequest:
    """One request as the double saw it."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    user: str
    body: Any = None

    @property
    def key(self) -> Key | None:
        """(plural, namespace, name) for requests on one object."""
        route = _route(self.path)
        if route and route[2] and route[3]:
            return route[1], route[2], route[3]
        return None


@dataclass
class _Fault:
    remaining: int
    status: int | None
    method: str | None
    path_contains: str | None
    retry_after: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class _HandledError(Exception):
    code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


_ROUTES = (
    re.compile(r"^/apis/([^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?/?$"),
    re.compile(r"^/apis/([^/]+/[^/]+)/([^/]+)/?$"),
    re.compile(r"^/api/(v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?/?$"),
    re.compile(r"^/api/(v1)/([^/]+)/?$"),
)
#: Kinds whose ``status`` is a subresource (Tekton's CRDs enable ``subresources.status``).
STATUS_SUBRESOURCE = frozenset(p for p, subs in SUBRESOURCES.items() if "status" in subs)
#: PATCH bodies the double applies (a real server also takes strategic merge and apply patches for
#: built-in kinds; the double answers those 415 rather than apply them wrongly).
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")


def api_group(plural: str) -> str:
    """The API group of ``plural`` ('' for the core group)."""
    return KINDS[plural][1].rpartition("/")[0]


def qualified(plural: str) -> str:
    """``plural.group`` as the API server names a resource in messages (``taskruns.tekton.dev``)."""
    group = api_group(plural)
    return f"{plural}.{group}" if group else plural


def _route5(path: str) -> tuple[str, str, str | None, str | None, str | None] | None:
    """(group, plural, namespace, name, subresource) of an API path."""
    for i, rx in enumerate(_ROUTES):
        m = rx.match(path)
        if not m:
            continue
        if i in (0, 2):
            group, ns, plural, name, sub = m.groups()
            return group, plural, ns, name, sub
        group, plural = m.groups()
        return group, plural, None, None, None
    return None


def _route(path: str) -> tuple[str, str, str | None, str | None] | None:
    """(group, plural, namespace, name) of an API path."""
    route = _route5(path)
    return None if route is None else route[:4]


def _check_accept(headers: Any) -> None:
    """406 unless ``Accept`` allows plain JSON (the double serves no Table, protobuf or YAML form)."""
    accept = headers.get("Accept")
    if not accept:
        return
    for media_range in accept.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        if media_type in ("application/json", "application/*", "*/*") and not any(
                p.partition("=")[0].strip() in ("as", "g", "v") for p in params):
            return
    raise _HandledError(406, status_body(406, "NotAcceptable",
                                         "only the following media types are accepted: application/json"))


def _media_type(headers: Any) -> str:
    return (headers.get("Content-Type") or "").split(";")[0].strip()


def _patch_type(headers: Any) -> str:
    """A PATCH body's type; 415 for one the double does not apply."""
    ctype = _media_type(headers)
    if ctype not in PATCH_TYPES:
        raise _HandledError(415, status_body(415, "UnsupportedMediaType",
                                             "the body of the request was in an unknown format - accepted media "
                                             f"types include: {', '.join(PATCH_TYPES)}"))
    return ctype


def _check_body_type(headers: Any) -> None:
    """A POST/PUT body must be JSON (no Content-Type is taken as JSON, as the API server does)."""
    ctype = _media_type(headers)
    if ctype and ctype != "application/json":
        raise _HandledError(415, status_body(415, "UnsupportedMediaType",
                                             "the body of the request was in an unknown format - accepted media "
                                             "types include: application/json"))


def _scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """A Deployment's ``scale`` subresource (``spec.replicas`` defaults to 1, as the API server defaults it)."""
    meta = deployment["metadata"]
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": (deployment.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))},
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeApiDouble:
    """The API server double; see the module docstring."""

    def __init__(self, *, token: str = "chainmail-test-token", tls: bool = False, rbac: bool = False) -> None:
        self.token = token
        #: Enforce :attr:`rbac_docs` (see :meth:`load_rbac`); otherwise every authenticated user may do anything.
        self.rbac = rbac
        #: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings in force when :attr:`rbac` is on.
        self.rbac_docs: list[dict[str, Any]] = []
        #: bearer token → user name.
        self.tokens: dict[str, str] = {token: ADMIN_USER if rbac else "system:serviceaccount:default:chainmail"}
        #: user name → groups (besides the ones derived for service accounts).
        self.groups: dict[str, tuple[str, ...]] = {ADMIN_USER: ("system:masters", "system:authenticated")}
        #: Continue tokens older than this many seconds are answered 410 Gone (None: never).
        self.max_token_age: float | None = None
        self._token_epoch = 0
        self.objects: dict[Key, dict[str, Any]] = {}
        self.request_log: list[LoggedRequest] = []
        #: Keep request bodies in :attr:`request_log` (PATCH/POST/PUT).
        self.log_bodies = True
        self.delay = 0.0
        #: Called with (method, path, query) before each request is handled.
        self.hooks: list[Callable[[str, str, dict[str, str]], None]] = []
        self.lock = threading.RLock()
        self._rv = 100
        self._faults: list[_Fault] = []
        self._drops: list[_Fault] = []
        self._forbidden: list[tuple[str | None, str | None, str | None]] = []
        self.tls = tls
        self.pki: dict[str, bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self._conns: set[Any] = set()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> KubeApiDouble:
        handler = type("Handler", (_Handler,), {"api": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        if self.tls:
            self.pki = _make_pki()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tmp = Path(_tempdir())
            self._tmp = tmp
            (tmp / "server.pem").write_bytes(self.pki["server_cert"] + self.pki["server_key"])
            (tmp / "ca.pem").write_bytes(self.pki["ca_cert"])
            ctx.load_cert_chain(tmp / "server.pem")
            ctx.load_verify_locations(tmp / "ca.pem")
            ctx.verify_mode = ssl.CERT_OPTIONAL
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="kube-api-double",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (clients then see a refused connection)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(2)
            except OSError:
                pass
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the double is not running"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    # -------------------------------------------------------------- objects

    def next_rv(self) -> str:
        with self.lock:
            self._rv += 1
            return str(self._rv)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object (kind decides the plural); fills uid, namespace, resourceVersion, timestamps."""
        kind = obj.get("kind")
        if kind not in PLURALS:
            raise ValueError(f"the double does not serve kind {kind!r}")
        plural = PLURALS[kind]
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", KINDS[plural][1])
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self.next_rv()
        with self.lock:
            self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of a stored object, or None."""
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def delete(self, plural: str, namespace: str, name: str) -> bool:
        with self.lock:
            return self.objects.pop((plural, namespace, name), None) is not None

    def annotations(self, plural: str, namespace: str, name: str) -> dict[str, str]:
        obj = self.get(plural, namespace, name) or {}
        return dict((obj.get("metadata") or {}).get("annotations") or {})

    def writes(self, plural: str | None = None, *, method: str = "PATCH") -> list[LoggedRequest]:
        """Successful writes (default PATCH), optionally for one plural."""
        return [r for r in list(self.request_log)
                if r.method == method and r.status < 300 and (plural is None or (r.key and r.key[0] == plural))]

    def signed_writes(self) -> Counter[tuple[str, str, str]]:
        """Successful PATCHes that set ``chains.tekton.dev/signed: "true"``, per (plural, namespace, name)."""
        out: Counter[tuple[str, str, str]] = Counter()
        for r in self.writes():
            notes = ((r.body if isinstance(r.body, dict) else {}).get("metadata") or {}).get("annotations") or {}
            if notes.get("chains.tekton.dev/signed") == "true" and r.key:
                out[r.key] += 1
        return out

    # -------------------------------------------------------------- auth and faults

    def forbid(self, verb: str | None = None, plural: str | None = None, *, token: str | None = None) -> None:
        """Answer 403 to ``verb`` on ``plural`` (None = any) for ``token`` (None = any user)."""
        self._forbidden.append((verb, plural, token))

    def load_rbac(self, *sources: Path | str | dict[str, Any], namespace: str = "default") -> list[str]:
        """Load RBAC objects (and ServiceAccounts, which become objects) from YAML files or dicts.

        Namespaced objects without ``metadata.namespace`` land in ``namespace``, as ``kubectl
        apply -n`` would put them. Other kinds are ignored. Returns ``Kind/name`` of what was loaded.
        """
        import yaml

        loaded = []
        for source in sources:
            docs = [source] if isinstance(source, dict) else list(yaml.safe_load_all(Path(source).read_text()))
            for source_doc in docs:
                doc = as_applied(source_doc, namespace)
                if doc is None:
                    continue
                meta = doc["metadata"]
                if doc["kind"] == "ServiceAccount":
                    self.add(doc)
                else:
                    with self.lock:
                        self.rbac_docs.append(doc)
                loaded.append(f"{doc['kind']}/{meta.get('name')}")
        return loaded

    def use_admin_token(self) -> None:
        """Let :attr:`token` act as the cluster admin (``kubectl`` as an administrator, not the signer)."""
        self.tokens[self.token] = ADMIN_USER

    def sa_token(self, namespace: str, name: str) -> str:
        """A bearer token for the ServiceAccount ``namespace/name``, which must exist (as on a real cluster)."""
        if self.get("serviceaccounts", namespace, name) is None:
            raise KeyError(f"no ServiceAccount {namespace}/{name}: add it (or load_rbac the YAML that defines it)")
        token = f"sa-{namespace}-{name}-{uuid.uuid4().hex[:12]}"
        self.tokens[token] = f"system:serviceaccount:{namespace}:{name}"
        return token

    def user_token(self, user: str, groups: tuple[str, ...] = ()) -> str:
        """A bearer token for a plain user in ``groups`` (plus ``system:authenticated``)."""
        token = f"user-{uuid.uuid4().hex[:16]}"
        self.tokens[token] = user
        self.groups[user] = (*groups, "system:authenticated")
        return token

    def can(self, user: str, verb: str, plural: str, namespace: str | None, name: str | None = None,
            subresource: str | None = None) -> bool:
        """What the RBAC authoriser would answer (True when :attr:`rbac` is off)."""
        if not self.rbac:
            return True
        return _rbac_allows(self.rbac_docs, user, self._groups_of(user), verb, KINDS[plural][1], plural,
                            subresource, namespace, name)

    def _groups_of(self, user: str) -> tuple[str, ...]:
        m = re.match(r"^system:serviceaccount:([^:]+):([^:]+)$", user)
        if m:
            return ("system:serviceaccounts", f"system:serviceaccounts:{m.group(1)}", "system:authenticated")
        return self.groups.get(user, ("system:authenticated",))

    def expire_continue_tokens(self) -> None:
        """Every continue token handed out so far is now too old (the next use gets 410 Gone)."""
        with self.lock:
            self._token_epoch += 1

    def fail_next(self, n: int = 1, status: int = 500, *, method: str | None = None,
                  path_contains: str | None = None, retry_after: float | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status`` (a Status body)."""
        with self.lock:
            self._faults.append(_Fault(n, status, method, path_contains,
                                       None if retry_after is None else str(retry_after)))

    def drop_next(self, n: int = 1, *, method: str | None = None, path_contains: str | None = None) -> None:
        """Close the connection without answering the next ``n`` matching requests."""
        with self.lock:
            self._drops.append(_Fault(n, None, method, path_contains))

    def _take(self, faults: list[_Fault], method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    # -------------------------------------------------------------- kubeconfig

    def kubeconfig(self, tmp_path: Path, *, namespace: str = "default", token: str | None = None,
                   client_cert: bool = False, name: str = "kubeconfig") -> Path:
        """Write a kubeconfig pointing at the double (token auth, or the TLS client certificate)."""
        import yaml

        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority-data"] = base64.b64encode(self.pki["ca_cert"]).decode()
        user: dict[str, Any] = {}
        if client_cert:
            assert self.tls, "client certificates need tls=True"
            user["client-certificate-data"] = base64.b64encode(self.pki["client_cert"]).decode()
            user["client-key-data"] = base64.b64encode(self.pki["client_key"]).decode()
        else:
            user["token"] = token or self.token
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": cluster}],
            "users": [{"name": "double-user", "user": user}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "double-user",
                                                        "namespace": namespace}}],
            "current-context": "double",
            "preferences": {},
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # -------------------------------------------------------------- request handling

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes,
               peer_cn: str | None) -> tuple[int, dict[str, Any], dict[str, str], str]:
        """Answer one request: (status, JSON body, extra headers, user)."""
        user = "-"
        try:
            for hook in list(self.hooks):
                hook(method, path, query)
            if self.delay:
                time.sleep(self.delay)
            fault = self._take(self._faults, method, path)
            if fault is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                code = int(fault.status or 500)
                return code, status_body(code, _REASONS.get(code, "InternalError" if code >= 500 else "BadRequest"),
                                         f"injected fault (HTTP {code})"), extra, user
            if path.rstrip("/") == "/version" and method == "GET" and not headers.get("Authorization"):
                return 200, dict(kube_discovery.VERSION), {}, "system:anonymous"
            user = self._authenticate(headers, peer_cn)
            code, doc = self._dispatch(method, path, query, headers, body, user)
            return code, doc, {}, user
        except _HandledError as exc:
            return exc.code, exc.body, exc.headers, user

    def _dispatch(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes,
                  user: str) -> tuple[int, dict[str, Any]]:
        found = (dict(kube_discovery.VERSION) if path.rstrip("/") == "/version" else
                 kube_discovery.document(path, KINDS, SUBRESOURCES, self.url.split("://", 1)[1]))
        if found is not None:  # any authenticated user may read discovery (the default system:discovery role)
            if method != "GET":
                raise _HandledError(405, status_body(405, "MethodNotAllowed",
                                                "the server does not allow this method on the requested resource"))
            _check_accept(headers)
            return 200, found
        route = _route5(path)
        if route is None or route[1] not in KINDS or KINDS[route[1]][1] != route[0] or (
                route[4] and route[4] not in SUBRESOURCES.get(route[1], ())):
            raise _HandledError(404, status_body(404, "NotFound", "the server could not find the requested resource",
                                            {}))
        _, plural, ns, name, sub = route
        verb = {"GET": "get" if name else "list", "PATCH": "patch", "POST": "create", "PUT": "update",
                "DELETE": "delete"}.get(method)
        if verb == "list" and query.get("watch") in ("1", "true"):
            verb = "watch"
        if verb is None or (name is None and method not in ("GET", "POST")) or (name and method == "POST") or (
                sub and verb not in ("get", "patch", "update")):
            raise _HandledError(405, status_body(405, "MethodNotAllowed",
                                            "the server does not allow this method on the requested resource"))
        self._authorize(user, headers, verb, plural, ns, name)
        self._rbac_check(user, verb, plural, ns, name, sub)
        if verb == "watch":
            raise _HandledError(405, status_body(405, "MethodNotAllowed", "the double does not serve watches"))
        _check_accept(headers)
        patch_type = _patch_type(headers) if verb == "patch" else None
        if verb in ("create", "update"):
            _check_body_type(headers)
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise _HandledError(400, status_body(400, "BadRequest", f"error decoding body: {exc}")) from None
        if sub == "scale":
            return 200, self._scale(verb, ns, name, payload, patch_type)  # type: ignore[arg-type]
        if sub:
            return 200, self._status_write(verb, plural, ns, name, payload, patch_type)  # type: ignore[arg-type]
        if verb == "get":
            return 200, self._get(plural, ns, name)  # type: ignore[arg-type]
        if verb == "list":
            return 200, self._list(plural, ns, query)
        if verb == "patch":
            return 200, self._patch(plural, ns, name, payload, patch_type)  # type: ignore[arg-type]
        if verb == "create":
            return 201, self._create(plural, ns, payload)  # type: ignore[arg-type]
        if verb == "update":
            return 200, self._update(plural, ns, name, payload)  # type: ignore[arg-type]
        return 200, self._delete(plural, ns, name)  # type: ignore[arg-type]

    def _authenticate(self, headers: Any, peer_cn: str | None) -> str:
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            user = self.tokens.get(auth[7:].strip())
            if user:
                return user
        elif not auth and peer_cn:
            return peer_cn
        raise _HandledError(401, status_body(401, "Unauthorized", "Unauthorized"))

    def _authorize(self, user: str, headers: Any, verb: str, plural: str, ns: str | None, name: str | None) -> None:
        auth = headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        for f_verb, f_plural, f_token in self._forbidden:
            if (f_verb in (None, verb)) and (f_plural in (None, plural)) and (f_token in (None, token)):
                group, res = api_group(plural), qualified(plural)
                where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
                subject = f'{res} "{name}" is forbidden' if name else f"{res} is forbidden"
                raise _HandledError(403, status_body(
                    403, "Forbidden",
                    f'{subject}: User "{user}" cannot {verb} resource "{plural}" in API group "{group}"{where}',
                    {"name": name or "", "group": group, "kind": plural}))

    def _rbac_check(self, user: str, verb: str, plural: str, ns: str | None, name: str | None,
                    sub: str | None) -> None:
        if self.can(user, verb, plural, ns, name, sub):
            return
        group = api_group(plural)
        resource = f"{plural}/{sub}" if sub else plural
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        subject = f'{qualified(plural)} "{name}" is forbidden' if name else f"{qualified(plural)} is forbidden"
        raise _HandledError(403, status_body(
            403, "Forbidden",
            f'{subject}: User "{user}" cannot {verb} resource "{resource}" in API group "{group}"{where}',
            {"name": name or "", "group": group, "kind": plural}))

    def _status_write(self, verb: str, plural: str, ns: str, name: str, payload: Any,
                      patch_type: str | None) -> dict[str, Any]:
        """``…/{name}/status``: read the object, or change only its ``.status``."""
        if verb == "get":
            return self._get(plural, ns, name)
        with self.lock:
            old = self.objects.get((plural, ns, name))
            if old is None:
                raise self._not_found(plural, name)
            if verb == "patch":
                new_status = self._apply_patch(plural, name, old, payload, patch_type).get("status")
            else:
                if not isinstance(payload, dict) or (payload.get("metadata") or {}).get("name") != name:
                    raise _HandledError(400, status_body(400, "BadRequest",
                                                    "the name of the object does not match the URL"))
                want_rv = (payload.get("metadata") or {}).get("resourceVersion")
                if want_rv is not None and str(want_rv) != old["metadata"]["resourceVersion"]:
                    raise self._conflict(plural, name)
                new_status = payload.get("status")
            updated = copy.deepcopy(old)
            if new_status is None:
                updated.pop("status", None)
            else:
                updated["status"] = copy.deepcopy(new_status)
            if updated != old:
                updated["metadata"]["resourceVersion"] = self.next_rv()
                self.objects[(plural, ns, name)] = updated
            return copy.deepcopy(updated)

    def _scale(self, verb: str, ns: str, name: str, payload: Any, patch_type: str | None) -> dict[str, Any]:
        """``deployments/{name}/scale``: the Deployment seen, and resized, as an ``autoscaling/v1`` Scale."""
        with self.lock:
            old = self.objects.get(("deployments", ns, name))
            if old is None:
                raise self._not_found("deployments", name)
            scale = _scale_of(old)
            if verb == "get":
                return scale
            if verb == "patch":
                wanted = self._apply_patch("deployments", name, scale, payload, patch_type)
            else:
                if not isinstance(payload, dict) or (payload.get("metadata") or {}).get("name") != name:
                    raise _HandledError(400, status_body(400, "BadRequest",
                                                    "the name of the object does not match the URL"))
                want_rv = (payload.get("metadata") or {}).get("resourceVersion")
                if want_rv and str(want_rv) != old["metadata"]["resourceVersion"]:
                    raise self._conflict("deployments", name)
                wanted = payload
            replicas = (wanted.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _HandledError(422, status_body(
                    422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                                    f"{json.dumps(replicas)}: must be greater than or equal to 0",
                    {"name": name, "group": "autoscaling", "kind": "Scale"}))
            updated = copy.deepcopy(old)
            updated.setdefault("spec", {})["replicas"] = replicas
            if updated != old:
                updated["metadata"]["resourceVersion"] = self.next_rv()
                self.objects[("deployments", ns, name)] = updated
            return _scale_of(updated)

    def _apply_patch(self, plural: str, name: str, obj: dict[str, Any], payload: Any,
                     patch_type: str | None) -> dict[str, Any]:
        """``obj`` with a merge or JSON patch applied, as the API server applies one.

        A ``metadata.resourceVersion`` or ``uid`` the patch sets is a precondition (409 when it differs
        from the object's); the object's identity (name, namespace, uid, resourceVersion, creation time,
        apiVersion, kind) is kept whatever the patch says.
        """
        if patch_type == "application/merge-patch+json":
            if not isinstance(payload, dict):
                raise _HandledError(400, status_body(400, "BadRequest", "a merge patch must be a JSON object"))
            updated = merge_patch(obj, payload)
        else:
            if not isinstance(payload, list):
                raise _HandledError(400, status_body(400, "BadRequest", "a JSON patch must be a JSON array"))
            try:
                updated = json_patch(obj, payload)
            except JsonPatchError as exc:
                raise _HandledError(422, status_body(422, "Invalid", str(exc))) from None
        if not isinstance(updated, dict) or not isinstance(updated.get("metadata"), dict):
            raise _HandledError(422, status_body(422, "Invalid", "metadata: Required value"))
        meta, old_meta = updated["metadata"], obj["metadata"]
        want_rv = meta.get("resourceVersion")
        if want_rv is not None and str(want_rv) != old_meta["resourceVersion"]:
            raise self._conflict(plural, name)
        want_uid = meta.get("uid")
        if want_uid is not None and want_uid != old_meta.get("uid"):
            raise _HandledError(409, status_body(
                409, "Conflict",
                f"Precondition failed: UID in precondition: {want_uid}, UID in object meta: {old_meta.get('uid')}"))
        for key in ("resourceVersion", "uid", "name", "namespace", "creationTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
        for key in ("apiVersion", "kind"):
            if key in obj:
                updated[key] = obj[key]
        if meta.get("finalizers") == []:
            del meta["finalizers"]  # the API server drops an empty list
        return updated

    def _not_found(self, plural: str, name: str) -> _HandledError:
        return _HandledError(404, status_body(404, "NotFound", f'{qualified(plural)} "{name}" not found',
                                         {"name": name, "group": api_group(plural), "kind": plural}))

    def _conflict(self, plural: str, name: str) -> _HandledError:
        return _HandledError(409, status_body(
            409, "Conflict",
            f'Operation cannot be fulfilled on {qualified(plural)} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name, "group": api_group(plural), "kind": plural}))

    def _get(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.get((plural, ns, name))
            if obj is None:
                raise self._not_found(plural, name)
            return copy.deepcopy(obj)

    def _list(self, plural: str, ns: str | None, query: dict[str, str]) -> dict[str, Any]:
        try:
            match = parse_selector(query.get("labelSelector", ""))
        except ValueError as exc:
            raise _HandledError(400, status_body(400, "BadRequest", f"unable to parse requirement: {exc}")) from None
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise _HandledError(400, status_body(400, "BadRequest", "limit must be an integer")) from None
        start: list[str] | None = None
        if query.get("continue"):
            try:
                decoded = json.loads(base64.urlsafe_b64decode(query["continue"]))
                start = decoded["start"]
                issued, epoch = float(decoded.get("issued", 0)), int(decoded.get("epoch", 0))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise _HandledError(400, status_body(400, "BadRequest", "continue key is not valid")) from None
            if epoch != self._token_epoch or (self.max_token_age is not None
                                              and time.time() - issued > self.max_token_age):
                raise _HandledError(410, status_body(
                    410, "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter."))
        kind, group = KINDS[plural]
        with self.lock:
            keys = sorted(k for k in self.objects if k[0] == plural and (ns is None or k[1] == ns))
            if start is not None:
                keys = [k for k in keys if [k[1], k[2]] > start]
            items: list[dict[str, Any]] = []
            token = ""
            remaining = 0
            for i, key in enumerate(keys):
                obj = self.objects[key]
                if not match((obj.get("metadata") or {}).get("labels") or {}):
                    continue
                if limit and len(items) == limit:
                    last = items[-1]["metadata"]
                    token = base64.urlsafe_b64encode(json.dumps({
                        "start": [last["namespace"], last["name"]], "issued": time.time(),
                        "epoch": self._token_epoch}).encode()).decode()
                    remaining = sum(1 for k in keys[i:]
                                    if match((self.objects[k].get("metadata") or {}).get("labels") or {}))
                    break
                item = copy.deepcopy(obj)
                if group != TEKTON:  # typed (built-in) lists leave out each item's apiVersion/kind
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                items.append(item)
            meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
            if token:
                meta["continue"] = token
                meta["remainingItemCount"] = remaining
        return {"apiVersion": group, "kind": f"{kind}List", "metadata": meta, "items": items}

    def _validate(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        for field_name in ("annotations", "labels"):
            values = meta.get(field_name) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise _HandledError(400, status_body(400, "BadRequest",
                                                f"metadata.{field_name}: values must be strings"))
        size = sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items())
        if size > MAX_ANNOTATIONS:
            raise _HandledError(422, status_body(
                422, "Invalid",
                f"{obj.get('kind')} \"{meta.get('name')}\" is invalid: metadata.annotations: Too long: "
                f"must have at most {MAX_ANNOTATIONS} bytes"))
        finalizers = meta.get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers):
            raise self._invalid(obj, "metadata.finalizers", finalizers, "each must be a non-empty string")
        if obj.get("kind") == "ConfigMap" and not all(isinstance(v, str) for v in (obj.get("data") or {}).values()):
            raise _HandledError(400, status_body(400, "BadRequest", "ConfigMap data: values must be strings"))
        if obj.get("kind") == "Deployment":
            spec = obj.get("spec") or {}
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise self._invalid(obj, "spec.replicas", replicas, "must be greater than or equal to 0")
            containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
            if not isinstance(containers, list) or not containers:
                raise self._invalid(obj, "spec.template.spec.containers", containers, "must have at least one")
            for i, container in enumerate(containers):
                for field_name in ("command", "args"):
                    values = container.get(field_name, []) if isinstance(container, dict) else None
                    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                        raise self._invalid(obj, f"spec.template.spec.containers[{i}].{field_name}", values,
                                            "must be a list of strings")

    @staticmethod
    def _invalid(obj: dict[str, Any], field_path: str, value: Any, why: str) -> _HandledError:
        kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        return _HandledError(422, status_body(
            422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {field_path}: '
                            f"Invalid value: {json.dumps(value)}: {why}",
            {"name": name or "", "group": group, "kind": kind}))

    def _patch(self, plural: str, ns: str, name: str, patch: Any, patch_type: str | None) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.get((plural, ns, name))
            if obj is None:
                raise self._not_found(plural, name)
            updated = self._apply_patch(plural, name, obj, patch, patch_type)
            _keep_status(plural, obj, updated)
            self._validate(updated)
            if updated != obj:
                updated["metadata"]["resourceVersion"] = self.next_rv()
                self.objects[(plural, ns, name)] = updated
            return copy.deepcopy(updated)

    def _create(self, plural: str, ns: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            raise _HandledError(422, status_body(422, "Invalid", "metadata.name: Required value"))
        name = body["metadata"]["name"]
        with self.lock:
            if (plural, ns, name) in self.objects:
                raise _HandledError(409, status_body(409, "AlreadyExists",
                                                f'{qualified(plural)} "{name}" already exists',
                                                {"name": name, "group": api_group(plural), "kind": plural}))
            obj = self._normalise(plural, ns, body)
            if plural in STATUS_SUBRESOURCE:
                obj.pop("status", None)  # the status subresource: a create does not set it
            self._validate(obj)
            obj["metadata"]["uid"] = str(uuid.uuid4())
            obj["metadata"]["creationTimestamp"] = _now()
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self.objects[(plural, ns, name)] = obj
            return copy.deepcopy(obj)

    def _update(self, plural: str, ns: str, name: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or (body.get("metadata") or {}).get("name") != name:
            raise _HandledError(400, status_body(400, "BadRequest", "the name of the object does not match the URL"))
        with self.lock:
            old = self.objects.get((plural, ns, name))
            if old is None:
                raise self._not_found(plural, name)
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv and str(want_rv) != old["metadata"]["resourceVersion"]:
                raise self._conflict(plural, name)
            obj = self._normalise(plural, ns, body)
            if plural in ("secrets", "configmaps") and old.get("immutable") and (
                    obj.get("data") != old.get("data") or not obj.get("immutable")):
                raise _HandledError(422, status_body(
                    422, "Invalid",
                    f'{KINDS[plural][0]} "{name}" is invalid: data: Forbidden: field is immutable when '
                    "`immutable` is set"))
            self._validate(obj)
            for k in ("uid", "creationTimestamp"):
                obj["metadata"][k] = old["metadata"].get(k)
            _keep_status(plural, old, obj)
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self.objects[(plural, ns, name)] = obj
            return copy.deepcopy(obj)

    def _delete(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            if self.objects.pop((plural, ns, name), None) is None:
                raise self._not_found(plural, name)
        return status_body(200, "", "", {"name": name, "group": api_group(plural), "kind": plural})

    def _normalise(self, plural: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        kind, group = KINDS[plural]
        obj["apiVersion"], obj["kind"] = group, kind
        obj.setdefault("metadata", {})["namespace"] = ns
        if plural == "secrets" and obj.get("stringData"):
            data = dict(obj.get("data") or {})
            data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in obj.pop("stringData").items()})
            obj["data"] = data
        return obj


def _keep_status(plural: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """A write to the main resource cannot change ``.status`` when status is a subresource."""
    if plural not in STATUS_SUBRESOURCE:
        return
    if "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    else:
        new.pop("status", None)


# ------------------------------------------------------------------ RBAC


def _subject_matches(subject: dict[str, Any], user: str, groups: tuple[str, ...], binding_ns: str | None) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or binding_ns
        return user == f"system:serviceaccount:{sa_ns}:{name}"
    if kind == "User":
        return user == name
    if kind == "Group":
        return name in groups
    return False


def _rule_allows(rule: dict[str, Any], verb: str, group: str, plural: str, sub: str | None,
                 name: str | None) -> bool:
    verbs, groups = rule.get("verbs") or [], rule.get("apiGroups") or []
    resources, names = rule.get("resources") or [], rule.get("resourceNames") or []
    if "*" not in verbs and verb not in verbs:
        return False
    if "*" not in groups and group not in groups:
        return False
    wanted = f"{plural}/{sub}" if sub else plural
    if "*" not in resources and wanted not in resources and not (sub and f"*/{sub}" in resources):
        return False
    return not names or (name is not None and name in names)


def _rbac_allows(docs: list[dict[str, Any]], user: str, groups: tuple[str, ...], verb: str, api_version: str,
                 plural: str, sub: str | None, namespace: str | None, name: str | None) -> bool:
    """The RBAC authoriser's decision for one request (``system:masters`` may do anything)."""
    if "system:masters" in groups:
        return True
    group = api_version.rpartition("/")[0]
    roles = {(d["kind"], (d.get("metadata") or {}).get("namespace"), (d.get("metadata") or {}).get("name")): d
             for d in docs if d.get("kind") in ("Role", "ClusterRole")}
    for binding in docs:
        kind = binding.get("kind")
        if kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        b_ns = (binding.get("metadata") or {}).get("namespace") if kind == "RoleBinding" else None
        if kind == "RoleBinding" and namespace != b_ns:
            continue  # a RoleBinding grants only inside its namespace (never cluster-scoped lists)
        if not any(_subject_matches(s, user, groups, b_ns) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "Role":
            role = roles.get(("Role", b_ns, ref.get("name"))) if kind == "RoleBinding" else None
        else:
            role = roles.get(("ClusterRole", None, ref.get("name")))
        if role and any(_rule_allows(r, verb, group, plural, sub, name) for r in role.get("rules") or []):
            return True
    return False


class _Handler(BaseHTTPRequestHandler):
    api: KubeApiDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes; with Nagle on, delayed ACKs stall every keep-alive
        # response by ~40 ms (Go's API server has no such stall).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.api.lock:
            self.api._conns.add(self.connection)

    def finish(self) -> None:
        with self.api.lock:
            self.api._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _serve(self) -> None:
        api = self.api
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if api._take(api._drops, self.command, parts.path) is not None:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        peer_cn = None
        if api.tls:
            cert = self.connection.getpeercert()  # type: ignore[attr-defined]
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            peer_cn = v
        code, doc, extra, user = api.handle(self.command, parts.path, query, self.headers, body, peer_cn)
        logged_body = None
        if api.log_bodies and body:
            try:
                logged_body = json.loads(body)
            except ValueError:
                logged_body = body
        with api.lock:
            api.request_log.append(LoggedRequest(self.command, parts.path, query, code, user, logged_body))
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names


# ------------------------------------------------------------------ TLS material


def _tempdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="kube-double-")


def _make_pki() -> dict[str, bytes]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (CN chainmail-client)."""
    ca = TestCA("kube-double-ca")
    server_cert, server_key = ca.issue("127.0.0.1", server_names=("127.0.0.1", "localhost"))
    client_cert, client_key = ca.issue("chainmail-client", client=True)
    return {"ca_cert": ca.cert_pem, "server_cert": server_cert, "server_key": server_key,
            "client_cert": client_cert, "client_key": client_key}


# ------------------------------------------------------------------ run builders


def image_digest(seed: str) -> str:
    """A deterministic ``sha256:<hex>`` for test images."""
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def completed_taskrun(name: str, namespace: str = "default", *, image: str | None = None,
                      digest: str | None = None, succeeded: bool = True, annotations: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None, uid: str | None = None,
                      finished: str = "2026-11-23T08:00:10Z") -> dict[str, Any]:
    """A finished v1 TaskRun shaped like the ones Tekton writes, with IMAGE_URL/IMAGE_DIGEST results."""
    image = image if image is not None else f"registry.example/{namespace}/{name}"
    digest = digest or image_digest(f"{namespace}/{name}")
    results_spec = [{"name": "IMAGE_URL", "type": "string"}, {"name": "IMAGE_DIGEST", "type": "string"}]
    task_spec = {
        "params": [{"name": "IMAGE", "type": "string"}],
        "results": results_spec,
        "steps": [{"image": "busybox", "name": "build", "script": "echo build"}],
    }
    status = "True" if succeeded else "False"
    reason = "Succeeded" if succeeded else "Failed"
    run: dict[str, Any] = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"taskrun/{namespace}/{name}")),
            "labels": {"app.kubernetes.io/managed-by": "tekton-pipelines", **(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "params": [{"name": "IMAGE", "value": image}],
            "serviceAccountName": "default",
            "taskSpec": copy.deepcopy(task_spec),
            "timeout": "1h0m0s",
        },
        "status": {
            "completionTime": finished,
            "conditions": [{"lastTransitionTime": finished, "reason": reason, "status": status,
                            "type": "Succeeded"}],
            "podName": f"{name}-pod",
            "provenance": {"featureFlags": {"EnableAPIFields": "beta", "ResultExtractionMethod": "termination-message"}},
            "results": [] if not image else [
                {"name": "IMAGE_URL", "type": "string", "value": image},
                {"name": "IMAGE_DIGEST", "type": "string", "value": digest},
            ],
            "startTime": "2026-11-23T08:00:00Z",
            "steps": [{
                "container": "step-build",
                "imageID": "docker.io/library/busybox@sha256:"
                           "2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5",
                "name": "build",
                "terminated": {"exitCode": 0 if succeeded else 1, "finishedAt": finished,
                               "reason": "Completed" if succeeded else "Error",
                               "startedAt": "2026-11-23T08:00:01Z"},
            }],
            "taskSpec": task_spec,
        },
    }
    return run


def running_taskrun(name: str, namespace: str = "default", **kwargs: Any) -> dict[str, Any]:
    """A TaskRun still running (condition Unknown, no completionTime)."""
    run = completed_taskrun(name, namespace, **kwargs)
    run["status"].pop("completionTime", None)
    run["status"]["results"] = []
    run["status"]["conditions"] = [{"type": "Succeeded", "status": "Unknown", "reason": "Running",
                                    "lastTransitionTime": "2026-11-23T08:00:00Z"}]
    return run


def pipelinerun_with_children(name: str, namespace: str = "default", *, tasks: tuple[str, ...] = ("build",),
                              finished: bool = True, uid: str | None = None,
                              finally_tasks: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A PipelineRun and its child TaskRuns, labelled as Tekton labels them (children completed)."""
    uid = uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"pipelinerun/{namespace}/{name}"))
    children = []
    refs = []
    for member, names in (("tasks", tasks), ("finally", finally_tasks)):
        for task in names:
            child_name = f"{name}-{task}"
            labels = {"tekton.dev/pipeline": name, "tekton.dev/pipelineRun": name,
                      "tekton.dev/pipelineRunUID": uid, "tekton.dev/pipelineTask": task,
                      "tekton.dev/memberOf": member}
            child = completed_taskrun(child_name, namespace, labels=labels)
            child["metadata"]["ownerReferences"] = [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                                                     "name": name, "uid": uid, "controller": True,
                                                     "blockOwnerDeletion": True}]
            children.append(child)
            refs.append({"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "name": child_name,
                         "pipelineTaskName": task})
    cond = ({"type": "Succeeded", "status": "True", "reason": "Succeeded",
             "lastTransitionTime": "2026-11-23T08:00:20Z"} if finished else
            {"type": "Succeeded", "status": "Unknown", "reason": "Running",
             "lastTransitionTime": "2026-11-23T08:00:00Z"})
    status: dict[str, Any] = {
        "conditions": [cond],
        "startTime": "2026-11-23T08:00:00Z",
        "childReferences": refs,
        "pipelineSpec": {"tasks": [{"name": t, "taskRef": {"name": t}} for t in tasks],
                         **({"finally": [{"name": t, "taskRef": {"name": t}} for t in finally_tasks]}
                            if finally_tasks else {})},
        "provenance": {"featureFlags": {"EnableAPIFields": "beta"}},
    }
    if finished:
        status["completionTime"] = "2026-11-23T08:00:20Z"
        status["results"] = []
    pr = {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
                     "labels": {"tekton.dev/pipeline": name}, "annotations": {}},
        "spec": {"pipelineRef": {"name": name}, "taskRunTemplate": {"serviceAccountName": "default"}},
        "status": status,
    }
    return pr, children


# ------------------------------------------------------------------ fixtures


WATCHER_RBAC = Path(__file__).resolve().parents[2] / "pipelines" / "chainmail-watcher" / "rbac.yaml"
WATCHER_SIGNER = "system:serviceaccount:chainmail:chainmail-signer"


def _watcher_double(*, tls: bool) -> Iterator[KubeApiDouble]:
    api = KubeApiDouble(rbac=True, tls=tls).start()
    api.load_rbac(WATCHER_RBAC)
    api.tokens[api.token] = WATCHER_SIGNER
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kube_api() -> Iterator[KubeApiDouble]:
    """A fresh API double on 127.0.0.1 (plain HTTP), as strict as the API server: RBAC enforced, and the
    bearer token ``kube_api.token`` is the watcher's ``chainmail-signer`` account with exactly what
    pipelines/chainmail-watcher/rbac.yaml grants it. ``use_admin_token()`` for what an admin does."""
    yield from _watcher_double(tls=False)


@pytest.fixture
def kube_api_https() -> Iterator[KubeApiDouble]:
    """``kube_api`` served over HTTPS from its own CA: what a real ``kubectl`` needs, since it sends a
    kubeconfig's credentials only over TLS (to a plain-HTTP server it sends none and gets 401)."""
    yield from _watcher_double(tls=True)


@pytest.fixture
def kube_api_rbac() -> Iterator[KubeApiDouble]:
    """The API double with RBAC enforced: load Roles and bindings with ``load_rbac``; ``token`` is the admin."""
    api = KubeApiDouble(rbac=True).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kube_api_tls() -> Iterator[KubeApiDouble]:
    """The API double over HTTPS with its own CA; also accepts the client certificate in ``pki``."""
    api = KubeApiDouble(tls=True).start()
    try:
        yield api
    finally:
        api.stop()
