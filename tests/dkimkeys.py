"""DKIM test keys (made at test time with cryptography) and dkimpy verification."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

DOMAIN = "example.com"
SELECTOR = "sel"


@dataclass(frozen=True)
class TestKey:
    """A private key in the forms DKIMSigner reads, and its DNS TXT record."""

    __test__ = False  # not a pytest test class

    algorithm: str
    pem: bytes  # PKCS#8
    traditional: bytes  # PKCS#1 for RSA; the raw base64 seed for Ed25519
    txt: str  # the record at <selector>._domainkey.<domain>


@functools.cache
def rsa_key(bits: int = 2048) -> TestKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return TestKey(
        "rsa-sha256",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}",
    )


@functools.cache
def ed25519_key() -> TestKey:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    seed = key.private_bytes(
        raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return TestKey(
        "ed25519-sha256",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        base64.b64encode(seed) + b"\n",
        f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}",
    )


def verify(data: bytes, key: TestKey) -> bool:
    """True when dkimpy verifies *data*'s first DKIM-Signature with *key*'s record."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return key.txt.encode()

    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def signed_fields(data: bytes) -> list[bytes]:
    """The h= tag of *data*'s DKIM-Signature: the signed field names, lower case."""
    signature = dkim.DKIM(data)
    [(_, value)] = [(n, v) for n, v in signature.headers if n == b"DKIM-Signature"]
    tags = dkim.util.parse_tag_value(value)
    return [name.strip().lower() for name in tags[b"h"].split(b":")]
