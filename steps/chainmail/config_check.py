"""``chainmail config check``: what chainmail does with each key of an existing chains-config.

Example::

    report = check_config({"artifacts.taskrun.storage": "tekton,gcs", "typo.key": "x"})
    report.ok                 # False: gcs is not implemented, typo.key is refused
    [v.status for v in report.verdicts]   # ["not supported", "unknown"]

Each key gets one status:

- ``same``: chainmail reads it with Chains' meaning and default;
- ``different``: accepted, but chainmail behaves differently (its own ``chainmail.*`` keys, the
  ``file`` backend, settings only an unimplemented feature would read …); the note says how;
- ``not supported``: the value selects something this build refuses (a backend, KMS, keyless,
  the transparency log): chainmail would stop with a configuration error;
- ``unknown``: not a chains-config key; Chains ignores it, chainmail refuses it;
- ``invalid``: a value chainmail's loader rejects.

What is "not supported" is read from the code that refuses it (``storage.UNSUPPORTED``, the
signer registry, the keyless and transparency checks), so this report follows the build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from chainmail.config import KEYS, Config
from chainmail.errors import ConfigError, Error

Status = Literal["same", "different", "not supported", "unknown", "invalid"]

#: Statuses that make ``config check`` exit with :class:`ConfigError`'s code.
FAILING: tuple[Status, ...] = ("not supported", "unknown", "invalid")

#: Keys whose values may carry credentials; their values are never shown.
SECRET_KEYS = frozenset({"signers.kms.auth.token", "storage.docdb.mongo-server-url"})

#: Keys the Tekton operator writes into chains-config that are not Chains settings.
OPERATOR_KEYS = {
    "performance": "written by the Tekton operator (controller tuning: HA buckets, threads, QPS); "
                   "the Chains controller reads it elsewhere and ignores it here",
}

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_KMS_SCHEMES = ("gcpkms", "awskms", "azurekms", "hashivault")
_BACKEND_KEYS = {
    "storage.gcs.": "gcs", "storage.docdb.": "docdb", "storage.grafeas.": "grafeas",
    "storage.pubsub.": "kafka", "storage.archivista.": "archivista",
}


@dataclass(frozen=True)
class KeyVerdict:
    """One key of the checked config: its (redacted) value, status and a one-line note."""

    key: str
    value: str
    status: Status
    note: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "status": self.status, "note": self.note}


@dataclass(frozen=True)
class CheckReport:
    """Every key's verdict, in the order of the input."""

    verdicts: tuple[KeyVerdict, ...]

    @property
    def ok(self) -> bool:
        """True when chainmail can run with this config as it is."""
        return not any(v.status in FAILING for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v.status] = out.get(v.status, 0) + 1
        return out

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "counts": self.counts(), "keys": [v.to_json() for v in self.verdicts]}

    def to_text(self) -> str:
        width = max((len(v.key) for v in self.verdicts), default=3)
        lines = [f"{v.key:<{width}}  {v.status:<13}  {v.note}" for v in self.verdicts]
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts().items()))
        verdict = "chainmail can use this config" if self.ok else "chainmail would refuse this config"
        lines.append(f"{len(self.verdicts)} key(s): {counts or 'none'} — {verdict}")
        return "\n".join(lines) + "\n"


def redact(key: str, value: str) -> str:
    """The value as it may be shown: secrets hidden, passwords in URLs dropped."""
    if key in SECRET_KEYS and value:
        return "(redacted)"
    return _USERINFO.sub("***@", value)


# ---------------------------------------------------------------- what this build supports


def unsupported_backends() -> tuple[str, ...]:
    """Storage names Chains knows that this build refuses."""
    from chainmail import storage

    return tuple(getattr(storage, "UNSUPPORTED", ()))


def kms_supported() -> bool:
    """True when a KMS scheme is registered as a signer."""
    from chainmail.signing import SIGNER_FOR_URI_SCHEME

    return any(s in SIGNER_FOR_URI_SCHEME for s in _KMS_SCHEMES)


