"""Private keys for DKIM: PEM (PKCS#1 or PKCS#8 RSA, PKCS#8 Ed25519) or a raw seed.

Only the container is read here; dkimpy parses the RSA key itself and PyNaCl
the Ed25519 seed.  Nothing here puts key bytes into an error message.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final, Literal

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


class PrivateKey:
    """A parsed private key: its algorithm and the object dkimpy signs with.

    Parsed once: dkimpy's own ``sign()`` parses the key on every call, which is a
    third of the cost of an Ed25519 signature.  The ``repr`` never shows the key.
    """

    __slots__ = ("_parsed", "algorithm")

    def __init__(self, algorithm: Algorithm, parsed: object) -> None:
        self.algorithm: Algorithm = algorithm
        # RSA: dkimpy's dict of the key's numbers; Ed25519: a nacl SigningKey.
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
        return PrivateKey("rsa-sha256", _checked_rsa(label, der))
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


def _checked_rsa(label: bytes, der: bytes) -> object:
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
    return key
