"""What ``store`` trusts in a keyless ``signed.json``: a Fulcio certificate for this workload, logged in Rekor.

Example::

    trust = KeylessTrust.for_context(ctx)       # configured_public_key() returns it for keyless kinds
    check_keyless(item, trust, log_keys)        # WorkspaceError (16) unless every check passes

A separate ``store`` step cannot compare a keyless signature with a configured key: the key was
ephemeral. Instead each item must carry a certificate that chains to a Fulcio CA of the trusted root
(``chainmail.transparency.trusted-root``, else Sigstore's production root) at the time its Rekor entry
was integrated; the entry must verify with the log keys and log exactly this signature by this
certificate; and, when the store step can read the same OIDC token as the sign step, the certificate's
issuer and identity must be the token's (a ``signed.json`` re-signed under someone else's identity is
refused). The signature itself is then checked over the payload with the certificate's key.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chainmail.errors import Error, IdentityTokenMissingError, WorkspaceError

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.models import SignedPayload
    from chainmail.transparency import LogKey

log = logging.getLogger("chainmail.signing.keyless")


class KeylessTrust(str):
    """A configured "key" for keyless kinds: the trusted root plus the identity expected in certificates."""

    trusted_root: str
    issuer: str
    identities: frozenset[str]

    def __new__(cls, trusted_root: str, issuer: str = "", identities: frozenset[str] = frozenset()) -> KeylessTrust:
        value = super().__new__(cls, f"keyless:{trusted_root}")
        value.trusted_root = trusted_root
        value.issuer = issuer
        value.identities = identities
        return value

    @classmethod
    def for_context(cls, ctx: Context) -> KeylessTrust:
        """From chains-config; pinned to the token's identity when the token is readable here."""
        from chainmail.signing._fulcio import fulcio_trusted_root
        from chainmail.signing._oidc import expected_identities, identity_token

        root = fulcio_trusted_root(ctx.config)
        try:
            token = identity_token(ctx.config)
        except IdentityTokenMissingError as exc:
            log.warning("keyless store: %s; certificates are checked against the trusted root and the log, "
                        "not pinned to this workload's identity", exc)
            return cls(root)
        return cls(root, token.issuer, frozenset(expected_identities(token.claims)))

    def identity_regexp(self) -> str:
        """An anchored pattern matching exactly the expected identities (any when unknown)."""
        if not self.identities:
            return ".*"
        return "^(?:" + "|".join(re.escape(i) for i in sorted(self.identities)) + ")$"


def check_keyless(item: SignedPayload, trust: KeylessTrust, log_keys: list[LogKey]) -> str:
    """Check ``item``'s certificate and log entry (module docstring); returns the certificate's key PEM."""
    from chainmail.transparency import LogEntry, check_envelope_binding, check_signature_binding, verify_entry
    from chainmail.verify.certificates import check_identity

    key = item.payload.artifact.full_key
    if not item.cert.strip():
        raise WorkspaceError(f"signed payload for {key} has no certificate, but signing is keyless "
                             "(signers.x509.fulcio.enabled); refusing to store it")
    if item.tlog is None:
        raise WorkspaceError(f"signed payload for {key} has no transparency log entry, which keyless signing "
                             "requires; run sign again")
    try:
        entry = LogEntry.from_response(item.tlog)
        verify_entry(entry, log_keys)
        if item.payload.wrap:
            check_envelope_binding(entry, item.signature, item.cert)
        else:
            import hashlib

            check_signature_binding(entry, hashlib.sha256(item.payload.body).hexdigest(), item.signature, item.cert)
    except Error as exc:
        raise WorkspaceError(f"signed payload for {key}: its transparency log entry is not to be trusted ({exc}); "
                             "refusing to store it") from None
    at = datetime.fromtimestamp(entry.integrated_time, UTC)
    policy: dict[str, Any] = {"identity_regexp": trust.identity_regexp()}
    policy.update({"issuer": trust.issuer} if trust.issuer else {"issuer_regexp": ".*"})
    try:
        who = check_identity(item.cert, item.chain, trusted_root=trust.trusted_root, signing_time=at, **policy)
    except Error as exc:
        raise WorkspaceError(f"signed payload for {key}: its certificate is not this workload's Fulcio "
                             f"certificate ({exc}); refusing to store it") from None
    from chainmail.signing.keys import ssh_fingerprint

    if ssh_fingerprint(who.pem) != ssh_fingerprint(item.public_key):
        raise WorkspaceError(f"signed payload for {key}: its public key is not its certificate's; "
                             "refusing to store it")
    return who.pem
