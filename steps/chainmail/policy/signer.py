"""Who signed: the identity and issuer of a Fulcio-style signing certificate."""

from __future__ import annotations


def cert_identity(pem: str) -> tuple[str, str]:
    """The (subject alternative name, OIDC issuer) of a Fulcio-style certificate; ``("", "")`` if none."""
    if not pem or "BEGIN CERTIFICATE" not in pem:
        return "", ""
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem.encode())
    except Exception:  # a malformed cert is reported by verify, not here
        return "", ""
    identity = ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.UniformResourceIdentifier),
                 *san.get_values_for_type(x509.RFC822Name)]
        identity = str(names[0]) if names else ""
    except x509.ExtensionNotFound:
        pass
    issuer = ""
    for oid, der in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        except x509.ExtensionNotFound:
            continue
        raw = getattr(ext, "value", b"")
        if der and len(raw) > 2 and raw[0] == 0x0C:  # DER UTF8String, short or long length form
            length_bytes = raw[1] - 0x80 if raw[1] & 0x80 else 0
            raw = raw[2 + length_bytes:]
        issuer = raw.decode("utf-8", "replace")
        break
    return identity, issuer