def keyless_supported() -> bool:
    """Ask the signer selection itself whether ``signers.x509.fulcio.enabled`` is refused."""
    from chainmail.context import Context
    from chainmail.signing import signer_for

    probe = Config.from_mapping({
        "signers.x509.fulcio.enabled": "true",
        "signers.x509.fulcio.address": "http://127.0.0.1:9",
        "signers.x509.identity.token.file": "/nonexistent/chainmail-probe-token",
        "chainmail.retry.deadline-seconds": "0",
    })
    try:
        signer_for("taskrun", Context(config=probe))
    except ConfigError as exc:
        return "not supported" not in str(exc)
    except Exception:  # any other failure: the feature exists, the probe just cannot use it
        return True
    return True


def transparency_supported(value: str) -> bool:
    """Ask the signing step whether it would refuse ``transparency.enabled: value``."""
    from chainmail import signing
    from chainmail.context import Context

    check = getattr(signing, "require_no_transparency", None)
    if check is None:
        return True
    try:
        check(Context(config=Config.from_mapping({"transparency.enabled": value})))
    except ConfigError:
        return False
    return True


# ---------------------------------------------------------------- per-key rules


def _loader_error(key: str, value: str) -> str | None:
    try:
        Config.from_mapping({key: value})
    except ConfigError as exc:
        return str(exc)
    return None


def _storage(key: str, value: str) -> tuple[Status, str]:
    items = [s.strip() for s in value.split(",") if s.strip()]
    if not items:
        return "same", "empty: this artifact kind is not stored (Chains: disabled)"
    refused = [s for s in items if s in unsupported_backends()]
    if refused:
        return "not supported", f"backend(s) {', '.join(refused)} not implemented (see docs/storage-backends.md)"
    if "file" in items:
        return "different", "'file' is chainmail's own backend (a directory); Chains rejects it"
    return "same", f"stored to {', '.join(items)} as Chains does"


def _signer(value: str) -> tuple[Status, str]:
    if value.strip() == "kms" and not kms_supported():
        return "not supported", "KMS signing is not implemented; use x509 (a cosign key or x509.pem)"
    if value.strip() == "none":
        return "same", "signer none turns the artifact kind off, as in Chains' code"
    return "same", "signs with the cosign key or x509.pem (--key or /etc/signing-secrets)"


def _kmsref(value: str, data: Mapping[str, str]) -> tuple[Status, str]:
    from chainmail.signing import SIGNER_FOR_URI_SCHEME

    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme in SIGNER_FOR_URI_SCHEME:
        return "same", f"signs with the {scheme}:// key"
    used = any(str(data.get(f"artifacts.{k}.signer", "")).strip() == "kms" for k in ("taskrun", "pipelinerun", "oci"))
    if used:
        return "not supported", f"KMS scheme '{scheme or value}' is not implemented in this build"
    return "different", f"accepted but unused: no signer is kms, and '{scheme or value}' is not implemented"


def _backend_setting(key: str, data: Mapping[str, str]) -> tuple[Status, str]:
    backend = next(b for prefix, b in _BACKEND_KEYS.items() if key.startswith(prefix))
    selected = any(backend in {s.strip() for s in str(data.get(f"artifacts.{k}.storage", "")).split(",")}
                   for k in ("taskrun", "pipelinerun", "oci"))
    if backend in unsupported_backends():
        where = "a storage key selects it" if selected else "no storage key selects it, so it is unused"
        return "different", f"accepted but unused: the {backend} backend is not implemented ({where})"
    return "same", f"read by the {backend} backend"


def _keyless_setting(key: str, value: str, data: Mapping[str, str]) -> tuple[Status, str]:
    """``signers.x509.*`` besides ``fulcio.enabled``, as the keyless signer reads them."""
    from chainmail.signing._fulcio import DEFAULT_TUF_MIRROR
    from chainmail.signing._oidc import SUPPORTED_PROVIDERS

    value = value.strip()
    if key == "signers.x509.fulcio.provider" and value and value.lower() not in SUPPORTED_PROVIDERS:
        return "not supported", (f"token provider {value!r} is refused; chainmail reads "
                                 f"{' or '.join(SUPPORTED_PROVIDERS)} (a projected token)")
    if key == "signers.x509.tuf.mirror.url" and value and value.rstrip("/") != DEFAULT_TUF_MIRROR:
        if str(data.get("chainmail.transparency.trusted-root") or "").strip():
            return "different", "no TUF client: chainmail.transparency.trusted-root is read instead"
        return "not supported", ("no TUF client: set chainmail.transparency.trusted-root to this mirror's "
                                 "trusted_root.json")
    if key == "signers.x509.fulcio.issuer":
        return "same", "only for interactive OIDC flows, in Chains too; a token file or $SIGSTORE_ID_TOKEN needs none"
    return "same", "read by keyless signing"


