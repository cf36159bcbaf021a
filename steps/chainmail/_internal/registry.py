"""A lean OCI distribution client: manifests, blobs, referrers and auth, nothing else.

Example::

    client = RegistryClient(docker_config=Path("~/.docker").expanduser())
    digest, media_type, size = client.head_manifest("ghcr.io/acme/app:v1")
    raw, media_type, digest = client.get_manifest(f"ghcr.io/acme/app@{digest}")

Why not oras-py: importing ``oras.provider`` costs about 0.4 s, its ``upload_manifest``
re-serialises the JSON (so the stored digest is not the digest of our bytes) and forces the
OCI manifest media type, it has no referrers API and its default token backend breaks on a
``Basic`` challenge. Signing 100 runs is dominated by small registry round trips, so this
client sends exact bytes over :func:`chainmail._internal.http.request` (one keep-alive
session per thread, retries until the configured deadline) and makes no call it can avoid.
oras-py is only used by ``chainmail catalog bundle push`` (see :mod:`chainmail.bundle`).

Auth follows the distribution token spec: an anonymous first request; on ``401`` the
``WWW-Authenticate`` challenge (remembered per host for the process) decides between HTTP Basic
(credentials sent with every later request to that host) and Bearer (a token fetched from the realm
for ``repository:<repo>:<actions>``, cached process-wide per registry, login and scope, single-flight;
see :mod:`chainmail._internal.regauth`). A ``401`` to a token brings one re-fetch with the scope the
challenge names; a push still refused to an accepted login is :class:`RegistryPushDeniedError`
(exit 34). Uploads mount a blob from another repository of the registry when it is known to be there.
Credentials come from a docker ``config.json`` (a directory or a file, also a
``.dockerconfigjson`` secret file; ``auths`` entries with ``auth`` or ``username``/``password``
or ``identitytoken``; ``credHelpers``/``credsStore`` helpers when their binary is on PATH),
then from :meth:`RegistryClient.add_credentials` (the run service account's secrets, see
:mod:`chainmail.storage.run_credentials`). docs/registries.md has the user-facing rules.
Error messages name the registry and repository, never a credential.

What a registry sends is bounded (see :mod:`chainmail._internal.http` for time and redirects):
manifests, indexes, referrer pages and token answers stop at :data:`MAX_MANIFEST_BYTES`, blobs at
``max_blob_bytes``; a manifest must be a JSON object nested at most 128 deep; anything fetched by
digest is hashed and compared (sha256/384/512, other algorithms refused); referrers paging follows
at most :data:`MAX_REFERRER_PAGES` ``Link: rel=next`` pages, never the same URL twice and never off
the registry's own scheme, host and port. Credentials go only to the registry's origin: an absolute
URL elsewhere (an upload ``Location``) is sent without them, and a Basic login goes to a token realm
on another host only over https. Refusals are :class:`StorageError` (exit 8); a registry still
failing at the retry deadline is :class:`RegistryUnreachableError` (exit 18).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from chainmail._internal import tls
from chainmail._internal.encoding import JSONLimitError, load_json
from chainmail._internal.http import (
    RETRY_STATUSES,
    BadResponseError,
    RetryPolicy,
    TransientError,
    origin,
    request,
    same_origin,
)
from chainmail._internal.regauth import (
    MAX_TOKEN_RESPONSE_BYTES,
    TOKENS,
    Challenge,
    TokenResponseError,
    login_id,
    merge_scopes,
    parse_challenge,
    parse_token_response,
    repository_scope,
    widen,
)
from chainmail.errors import (
    ConfigError,
    InputError,
    RegistryAuthError,
    RegistryPushDeniedError,
    RegistryTLSError,
    RegistryUnreachableError,
    StorageError,
)

if TYPE_CHECKING:
    import requests

log = logging.getLogger("chainmail.registry")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
_ACCEPT = ", ".join(MANIFEST_TYPES)

#: go-containerregistry's ``name.DefaultRegistry``: what Docker Hub references normalise to.
DOCKER_HUB = "index.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")
#: Upload sessions :meth:`RegistryClient.push_blob` opens for one blob before giving up.
UPLOAD_ATTEMPTS = 3
#: Largest manifest, index, referrers page or token answer read (containerd's manifest limit).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Default largest blob read (chains-config ``chainmail.registry.max-blob-bytes``).
DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024
#: Referrers pages followed through ``Link: rel=next``, and descriptors collected in all.
MAX_REFERRER_PAGES = 100
MAX_REFERRERS = 10_000
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
#: Entries kept by the per-process caches of manifests and blobs known to exist (cleared when full).
KNOWN_LIMIT = 4096


class _Known:
    """A thread-safe, bounded set of facts "this content-addressed thing exists" (cleared when full).

    Only digests go in: what a digest names never changes, so a "yes" stays true unless the
    registry deletes it, and a write that needs it then fails loudly (the manifest PUT names the
    missing blob) instead of storing something wrong.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, ...], Any] = {}

    def get(self, key: tuple[str, ...]) -> Any:
        with self._lock:
            return self._items.get(key)

    def add(self, key: tuple[str, ...], value: Any = True) -> None:
        with self._lock:
            if len(self._items) >= KNOWN_LIMIT:
                self._items.clear()
            self._items[key] = value

    def forget_repository(self, registry: str, repository: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[:2] == (registry, repository)]:
                del self._items[key]


