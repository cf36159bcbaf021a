"""The workload's OIDC identity token for keyless signing, found as Tekton Chains finds it.

Example::

    token = identity_token(ctx.config)     # IdentityToken(text, source, claims); text is never logged
    token.check_fresh()                    # expired, not yet valid or not for audience "sigstore": exit 31

Providers (``signers.x509.fulcio.provider``; cosign's names):

- ``signers.x509.identity.token.file`` set: that file (Chains' ``filesystem-custom-path``), whatever the
  provider says;
- ``filesystem``: ``/var/run/sigstore/cosign/oidc-token``, the projected service-account token with
  audience ``sigstore`` Chains' own Deployment mounts (``$CHAINMAIL_OIDC_TOKEN_FILE`` moves it);
- ``envvar``: ``$SIGSTORE_ID_TOKEN``;
- unset: the first of ``envvar`` and ``filesystem`` that has a token (cosign's "try every enabled one").

cosign's interactive and cloud providers (``google-workload-identity``, ``google-impersonate``,
``github-actions``, ``spiffe``, ``buildkite-agent``) are refused with a :class:`ConfigError`: mount a
projected token instead. A missing token is :class:`IdentityTokenMissingError` (30), a malformed, expired
or wrong-audience one :class:`IdentityTokenInvalidError` (31). The token itself never appears in a message.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal.encoding import load_json
from chainmail.errors import ConfigError, IdentityTokenInvalidError, IdentityTokenMissingError

if TYPE_CHECKING:
    from chainmail.config import Config

#: Where Chains' Deployment mounts its projected token (volume ``oidc-token``, audience ``sigstore``).
DEFAULT_TOKEN_FILE = "/var/run/sigstore/cosign/oidc-token"  # noqa: S105 - a path, not a secret
TOKEN_ENV = "SIGSTORE_ID_TOKEN"  # noqa: S105 - a variable name
#: Fulcio's OAuth client id: the audience a token must be minted for.
AUDIENCE = "sigstore"
SUPPORTED_PROVIDERS = ("filesystem", "envvar")
MAX_TOKEN_BYTES = 64 * 1024
#: Clock skew tolerated on ``exp``/``nbf``.
LEEWAY_SECONDS = 30
HINT = ("mount a projected service-account token with audience 'sigstore' (see the Task's README, "
        "'Keyless signing') or set signers.x509.identity.token.file")


@dataclass(frozen=True)
class IdentityToken:
    """A JWT and its (unverified) claims; Fulcio verifies it, chainmail reads it to fail early and clearly."""

    text: str = field(repr=False)
    source: str
    claims: dict[str, Any]

    @property
    def issuer(self) -> str:
        return str(self.claims.get("iss") or "")

    def check_fresh(self, now: float | None = None) -> None:
        """Refuse a token Fulcio would refuse for its time window or audience."""
        now = time.time() if now is None else now
        exp = self.claims.get("exp")
        if not isinstance(exp, int | float):
            raise IdentityTokenInvalidError(f"OIDC token from {self.source} has no 'exp' (expiry) claim")
        if exp + LEEWAY_SECONDS < now:
            raise IdentityTokenInvalidError(
                f"OIDC token from {self.source} expired {_ago(now - exp)} ago (exp {_utc(exp)})",
                hint="a projected token is refreshed by the kubelet; check the volume's expirationSeconds "
                     "and that the file is the projected one, not a copy")
        nbf = self.claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - LEEWAY_SECONDS > now:
            raise IdentityTokenInvalidError(f"OIDC token from {self.source} is not valid before {_utc(nbf)}")
        aud = self.claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if AUDIENCE not in audiences:
            shown = ", ".join(repr(str(a)) for a in audiences[:3]) or "none"
            raise IdentityTokenInvalidError(
                f"OIDC token from {self.source} is for audience {shown}; Fulcio needs '{AUDIENCE}'",
                hint="set 'audience: sigstore' on the serviceAccountToken projection")


def _utc(seconds: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, ValueError, OSError):  # a forged far-future or NaN claim
        return "an impossible time"


def _ago(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds < 120 else f"{int(seconds // 60)}m"


def token_claims(token: str, source: str = "") -> dict[str, Any]:
    """The (unverified) claims of a JWT."""
    what = f"OIDC token from {source}" if source else "OIDC token"
    parts = token.split(".")
    if len(parts) != 3:
        raise IdentityTokenInvalidError(f"{what} is not a JWT (expected three dot-separated parts)")
    try:
        claims = load_json(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise IdentityTokenInvalidError(f"{what}: the claims part is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise IdentityTokenInvalidError(f"{what}: the claims are not a JSON object")
    return claims


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped), bounded in size."""
    if path.exists() and not path.is_file():  # a FIFO or device would block or never end
        raise IdentityTokenInvalidError(f"OIDC token file {path} is not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise IdentityTokenMissingError(f"OIDC token file {path}: cannot read it (it does not exist)",
                                        hint=HINT) from None
    except OSError as exc:
        raise IdentityTokenMissingError(f"OIDC token file {path}: cannot read it ({exc.strerror or exc})",
                                        hint=HINT) from None
    if len(data) > MAX_TOKEN_BYTES:
        raise IdentityTokenInvalidError(f"OIDC token file {path}: larger than {MAX_TOKEN_BYTES} bytes")
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise IdentityTokenInvalidError(f"OIDC token file {path}: not ASCII") from None
    if not token:
        raise IdentityTokenMissingError(f"OIDC token file {path} is empty", hint=HINT)
    return token


