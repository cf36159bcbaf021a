"""Which certificate authorities chainmail trusts for HTTPS outside the cluster.

By default that is the public CA bundle that ships with ``requests`` (certifi). Registries,
token services, Rekor, Fulcio and KMS endpoints signed by a private CA (OpenShift's service CA for
``image-registry.openshift-image-registry.svc:5000``, a corporate proxy CA) are trusted by adding
their CA certificates with :data:`ENV`: a list of PEM files or directories, separated by ``:``.
The extra certificates are *added* to the default bundle, never replace it. The Kubernetes API is
not affected: it is verified against the cluster's own CA (service-account mount or kubeconfig).

A directory contributes every visible file in it that holds a PEM certificate (a mounted ConfigMap
such as OpenShift's ``config-service-cabundle`` or ``config-trusted-cabundle``); an empty directory
is an optional mount whose ConfigMap does not exist, and adds nothing. Anything else that holds no
certificate -- a missing path, a named file with none, a directory whose files have none -- is a
:class:`~chainmail.errors.ConfigError`, so a misspelt mount never silently falls back to public CAs.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import stat
import tempfile
import threading
from pathlib import Path

from chainmail.errors import ConfigError

log = logging.getLogger("chainmail.tls")

#: Environment variable naming extra CA certificates (PEM files or directories, ``:``-separated).
ENV = "CHAINMAIL_CA_BUNDLE"
_HINT = f"{ENV} takes PEM files or directories of them, separated by ':'"
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
#: A CA file larger than this is not a CA file (certifi's whole bundle is ~300 KiB).
_MAX_FILE = 4 * 1024 * 1024

_lock = threading.Lock()
_cached: tuple[str, str | bool] | None = None


def verify() -> str | bool:
    """The ``verify`` argument for ``requests``: True (default CAs) or a bundle file with the extras added."""
    global _cached
    spec = os.environ.get(ENV, "").strip()
    with _lock:
        if _cached is not None and _cached[0] == spec:
            return _cached[1]
        value = _bundle(spec) if spec else True
        _cached = (spec, value)
        return value


def describe(exc: BaseException) -> str:
    """The reason a TLS handshake failed, short: OpenSSL's verify message when there is one."""
    text = str(exc)
    match = re.search(r"(certificate verify failed: .+?|\[SSL: [A-Z_]+\] .+?)(?: \(_ssl\.c:\d+\)|['\"]\)|$)", text)
    if not match:
        return type(exc).__name__
    reason = re.sub(r"^\[SSL: [A-Z_]+\] ", "", match.group(1))
    return reason.strip().rstrip(".")


def extra_certificates(spec: str) -> list[bytes]:
    """The PEM certificates ``spec`` names, each checked to parse, in the order given."""
    certs: list[bytes] = []
    for part in (p.strip() for p in spec.split(os.pathsep)):
        if part:
            certs.extend(_from_path(Path(part)))
    return certs


def _from_path(path: Path) -> list[bytes]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
        found = [cert for f in files for cert in _pem_certificates(f)]
        if files and not found:
            raise ConfigError(f"CA directory {path} has files but no PEM certificate in them", hint=_HINT)
        log.debug("CA directory %s: %d certificates from %d files", path, len(found), len(files))
        return found
    if not path.exists():
        raise ConfigError(f"CA bundle {path} does not exist", hint=_HINT)
    found = _pem_certificates(path)
    if not found:
        raise ConfigError(f"CA bundle {path} holds no PEM certificate", hint=_HINT)
    return found


def _pem_certificates(path: Path) -> list[bytes]:
    """Every PEM certificate in ``path`` (re-encoded, so nothing but certificates passes through)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            raise ConfigError(f"CA bundle {path} is not a regular file", hint=_HINT)
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read CA bundle {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE:
        raise ConfigError(f"CA bundle {path} is larger than {_MAX_FILE // 1048576} MiB", hint=_HINT)
    if _PEM_BEGIN not in data:
        return []
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"CA bundle {path} has a PEM certificate that does not parse", hint=_HINT) from None
    return [cert.public_bytes(Encoding.PEM) for cert in certs]


def _bundle(spec: str) -> str:
    """Write the default bundle plus the extras to a private file; return its path."""
    import certifi

    extras = extra_certificates(spec)
    if not extras:
        return certifi.where()
    fd, name = tempfile.mkstemp(prefix="chainmail-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as out:
        out.write(Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n")
        for cert in extras:
            out.write(cert)
    atexit.register(_remove, name)
    log.debug("trusting %d extra CA certificates from %s", len(extras), spec)
    return name


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