#: Manifests known to exist, by (registry, repository, digest) → ``(digest, media_type, size)``. Shared by
#: every client of the process, so the image-exists check's HEAD answers storage's question too.
_MANIFESTS = _Known()

#: Each registry's last ``WWW-Authenticate`` challenge (server facts, no credential), by host.
_CHALLENGES: dict[str, Challenge] = {}
_CHALLENGES_LOCK = threading.Lock()


#: A repository each blob is known to be in, by (registry, digest): the source of a cross-repository mount.
_BLOB_HOMES = _Known()


def _remember_home(registry: str, repository: str, digest: str) -> None:
    _BLOB_HOMES.add((registry, digest), repository)


def forget_auth() -> None:
    """Drop the process's remembered challenges and tokens (tests; a registry that changed its auth)."""
    with _CHALLENGES_LOCK:
        _CHALLENGES.clear()
    TOKENS.clear()


def _challenge_of(host: str) -> Challenge | None:
    with _CHALLENGES_LOCK:
        return _CHALLENGES.get(host)


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: registry host, repository, tag and/or digest."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str | Reference) -> Reference:
        """Parse ``[host[:port]/]repo[:tag][@digest]`` with Docker Hub normalisation.

        ``alpine`` becomes ``index.docker.io/library/alpine``; a first component counts as
        a host when it has a ``.`` or ``:`` or is ``localhost``. Raises :class:`InputError`.
        """
        if isinstance(text, Reference):
            return text
        raw = text.strip()
        rest, _, digest = raw.partition("@")
        if digest and not _DIGEST_RE.match(digest):
            raise InputError(f"image reference '{raw}': invalid digest '{digest}'")
        if digest.startswith("sha256:") and not _SHA256_RE.match(digest):
            raise InputError(f"image reference '{raw}': sha256 digest must be 64 lowercase hex characters")
        host, slash, path = rest.partition("/")
        if not slash or not ("." in host or ":" in host or host == "localhost" or host != host.lower()):
            host, path = DOCKER_HUB, rest
        tag = ""
        last = path.rfind("/")
        colon = path.rfind(":")
        if colon > last:
            path, tag = path[:colon], path[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise InputError(f"image reference '{raw}': invalid tag '{tag}'")
        host = normalize_host(host)
        if not host or not _HOST_RE.match(host):
            raise InputError(f"image reference '{raw}': invalid registry host '{host}'")
        if host == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not path or not _REPO_RE.match(path):
            raise InputError(f"image reference '{raw}': invalid repository '{path}' "
                             "(lowercase letters, digits, '.', '_', '-')")
        return cls(host, path, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository`` (what cosign signs as ``docker-reference``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, "", digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, "")

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def normalize_host(host: str) -> str:
    """A registry host as credentials are keyed: no scheme or path; Docker Hub aliases merged."""
    host = host.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host.lower() in _HUB_ALIASES else host


def is_local(host: str) -> bool:
    """True for loopback registries, which are spoken to over plain http."""
    bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return bare in ("localhost", "[::1]") or bare.endswith(".localhost") or bare.startswith("127.")


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """An OCI descriptor in Go field order (mediaType, size, digest, then ``extra``)."""
    return {"mediaType": media_type, "size": len(data), "digest": sha256_of(data), **extra}


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_algorithm(digest: str) -> str:
    """The digest's algorithm when chainmail can verify it (sha256, sha384, sha512); else :class:`StorageError`."""
    algorithm = digest.partition(":")[0]
    if algorithm not in _HASHES:
        raise StorageError(f"digest {digest[:80]}: unsupported algorithm '{algorithm[:20]}' "
                           "(sha256, sha384 or sha512)")
    return algorithm


def digest_matches(data: bytes, digest: str) -> bool:
    """Whether ``data`` hashes to ``digest`` (any algorithm but sha256/384/512 is refused)."""
    return _HASHES[check_algorithm(digest)](data).hexdigest() == digest.partition(":")[2]


@dataclass(frozen=True)
class Credentials:
    """One registry login. ``repr`` never shows the secret."""

    username: str
    password: str
    identity_token: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def parse_docker_config(doc: dict[str, Any], where: str) -> tuple[dict[str, Credentials], dict[str, Any]]:
    """``auths`` of a docker config (or a legacy ``.dockercfg`` map) as host → credentials.

    Also returns the helper settings (``credsStore``/``credHelpers``).
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"docker config {where}: expected a JSON object")
    auths = doc.get("auths")
    if auths is None:
        auths = {k: v for k, v in doc.items() if isinstance(v, dict) and ("auth" in v or "username" in v)}
    if not isinstance(auths, dict):
        raise ConfigError(f"docker config {where}: 'auths' must be an object")
    out: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise ConfigError(f"docker config {where}: 'auth' for '{key}' is not base64 user:password"
                                  ) from None
            user, _, password = decoded.partition(":")
        token = str(entry.get("identitytoken") or "")
        if user or password or token:
            out.setdefault(normalize_host(key), Credentials(user, password, token))
    helpers = {"credsStore": doc.get("credsStore") or "", "credHelpers": doc.get("credHelpers") or {}}
    return out, helpers


def _config_file(path: Path | None) -> Path | None:
    if path is None:
        env = os.environ.get("DOCKER_CONFIG")
        path = Path(env) if env else Path.home() / ".docker"
        explicit = False
    else:
        explicit = True
    if path.is_dir():
        for name in ("config.json", ".dockerconfigjson", ".dockercfg"):
            if (path / name).is_file():
                return path / name
        return None
    if path.is_file():
        return path
    if explicit:
        raise ConfigError(f"docker config {path} does not exist")
    return None


class RegistryClient:
    """OCI distribution API calls with docker-config auth and typed errors.

    Safe to share between threads: each thread uses its own keep-alive session and the
    token cache is locked.
    """

    def __init__(self, docker_config: Path | None = None, insecure: bool = False,
                 retry: RetryPolicy | None = None, max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.docker_config = docker_config
        self.insecure = insecure
        self.retry = retry or RetryPolicy()
        #: Largest blob :meth:`get_blob` reads; manifests and indexes stop at :data:`MAX_MANIFEST_BYTES`.
        self.max_blob_bytes = max_blob_bytes
        self._lock = threading.Lock()
        self._config_creds: dict[str, Credentials] | None = None
        self._helpers: dict[str, Any] = {}
        self._added: dict[str, Credentials] = {}
        self._referrers_api: dict[str, bool] = {}
        #: Blobs this client stored or saw, by (registry, repository, digest): not uploaded again.
        self._blobs = _Known()

    # -- credentials ---------------------------------------------------------------------------

    def add_credentials(self, host: str, username: str, password: str, *, identity_token: str = "") -> None:
        """Add a login (e.g. from an image-pull secret); used when the docker config has none for ``host``.

        The first login added for a host wins.
        """
        with self._lock:
            self._added.setdefault(normalize_host(host), Credentials(username, password, identity_token))

    def _load_config(self) -> dict[str, Credentials]:
        if self._config_creds is None:
            path = _config_file(self.docker_config)
            creds: dict[str, Credentials] = {}
            if path is not None:
                try:
                    doc = load_json(path.read_bytes())
                except OSError as exc:
                    raise ConfigError(f"cannot read docker config {path}: {exc.strerror}") from None
                except ValueError:
                    raise ConfigError(f"docker config {path} is not valid JSON") from None
                creds, self._helpers = parse_docker_config(doc, str(path))
            self._config_creds = creds
        return self._config_creds

    def credentials(self, host: str) -> Credentials | None:
        """The login for ``host``: docker config, then its credential helper, then added secrets."""
        host = normalize_host(host)
        with self._lock:
            creds = self._load_config()
            found = creds.get(host)
            if found is None and host.startswith("127.0.0.1"):
                found = creds.get(host.replace("127.0.0.1", "localhost", 1))
            elif found is None and host.startswith("localhost"):
                found = creds.get(host.replace("localhost", "127.0.0.1", 1))
            if found is None:
                found = self._from_helper(host)
                if found is not None:
                    creds[host] = found
            return found or self._added.get(host)

    def _from_helper(self, host: str) -> Credentials | None:
        helper = (self._helpers.get("credHelpers") or {}).get(host) or self._helpers.get("credsStore")
        if not helper:
            return None
        import shutil
        import subprocess

        binary = shutil.which(f"docker-credential-{helper}")
        if binary is None:
            log.debug("credential helper docker-credential-%s not on PATH", helper)
            return None
        server = "https://index.docker.io/v1/" if host == DOCKER_HUB else host
        try:
            proc = subprocess.run([binary, "get"], input=server.encode(), capture_output=True, timeout=30,
                                  check=True)
            doc = load_json(proc.stdout)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (OSError, subprocess.SubprocessError, ValueError):
            log.debug("credential helper docker-credential-%s had nothing for %s", helper, host)
            return None
        user, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
        if user == "<token>":
            return Credentials("", "", secret)
        return Credentials(user, secret)

    # -- transport -----------------------------------------------------------------------------

    def scheme(self, host: str) -> str:
        """``http`` for loopback registries or with ``insecure``; else ``https``."""
        return "http" if self.insecure or is_local(host) else "https"

    def base_url(self, ref: Reference) -> str:
        return f"{self.scheme(ref.registry)}://{ref.registry}/v2/{ref.repository}"

    def _send(self, method: str, url: str, where: str, *, max_bytes: int = MAX_MANIFEST_BYTES,
              **kwargs: Any) -> requests.Response:
        """One request with retries; a registry still failing at the deadline is unreachable (exit 18)."""
        import requests

        hint = f"retried for {self.retry.deadline:g}s (chainmail.retry.deadline-seconds)"
        try:
            resp = request(method, url, policy=self.retry, max_bytes=max_bytes, **kwargs)
        except TransientError as exc:
            raise RegistryUnreachableError(f"registry {where} unreachable: {exc}", hint=hint) from None
        except BadResponseError as exc:
            raise StorageError(f"registry {where}: {method} {urlsplit(url).path}: {exc}") from None
        except requests.exceptions.SSLError as exc:
            raise RegistryTLSError(
                f"registry {where}: TLS certificate of {urlsplit(url).netloc} not trusted ({tls.describe(exc)})",
                hint=f"add the CA that signed it to {tls.ENV} (PEM files or directories), or the Task's "
                     "ssl-ca-directory workspace") from None
        except requests.RequestException as exc:
            raise StorageError(f"registry {where}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in RETRY_STATUSES:
            raise RegistryUnreachableError(
                f"registry {where} unavailable: {method} {urlsplit(url).path} still answered HTTP "
                f"{resp.status_code} at the retry deadline", hint=hint)
        return resp

    def _authorization(self, host: str, scopes: tuple[str, ...], *, stale: str | None = None) -> dict[str, str]:
        """The Authorization header for ``scopes`` on ``host`` once its challenge is known ({} before).

        Basic sends the login; Bearer takes a token from the process-wide cache or fetches one. A pull
        is also served by a cached ``pull,push`` token of the same repository. ``stale`` is a token the
        registry just refused: a new one is fetched.
        """
        challenge = _challenge_of(host)
        if challenge is None:
            return {}
        creds = self.credentials(host)
        if challenge.scheme == "basic":
            if creds is None or creds.identity_token:
                return {}
            raw = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        key = self._token_key(host, scopes)
        login = key[1]
        if stale is None and len(scopes) == 1 and scopes[0].endswith(":pull"):
            wider = TOKENS.get((host, login, (scopes[0] + ",push",)))
            if wider is not None:
                return {"Authorization": f"Bearer {wider}"}
        token = TOKENS.fetch(key, lambda: self._fetch_token(host, scopes, challenge, creds), stale=stale)
        return {"Authorization": f"Bearer {token}"}

    def _fetch_token(self, host: str, scopes: tuple[str, ...], challenge: Challenge,
                     creds: Credentials | None) -> tuple[str, float]:
        """Ask the challenge's realm for a token for ``scopes`` (docker's rules; see the module docstring)."""
        realm = challenge.realm
        if not realm.startswith(("https://", "http://")):
            raise StorageError(f"registry {host}: bearer challenge has no usable realm")
        realm_scheme, realm_host, _port = origin(realm)
        if creds is not None and realm_scheme != "https" and realm_host != origin(f"http://{host}/")[1]:
            raise RegistryAuthError(
                f"registry {host}: token realm {realm_host} is plain http on another host; "
                "not sending the login there",
                hint="the registry's token service must use https (or run on the registry's own host)")
        what = " ".join(scopes)
        if creds is not None and creds.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                    ("service", challenge.service), ("client_id", "chainmail"), *(("scope", s) for s in scopes)]
            resp = self._send("POST", realm, host, data=form, max_bytes=MAX_TOKEN_RESPONSE_BYTES)
        else:
            query = [("scope", s) for s in scopes]
            if challenge.service:
                query.append(("service", challenge.service))
            auth = (creds.username, creds.password) if creds is not None else None
            resp = self._send("GET", realm, host, params=query, auth=auth, max_bytes=MAX_TOKEN_RESPONSE_BYTES)
        if resp.status_code in (401, 403):
            raise RegistryAuthError(f"registry {host} refused a token for {what}: HTTP {resp.status_code}",
                                    hint=_auth_hint(host, creds is not None))
        if resp.status_code != 200:
            raise StorageError(f"registry {host}: token request for {what} failed: HTTP {resp.status_code}")
        try:
            return parse_token_response(resp.content)
        except TokenResponseError as exc:
            raise StorageError(f"registry {host}: {exc}") from None

    def _remember_challenge(self, host: str, resp: requests.Response) -> Challenge | None:
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if challenge is not None:
            with _CHALLENGES_LOCK:
                if len(_CHALLENGES) >= KNOWN_LIMIT:
                    _CHALLENGES.clear()
                _CHALLENGES[host] = challenge
        return challenge

    def call(self, method: str, ref: Reference, path: str, *, actions: str = "pull",
             headers: dict[str, str] | None = None, data: bytes | None = None,
             params: dict[str, str] | None = None, url: str | None = None,
             max_bytes: int = MAX_MANIFEST_BYTES, extra_scopes: tuple[str, ...] = ()) -> requests.Response:
        """One authenticated API call on ``/v2/<repo>/<path>`` (or an absolute ``url``).

        Anonymous first while the host's challenge is unknown; a ``401`` then brings the login or a
        token, and a ``401`` to a token (``insufficient_scope`` or a token the registry no longer
        takes) one re-fetch, with the scope the challenge names added. 401/403 after that raise
        :class:`RegistryPushDeniedError` (a push refused to a login the registry accepted) or
        :class:`RegistryAuthError`. An absolute ``url`` on another origin (an upload ``Location``
        elsewhere) is sent without credentials, and its challenges are ignored.
        """
        host, repo = ref.registry, ref.repository
        target = url or f"{self.base_url(ref)}/{path}"
        own = same_origin(target, self.base_url(ref))
        scopes = merge_scopes([repository_scope(repo, actions), *extra_scopes])
        if own and _challenge_of(host) is not None and TOKENS.denied(self._token_key(host, scopes)):
            raise self._scope_denied(method, ref, actions)
        auth = self._authorization(host, scopes) if own else {}
        refetched = False
        while True:
            resp = self._send(method, target, f"{host}/{repo}", headers={**(headers or {}), **auth}, data=data,
                              params=params, allow_redirects=method in ("GET", "HEAD"), max_bytes=max_bytes)
            if not own or resp.status_code != 401:
                break
            challenge = self._remember_challenge(host, resp)
            sent = auth.get("Authorization", "")
            if challenge is None or (sent and refetched) or (sent.startswith("Basic ") and challenge.scheme == "basic"):
                break  # no usable challenge, the one re-fetch is spent, or the login itself was refused
            stale = None
            if sent:  # a token refused (or out of scope), or the registry changed its scheme: once more
                refetched = True
                if sent.startswith("Bearer "):
                    stale = sent[len("Bearer "):]
                    if challenge.insufficient_scope:
                        scopes = widen(scopes, challenge.scopes)
            fresh = self._authorization(host, scopes, stale=stale)
            if not fresh or fresh == auth:
                break
            auth = fresh
        if resp.status_code in (401, 403):
            error = self._denied(method, ref, actions, resp, auth)
            if refetched and isinstance(error, RegistryPushDeniedError):
                TOKENS.deny(self._token_key(host, scopes))
            raise error
        return resp

    def _token_key(self, host: str, scopes: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]]:
        creds = self.credentials(host)
        return host, login_id(creds.username, creds.password + creds.identity_token) if creds else "", scopes

    def _scope_denied(self, method: str, ref: Reference, actions: str,
                      why: str = "insufficient_scope, refused earlier") -> RegistryPushDeniedError:
        host, repo = ref.registry, ref.repository
        return RegistryPushDeniedError(
            f"registry {host} refused the push to {repo} ({method}: {why}): the login has no push access",
            hint=f"give the login for {host} push access to {repo}, or store elsewhere (storage.oci.repository)")

    def _denied(self, method: str, ref: Reference, actions: str, resp: requests.Response,
                auth: dict[str, str]) -> RegistryAuthError:
        """The error for a final 401/403: a refused push with an accepted login has its own exit code."""
        host, repo = ref.registry, ref.repository
        has_login = self.credentials(host) is not None
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        sent = auth.get("Authorization", "")
        accepted = resp.status_code == 403 or (sent.startswith("Bearer ") and challenge is not None
                                               and challenge.insufficient_scope)
        if "push" in actions.split(",") and has_login and accepted:
            return self._scope_denied(method, ref, actions, f"HTTP {resp.status_code}"
                                      f"{', insufficient_scope' if resp.status_code == 401 else ''}")
        return RegistryAuthError(f"registry {host} denied {method} on {repo}: HTTP {resp.status_code}",
                                 hint=_auth_hint(host, has_login))

    def ping(self, host: str) -> str:
        """``GET /v2/``; returns the auth scheme the registry asks for (``basic``, ``bearer`` or ``""``)."""
        host = normalize_host(host)
        resp = self._send("GET", f"{self.scheme(host)}://{host}/v2/", host)
        challenge = self._remember_challenge(host, resp) if resp.status_code == 401 else None
        return challenge.scheme if challenge is not None else ""

    # -- manifests -----------------------------------------------------------------------------

    def head_manifest(self, ref: str | Reference) -> tuple[str, str, int] | None:
        """``(digest, media_type, size)`` of a tag or digest, or None when it does not exist."""
        r = Reference.parse(ref)
        key = (r.registry, r.repository, r.digest)
        if r.digest:
            known = _MANIFESTS.get(key)
            if known is not None:
                return known  # type: ignore[no-any-return]
        resp = self.call("HEAD", r, f"manifests/{r.identifier}", headers={"Accept": _ACCEPT})
        if resp.status_code == 404:
            return None
        _check(resp, r, "HEAD manifest")
        digest = resp.headers.get("Docker-Content-Digest", "").strip() or r.digest
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        length = resp.headers.get("Content-Length", "").strip()
        size = int(length) if length.isdigit() and len(length) < 12 else 0
        if not _DIGEST_RE.match(digest) or not media_type or not size:
            got = self.get_manifest(r)
            if got is None:
                return None
            raw, media_type, digest = got
            size = len(raw)
        if r.digest and digest == r.digest:
            _MANIFESTS.add(key, (digest, media_type, size))
        return digest, media_type, size

    def get_manifest(self, ref: str | Reference) -> tuple[bytes, str, str] | None:
        """``(raw_bytes, media_type, digest)``, or None on 404. The bytes are checked against the digest."""
        r = Reference.parse(ref)
        if r.digest and not _DIGEST_RE.match(r.digest):
            raise StorageError(f"registry {r.name}: invalid manifest digest '{r.digest[:80]}'")
        if r.digest:
            check_algorithm(r.digest)
        resp = self.call("GET", r, f"manifests/{r.identifier}", headers={"Accept": _ACCEPT})
        if resp.status_code == 404:
            return None
        _check(resp, r, "GET manifest")
        raw = resp.content
        claimed = r.digest or resp.headers.get("Docker-Content-Digest", "").strip() or sha256_of(raw)
        if not digest_matches(raw, claimed):
            raise StorageError(f"registry {r.name}: manifest {r.identifier} does not match its digest "
                               f"{claimed}")
        try:
            doc = load_json(raw)
        except JSONLimitError as exc:
            raise StorageError(f"registry {r.name}: manifest {r.identifier}: {exc}") from None
        except ValueError:
            raise StorageError(f"registry {r.name}: manifest {r.identifier} is not JSON") from None
        if not isinstance(doc, dict):
            raise StorageError(f"registry {r.name}: manifest {r.identifier} is not a JSON object")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type or media_type in ("application/json", "text/plain"):
            media_type = str(doc.get("mediaType") or OCI_MANIFEST)
        return raw, media_type, claimed

    def put_manifest(self, repo_ref: str | Reference, tag_or_digest: str, raw: bytes, media_type: str) -> str:
        """PUT ``raw`` exactly as given under a tag (or by digest); returns its digest."""
        r = Reference.parse(repo_ref)
        digest = sha256_of(raw)
        if tag_or_digest.startswith("sha256:") and tag_or_digest != digest:
            raise StorageError(f"manifest bytes do not match {tag_or_digest}")
        resp = self.call("PUT", r, f"manifests/{tag_or_digest}", actions="pull,push",
                         headers={"Content-Type": media_type}, data=raw)
        if resp.status_code == 400 and b"BLOB_UNKNOWN" in resp.content:
            self._blobs.forget_repository(r.registry, r.repository)  # deleted since we saw them: upload again
        _check(resp, r, f"PUT manifest {tag_or_digest}", ok=(200, 201, 202))
        _MANIFESTS.add((r.registry, r.repository, digest), (digest, media_type, len(raw)))
        if resp.headers.get("OCI-Subject"):
            with self._lock:
                self._referrers_api[r.registry] = True
        return digest

    # -- blobs ---------------------------------------------------------------------------------

    def blob_exists(self, repo_ref: str | Reference, digest: str) -> bool:
        r = Reference.parse(repo_ref)
        resp = self.call("HEAD", r, f"blobs/{digest}")
        if resp.status_code == 404:
            return False
        _check(resp, r, f"HEAD blob {digest}")
        self._blobs.add((r.registry, r.repository, digest))
        _remember_home(r.registry, r.repository, digest)
        return True

    def push_blob(self, repo_ref: str | Reference, data: bytes,
                  media_type: str = "application/octet-stream") -> dict[str, Any]:
        """Upload ``data`` unless the repository holds it; returns its descriptor.

        Two requests for a new blob, one for a stored one, none for one this client already stored
        or found in that repository: the upload starts with ``POST …/blobs/uploads/?mount=<digest>&
        from=<repository>`` (another repository of the registry this process knows holds the blob, else
        this one), which a registry answers ``201`` when it linked the blob (a HEAD, or a whole upload,
        and the POST in one call) and otherwise ``202`` with an upload session, completed by one
        ``PUT …?digest=``. A registry that refuses the mount parameters gets a plain POST.

        A lost answer to the final PUT is recovered: :func:`~chainmail._internal.http.request` sends the
        same PUT again, and a registry that already completed the upload answers ``404
        BLOB_UPLOAD_UNKNOWN`` (the session is closed). Any failed PUT is therefore followed by a HEAD of
        the blob: present means the first PUT landed (the registry checked the digest), so the upload
        succeeded; absent after a 404 means the session is gone, so a fresh one is opened, at most
        :data:`UPLOAD_ATTEMPTS` times in all.
        """
        r = Reference.parse(repo_ref)
        desc = descriptor(media_type, data)
        digest = desc["digest"]
        key = (r.registry, r.repository, digest)
        if self._blobs.get(key):
            return desc
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            location = self._start_upload(r, digest)
            if location is None:
                break
            sep = "&" if "?" in location else "?"
            resp = self.call("PUT", r, "", actions="pull,push", url=f"{location}{sep}digest={digest}",
                             headers={"Content-Type": "application/octet-stream"}, data=data)
            if resp.status_code in (201, 204):
                break
            if self.blob_exists(r, digest):
                log.info("registry %s: upload of %s answered HTTP %s, but the blob is stored (an earlier "
                         "answer was lost)", r.name, digest, resp.status_code)
                break
            if resp.status_code != 404 or attempt == UPLOAD_ATTEMPTS:
                _check(resp, r, f"upload blob {digest}", ok=(201, 204))
            log.info("registry %s: upload session for %s is gone (HTTP 404) and the blob is not stored; "
                     "starting a new upload (attempt %d of %d)", r.name, digest, attempt + 1, UPLOAD_ATTEMPTS)
        else:
            raise StorageError(f"registry {r.name}: upload blob {digest} failed after {UPLOAD_ATTEMPTS} attempts")
        self._blobs.add(key)
        _remember_home(r.registry, r.repository, digest)
        return desc

    def _start_upload(self, r: Reference, digest: str) -> str | None:
        """Open an upload session and return its absolute URL; None when the blob got there by a mount.

        The POST asks to mount ``digest`` from the repository it is known to be in (another repository
        of the same registry, whose ``pull`` scope the token then includes), else from the repository
        itself: ``201`` means it is there. A mount the login may not read falls back to the self-mount.
        """
        home = _BLOB_HOMES.get((r.registry, digest))
        source = home if isinstance(home, str) and home != r.repository else r.repository
        extra = (repository_scope(source, "pull"),) if source != r.repository else ()
        try:
            resp = self.call("POST", r, "blobs/uploads/", actions="pull,push", headers={"Content-Length": "0"},
                             params={"mount": digest, "from": source}, extra_scopes=extra)
        except RegistryAuthError:
            if not extra:
                raise
            log.debug("registry %s: no pull access to %s for a mount of %s; uploading", r.name, source, digest)
            source = r.repository
            resp = self.call("POST", r, "blobs/uploads/", actions="pull,push", headers={"Content-Length": "0"},
                             params={"mount": digest, "from": source})
        if resp.status_code == 201:
            if source != r.repository:
                log.debug("registry %s: mounted %s from %s", r.name, digest, source)
            return None
        if resp.status_code != 202:
            log.debug("registry %s: mount request answered HTTP %s; starting a plain upload", r.name,
                      resp.status_code)
            resp = self.call("POST", r, "blobs/uploads/", actions="pull,push", headers={"Content-Length": "0"})
        _check(resp, r, "start blob upload", ok=(202,))
        location = resp.headers.get("Location")
        if not location:
            raise StorageError(f"registry {r.name}: blob upload started without a Location")
        return urljoin(self.base_url(r) + "/", location)

    def get_blob(self, repo_ref: str | Reference, digest: str) -> bytes:
        """The blob's bytes (at most :attr:`max_blob_bytes`), checked against ``digest``."""
        r = Reference.parse(repo_ref)
        if not _DIGEST_RE.match(digest):
            raise StorageError(f"registry {r.name}: invalid blob digest '{digest[:80]}'")
        check_algorithm(digest)
        resp = self.call("GET", r, f"blobs/{digest}", max_bytes=self.max_blob_bytes)
        if resp.status_code == 404:
            raise StorageError(f"registry {r.name}: blob {digest} not found")
        _check(resp, r, f"GET blob {digest}")
        data = resp.content
        if not digest_matches(data, digest):
            raise StorageError(f"registry {r.name}: blob {digest} does not match its digest")
        _remember_home(r.registry, r.repository, digest)
        return data

    # -- referrers -----------------------------------------------------------------------------

    def referrers(self, repo_ref: str | Reference, digest: str,
                  artifact_type: str | None = None) -> list[dict[str, Any]] | None:
        """Descriptors from the OCI 1.1 referrers API, or None when the registry lacks it."""
        r = Reference.parse(repo_ref)
        if self._referrers_api.get(r.registry) is False:
            return None
        what = f"registry {r.name}: referrers of {digest}"
        url = f"{self.base_url(r)}/referrers/{digest}"
        if artifact_type:
            url += "?" + urlencode({"artifactType": artifact_type})
        seen = {url}
        found: list[dict[str, Any]] = []
        filtered = False
        for _page in range(MAX_REFERRER_PAGES):
            resp = self.call("GET", r, "", headers={"Accept": OCI_INDEX}, url=url)
            if resp.status_code in (400, 404, 405, 501):
                with self._lock:
                    self._referrers_api[r.registry] = False
                return None
            _check(resp, r, f"GET referrers of {digest}")
            try:
                doc = load_json(resp.content)
                page = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
            except JSONLimitError as exc:
                raise StorageError(f"{what}: {exc}") from None
            except (ValueError, AttributeError, TypeError):
                with self._lock:
                    self._referrers_api[r.registry] = False
                return None
            with self._lock:
                self._referrers_api[r.registry] = True
            found.extend(page)
            if len(found) > MAX_REFERRERS:
                raise StorageError(f"{what}: more than {MAX_REFERRERS} referrers")
            filtered = filtered or "artifactType" in resp.headers.get("OCI-Filters-Applied", "")
            nxt = _next_link(resp)
            if not nxt:
                break
            try:
                url = urljoin(url, nxt)
                off_origin = not same_origin(url, self.base_url(r))
            except ValueError:
                raise StorageError(f"{what}: the next-page link is not a URL") from None
            if off_origin:
                raise StorageError(f"{what}: the next-page link points to another host "
                                   f"({origin(url)[1] or '?'}); not following it")
            if url in seen:
                raise StorageError(f"{what}: the next-page link repeats an earlier page (a paging loop)")
            seen.add(url)
        else:
            raise StorageError(f"{what}: more than {MAX_REFERRER_PAGES} pages")
        if artifact_type and not filtered:
            found = [m for m in found if m.get("artifactType") == artifact_type]
        return found

    def supports_referrers(self, repo_ref: str | Reference, digest: str) -> bool:
        """Whether the registry serves the referrers API (probed once per registry)."""
        r = Reference.parse(repo_ref)
        known = self._referrers_api.get(r.registry)
        if known is None:
            known = self.referrers(r, digest) is not None
        return known


def _next_link(resp: requests.Response) -> str:
    link = resp.headers.get("Link", "")
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    return match.group(1) if match else ""


def _auth_hint(host: str, had_credentials: bool) -> str:
    if had_credentials:
        return f"the credentials for {host} were refused or lack push/pull access"
    return (f"no credentials for {host}: pass --docker-config (a config.json or .dockerconfigjson) "
            "or give the run's service account an image pull secret")


def _check(resp: requests.Response, ref: Reference, what: str, ok: tuple[int, ...] = (200,)) -> None:
    """Raise :class:`StorageError` naming the registry's error code unless the status is in ``ok``."""
    if resp.status_code in ok:
        return
    detail = ""
    try:
        errors = load_json(resp.content).get("errors") or []
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors[:3])
    except (ValueError, AttributeError, TypeError):
        detail = ""
    detail = " ".join(detail.split())[:300]
    suffix = f" ({detail})" if detail else ""
    raise StorageError(f"registry {ref.name}: {what} failed: HTTP {resp.status_code}{suffix}")