def _from_file(path: Path) -> IdentityToken:
    text = read_token_file(path)
    return IdentityToken(text, str(path), token_claims(text, str(path)))


def _from_env() -> IdentityToken | None:
    text = os.environ.get(TOKEN_ENV, "").strip()
    if not text:
        return None
    source = f"${TOKEN_ENV}"
    if len(text) > MAX_TOKEN_BYTES:
        raise IdentityTokenInvalidError(f"OIDC token from {source}: larger than {MAX_TOKEN_BYTES} bytes")
    return IdentityToken(text, source, token_claims(text, source))


def default_token_file() -> Path:
    return Path(os.environ.get("CHAINMAIL_OIDC_TOKEN_FILE") or DEFAULT_TOKEN_FILE)


def check_provider(config: Config) -> str:
    """The configured provider (``""``: unset), or :class:`ConfigError` for one chainmail does not support."""
    provider = config.get("signers.x509.fulcio.provider").strip().lower()
    if provider and provider not in SUPPORTED_PROVIDERS:
        raise ConfigError(
            f"signers.x509.fulcio.provider '{provider}' is not supported; chainmail reads the token from "
            f"{' or '.join(SUPPORTED_PROVIDERS)}",
            hint="use provider filesystem with a projected service-account token (audience sigstore), "
                 "or set signers.x509.identity.token.file")
    return provider


def identity_token(config: Config) -> IdentityToken:
    """The token the configuration selects (see the module docstring); not yet checked for freshness."""
    provider = check_provider(config)
    custom = config.get("signers.x509.identity.token.file").strip()
    if custom:
        return _from_file(Path(custom))
    if provider == "filesystem":
        return _from_file(default_token_file())
    if provider == "envvar":
        found = _from_env()
        if found is None:
            raise IdentityTokenMissingError(f"signers.x509.fulcio.provider is envvar, but ${TOKEN_ENV} is empty",
                                            hint=HINT)
        return found
    found = _from_env()
    if found is not None:
        return found
    path = default_token_file()
    if not path.exists():
        raise IdentityTokenMissingError(f"no OIDC token for keyless signing: ${TOKEN_ENV} is unset and {path} "
                                        "does not exist", hint=HINT)
    return _from_file(path)


def expected_identities(claims: dict[str, Any]) -> set[str]:
    """The certificate identities Fulcio derives from these claims (SAN URI or email).

    Kubernetes tokens: ``https://kubernetes.io/namespaces/<ns>/serviceaccounts/<name>``; email issuers:
    the ``email`` claim; any issuer: ``sub`` (what generic issuers and the test CA use).
    """
    out = {str(claims["sub"])} if claims.get("sub") else set()
    if isinstance(claims.get("email"), str):
        out.add(claims["email"])
    k8s = claims.get("kubernetes.io")
    if isinstance(k8s, dict):
        sa = k8s.get("serviceaccount")
        if isinstance(sa, dict) and k8s.get("namespace") and sa.get("name"):
            out.add(f"https://kubernetes.io/namespaces/{k8s['namespace']}/serviceaccounts/{sa['name']}")
    return out
