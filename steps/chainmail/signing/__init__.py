"""Signing: load a key by URI, sign payloads raw or in DSSE envelopes, check signatures.

Example::

    signer = load_signer("k8s://tekton-chains/signing-secrets", ctx)   # or a dir, a file, file:///…
    signed = sign_payloads(payloads, ctx)       # signer per kind from chains-config (or ctx.key)
    verify_signature(signer.public_key_pem, signature, data)

Key URIs (``SIGNER_FOR_URI_SCHEME``, filled here and only here):

- a path or ``file:`` URI: a key file (encrypted ``cosign.key`` or PKCS#8 PEM) or a
  directory holding ``x509.pem`` or ``cosign.key`` + ``cosign.password`` (Chains' order);
- ``k8s://NAMESPACE/SECRET``: the same files in a Secret;
- KMS URIs: ``gcpkms://``, ``awskms://``, ``azurekms://``, ``hashivault://``;
- ``fulcio://``: keyless, an ephemeral key certified by
  Fulcio (:mod:`chainmail.signing._fulcio`), as ``signers.x509.fulcio.enabled: true`` selects.

Loaded key signers are cached in ``ctx.cache``, so a sweep decrypts a key once; a keyless
signer lives for one signing session only (one :func:`sign_payloads` call: one run), because
its certificate expires within minutes. Keyless signing requires a transparency log entry for
every signature (:func:`require_transparency_for_keyless`).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Literal

from chainmail.errors import ConfigError, KeyMaterialError
from chainmail.models import Payload, SignedPayload
from chainmail.signing._file import (
    KeyMaterial,
    canonical_file_uri,
    file_path,
    load_file,
    public_key_from_material,
)
from chainmail.signing._signer import KEYLESS_SCHEMES, KeySigner, Signer
from chainmail.signing.keys import public_key_pem, verify_signature

if TYPE_CHECKING:
    from chainmail.context import Context

__all__ = [
    "DEFAULT_SIGNING_SECRETS",
    "SIGNER_FOR_URI_SCHEME",
    "KeySigner",
    "Signer",
    "configured_public_key",
    "load_public_key",
    "load_signer",
    "sign_payloads",
    "signer_for",
    "verify_signature",
]

log = logging.getLogger("chainmail.signing")


class _Signers(Mapping[str, "type[Signer]"]):
    """URI scheme → signer class; a class's module is imported the first time its scheme is looked up.

    A sweep with a key file never imports the KMS clients or the keyless (Fulcio, OIDC) code.
    """

    def __init__(self, classes: dict[str, tuple[str, str]]) -> None:
        self._where = classes
        self._loaded: dict[str, type[Signer]] = {}

    def __getitem__(self, scheme: str) -> type[Signer]:
        cls = self._loaded.get(scheme)
        if cls is None:
            module, name = self._where[scheme]
            cls = self._loaded[scheme] = getattr(importlib.import_module(module), name)
        return cls

    def __contains__(self, scheme: object) -> bool:
        return scheme in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


#: URI scheme → signer class. The only registry of signers; add an entry to add one.
SIGNER_FOR_URI_SCHEME: Mapping[str, type[Signer]] = _Signers({
    "file": ("chainmail.signing._file", "FileSigner"),
    "k8s": ("chainmail.signing._file", "K8sSigner"),
    "awskms": ("chainmail.signing._awskms", "AWSKMSSigner"),
    "hashivault": ("chainmail.signing._hashivault", "HashiVaultSigner"),
    "gcpkms": ("chainmail.signing._gcpkms", "GCPKMSSigner"),
    "azurekms": ("chainmail.signing._azurekms", "AzureKMSSigner"),
    "fulcio": ("chainmail.signing._fulcio", "FulcioSigner"),
})

#: Where Chains mounts its ``signing-secrets`` Secret; ``$CHAINMAIL_SIGNING_SECRETS`` overrides it.
DEFAULT_SIGNING_SECRETS = "/etc/signing-secrets"

_KMS_SCHEMES = ("gcpkms", "awskms", "azurekms", "hashivault")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOAD_LOCK = threading.Lock()


def _scheme(uri: str) -> str:
    match = _SCHEME_RE.match(uri)
    if match:
        return match.group(1).lower()
    return "file"  # "file:/path", "file:rel" and bare paths


def _unsupported(scheme: str) -> ConfigError | None:
    if scheme in _KMS_SCHEMES and scheme not in SIGNER_FOR_URI_SCHEME:
        return ConfigError(
            f"KMS signing ({scheme}://) is not supported by this build yet",
            hint="use a cosign key or x509.pem: --key DIR, a key file, or k8s://NAMESPACE/SECRET",
        )
    return None


def _canonical(uri: str, scheme: str) -> str:
    if scheme == "file":
        return canonical_file_uri(uri)
    if scheme == "k8s":
        return "k8s://" + uri.split("://", 1)[1].strip("/")
    return uri


def load_signer(uri: str, ctx: Context, *, session: dict[str, Signer] | None = None) -> Signer:
    """The signer named by ``uri``; loaded once per process and cached in ``ctx.cache``.

    Session-only signers (keyless) are cached in ``session`` instead (new each call without one).
    """
    uri = uri.strip()
    if not uri:
        raise KeyMaterialError("empty signing key reference")
    scheme = _scheme(uri)
    error = _unsupported(scheme)
    if error is not None:
        raise error
    cls = SIGNER_FOR_URI_SCHEME.get(scheme)
    if cls is None:
        known = ", ".join(f"{s}://" for s in sorted(SIGNER_FOR_URI_SCHEME))
        raise ConfigError(f"unknown signing key scheme '{scheme}://'; supported: {known} or a path")
    cache_key = "signer:" + _canonical(uri, scheme)
    if getattr(cls, "SESSION_ONLY", False):
        store: dict[str, object] = session if session is not None else {}
        found = store.get("signer:keyless")
        if not isinstance(found, Signer):
            found = store["signer:keyless"] = cls.from_uri(uri, ctx)
        return found
    cached = ctx.cache.get(cache_key)
    if isinstance(cached, Signer):
        return cached
    with _LOAD_LOCK:
        cached = ctx.cache.get(cache_key)
        if isinstance(cached, Signer):
            return cached
        signer = cls.from_uri(uri, ctx)
        ctx.cache[cache_key] = signer
    log.debug("loaded signer %s (key id %s)", signer.uri, signer.key_id)
    return signer


def _signing_secrets_dir() -> str:
    return os.environ.get("CHAINMAIL_SIGNING_SECRETS") or DEFAULT_SIGNING_SECRETS


def keyless_selected(kind: Literal["taskrun", "pipelinerun", "oci"], ctx: Context) -> bool:
    """Whether ``kind`` is signed keyless: ``--key fulcio://``, or Chains' x509 order.

    Chains' x509 signer tries Fulcio first when ``signers.x509.fulcio.enabled`` is true, before any
    ``x509.pem``/``cosign.key``; so here a key directory, file or Secret in ``--key`` (what the
    Tasks pass by default) does not override it. A KMS URI in ``--key`` still does.
    """
    mode = ctx.config.signer(kind)
    if mode == "none":
        return False
    if ctx.key and _scheme(ctx.key.strip()) in KEYLESS_SCHEMES:
        return True
    if mode != "x509" or not ctx.config.bool("signers.x509.fulcio.enabled"):
        return False
    if ctx.key and _scheme(ctx.key.strip()) not in ("file", "k8s"):
        return False
    if ctx.key and not ctx.cache.get("keyless-key-note"):
        ctx.cache["keyless-key-note"] = True
        log.warning("signers.x509.fulcio.enabled is true: signing keyless as Chains does; the key %s is not used",
                    ctx.key)
    return True


def signer_for(kind: Literal["taskrun", "pipelinerun", "oci"], ctx: Context, *,
               session: dict[str, Signer] | None = None) -> Signer | None:
    """The signer chains-config ``artifacts.<kind>.signer`` selects (None for ``none``).

    Keyless when :func:`keyless_selected` (one signer per ``session``); else ``x509``:
    ``ctx.key``, else the signing-secrets directory; ``kms``: ``ctx.key``, else
    ``signers.kms.kmsref``.
    """
    mode = ctx.config.signer(kind)
    if mode == "none":
        return None
    if keyless_selected(kind, ctx):
        explicit = ctx.key and _scheme(ctx.key.strip()) in KEYLESS_SCHEMES
        return load_signer(ctx.key if explicit else "fulcio://", ctx, session=session)
    if ctx.key:
        return load_signer(ctx.key, ctx)
    if mode == "kms":
        ref = ctx.config.get("signers.kms.kmsref").strip()
        if not ref:
            raise ConfigError(f"artifacts.{kind}.signer is kms but signers.kms.kmsref is empty",
                              hint="set signers.kms.kmsref or pass --key")
        return load_signer(ref, ctx)
    return load_signer(_signing_secrets_dir(), ctx)


def configured_public_key(kind: Literal["taskrun", "pipelinerun", "oci"], ctx: Context) -> str | None:
    """The public half of the key :func:`signer_for` would sign ``kind`` with (None for signer ``none``).

    Keyless: a :class:`~chainmail.signing.keyless_trust.KeylessTrust` (a ``str``) instead, which
    ``store`` checks certificates, log entries and the token's identity against.

    What ``store`` checks signatures against: the operator's configuration (``--key``,
    ``signers.kms.kmsref``, the signing-secrets directory), never a key named in the workspace.
    A key directory or Secret gives ``x509.pem``'s key, else ``cosign.pub``, else the key derived
    from ``cosign.key``. Cached in ``ctx.cache``.
    """
    mode = ctx.config.signer(kind)
    if mode == "none":
        return None
    if keyless_selected(kind, ctx):
        from chainmail.signing.keyless_trust import KeylessTrust

        return KeylessTrust.for_context(ctx)
    if ctx.key:
        ref = ctx.key
    elif mode == "kms":
        ref = ctx.config.get("signers.kms.kmsref").strip()
        if not ref:
            raise ConfigError(f"artifacts.{kind}.signer is kms but signers.kms.kmsref is empty",
                              hint="set signers.kms.kmsref or pass --key")
    else:
        ref = _signing_secrets_dir()
    cache_key = "public-key:" + ref.strip()
    cached = ctx.cache.get(cache_key)
    if isinstance(cached, str):
        return cached
    pem = load_public_key(ref, ctx)
    ctx.cache[cache_key] = pem
    return pem


def require_no_transparency(ctx: Context) -> None:
    """Refuse a ``transparency.*`` setting that cannot work before anything is signed.

    ``transparency.enabled: true|manual`` uploads every signature to ``transparency.url``
    (see :func:`sign_payloads`); a URL that is not http(s) is a :class:`ConfigError`, never a
    silent skip of the log entry the operator asked for.
    """
    from urllib.parse import urlsplit

    if ctx.config.transparency() == "off":
        return
    url = ctx.config.get("transparency.url").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"transparency.url {url!r} is not an http(s) URL; nothing was signed",
                          hint="set transparency.url to the Rekor instance, or transparency.enabled to false")


def require_transparency_for_keyless(payloads: list[Payload], ctx: Context, *, logged: bool) -> None:
    """Refuse keyless signing whose signatures would not be logged (``logged`` False).

    A Fulcio certificate is valid for ten minutes; only the Rekor entry's time shows it was valid
    when the payload was signed, so cosign (and ``chainmail verify``) reject a keyless signature
    without one. Tekton Chains would sign and store it anyway; chainmail refuses, before Fulcio
    is asked for anything, with a :class:`ConfigError`.
    """
    kinds = sorted({p.artifact.kind for p in payloads if keyless_selected(p.artifact.kind, ctx)})
    if not kinds or logged:
        return
    mode = ctx.config.transparency()
    why = ("transparency.enabled is manual and this run is not annotated chains.tekton.dev/transparency-upload: "
           "\"true\"" if mode == "manual" else f"transparency.enabled is {ctx.config.get('transparency.enabled')!r}")
    raise ConfigError(
        f"keyless signing ({', '.join(kinds)}) needs a transparency log entry for every signature, but {why}; "
        "nothing was signed",
        hint="set transparency.enabled to true (a Fulcio certificate expires in 10 minutes: without a Rekor "
             "entry nobody can verify the signature)")


def sign_payloads(payloads: list[Payload], ctx: Context, *, upload: bool | None = None) -> list[SignedPayload]:
    """The ``sign`` step: DSSE envelopes for wrapped payloads, raw signatures otherwise.

    Payloads whose kind has signer ``none`` are left out (Chains does not sign them). With
    ``transparency.enabled: true`` (or ``manual`` and ``upload``, the run's
    ``transparency-upload`` annotation) every signature is logged in ``transparency.url``
    before anything is returned (hashedrekord for raw signatures, dsse for envelopes), and the
    verified entry is kept in :attr:`SignedPayload.tlog`. A log failure is a
    :class:`~chainmail.errors.TransparencyError`: nothing is returned to store.
    """
    from chainmail.signing import dsse

    require_no_transparency(ctx)
    mode = ctx.config.transparency()
    if mode == "manual" and upload is None:
        raise ConfigError("transparency.enabled is manual, but the run's annotations are not known here; "
                          "nothing was signed", hint="sign with chainmail run, or set transparency.enabled")
    rekor = None
    if mode == "on" or (mode == "manual" and upload):
        from chainmail.transparency import client_for

        root = ctx.config.get("chainmail.transparency.trusted-root").strip() or None  # None: production
        rekor = client_for(ctx, trusted_root=root)
    require_transparency_for_keyless(payloads, ctx, logged=rekor is not None)
    if rekor is not None and getattr(rekor, "version", "1") == "2":  # Rekor v2: no time without a TSA
        from chainmail.transparency.v2 import require_key_signed

        require_key_signed([k for k in {p.artifact.kind for p in payloads} if keyless_selected(k, ctx)])
    out: list[SignedPayload] = []
    signers: dict[str, Signer | None] = {}
    session: dict[str, Signer] = {}  # one keyless key and certificate for this run
    for payload in payloads:
        kind = payload.artifact.kind
        if kind not in signers:
            signers[kind] = signer_for(kind, ctx, session=session)
        signer = signers[kind]
        if signer is None:
            log.info("not signing %s: artifacts.%s.signer is none", payload.artifact.full_key, kind)
            continue
        if payload.wrap:
            signature = dsse.envelope(payload.payload_type, payload.body, signer)
        else:
            signature = signer.sign(payload.body)
        tlog = None
        if rekor is not None:
            from chainmail.transparency import log_envelope, log_signature

            verifier = signer.cert or signer.public_key_pem
            entry = (log_envelope(rekor, signature, verifier) if payload.wrap
                     else log_signature(rekor, payload.body, signature, verifier))
            log.info("logged %s in %s at index %d", payload.artifact.full_key, rekor.url, entry.log_index)
            tlog = entry.to_json()
        out.append(SignedPayload(
            payload=payload,
            signature=signature,
            key_id=signer.key_id,
            public_key=signer.public_key_pem,
            signer=signer.uri,
            cert=signer.cert,
            chain=signer.chain,
            tlog=tlog,
        ))
    return out


def load_public_key(source: str, ctx: Context) -> str:
    """Public key PEM from a ``.pub``/certificate file, PEM text, a key directory, a private key, or a Secret.

    A directory or Secret gives ``x509.pem``'s key when present, else ``cosign.pub``, else
    the key derived from ``cosign.key`` (which needs its password).
    """
    text = source.strip()
    if not text:
        raise KeyMaterialError("empty public key reference")
    if text.startswith("-----BEGIN"):
        from chainmail._internal.cosign_key import pem_label

        if pem_label(text) in ("PUBLIC KEY", "CERTIFICATE"):
            return public_key_pem(text, "public key PEM")
        raise KeyMaterialError(f"expected a PUBLIC KEY or CERTIFICATE PEM, found '{pem_label(text)}'")
    scheme = _scheme(text)
    error = _unsupported(scheme)
    if error is not None:
        raise error
    if scheme == "k8s":
        return public_key_from_material(KeyMaterial.from_secret(text, ctx))
    if scheme != "file" and scheme in SIGNER_FOR_URI_SCHEME:  # a KMS key: its public key, from the KMS
        return load_signer(text, ctx).public_key_pem
    if scheme != "file":
        raise ConfigError(f"unknown key scheme '{scheme}://'; supported: file://, k8s:// or a path")
    path = file_path(text)
    if path.is_dir():
        return public_key_from_material(KeyMaterial.from_dir(path))
    if not path.exists():
        raise KeyMaterialError(f"public key {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None
    from chainmail._internal.cosign_key import pem_label

    if pem_label(data) in ("PUBLIC KEY", "CERTIFICATE"):
        return public_key_pem(data, str(path))
    key, _ = load_file(path)
    return public_key_pem(key.public_key())
