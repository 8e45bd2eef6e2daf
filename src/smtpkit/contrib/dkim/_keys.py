"""Private keys for DKIM: PEM (PKCS#1 or PKCS#8 RSA, PKCS#8 Ed25519) or a raw seed.

Only the container is read here; dkimpy parses the RSA key itself and PyNaCl
the Ed25519 seed.  Nothing here puts key bytes into an error message.

RSA signatures are made by OpenSSL (the ``cryptography`` package) from the numbers
dkimpy parsed: dkimpy's own RSA is pure-Python arithmetic, about 8 ms for a
2048-bit signature against under 1 ms in OpenSSL, and that difference is most of
a signing mailer's cost per message.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..._exceptions import ConfigurationError

__all__ = ["Algorithm", "PrivateKey", "read_key"]

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
"""The signing algorithm: RSA-SHA256 (RFC 6376) or Ed25519-SHA256 (RFC 8463)."""

_PEM_RE: Final = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL
)
# RFC 8410 §7: an Ed25519 PKCS#8 key is this fixed prefix and the 32-byte seed.
_ED25519_PKCS8_PREFIX: Final = bytes.fromhex("302e020100300506032b657004220420")
_SEED_LEN: Final = 32
_MIN_RSA_BITS: Final = 1024  # RFC 8301 §3.2: shorter keys must not be used


@dataclass(frozen=True, slots=True)
class _Signature:
    signature: bytes


class _OpenSSLRSAKey:
    """An RSA key with the ``sign(digest)`` shape of a PyNaCl ``SigningKey``.

    dkimpy's ``gen_header`` hands the SHA-256 digest of the signed fields to
    ``key.sign()`` on its Ed25519 branch; this object signs that digest with
    RSASSA-PKCS1-v1_5 (RFC 6376 §3.3.1), which is what dkimpy's pure-Python RSA
    branch computes, in OpenSSL.  The ``repr`` never shows the key.
    """

    __slots__ = ("_key",)

    def __init__(self, numbers: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives.asymmetric import (  # noqa: PLC0415
            rsa,
        )

        public = rsa.RSAPublicNumbers(
            int(numbers["publicExponent"]), int(numbers["modulus"])
        )
        self._key = rsa.RSAPrivateNumbers(
            p=int(numbers["prime1"]),
            q=int(numbers["prime2"]),
            d=int(numbers["privateExponent"]),
            dmp1=int(numbers["exponent1"]),
            dmq1=int(numbers["exponent2"]),
            iqmp=int(numbers["coefficient"]),
            public_numbers=public,
        ).private_key()

    def sign(self, digest: bytes) -> _Signature:
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import (  # noqa: PLC0415
            padding,
            utils,
        )

        signature = self._key.sign(
            digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        return _Signature(signature)

    def __repr__(self) -> str:
        return "<RSA private key>"


class PrivateKey:
    """A parsed private key: its algorithm and the object dkimpy signs with.

    Parsed once: dkimpy's own ``sign()`` parses the key on every call, which is a
    third of the cost of an Ed25519 signature.  The ``repr`` never shows the key.
    """

    __slots__ = ("_parsed", "algorithm")

    def __init__(self, algorithm: Algorithm, parsed: object) -> None:
        self.algorithm: Algorithm = algorithm
        # RSA: an _OpenSSLRSAKey; Ed25519: a nacl SigningKey.  Both sign a digest.
        self._parsed = parsed

    @property
    def parsed(self) -> object:
        """The key as dkimpy's ``gen_header`` takes it."""
        return self._parsed

    def __repr__(self) -> str:
        return f"<PrivateKey {self.algorithm}>"


def read_key(data: object) -> PrivateKey:
    """Parse *data*: a PEM private key, or the base64 Ed25519 seed of dknewkey.

    Raises:
        ConfigurationError: It is not an unencrypted RSA (1024 bits or more) or
            Ed25519 private key.
    """
    if isinstance(data, str) and data.isascii():
        data = data.encode("ascii")  # PEM read as text
    if not isinstance(data, bytes | bytearray):
        msg = (
            f"a DKIM private key is PEM bytes or ASCII text, not {type(data).__name__}"
        )
        raise ConfigurationError(msg)
    data = bytes(data)
    match = _PEM_RE.search(data)
    if match is None:
        seed = _b64(data.strip())
        if seed is not None and len(seed) == _SEED_LEN:
            return _ed25519(seed)
        msg = "the DKIM private key is neither PEM nor a base64 Ed25519 seed"
        raise ConfigurationError(msg)
    label, der = match.group(1), _b64(match.group(2))
    if der is None:
        msg = f"the DKIM private key's PEM block ({label.decode()}) is not base64"
        raise ConfigurationError(msg)
    if label == b"PRIVATE KEY" and der.startswith(_ED25519_PKCS8_PREFIX):
        seed = der[len(_ED25519_PKCS8_PREFIX) :]
        if len(seed) != _SEED_LEN:
            msg = "the DKIM Ed25519 private key is truncated"
            raise ConfigurationError(msg)
        return _ed25519(seed)
    if label in (b"RSA PRIVATE KEY", b"PRIVATE KEY"):
        numbers = _checked_rsa(label, der)
        try:
            return PrivateKey("rsa-sha256", _OpenSSLRSAKey(numbers))
        except ValueError:
            # OpenSSL's checks (p*q = n...) failed; not chained, as above.
            msg = "the DKIM private key is not a valid RSA key (inconsistent numbers)"
            raise ConfigurationError(msg) from None
    msg = (
        f"the DKIM private key must be an unencrypted RSA or Ed25519 key "
        f"(BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY), not BEGIN {label.decode()}"
    )
    raise ConfigurationError(msg)


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _ed25519(seed: bytes) -> PrivateKey:
    from nacl.signing import SigningKey  # noqa: PLC0415 - the extra is imported on use

    return PrivateKey("ed25519-sha256", SigningKey(seed))


def _checked_rsa(label: bytes, der: bytes) -> dict[str, Any]:
    """A PEM block of *der* that dkimpy parses as an RSA key of 1024+ bits."""
    from dkim.crypto import (  # noqa: PLC0415 - the extra is imported on use
        UnparsableKeyError,
        parse_pem_private_key,
    )

    # Rebuilt in the one layout dkimpy finds (base64 between "--\n" and "\n--").
    pem = b"-----BEGIN %b-----\n%b\n-----END %b-----\n" % (
        label,
        base64.b64encode(der),
        label,
    )
    try:
        key = parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        # Not chained: a parser's message could quote key bytes.
        msg = "the DKIM private key is not a valid RSA key (PKCS#1 or PKCS#8)"
        raise ConfigurationError(msg) from None
    bits = int(key["modulus"]).bit_length()
    if bits < _MIN_RSA_BITS:
        msg = f"the DKIM RSA key has {bits} bits; RFC 8301 asks for 1024 or more"
        raise ConfigurationError(msg)
    return dict(key)
