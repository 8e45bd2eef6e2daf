"""``DKIMSigner``: a ``MessageSigner`` adding a DKIM-Signature field (RFC 6376)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

from typing_extensions import NotRequired, Self, TypedDict, Unpack

from ..._exceptions import ConfigurationError
from ..._signing import SigningError
from ._canon import canonicalize_body
from ._keys import Algorithm, PrivateKey, read_key

__all__ = ["DEFAULT_HEADERS", "Algorithm", "Canonicalization", "DKIMSigner"]

Canonicalization = Literal["relaxed", "simple"]
"""A canonicalization algorithm of RFC 6376 §3.4 (header and body each have one)."""

DEFAULT_HEADERS: Final[tuple[str, ...]] = (
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
"""The header fields signed when present (RFC 6376 §5.4.1's list, plus RFC 8058's
``List-Unsubscribe-Post``, which must be signed for one-click unsubscribe)."""

# RFC 6376 §5.4.1 / dkimpy: fields that relays add or rewrite, never signed.
_NEVER_SIGNED: Final = frozenset(
    {"return-path", "received", "comments", "keywords", "bcc", "resent-bcc"}
    | {"dkim-signature"}  # a signature never signs another one
)
_FIELD_NAME_RE: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_LINE_BREAK_RE: Final = re.compile(rb"\r\n(?![ \t])(?!\Z)")
_MAX_LINE: Final = 998  # RFC 5322 §2.1.1, octets without the CRLF


class SignerOptions(TypedDict):
    """The keyword arguments of ``DKIMSigner``, shared by its constructors."""

    domain: str
    selector: str
    headers: NotRequired[Iterable[str]]
    oversign: NotRequired[Iterable[str]]
    canonicalization: NotRequired[tuple[Canonicalization, Canonicalization]]


class DKIMSigner:
    """Sign each message with DKIM: pass it to a mailer as ``signer=``.

    The signature covers the exact bytes the mailer sends after DATA, and the
    header fields of *headers* that the message has; each field of *oversign*
    is signed once more than it occurs, so that a second one (a forged From)
    added on the way breaks the signature (RFC 6376 §8.15).  The key is parsed
    once, when the signer is made, and never appears in a repr, log or error.
    Safe to share between threads and mailers.

    Args:
        key: The private key: PEM (``BEGIN PRIVATE KEY`` for PKCS#8 RSA or
            Ed25519, ``BEGIN RSA PRIVATE KEY`` for PKCS#1), or the base64
            Ed25519 seed that dkimpy's ``dknewkey`` writes.  The algorithm
            follows from it.  Bytes, or the same as ASCII text.
        domain: The signing domain (``d=``), whose DNS holds the public key.
        selector: The selector (``s=``): the key's TXT record is at
            ``<selector>._domainkey.<domain>``.
        headers: The header fields to sign when present; ``From`` is required.
        oversign: The fields signed once more than they occur, whether or not
            *headers* lists them (``From`` by default).
        canonicalization: Header and body canonicalization (RFC 6376 §3.4).

    Raises:
        ConfigurationError: The key is not a usable RSA or Ed25519 private key,
            the domain or selector is not a DNS name, or a field name is bad
            (``From`` missing, or a field relays change such as ``Received``).
    """

    __slots__ = ("_canon", "_domain", "_headers", "_key", "_oversign", "_selector")

    def __init__(
        self,
        key: bytes | str,
        *,
        domain: str,
        selector: str,
        headers: Iterable[str] = DEFAULT_HEADERS,
        oversign: Iterable[str] = ("From",),
        canonicalization: tuple[Canonicalization, Canonicalization] = (
            "relaxed",
            "relaxed",
        ),
    ) -> None:
        self._domain = _dns_name(domain, "domain")
        self._selector = _dns_name(selector, "selector")
        self._headers = _field_names(headers, "headers")
        if b"from" not in self._headers:
            msg = "DKIMSigner(headers=...) must include From (RFC 6376 §5.4)"
            raise ConfigurationError(msg)
        self._oversign = _field_names(oversign, "oversign")
        self._canon = _canonicalization(canonicalization)
        self._key: PrivateKey = read_key(key)

    @classmethod
    def from_pem(cls, pem: bytes | str, **options: Unpack[SignerOptions]) -> Self:
        """A signer for the PEM private key *pem* (the arguments of the class)."""
        return cls(pem, **options)

    @classmethod
    def from_pem_file(cls, path: str | Path, **options: Unpack[SignerOptions]) -> Self:
        """A signer for the private key in the file *path* (read once, now).

        Raises:
            ConfigurationError: The file cannot be read, or holds no usable key.
        """
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            msg = f"cannot read the DKIM private key file {str(path)!r}: {exc.strerror}"
            raise ConfigurationError(msg) from None
        return cls(pem, **options)

    @property
    def domain(self) -> str:
        """The signing domain (``d=``), checked when the signer was made."""
        return self._domain

    @property
    def selector(self) -> str:
        """The selector (``s=``), checked when the signer was made."""
        return self._selector

    @property
    def algorithm(self) -> Algorithm:
        """``"rsa-sha256"`` or ``"ed25519-sha256"``, from the key."""
        return self._key.algorithm

    def __repr__(self) -> str:
        return f"<DKIMSigner {self._key.algorithm} d={self.domain} s={self.selector}>"

    def sign(self, message: bytes, /) -> bytes:
        """Return the ``DKIM-Signature`` field for *message* (CRLF lines).

        Raises:
            SigningError: The message has no From field, has a line over 998
                octets (relays split those, breaking the signature), or dkimpy
                cannot sign it (malformed header section).
        """
        import dkim  # noqa: PLC0415 - the extra is imported on use

        # A bare CR or LF ends a line too (the mailer sends CRLF only).
        longest = max(map(len, message.replace(b"\r", b"\n").split(b"\n")))
        if longest > _MAX_LINE:
            msg = (
                f"cannot DKIM-sign a message with a line of {longest} octets, over "
                f"the {_MAX_LINE} RFC 5322 §2.1.1 allows: relays split such lines"
            )
            raise SigningError(msg)

        try:
            return self._sign(dkim, message)
        except dkim.DKIMException as exc:
            msg = f"dkimpy cannot sign this message: {exc}"
            raise SigningError(msg) from exc

    def _sign(self, dkim: ModuleType, message: bytes) -> bytes:
        # dkimpy's DKIM.sign() without its key parsing (the key is parsed once):
        # the same fields, and its gen_header() hashes and signs.
        algorithm = self._key.algorithm.encode()
        signer = dkim.DKIM(message, signature_algorithm=algorithm, linesep=b"\r\n")
        lowered = [name.lower() for name, _ in signer.headers]
        if b"from" not in lowered:
            msg = "cannot DKIM-sign a message without a From header field"
            raise SigningError(msg)
        # Each present field of headers or oversign as often as it occurs, then
        # the oversigned ones once more: listed past its occurrences, a name
        # signs "no further field of this name" (RFC 6376 §5.4.2).
        include = [
            name for name in lowered if name in self._headers or name in self._oversign
        ]
        include += self._oversign
        policy = dkim.CanonicalizationPolicy.from_c_value(b"/".join(self._canon))
        # Not dkimpy's: its relaxed form is quadratic in a run of spaces.
        body = canonicalize_body(signer.body, self._canon[1])
        signer.hasher = hashlib.sha256  # both algorithms hash with SHA-256
        # gen_header() signs through key.sign(digest) on this branch; the RSA key
        # has that shape and signs in OpenSSL (_keys._OpenSSLRSAKey).  The a= tag
        # written is the field below, the key's own algorithm.
        signer.signature_algorithm = b"ed25519-sha256"
        domain = self.domain.encode()
        fields = [
            (b"v", b"1"),
            (b"a", algorithm),
            (b"c", policy.to_c_value()),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector.encode()),
            (b"t", str(int(time.time())).encode()),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(hashlib.sha256(body).digest())),
            # A placeholder as long as a signature, so that b= folds onto its own
            # lines and the fields before it keep their folding (as dkimpy does).
            (b"b", b"0" * 60),
        ]
        value: bytes = signer.gen_header(
            fields, tuple(include), policy, b"DKIM-Signature", self._key.parsed
        )
        if _LINE_BREAK_RE.search(value):
            # One field only: a CRLF not followed by white space starts another.
            msg = "DKIMSigner made more than one header field; nothing was sent"
            raise SigningError(msg)
        return b"DKIM-Signature: " + value


def _dns_name(value: object, what: str) -> str:
    if isinstance(value, str):
        labels = value.removesuffix(".").split(".")
        if all(_LABEL_RE.fullmatch(label) for label in labels):
            return value.removesuffix(".")
    msg = f"DKIMSigner({what}=...) must be an ASCII DNS name, not {value!r}"
    raise ConfigurationError(msg)


def _field_names(names: Iterable[object], what: str) -> tuple[bytes, ...]:
    # One name passed as a string is that name, not its letters.
    items = [names] if isinstance(names, str | bytes) else list(names)
    found: dict[bytes, None] = {}  # ordered, without repeats
    for name in items:
        if not isinstance(name, str) or not _FIELD_NAME_RE.fullmatch(name):
            msg = f"DKIMSigner({what}=...) holds a bad header field name: {name!r}"
            raise ConfigurationError(msg)
        if name.lower() in _NEVER_SIGNED:
            msg = (
                f"DKIMSigner({what}=...) lists {name}, which relays add or change "
                "(RFC 6376 §5.4.1): the signature would break"
            )
            raise ConfigurationError(msg)
        found[name.lower().encode()] = None
    return tuple(found)


def _canonicalization(value: object) -> tuple[bytes, bytes]:
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(part in ("relaxed", "simple") for part in value)
    ):
        return (value[0].encode(), value[1].encode())
    msg = (
        "DKIMSigner(canonicalization=...) is a (header, body) pair of "
        f"'relaxed' or 'simple', not {value!r}"
    )
    raise ConfigurationError(msg)