def _transparency(value: str) -> tuple[Status, str]:
    text = value.strip()
    on = text in ("true", "manual")
    if not on:
        return "same", "no transparency log entry"
    if not transparency_supported(text):
        return "not supported", "uploads to a transparency log (Rekor) are not implemented; chainmail refuses to sign"
    return "same", "entries are uploaded to transparency.url"


def _verdict(key: str, value: str, data: Mapping[str, str]) -> tuple[Status, str]:
    if key.startswith("_"):
        return "same", "ignored (knative's example block), as in Chains"
    if key not in KEYS:
        error = _loader_error(key, value)
        if error is None:
            return "different", "skipped by chainmail; Chains ignores it too"
        why = OPERATOR_KEYS.get(key, "Chains ignores unknown keys")
        return "unknown", f"{why}; chainmail refuses unknown keys so a typo cannot change what is signed"
    error = _loader_error(key, value)
    if error is not None:
        spec = KEYS[key]
        chains = ("Chains ignores a bad boolean silently" if spec.kind == "bool"
                  else "Chains reads it as off and uploads nothing" if key == "transparency.enabled"
                  else "chainmail-only key" if key.startswith("chainmail.") else "Chains rejects it too")
        return "invalid", f"{error.removeprefix(key + ': ')} ({chains})"
    if key.startswith("chainmail."):
        return "different", "chainmail's own setting; Chains ignores it"
    if key.endswith(".storage"):
        return _storage(key, value)
    if key.endswith(".signer"):
        return _signer(value)
    if any(key.startswith(prefix) for prefix in _BACKEND_KEYS):
        return _backend_setting(key, data)
    if key == "signers.kms.kmsref" and value.strip():
        return _kmsref(value.strip(), data)
    if key.startswith("signers.kms."):
        return ("same", "read by the KMS signer") if kms_supported() else (
            "different", "accepted but unused: KMS signing is not implemented")
    if key == "signers.x509.fulcio.enabled":
        if Config.from_mapping({key: value}).bool(key):
            if not keyless_supported():
                return "not supported", "keyless (Fulcio) signing is not implemented; set it to false and use a key"
            if Config.from_mapping({k: v for k, v in data.items() if k in KEYS}).transparency() == "off":
                return "not supported", ("keyless signing needs transparency.enabled true in chainmail (Chains "
                                         "would sign without a Rekor entry, unverifiable once the certificate expires)")
            return "same", "keyless signing with a Fulcio certificate"
        return "same", "signs with a key, not keyless"
    if key.startswith("signers.x509."):
        if keyless_supported():
            return _keyless_setting(key, value, data)
        return "different", "accepted but unused: keyless (Fulcio) signing is not implemented"
    if key == "transparency.enabled":
        return _transparency(value)
    if key == "transparency.url":
        return ("same", "read when transparency.enabled is on") if transparency_supported("true") else (
            "different", "accepted but unused: transparency log uploads are not implemented")
    if key == "filter.managed-by":
        return "different", "accepted but unused: chainmail signs the runs it is told to sign, whoever manages them"
    return "same", "same meaning and default as Chains"


def check_config(data: Mapping[str, object]) -> CheckReport:
    """Classify every key of ``data`` (ConfigMap ``data`` or a flat mapping); never raises for a bad key."""
    flat = {str(k): _text(v) for k, v in data.items()}
    verdicts = []
    for key, value in flat.items():
        try:
            status, note = _verdict(key, value, flat)
        except Error as exc:  # a probe failed: report it on this key, keep checking the others
            status, note = "invalid", " ".join(str(exc).split())
        verdicts.append(KeyVerdict(key, redact(key, value), status, note))
    return CheckReport(tuple(verdicts))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
