"""Finer kinds of :class:`~chainmail.errors.TransparencyError` (the same exit code, 7), for callers that tell
them apart: verification maps an untrusted log to exit 28 and keeps a log that is down at 7."""

from __future__ import annotations

from chainmail.errors import TransparencyError


class LogUnavailableError(TransparencyError):
    """The transparency log could not be reached, or answered a read with an HTTP error."""


class UntrustedLogError(TransparencyError):
    """A checkpoint is signed by no log of the trusted root."""
