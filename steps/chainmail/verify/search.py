"""Bookkeeping of a search through stored signatures: each candidate verifies or is recorded as a failure.

A candidate that fails — bad signature, wrong claims, malformed, too deep, too big — is recorded and
the search goes on, so one bad layer never hides a good one. Only :data:`FATAL` errors (the registry
refusing us or gone, unusable configuration) abort.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from chainmail.errors import (
    TLOG_ERRORS,
    ConfigError,
    Error,
    NoCertificateError,
    NoMatchingSignatureError,
    NoSignatureError,
    RegistryAuthError,
    RegistryTLSError,
    RegistryUnreachableError,
    TransparencyError,
    VerificationError,
)
from chainmail.verify.claims import PredicateMismatchError
from chainmail.verify.model import Verified

log = logging.getLogger("chainmail.verify")

#: Failures that abort verification instead of counting as a signature that did not verify: the
#: registry refusing us, gone or not trusted (TLS), the transparency log gone (``--rekor-url``), and
#: configuration that cannot work (a trusted root sigstore-python cannot load, sigstore-python missing
#: for a keyless bundle).
FATAL = (RegistryAuthError, RegistryTLSError, RegistryUnreachableError, TransparencyError, ConfigError)

#: Errors a malformed stored document can raise while it is picked apart; reported as a failed check.
#: (``load_json`` turns hostile nesting into a ValueError, so RecursionError is not among them.)
MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError, UnicodeDecodeError)


class Search:
    """What an image verification found: verified payloads, failure reasons, and how much was stored."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.found = 0
        self.verified: list[Verified] = []
        self.failures: list[str] = []
        #: What each failure was (the exception, or the text), in the order of :attr:`failures`.
        self.reasons: list[object] = []
        self.mismatched_types: list[str] = []

    def fail(self, where: str, reason: object) -> None:
        log.info("%s: %s", where, reason)
        self.failures.append(f"{where}: {reason}")
        self.reasons.append(reason)


@contextmanager
def recorded(search: Search, where: str, what: str, *, by_type: bool = False) -> Iterator[None]:
    """Check one stored candidate: a failure is recorded in ``search`` (``what``: how a malformed one is
    named) and the block skipped, except :data:`FATAL`, which aborts. ``by_type``: a statement of
    another predicate type is set aside in ``search.mismatched_types`` (cosign's ``--type`` filter)."""
    try:
        yield
    except FATAL:
        raise
    except (VerificationError, Error) as exc:
        if by_type and isinstance(exc, PredicateMismatchError):
            search.mismatched_types.append(str(exc))
        else:
            search.fail(where, exc)
    except MALFORMED as exc:
        search.fail(where, f"malformed {what} ({type(exc).__name__})")


def _shown(failures: list[str]) -> str:
    more = len(failures) - 3
    return "; ".join(failures[:3]) + (f"; … {more} more" if more > 0 else "")


def outcome(search: Search, what: str) -> list[Verified]:
    """cosign's rule for images: one verified payload is enough; else the right error for what was found."""
    if search.verified:
        return search.verified
    if not search.found:
        raise NoSignatureError(f"no {what} found for {search.image}")
    shown = _shown(search.failures)
    if search.reasons and all(isinstance(r, NoCertificateError) for r in search.reasons):
        first = search.reasons[0]
        raise NoCertificateError(f"none of the {search.found} {what} for {search.image} has a signing "
                                 f"certificate: {shown}", hint=getattr(first, "hint", None))
    tlog = tlog_failure(search.reasons)
    if tlog is not None:
        raise tlog(f"none of the {search.found} {what} for {search.image} verified: {shown}")
    raise NoMatchingSignatureError(f"none of the {search.found} {what} for {search.image} verified: {shown}")


def tlog_failure(reasons: list[object]) -> type[VerificationError] | None:
    """The transparency-log error class to exit with when every failure was a log check (else None): the
    first failure's class, so one unlogged signature next to one with a bad SET still says why."""
    first = reasons[0] if reasons else None
    if isinstance(first, VerificationError) and all(isinstance(r, TLOG_ERRORS) for r in reasons):
        return type(first)
    return None


def strict_outcome(verified: list[Verified], failures: list[str], what: str, kind: str) -> list[Verified]:
    """chainmail's own records (run annotations, file stores): *every* stored signature must verify."""
    if failures:
        total = len(failures) + len(verified)
        raise NoMatchingSignatureError(f"{len(failures)} of {total} signatures in {what} did not verify: "
                                       f"{_shown(failures)}")
    if not verified:
        raise NoSignatureError(f"no {kind} found in {what}")
    return verified
