"""Verify what Tekton Chains or chainmail stored: the ``verify`` step.

Example::

    keys = [Path("cosign.pub").read_text()]
    for v in verify_attestation("registry.example/app@sha256:…", keys, ctx, "slsaprovenance1"):
        print(v.layout, v.statement["predicateType"])

Every function returns payloads only after their signature verified, as :class:`Verified` records;
check ``payload_type`` before trusting ``payload``. Read the package top-down; dependencies point down:

- entry points: :mod:`~chainmail.verify.images` (``cosign verify`` / ``verify-attestation``: one good
  signature is enough), :mod:`~chainmail.verify.runs` (``verify run``: the run's *own* attestation,
  bound to its uid; children reported, never standing in) and :mod:`~chainmail.verify.file_store`;
- one module per signature layout: :mod:`~chainmail.verify.legacy_tags` (``.sig``/``.att`` tags),
  :mod:`~chainmail.verify.bundles` (Sigstore bundle referrers, incl. the fallback tag),
  :mod:`~chainmail.verify.run_annotations` (Chains' ``tekton`` storage), the file store above;
- :mod:`~chainmail.verify.binding` (is a signed payload about this run / image),
  :mod:`~chainmail.verify.search` (one failed candidate never hides a good one);
- the trust decision, :mod:`~chainmail.verify.trust`: :mod:`~chainmail.verify.keys`, keyless
  :mod:`~chainmail.verify.certificates` against a :mod:`~chainmail.verify.trusted_root`, the Rekor SET
  (:mod:`~chainmail.verify.rekor`), keyless bundles (:mod:`~chainmail.verify.sigstore_bundle`);
- the transparency log, :mod:`~chainmail.verify.tlog` (a key-signed signature's Rekor entry: trusted log,
  SET, inclusion proof, and that it binds this signature; ``--insecure-ignore-tlog``, ``--rekor-url``) and
  :mod:`~chainmail.verify.run_tlog` (a run's ``chains.tekton.dev/transparency`` entry);
- payload checks, :mod:`~chainmail.verify.claims` (simple-signing and in-toto claims), and
  :mod:`~chainmail.verify.model` (:class:`Verified`, layouts, cosign's names).

Errors (exit codes as cosign): :class:`NoSignatureError` (10) when nothing is stored,
:class:`TagNotFoundError` (11) when the image does not exist, :class:`NoMatchingSignatureError`
(12) when nothing verifies, :class:`NoCertificateError` (13) when an identity was asked for and
every stored signature failed for want of a certificate (they were made with a key); when every one
failed a transparency log check: :class:`TlogMissingError` (24), :class:`TlogMismatchError` (25),
:class:`TlogEntryInvalidError` (26), :class:`TlogInclusionError` (27), :class:`TlogUnknownLogError` (28).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chainmail.verify.binding import check_run_binding, signed_run_of
from chainmail.verify.bundles import bundle_envelope
from chainmail.verify.claims import check_simplesigning, check_statement
from chainmail.verify.file_store import verify_file_store
from chainmail.verify.images import verify_attestation, verify_image
from chainmail.verify.model import (
    BUNDLE_MEDIA_TYPES,
    COSIGN_SIGNATURE_TYPE,
    LAYOUTS,
    PREDICATE_TYPES,
    SIGN_PREDICATE,
    SignedRun,
    Verified,
    layouts_found,
    resolve_predicate_type,
)
from chainmail.verify.runs import is_child, verify_run


def apply_policy(path: Path, verified: list[Verified]) -> Any:
    """Evaluate a policy file on ``verified``; returns the ``PolicyResult`` (the caller prints, then
    raises :class:`PolicyViolationError` when it did not pass)."""
    from chainmail.policy import evaluate, load_policy

    return evaluate(load_policy(path), verified)


__all__ = [
    "BUNDLE_MEDIA_TYPES", "COSIGN_SIGNATURE_TYPE", "LAYOUTS", "PREDICATE_TYPES", "SIGN_PREDICATE", "SignedRun",
    "Verified", "apply_policy", "bundle_envelope", "check_run_binding", "check_simplesigning", "check_statement",
    "is_child", "layouts_found", "resolve_predicate_type", "signed_run_of", "verify_attestation",
    "verify_file_store", "verify_image", "verify_run",
]
