"""A local stand-in for Fulcio and Rekor, for keyless verification tests.

:class:`LocalFulcio` is a certificate authority made here with ``cryptography`` (a root and an
intermediate) that issues short-lived leaves in Fulcio's profile -- SAN URI/email, the code-signing
EKU, the OIDC issuer extensions 1.3.6.1.4.1.57264.1.8 (DER UTF8String) and the deprecated .1.1 (raw
text) -- plus a Rekor log key that signs entry timestamps (SETs) and checkpoints, and a CT log key
that signs the SCTs embedded in leaves. :meth:`LocalFulcio.trusted_root` is the Sigstore
``trusted_root.json`` naming all three, for ``--trusted-root FILE``.

Example::

    fulcio = LocalFulcio.create()
    cert, key = fulcio.leaf()                       # valid from a minute ago, for 10 minutes
    signature = sign(key, payload)
    tlog = fulcio.rekor_entry(cert, payload, signature)   # a Rekor v1 response for SignedPayload.tlog
    fulcio.write_trusted_root(tmp_path / "trusted_root.json")
    bundle = fulcio.keyless_bundle("application/vnd.in-toto+json", statement)   # for sigstore-python

Legacy ``.sig``/``.att`` layers need only a leaf (and optionally a Rekor SET): ``chainmail.verify.certificates``
does not check SCTs there. :meth:`LocalFulcio.keyless_bundle` makes everything sigstore-python's
``Verifier`` checks: a leaf with an embedded SCT, and a Rekor v1 ``dsse`` entry with its inclusion
promise, an inclusion proof (a one-leaf tree) and a signed checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: A GitHub Actions workflow identity and its issuer, as Fulcio certifies them.
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
GITHUB = "https://token.actions.githubusercontent.com"

ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def spki(public_key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (what a trusted root's ``rawBytes`` and ``keyId`` use)."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(key: Any, data: bytes) -> bytes:
    """ECDSA P-256/SHA-256 over ``data`` (DER), as cosign signs."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def der_utf8(text: str) -> bytes:
    """A short DER UTF8String (Fulcio's .1.8 extension value)."""
    data = text.encode()
    if len(data) >= 128:
        raise ValueError("der_utf8 only encodes strings shorter than 128 bytes")
    return bytes([0x0C, len(data)]) + data


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chainmail.test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


_CA_USAGE = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
_LEAF_USAGE = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                            encipher_only=False, decipher_only=False)


