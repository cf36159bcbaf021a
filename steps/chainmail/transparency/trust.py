"""The transparency log keys to trust: from a Sigstore ``trusted_root.json`` or a PEM public key file."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chainmail._internal.encoding import load_json
from chainmail.errors import ConfigError


@dataclass(frozen=True)
class LogKey:
    """One Rekor key: its log id (sha256 of the SPKI DER), the key and its validity window."""

    log_id: bytes
    public_key: Any
    start: datetime | None = None
    end: datetime | None = None
    base_url: str = ""

    def valid_at(self, when: datetime) -> bool:
        return (self.start is None or self.start <= when) and (self.end is None or when <= self.end)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def key_from_pem(pem: bytes, base_url: str = "") -> LogKey:
    """A log key from a PEM public key (what ``rekor-cli``/cosign call the Rekor public key)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return LogKey(hashlib.sha256(der).digest(), key, base_url=base_url)


def keys_from_trusted_root(data: bytes, source: str) -> list[LogKey]:
    """The ``tlogs`` of a Sigstore trusted root (v0.1)."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    keys = []
    for item in load_json(data).get("tlogs") or []:
        key = item.get("publicKey") or {}
        if not key.get("rawBytes"):
            continue
        valid = key.get("validFor") or {}
        keys.append(LogKey(
            base64.b64decode(item["logId"]["keyId"]),
            load_der_public_key(base64.b64decode(key["rawBytes"])),
            _time(valid.get("start")),
            _time(valid.get("end")),
            str(item.get("baseUrl") or ""),
        ))
    if not keys:
        raise ConfigError(f"{source}: the trusted root names no transparency log (tlogs)")
    return keys


def load_log_keys(source: Path | str | None = None) -> list[LogKey]:
    """Log keys from a ``trusted_root.json`` or PEM file; ``None``: sigstore-python's production root."""
    if source is None:
        from chainmail.verify.trusted_root import embedded_trusted_root_path

        source = embedded_trusted_root_path("production")
        if source is None:
            raise ConfigError(
                "no trusted root for the transparency log",
                hint="pass --trusted-root FILE (a Sigstore trusted_root.json or the log's PEM public key)",
            )
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"trusted root {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return [key_from_pem(data)]
        return keys_from_trusted_root(data, str(path))
    except ConfigError:
        raise
    except Exception as exc:  # malformed JSON, base64 or key bytes
        raise ConfigError(f"trusted root {path}: not a trusted_root.json or PEM public key "
                          f"({type(exc).__name__})") from None
