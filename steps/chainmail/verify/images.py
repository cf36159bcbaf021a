"""Image verification, as ``cosign verify`` and ``cosign verify-attestation`` do: one good signature is enough.

Every stored candidate (``.sig``/``.att`` layer, bundle referrer) is checked on its own: one that fails —
wrong key, wrong claims, malformed, nested too deep, too big — is recorded and the next one is tried
(:mod:`chainmail.verify.search`), so junk next to a valid signature never hides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chainmail.errors import NoMatchingSignatureError
from chainmail.verify.bundles import find_bundles, verify_bundle
from chainmail.verify.keys import load_keys
from chainmail.verify.legacy_tags import tag_layers, verify_att_layer, verify_sig_layer
from chainmail.verify.model import Verified, resolve_predicate_type
from chainmail.verify.oci import client_and_image, signature_repo
from chainmail.verify.search import Search, outcome, recorded

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.verify.certificates import IdentityPolicy
    from chainmail.verify.tlog import TlogCheck
    from chainmail.verify.trusted_root import TrustedRoot


def verify_image(ref: str, public_keys: list[str], ctx: Context, *, identity: IdentityPolicy | None = None,
                 trusted_root: TrustedRoot | str | Path | None = None, tlog: TlogCheck | None = None,
                 ) -> list[Verified]:
    """``cosign verify --key``: image signatures in ``.sig`` layers and signature bundles.

    With ``identity`` (keyless, ``--certificate-identity``/``--certificate-oidc-issuer``) no key is
    loaded: each signature's certificate must chain to ``trusted_root`` (None: production) and match.
    Key-signed signatures must carry a transparency log entry that verifies and binds them, as ``tlog``
    says (None: required, production log keys; see :mod:`chainmail.verify.tlog`).
    Raises :class:`TagNotFoundError`, :class:`NoSignatureError`, :class:`NoMatchingSignatureError`,
    :class:`NoCertificateError`, or a transparency log error (24-28) when that is why every one failed.
    """
    keys = load_keys(public_keys, ctx) if identity is None else []
    client, image = client_and_image(ref, ctx)
    target = f"{image.name}@{image.digest}"
    search = Search(target)
    repo = signature_repo(image, ctx)
    for index, layer, location in tag_layers(client, repo, image, "sig", search):
        where = f"{location} layer {index}"
        with recorded(search, where, "signature layer"):
            search.verified.append(verify_sig_layer(client, repo, image, layer, keys, identity, trusted_root,
                                                    target, where, tlog))
    for bundle, layout, location in find_bundles(client, image, search, want_signatures=True):
        with recorded(search, location, "bundle"):
            search.verified.append(verify_bundle(bundle, image, keys, identity, trusted_root, wanted=None,
                                                 signatures=True, target=target, layout=layout,
                                                 location=location, tlog=tlog))
    return outcome(search, "signatures")


def verify_attestation(ref: str, public_keys: list[str], ctx: Context,
                       predicate_type: str | None = None, *, identity: IdentityPolicy | None = None,
                       trusted_root: TrustedRoot | str | Path | None = None, tlog: TlogCheck | None = None,
                       ) -> list[Verified]:
    """``cosign verify-attestation --key [--type]``: ``.att`` layers and attestation bundles.

    ``identity``, ``trusted_root`` and ``tlog``: as for :func:`verify_image`. Statements of
    another predicate type are filtered out; when only those verified it is a NoMatchingSignatureError.
    """
    wanted = resolve_predicate_type(predicate_type)
    keys = load_keys(public_keys, ctx) if identity is None else []
    client, image = client_and_image(ref, ctx)
    target = f"{image.name}@{image.digest}"
    search = Search(target)
    repo = signature_repo(image, ctx)
    for index, layer, location in tag_layers(client, repo, image, "att", search):
        where = f"{location} layer {index}"
        with recorded(search, where, "attestation", by_type=True):
            search.verified.append(verify_att_layer(client, repo, image, layer, keys, identity, trusted_root,
                                                    wanted, target, where, tlog))
    for bundle, layout, location in find_bundles(client, image, search, want_signatures=False):
        with recorded(search, location, "attestation", by_type=True):
            search.verified.append(verify_bundle(bundle, image, keys, identity, trusted_root, wanted=wanted,
                                                 signatures=False, target=target, layout=layout,
                                                 location=location, tlog=tlog))
    if not search.verified and search.mismatched_types:
        found = ", ".join(sorted(set(search.mismatched_types)))
        raise NoMatchingSignatureError(
            f"{target}: no verified attestation has predicate type {wanted} (found {found})")
    return outcome(search, "attestations")