@dataclass
class LocalFulcio:
    """A root, an intermediate and a Rekor log key; see the module docstring."""

    root: x509.Certificate
    root_key: Any
    intermediate: x509.Certificate
    intermediate_key: Any
    log_key: Any
    start: datetime
    ct_key: Any = None

    @classmethod
    def create(cls, name: str = "sigstore", start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
               days: int = 3650) -> LocalFulcio:
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA384())
        )
        inter_key = ec.generate_private_key(ec.SECP384R1())
        intermediate = (
            x509.CertificateBuilder().subject_name(_name(f"{name}-intermediate")).issuer_name(_name(name))
            .public_key(inter_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days - 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA384())
        )
        return cls(root, root_key, intermediate, inter_key, ec.generate_private_key(ec.SECP256R1()), start,
                   ec.generate_private_key(ec.SECP256R1()))

    # -- certificates ---------------------------------------------------------------------------------

    def leaf(self, *, uri: str | None = WORKFLOW, email: str | None = None, issuer: str | None = GITHUB,
             issuer_v1: str | None = None, start: datetime | None = None, minutes: int = 10,
             code_signing: bool = True, key: Any = None, serial: int | None = None,
             sct_list: bytes | None = None) -> tuple[x509.Certificate, Any]:
        """``(certificate, private key)``: a Fulcio-style leaf, valid from ``start`` (default: a minute ago).

        ``sct_list``: a TLS-encoded ``SignedCertificateTimestampList`` to embed (see :meth:`sct_leaf`).
        """
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = start or datetime.now(UTC) - timedelta(minutes=1)
        names: list[x509.GeneralName] = []
        if uri:
            names.append(x509.UniformResourceIdentifier(uri))
        if email:
            names.append(x509.RFC822Name(email))
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.intermediate.subject)
            .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(minutes=minutes))
            .add_extension(_LEAF_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
        )
        if code_signing:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                            critical=False)
        if issuer_v1 is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(ISSUER_V1), issuer_v1.encode()), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(ISSUER_V2), der_utf8(issuer)), critical=False)
        if sct_list is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(SCT_LIST), _der_octet_string(sct_list)),
                critical=False)
        return builder.sign(self.intermediate_key, hashes.SHA384()), key

    def sct_leaf(self, *, when: datetime, **leaf: Any) -> tuple[x509.Certificate, Any]:
        """A leaf valid from a minute before ``when``, with an SCT by the CT log key (RFC 6962 precert).

        The precertificate is the leaf without its SCT extension, so the leaf is built twice with the
        same key, serial and validity: once to learn that TBS, once with the SCT over it.
        """
        key = leaf.pop("key", None) or ec.generate_private_key(ec.SECP256R1())
        leaf.setdefault("start", when - timedelta(minutes=1))
        serial = x509.random_serial_number()
        draft, _ = self.leaf(key=key, serial=serial, sct_list=_sct_list(self.ct_log_id, when, b"\0" * 72), **leaf)
        tbs = draft.tbs_precertificate_bytes
        issuer_key_hash = hashlib.sha256(spki(self.intermediate_key.public_key())).digest()
        signed = (b"\x00\x00" + _millis(when) + b"\x00\x01" + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
                  + b"\x00\x00")
        cert, _ = self.leaf(key=key, serial=serial,
                            sct_list=_sct_list(self.ct_log_id, when, sign(self.ct_key, signed)), **leaf)
        if cert.tbs_precertificate_bytes != tbs:
            raise AssertionError("the precertificate changed between the two builds")
        return cert, key

    def chain_pem(self) -> str:
        """cosign's ``dev.sigstore.cosign/chain`` value: the intermediate, then the root."""
        return pem(self.intermediate) + pem(self.root)

    # -- trusted root ---------------------------------------------------------------------------------

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(spki(self.log_key.public_key())).digest()

    @property
    def ct_log_id(self) -> bytes:
        return hashlib.sha256(spki(self.ct_key.public_key())).digest()

    def trusted_root(self) -> dict[str, Any]:
        """A ``trusted_root.json`` (v0.1) with this CA as Fulcio and this log key as Rekor."""
        since = self.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "mediaType": TRUSTED_ROOT_TYPE,
            "tlogs": [{
                "baseUrl": "https://rekor.chainmail.test", "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki(self.log_key.public_key())),
                              "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": since}},
                "logId": {"keyId": b64(self.log_id)},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "chainmail.test", "commonName": "sigstore"},
                "uri": "https://fulcio.chainmail.test",
                "certChain": {"certificates": [{"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                                               for c in (self.intermediate, self.root)]},
                "validFor": {"start": since},
            }],
            "ctlogs": [{
                "baseUrl": "https://ctfe.chainmail.test", "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki(self.ct_key.public_key())),
                              "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": since}},
                "logId": {"keyId": b64(self.ct_log_id)},
            }],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2))
        return path

    # -- Rekor ----------------------------------------------------------------------------------------

    def rekor_entry(self, cert: x509.Certificate, payload: bytes, signature: bytes, *,
                    when: datetime | None = None, kind: str = "hashedrekord",
                    log_index: int = 7) -> dict[str, Any]:
        """A Rekor v1 ``POST /api/v1/log/entries`` response (``{uuid: entry}``) with a SET by the log key.

        ``hashedrekord``: ``payload`` is the signed blob; ``dsse``: ``payload`` is the envelope's payload
        and ``signature`` the envelope's signature.
        """
        verifier = b64(pem(cert).encode())
        digest = hashlib.sha256(payload).hexdigest()
        if kind == "hashedrekord":
            spec: dict[str, Any] = {"data": {"hash": {"algorithm": "sha256", "value": digest}},
                                    "signature": {"content": b64(signature), "publicKey": {"content": verifier}}}
        elif kind == "dsse":
            spec = {"payloadHash": {"algorithm": "sha256", "value": digest},
                    "envelopeHash": {"algorithm": "sha256", "value": "00" * 32},
                    "signatures": [{"signature": b64(signature), "verifier": verifier}]}
        else:
            raise ValueError(f"unsupported Rekor kind {kind!r}")
        body = b64(json.dumps({"apiVersion": "0.0.1", "kind": kind, "spec": spec},
                              separators=(",", ":"), sort_keys=True).encode())
        entry: dict[str, Any] = {"body": body, "integratedTime": int((when or datetime.now(UTC)).timestamp()),
                                 "logID": self.log_id.hex(), "logIndex": log_index}
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        entry["verification"] = {"signedEntryTimestamp": b64(sign(self.log_key, canonical))}
        uuid = hashlib.sha256(base64.b64decode(body)).hexdigest()
        return {uuid: entry}

    # -- Sigstore bundles -----------------------------------------------------------------------------

    def keyless_bundle(self, payload_type: str, payload: bytes, *, when: datetime | None = None,
                       **leaf: Any) -> dict[str, Any]:
        """A v0.3 Sigstore bundle: ``payload`` in a DSSE envelope signed by a fresh SCT-bearing leaf, logged
        (``dsse`` 0.0.1) at ``when`` (default: now) with inclusion promise, proof and checkpoint."""
        from chainmail.signing.dsse import pae

        when = (when or datetime.now(UTC)).replace(microsecond=0)
        cert, key = self.sct_leaf(when=when, **leaf)
        sig = sign(key, pae(payload_type, payload))
        envelope = {"payload": b64(payload), "payloadType": payload_type, "signatures": [{"sig": b64(sig)}]}
        body = json.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256",
                             "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": b64(sig), "verifier": b64(pem(cert).encode())}]}},
            separators=(",", ":")).encode()
        integrated = int(when.timestamp())
        root_hash = hashlib.sha256(b"\x00" + body).digest()  # RFC 6962 leaf hash: the root of a one-leaf tree
        note = f"rekor.chainmail.test - 1\n1\n{b64(root_hash)}\n"
        note_sig = b64(self.log_id[:4] + sign(self.log_key, note.encode()))
        checkpoint = f"{note}\n\u2014 rekor.chainmail.test {note_sig}\n"
        promise = json.dumps({"body": b64(body), "integratedTime": integrated, "logID": self.log_id.hex(),
                              "logIndex": 0}, sort_keys=True, separators=(",", ":")).encode()
        return {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [{
                    "logIndex": "0", "logId": {"keyId": b64(self.log_id)},
                    "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": str(integrated),
                    "inclusionPromise": {"signedEntryTimestamp": b64(sign(self.log_key, promise))},
                    "inclusionProof": {"logIndex": "0", "rootHash": b64(root_hash), "treeSize": "1", "hashes": [],
                                       "checkpoint": {"envelope": checkpoint}},
                    "canonicalizedBody": b64(body),
                }],
            },
            "dsseEnvelope": envelope,
        }


#: The X.509 extension holding embedded SCTs.
SCT_LIST = "1.3.6.1.4.1.11129.2.4.2"


def _millis(when: datetime) -> bytes:
    return int(when.timestamp() * 1000).to_bytes(8, "big")


def _sct_list(log_id: bytes, when: datetime, signature: bytes) -> bytes:
    """RFC 6962 ``SignedCertificateTimestampList`` with one v1 SCT (SHA-256, ECDSA), TLS-encoded."""
    sct = (b"\x00" + log_id + _millis(when) + b"\x00\x00"  # version v1, log id, timestamp, no extensions
           + b"\x04\x03" + len(signature).to_bytes(2, "big") + signature)
    entries = len(sct).to_bytes(2, "big") + sct
    return len(entries).to_bytes(2, "big") + entries


def _der_octet_string(data: bytes) -> bytes:
    n = len(data)
    if n < 128:
        return b"\x04" + bytes([n]) + data
    size = (n.bit_length() + 7) // 8
    return b"\x04" + bytes([0x80 | size]) + n.to_bytes(size, "big") + data
