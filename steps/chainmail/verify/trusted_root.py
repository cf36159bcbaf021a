"""The Sigstore trusted root (``trusted_root.json`` v0.1): Fulcio CAs and Rekor keys, with validity windows.

Example::

    root = load_trusted_root("production")   # or "staging", or a trusted_root.json path (all offline)
    roots, intermediates = root.fulcio_pool(signing_time)

``production`` and ``staging`` are the roots sigstore-python embeds; an unusable root is a
:class:`ConfigError` (3).
"""

from __future__ import annotations

import base64
import importlib.util
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import ConfigError

TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
#: The TUF repositories whose trusted_root.json sigstore-python embeds (``sigstore/_store/<url-quoted>``).
_EMBEDDED = {
    "production": "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    "staging": "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}



def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def within(start: datetime | None, end: datetime | None, at: datetime) -> bool:
    return (start is None or start <= at) and (end is None or at <= end)


@dataclass(frozen=True)
class CertificateAuthority:
    """One Fulcio CA of a trusted root: its chain (intermediates…root) and validity window."""

    certs: tuple[Any, ...]
    start: datetime | None
    end: datetime | None
    uri: str = ""

    def valid_at(self, at: datetime) -> bool:
        return within(self.start, self.end, at)


@dataclass(frozen=True)
class TransparencyLog:
    """One Rekor instance of a trusted root: ``keyId`` (sha256 of the SPKI), key and validity window."""

    key_id: bytes
    public_key: Any
    start: datetime | None
    end: datetime | None
    base_url: str = ""


@dataclass(frozen=True)
class TrustedRoot:
    """The parts of a Sigstore ``trusted_root.json`` (v0.1) the legacy keyless path needs."""

    source: str
    authorities: tuple[CertificateAuthority, ...]
    tlogs: tuple[TransparencyLog, ...]
    raw: bytes = field(repr=False, default=b"")

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "trusted root") -> TrustedRoot:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        raw = data.encode() if isinstance(data, str) else data
        try:
            doc = load_json(raw)
            if doc.get("mediaType") != TRUSTED_ROOT_TYPE:
                raise ConfigError(
                    f"{source}: mediaType is {doc.get('mediaType')!r}, not {TRUSTED_ROOT_TYPE!r}"
                )
            authorities = []
            for ca in doc.get("certificateAuthorities") or []:
                certs = tuple(
                    x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                    for c in (ca.get("certChain") or {}).get("certificates") or []
                )
                valid = ca.get("validFor") or {}
                if certs:
                    authorities.append(
                        CertificateAuthority(
                            certs,
                            _time(valid.get("start")),
                            _time(valid.get("end")),
                            str(ca.get("uri") or ""),
                        )
                    )
            tlogs = []
            for log in doc.get("tlogs") or []:
                key = log.get("publicKey") or {}
                if not key.get("rawBytes"):
                    continue
                valid = key.get("validFor") or {}
                tlogs.append(
                    TransparencyLog(
                        base64.b64decode(log["logId"]["keyId"]),
                        load_der_public_key(base64.b64decode(key["rawBytes"])),
                        _time(valid.get("start")),
                        _time(valid.get("end")),
                        str(log.get("baseUrl") or ""),
                    )
                )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"{source}: not a usable Sigstore trusted root ({type(exc).__name__}: {exc})"
            ) from None
        if not authorities:
            raise ConfigError(f"{source}: the trusted root has no certificate authorities (Fulcio)")
        return cls(source, tuple(authorities), tuple(tlogs), raw)

    def fulcio_pool(self, at: datetime) -> tuple[list[Any], list[Any]]:
        """``(roots, intermediates)`` of the Fulcio CAs valid at ``at``."""
        roots: list[Any] = []
        intermediates: list[Any] = []
        for ca in self.authorities:
            if not ca.valid_at(at):
                continue
            for cert in ca.certs:
                (roots if cert.subject == cert.issuer else intermediates).append(cert)
        return roots, intermediates


def embedded_trusted_root_path(instance: str = "production") -> Path | None:
    """sigstore-python's embedded ``trusted_root.json`` for ``production``/``staging`` (None: absent)."""
    spec = importlib.util.find_spec("sigstore")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "_store" / _EMBEDDED[instance] / "trusted_root.json"
    return path if path.is_file() else None


@lru_cache(maxsize=8)
def _load_cached(source: str) -> TrustedRoot:
    if source in _EMBEDDED:
        path = embedded_trusted_root_path(source)
        if path is None:
            raise ConfigError(
                f"no {source} trusted root available offline",
                hint="pass --trusted-root FILE (a Sigstore trusted_root.json), or install "
                "chainmail[sigstore], which embeds the production and staging roots",
            )
    else:
        path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"trusted root {path}: cannot read it ({exc.strerror or exc})") from None
    return TrustedRoot.from_json(data, str(path) if source not in _EMBEDDED else f"{source} trusted root")


def load_trusted_root(source: TrustedRoot | str | Path | None = None) -> TrustedRoot:
    """``None``/``"production"``, ``"staging"``, a ``trusted_root.json`` path, or an already loaded root."""
    if isinstance(source, TrustedRoot):
        return source
    return _load_cached(str(source) if source is not None else "production")

