"""moto's server (``moto[server]``) with AWS KMS's ``MessageType=DIGEST`` semantics restored.

moto 5 accepts ``MessageType`` on ``Sign`` but ignores it: it always hashes ``Message`` again, so a
digest is signed as ``sha256(digest)``. Real KMS signs a DIGEST message as the pre-computed hash
and rejects one whose length does not match the algorithm. This wrapper patches exactly that (and
nothing else) before handing over to ``moto.server.main``; chainmail's own self-check of every KMS
signature is what found the gap. Usage: ``python moto_kms_server.py -H 127.0.0.1 -p PORT [-c CERT -k KEY]``.
"""

from __future__ import annotations

import sys
import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from moto.kms import responses
from moto.kms import utils as kms_utils
from moto.kms.exceptions import ValidationException

_state = threading.local()
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def _hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return _HASHES[algorithm.rsplit("_", 1)[1]]()


_orig_response_sign = responses.KmsResponse.sign


def _response_sign(self: responses.KmsResponse) -> str:
    _state.digest = self._get_param("MessageType") == "DIGEST"
    if _state.digest:
        message = self._get_param("Message")  # already base64-decoded by moto's request parsing
        message = message.encode() if isinstance(message, str) else message
        if len(message) != _hash_of(self._get_param("SigningAlgorithm")).digest_size:
            raise ValidationException("Digest is invalid length for algorithm " + self._get_param("SigningAlgorithm"))
    try:
        return _orig_response_sign(self)
    finally:
        _state.digest = False


_orig_ec_sign = kms_utils.ECDSAPrivateKey.sign
_orig_rsa_sign = kms_utils.RSAPrivateKey.sign


def _ec_sign(self: kms_utils.ECDSAPrivateKey, message: bytes, signing_algorithm: str) -> bytes:
    if not getattr(_state, "digest", False):
        return _orig_ec_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
    return self.private_key.sign(message, ec.ECDSA(utils.Prehashed(_hash_of(signing_algorithm))))


def _rsa_sign(self: kms_utils.RSAPrivateKey, message: bytes, signing_algorithm: str) -> bytes:
    if not getattr(_state, "digest", False):
        return _orig_rsa_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms())
    digest = _hash_of(signing_algorithm)
    if "PSS" in signing_algorithm:
        pad: padding.AsymmetricPadding = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    else:
        pad = padding.PKCS1v15()
    return self.private_key.sign(message, pad, utils.Prehashed(digest))


responses.KmsResponse.sign = _response_sign
kms_utils.ECDSAPrivateKey.sign = _ec_sign
kms_utils.RSAPrivateKey.sign = _rsa_sign

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
