"""A real OCI registry for tests: Debian's ``docker-registry`` on 127.0.0.1.

Fixtures (session scoped, the process is stopped by PID at session end):

- ``registry``: anonymous, filesystem storage in a temporary directory (on /dev/shm when it exists);
- ``auth_registry``: the same behind htpasswd Basic auth (user ``chainmail``), for 401 tests;
- ``dead_registry_host``: ``127.0.0.1:<port>`` with nothing listening;
- :func:`start_registry` with any ``auth`` section (token auth: ``tests/integration/registry_auth``);
- :func:`start_tls_registry`: HTTPS with a certificate from a test CA, on this machine's routable
  address (chainmail speaks plain http to loopback registries, as docker does, so TLS needs another
  address); :func:`routable_ipv4` finds it.

The helpers push with plain ``requests`` (not chainmail's client), so tests of the client
are not checked against themselves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARY = "docker-registry"
USERNAME = "chainmail"
PASSWORD = "s3cret-registry-pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class RegistryServer:
    """A running registry and helpers to put content into it byte-exactly."""

    host: str
    process: subprocess.Popen[bytes]
    root: Path
    auth: tuple[str, str] | None = None
    #: The CA file that verifies this registry's certificate; None for plain http.
    ca: Path | None = None
    _session: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.host}"

    @property
    def http(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False
            if self.ca:
                self._session.verify = str(self.ca)
            if self.auth:
                self._session.auth = self.auth
        return self._session

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        if self.http.head(f"{self.url}/v2/{repo}/blobs/{digest}").status_code == 200:
            return digest
        resp = self.http.post(f"{self.url}/v2/{repo}/blobs/uploads/")
        assert resp.status_code == 202, resp.text
        location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        sep = "&" if "?" in location else "?"
        resp = self.http.put(f"{location}{sep}digest={digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 201, resp.text
        return digest

    def push_raw(self, repo: str, tag: str, manifest_bytes: bytes, blobs: Iterable[bytes] = (),
                 media_type: str | None = None) -> str:
        """Upload ``blobs`` then PUT ``manifest_bytes`` exactly under ``tag`` (or a digest); returns its digest."""
        for blob in blobs:
            self.push_blob(repo, blob)
        media_type = media_type or json.loads(manifest_bytes).get("mediaType") or \
            "application/vnd.oci.image.manifest.v1+json"
        resp = self.http.put(f"{self.url}/v2/{repo}/manifests/{tag}", data=manifest_bytes,
                             headers={"Content-Type": media_type})
        assert resp.status_code == 201, resp.text
        digest = digest_of(manifest_bytes)
        assert resp.headers.get("Docker-Content-Digest") == digest
        return digest

    def push_image_from_fixture(self, directory: Path, repo: str, tag: str = "latest") -> str:
        """Push ``image-manifest.json``/``image-config.json``/``image-layer.tar`` byte-exact; returns ``host/repo@digest``."""
        manifest = (directory / "image-manifest.json").read_bytes()
        blobs = [(directory / "image-config.json").read_bytes(), (directory / "image-layer.tar").read_bytes()]
        digest = self.push_raw(repo, tag, manifest, blobs)
        return f"{self.host}/{repo}@{digest}"

    def get_manifest(self, repo: str, ref: str) -> bytes | None:
        resp = self.http.get(f"{self.url}/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join([
            "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json"])})
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return resp.content

    def get_blob(self, repo: str, digest: str) -> bytes:
        resp = self.http.get(f"{self.url}/v2/{repo}/blobs/{digest}")
        assert resp.status_code == 200, resp.text
        return resp.content

    def docker_config(self, directory: Path, password: str | None = None) -> Path:
        """Write a ``config.json`` with this registry's login (or a wrong ``password``) into ``directory``."""
        import base64

        user, pw = self.auth or (USERNAME, PASSWORD)
        token = base64.b64encode(f"{user}:{password if password is not None else pw}".encode()).decode()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "config.json"
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        return path


def push_chains_fixture(server: RegistryServer, directory: Path, repo: str) -> str:
    """Push a Chains fixture image plus its ``.sig`` and ``.att`` manifests byte-exact; returns ``host/repo@digest``."""
    ref = server.push_image_from_fixture(directory, repo)
    tag = ref.rsplit("@", 1)[1].replace(":", "-")
    for kind in ("sig", "att"):
        blobs = [(directory / f"{kind}-config.json").read_bytes()]
        blobs += [p.read_bytes() for p in sorted(directory.glob(f"{kind}-layer*.json"))]
        server.push_raw(repo, f"{tag}.{kind}", (directory / f"{kind}-manifest.json").read_bytes(), blobs)
    return ref


