"""What verification returns: :class:`Verified` records, the layouts they come from, cosign's names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainmail._internal.encoding import b64encode, load_json
from chainmail.errors import InputError

COSIGN_SIGNATURE_TYPE = "cosign container image signature"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

#: Where each verified payload was found.
LAYOUTS = ("legacy-sig", "legacy-att", "bundle-referrer", "bundle-fallback-tag", "annotations", "file")

#: cosign's ``--type`` short names (``options.PredicateTypeMap``).
PREDICATE_TYPES: dict[str, str] = {
    "custom": "https://cosign.sigstore.dev/attestation/v1",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
}

#: Sigstore bundle media types (v0.1–v0.3), exactly as the bundle spec spells them.
BUNDLE_MEDIA_TYPES = frozenset({
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
})


@dataclass(frozen=True)
class SignedRun:
    """The run a signed statement is about, as far as the **signed payload** records it ("" = not recorded).

    Chains' formats record little: SLSA v1.0 the uid (``runDetails.metadata.invocationId``), SLSA v0.2
    nothing but times (``metadata.buildInvocationId`` is read when a producer sets it); the build type
    tells the kind; ``slsa-tekton`` PipelineRun statements embed their children, whose owner reference
    names the PipelineRun (name, namespace). ``parent_uid`` is a child TaskRun's
    ``tekton.dev/pipelineRunUID`` label as signed (``invocation.environment.labels`` /
    ``internalParameters.labels``).
    """

    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    parent_uid: str = ""

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": self.uid,
                "parentUid": self.parent_uid}


@dataclass(frozen=True)
class Verified:
    """One payload whose signature verified, and where it was found."""

    #: ``repo@sha256:…`` for images, ``<kind>/<namespace>/<name>`` for runs, a file path for the file store.
    #: For runs it names the object the signature was found on: the run's uid is bound to the signature,
    #: its namespace and name are not (see :attr:`signed_run`).
    ref: str
    #: One of :data:`LAYOUTS`.
    layout: str
    payload_type: str
    payload: bytes
    #: The parsed in-toto statement (None for simple-signing payloads).
    statement: dict[str, Any] | None = None
    #: SSH SHA256 fingerprint of the public key that verified (Chains' keyid format).
    key_id: str = ""
    #: Signing certificate PEM (keyless), else "".
    cert: str = ""
    #: The tag, referrer digest, annotation key or file the signature came from.
    location: str = ""
    #: Run attestations: the run identity the signed statement itself records (None for image payloads).
    signed_run: SignedRun | None = None
    #: The stored signature as read (a raw signature, or the DSSE envelope JSON) when the layout keeps it
    #: apart from the payload (run annotations, file and bucket stores); used to bind log entries.
    signature: bytes = field(default=b"", repr=False, compare=False)

    @property
    def predicate_type(self) -> str:
        return str((self.statement or {}).get("predicateType") or "")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ref": self.ref, "layout": self.layout, "location": self.location,
                               "payloadType": self.payload_type, "keyId": self.key_id}
        if self.statement is not None:
            doc["predicateType"] = self.predicate_type
            doc["statement"] = self.statement
        else:
            try:
                doc["payload"] = load_json(self.payload)
            except ValueError:
                doc["payload"] = b64encode(self.payload)
        if self.signed_run is not None:
            doc["signedRun"] = self.signed_run.to_json()
        if self.cert:
            doc["cert"] = self.cert
        return doc

    def summary(self) -> str:
        """One line for humans."""
        what = f"attestation {self.predicate_type}" if self.statement is not None else "signature"
        return f"verified {what} for {self.ref} [{self.layout}: {self.location}] key {self.key_id or '?'}"


def resolve_predicate_type(value: str | None) -> str | None:
    """cosign's ``--type``: a short name (``slsaprovenance1``…) or a full URI; None means any."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value in PREDICATE_TYPES:
        return PREDICATE_TYPES[value]
    if "://" in value or value.startswith("urn:"):
        return value
    raise InputError(f"--type '{value}': expected a predicate type URI or one of "
                     f"{', '.join(PREDICATE_TYPES)}")


def layouts_found(verified: list[Verified]) -> dict[str, int]:
    """How many verified payloads came from each layout."""
    out: dict[str, int] = {}
    for v in verified:
        out[v.layout] = out.get(v.layout, 0) + 1
    return out
