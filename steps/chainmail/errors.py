"""Typed errors, each with its own exit code.

Library code raises these and never prints or exits; ``chainmail._cli.main`` catches
:class:`Error` once, writes ``Error: <message>`` to stderr and exits with the class's
code. Messages are one line, name the input, key or reference at fault, and never
contain a secret. The codes for verification failures follow ``cosign verify`` (10-13)
so scripts written for cosign keep working.
"""

from __future__ import annotations

from typing import ClassVar


class Error(Exception):
    """Base of every chainmail error."""

    exit_code: ClassVar[int] = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """The one-line message shown to users (plus a hint line when there is one)."""
        text = " ".join(str(self).split())
        return f"{text}\nHint: {self.hint}" if self.hint else text


class VerificationError(Error):
    """A signature, key, claim or policy did not verify."""

    exit_code = 1


class PolicyViolationError(VerificationError):
    """The provenance verified, but one or more policy rules failed."""

    exit_code = 14


class NoSignatureError(VerificationError):
    """Nothing is stored for the artifact (cosign's ImageWithoutSignature)."""

    exit_code = 10


class TagNotFoundError(VerificationError):
    """The image tag or digest to verify does not exist (cosign's NonExistentTag)."""

    exit_code = 11


class NoMatchingSignatureError(VerificationError):
    """Signatures exist but none verifies with the given key or identity."""

    exit_code = 12


class NoCertificateError(VerificationError):
    """An identity policy needs a certificate and the signature has none."""

    exit_code = 13


class ConfigError(Error):
    """Unknown or invalid chains-config key or value, or a missing optional library."""

    exit_code = 3


class InputError(Error):
    """Malformed run object, workspace file or reference."""

    exit_code = 4


class RunNotFinishedError(InputError):
    """The run has not completed yet."""

    exit_code = 15


class WorkspaceError(InputError):
    """A workspace file is missing or was changed after the step that wrote it."""

    exit_code = 16


class KeyMaterialError(Error):
    """Key missing, wrong password, unsupported key type."""

    exit_code = 5


class SigningError(Error):
    """The signer (KMS, Fulcio) failed."""

    exit_code = 6


class TransparencyError(Error):
    """The transparency log rejected the entry or could not be reached."""

    exit_code = 7


class StorageError(Error):
    """A storage backend (registry, annotations, files) failed."""

    exit_code = 8


class RegistryAuthError(StorageError):
    """The registry refused our credentials (401/403)."""

    exit_code = 17


class RegistryPushDeniedError(RegistryAuthError):
    """The registry accepted our login but refused the push (403, or a token without ``push``)."""

    exit_code = 34


class RegistryTLSError(StorageError):
    """The registry's (or its token service's) TLS certificate is not trusted or not for its host."""

    exit_code = 35


class RegistryUnreachableError(StorageError):
    """The registry could not be reached (connection refused, DNS, timeout)."""

    exit_code = 18


class ClusterError(Error):
    """The Kubernetes API failed: forbidden, not found, conflict after retries."""

    exit_code = 9


class ClusterAuthError(ClusterError):
    """The Kubernetes API refused our credentials (401/403)."""

    exit_code = 19


class ConflictError(ClusterError):
    """The object changed under us (HTTP 409) and the retries ran out."""

    exit_code = 21


class NotFoundError(ClusterError):
    """The named object does not exist in the cluster."""

    exit_code = 20


#: Exit code for bugs: anything that is not an :class:`Error` (BSD's EX_SOFTWARE).
EXIT_BUG = 70


def all_errors() -> list[type[Error]]:
    """Every error class, base first; used to document and test the exit codes."""
    seen: list[type[Error]] = []
    stack: list[type[Error]] = [Error]
    while stack:
        cls = stack.pop(0)
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


class ImageNotFoundError(Error):
    """A run names an image digest its registry does not hold; nothing of the run is signed."""

    exit_code = 22


class AnnotationsTooLargeError(StorageError):
    """``tekton`` storage would push a run's annotations past Kubernetes' 256 KiB limit; nothing was written."""

    exit_code = 23


class IdentityTokenMissingError(KeyMaterialError):
    """Keyless signing: the OIDC token file (projected service-account token) is missing or unreadable."""

    exit_code = 30


class IdentityTokenInvalidError(KeyMaterialError):
    """Keyless signing: the OIDC token is malformed, expired, not yet valid, or not for audience ``sigstore``."""

    exit_code = 31


class FulcioRefusedError(SigningError):
    """Keyless signing: Fulcio refused the certificate request (its answer names why)."""

    exit_code = 32


class FulcioUnreachableError(SigningError):
    """Keyless signing: Fulcio could not be reached, or kept failing, until the retry deadline."""

    exit_code = 33


class TlogMissingError(NoMatchingSignatureError):
    """A key-signed signature carries no transparency-log entry (and ``--insecure-ignore-tlog`` was not given)."""

    exit_code = 24


class TlogMismatchError(NoMatchingSignatureError):
    """The log entry is not about this signature (payload, signature or key differ), or was integrated
    outside the signing certificate's validity."""

    exit_code = 25


class TlogEntryInvalidError(NoMatchingSignatureError):
    """The log entry is malformed, or its signed entry timestamp (SET) does not verify with the log's key."""

    exit_code = 26


class TlogInclusionError(NoMatchingSignatureError):
    """The log entry's inclusion proof or signed checkpoint does not verify."""

    exit_code = 27


class TlogUnknownLogError(NoMatchingSignatureError):
    """The log entry comes from a log whose key is not in the trusted root (or was not valid then)."""

    exit_code = 28


#: The transparency-log verification failures, each with its own exit code (24-28); they are signatures
#: that did not verify, so each is a :class:`NoMatchingSignatureError`.
TLOG_ERRORS: tuple[type[VerificationError], ...] = (
    TlogMissingError, TlogMismatchError, TlogEntryInvalidError, TlogInclusionError, TlogUnknownLogError)