def push_test_image(server: RegistryServer, repo: str, seed: str, tag: str = "latest") -> str:
    """Push a small unique image (one layer holding ``seed``); returns ``host/repo@digest``."""
    layer = f"chainmail test layer {seed}".encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}},
                        separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": digest_of(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer),
                    "digest": digest_of(layer)}],
    }, separators=(",", ":")).encode()
    digest = server.push_raw(repo, tag, manifest, [config, layer])
    return f"{server.host}/{repo}@{digest}"


def _htpasswd_line(user: str, password: str) -> str | None:
    """A bcrypt htpasswd line: the ``bcrypt`` wheel, else libcrypt's blowfish through ``crypt``."""
    try:
        import bcrypt

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"
    except ImportError:
        pass
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))
    except (ImportError, AttributeError, OSError):
        return None
    if not hashed or not hashed.startswith("$2"):
        return None
    return f"{user}:{hashed}"


def _storage_dir(tmp: Path) -> Path:
    """Blob storage on tmpfs when there is one (the registry's PUTs are 2-3x slower on disk), else in ``tmp``."""
    import os
    import tempfile

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="chainmail-registry-", dir=shm))
    path = tmp / "storage"
    path.mkdir(parents=True)
    return path


def start_registry(tmp: Path, auth: dict | None = None) -> RegistryServer:
    """Start a registry with the given ``auth`` section (e.g. ``{"token": {...}}``); stop it with :func:`stop_registry`."""
    _require_binary()
    return _start(tmp, auth=auth)


def routable_ipv4() -> str:
    """This machine's address on its default route (no packet is sent); fails when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))  # TEST-NET-2: only the route is looked up
            address = sock.getsockname()[0]
        except OSError as exc:
            raise RuntimeError(f"no routable IPv4 address for the TLS registry: {exc}") from None
    if address.startswith("127.") or address == "0.0.0.0":
        raise RuntimeError(f"the default route's address is {address}; the TLS registry needs a non-loopback one")
    return address


def start_tls_registry(tmp: Path, cert: Path, key: Path, ca: Path, address: str) -> RegistryServer:
    """Start an anonymous registry serving HTTPS with ``cert``/``key`` on ``address``; ``ca`` verifies it."""
    _require_binary()
    return _start(tmp, tls=(cert, key, ca), address=address)


def stop_registry(server: RegistryServer) -> None:
    _stop(server.process)
    shutil.rmtree(server.root, ignore_errors=True)


def _start(tmp: Path, *, htpasswd: Path | None = None, auth: dict | None = None,
           tls: tuple[Path, Path, Path] | None = None, address: str = "127.0.0.1") -> RegistryServer:
    port = free_port()
    storage = _storage_dir(tmp)
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"{address}:{port}", "secret": "chainmail-test-secret"},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "chainmail-test", "path": str(htpasswd)}}
    elif auth is not None:
        config["auth"] = auth
    cfg = tmp / "config.yml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen([BINARY, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    server = RegistryServer(f"{address}:{port}", proc, storage,
                            (USERNAME, PASSWORD) if htpasswd is not None else None, tls[2] if tls else None)
    import requests
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}: "
                               f"{(tmp / 'registry.log').read_text()[-2000:]}")
        try:
            resp = requests.get(f"{server.url}/v2/", timeout=1, verify=False)  # only "is it up?"
            if resp.status_code in (200, 401):
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            _stop(proc)
            shutil.rmtree(storage, ignore_errors=True)
            raise RuntimeError("docker-registry did not answer /v2/ within 15 s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _require_binary() -> None:
    if shutil.which(BINARY) is None:
        from tooling import require_tool

        require_tool(BINARY, "not installed (Debian package docker-registry); registry tests skipped")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """An anonymous registry on 127.0.0.1 for the whole session."""
    _require_binary()
    server = _start(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        _stop(server.process)
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry behind htpasswd Basic auth (``server.auth`` holds the login)."""
    _require_binary()
    line = _htpasswd_line(USERNAME, PASSWORD)
    if line is None:
        from tooling import require_tool

        require_tool("bcrypt", "no bcrypt implementation (install the 'bcrypt' wheel) to write the registry's htpasswd")
    tmp = tmp_path_factory.mktemp("auth-registry")
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text(line + "\n")
    server = _start(tmp, htpasswd=htpasswd)
    try:
        yield server
    finally:
        _stop(server.process)
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def dead_registry_host() -> str:
    """``127.0.0.1:<port>`` where nothing listens (connection refused)."""
    return f"127.0.0.1:{free_port()}"
