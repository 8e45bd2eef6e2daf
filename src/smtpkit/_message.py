"""What users send: `Address`, `Attachment`, `Message`, and the SMTP `Envelope`.

Every model refuses CR, LF, NUL and the other line breaks wherever a value reaches a
header line or an SMTP command, so header and command injection is impossible by
construction.  Addresses are checked strictly and never repaired: text that would
have to be rewritten to become an address is refused, and the error names it.
Rendering to MIME lives in ``_mime``.
"""

from __future__ import annotations

import encodings.idna
import functools
import ipaddress
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._exceptions import InvalidMessageError

__all__ = ["Address", "AddressLike", "Attachment", "Envelope", "Message"]

# Every C0 control but TAB, DEL, and the Unicode line breaks: each can end a header
# line somewhere (``str.splitlines`` splits on VT, FF, FS, GS, RS, U+0085, U+2028 and
# U+2029, and compat32 folds with it), so none may reach a header or a command.
FORBIDDEN_CHARS: Final = frozenset(
    [chr(c) for c in range(0x20) if c != 0x09] + ["\x7f", "\x85", "\u2028", "\u2029"]
)
# RFC 5322 §3.6.8: a field name is printable US-ASCII except the colon.
_HEADER_NAME_RE: Final = re.compile(r"^[!-9;-~]+$")
_CONTENT_TYPE_RE: Final = re.compile(r"^[\w.+-]+/[\w.+-]+$", re.ASCII)
# Headers smtpkit writes from Message fields; setting them through ``headers`` would
# produce duplicates or a broken MIME structure.
_RESERVED_HEADERS: Final = frozenset(
    {
        "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
        "mime-version", "content-type", "content-transfer-encoding",
        "content-disposition", "list-unsubscribe", "list-unsubscribe-post",
    }
)  # fmt: skip
# RFC 5322 §3.2.3 specials: none belongs unquoted in an addr-spec's local part, and
# all but "." need quotes in a display name.
_SPECIALS: Final = frozenset('()<>[]:;@\\,"')
# The common case, checked in one step: a dot-atom local part and an ASCII host name
# whose labels fit RFC 1035.  Anything else takes the slow path of _check_mailbox.
_SIMPLE_MAILBOX_RE: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_MAX_LOCAL_PART: Final = 64  # RFC 5321 §4.5.3.1.1 (octets)
_MAX_DOMAIN: Final = 255  # RFC 5321 §4.5.3.1.2
_MAX_LABEL: Final = 63  # RFC 1035 §2.3.4
# RFC 5892 §2.1 LetterDigits, once lower-cased: what IDNA 2008 lets into a label.
_IDNA_CATEGORIES: Final = frozenset({"Ll", "Lo", "Lm", "Mn", "Mc", "Nd"})
_IDNA_HINT: Final = (
    "install smtpkit[idna] for IDNA 2008 (RFC 5891) or give the A-label (xn--...)"
)


def check_single_line(value: str, what: str) -> str:
    """Return *value*, or raise ``ValueError`` when it holds a control character.

    TAB is allowed (it is folding white space); everything in ``FORBIDDEN_CHARS``
    is refused, and the error shows the value with the character escaped.
    """
    if not FORBIDDEN_CHARS.isdisjoint(value):
        bad = next(ch for ch in value if ch in FORBIDDEN_CHARS)
        msg = f"{what} must not contain control characters or line breaks ({bad!r}): {value!r}"
        raise ValueError(msg)
    return value


@functools.cache
def _has_idna() -> bool:
    """Tell whether the optional ``idna`` package (``smtpkit[idna]``) can be imported.

    Imported on the first non-ASCII domain, never by ``import smtpkit``.
    """
    try:
        import idna  # noqa: F401, PLC0415 - optional extra, needed for IDNs only
    except ImportError:
        return False
    return True


def _ascii_domain(domain: str) -> str:
    """Return *domain* with its non-ASCII labels as A-labels, or raise ``ValueError``.

    With ``smtpkit[idna]`` this is IDNA 2008 with the UTS 46 mapping, as browsers do
    it (``faß.de`` is ``xn--fa-hia.de``).  Without it, the stdlib's IDNA 2003 codec
    is used only where it agrees with IDNA 2008 (see ``_ascii_domain_2003``).
    """
    if domain.isascii():
        return domain
    if not _has_idna():
        return _ascii_domain_2003(domain)
    import idna  # noqa: PLC0415 - already in sys.modules: _has_idna() imported it

    try:
        return idna.encode(domain, uts46=True, std3_rules=True).decode("ascii")
    except idna.IDNAError as exc:
        msg = f"domain {domain!r} is not a valid IDNA 2008 domain name: {exc}"
        raise ValueError(msg) from None


def _ascii_domain_2003(domain: str) -> str:
    """Encode *domain* with the stdlib's IDNA 2003 codec, refusing what it would remap.

    IDNA 2003 maps ``ß`` to ``ss`` and final sigma to sigma, drops ZWJ and ZWNJ, and folds
    compatibility forms (full-width letters, ``。`` as a dot), so the mail would go
    to a different domain than the one IDNA 2008 names.  A domain is accepted only
    when its A-labels decode back to it (lower-cased, NFC) and every non-ASCII
    character is an IDNA 2008 letter, mark or digit; anything else is refused.
    """
    pairs = [_encode_label_2003(label, domain) for label in domain.split(".")]
    reading = ".".join(unicode for _, unicode in pairs)
    if reading != unicodedata.normalize("NFC", domain.lower()):
        msg = (
            f"domain {domain!r} would be changed by IDNA 2003 encoding to "
            f"{reading!r}; {_IDNA_HINT}"
        )
        raise ValueError(msg)
    bad = next(
        (
            ch
            for ch in reading
            if not ch.isascii() and unicodedata.category(ch) not in _IDNA_CATEGORIES
        ),
        None,
    )
    if bad is not None:
        msg = (
            f"domain {domain!r} has {bad!r}, which IDNA 2008 (RFC 5892) does not "
            f"allow in a label; {_IDNA_HINT}"
        )
        raise ValueError(msg)
    return ".".join(a_label for a_label, _ in pairs)


def _encode_label_2003(label: str, domain: str) -> tuple[str, str]:
    """Return a label's IDNA 2003 A-label and the Unicode that A-label stands for."""
    if label.isascii():
        return label, label.lower()
    try:
        a_label = encodings.idna.ToASCII(label).decode("ascii")
        return a_label, encodings.idna.ToUnicode(a_label)
    except UnicodeError:
        msg = f"domain {domain!r} is not a valid internationalized domain name"
        raise ValueError(msg) from None


def _check_domain(domain: str, email: str) -> None:
    """Refuse a domain that is neither a host name nor an address literal.

    A host name is labels of letters, digits and inner hyphens (RFC 5321 §4.1.2;
    non-ASCII letters for IDNs) separated by ``.``; an address literal is
    ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3).
    """
    if domain.startswith("["):
        _check_address_literal(domain, email)
        return
    for label in domain.split("."):
        bad = next(
            (
                ch
                for ch in label
                if ch.isspace() or (ch.isascii() and not (ch.isalnum() or ch == "-"))
            ),
            None,
        )
        if bad is not None:
            msg = f"domain of {email!r} must be a host name, without {bad!r}"
            raise ValueError(msg)
        if not label or label.startswith("-") or label.endswith("-"):
            msg = (
                f"domain of {email!r} has an empty label or one that starts or "
                "ends with '-'"
            )
            raise ValueError(msg)
    ascii_domain = _ascii_domain(domain)
    if len(ascii_domain) > _MAX_DOMAIN:
        msg = f"domain of {email!r} is longer than {_MAX_DOMAIN} octets"
        raise ValueError(msg)
    if any(len(label) > _MAX_LABEL for label in ascii_domain.split(".")):
        msg = f"domain of {email!r} has a label longer than {_MAX_LABEL} octets"
        raise ValueError(msg)


def _check_address_literal(domain: str, email: str) -> None:
    """Refuse an address literal other than ``[IPv4]`` or ``[IPv6:...]``."""
    inner = domain[1:-1] if domain.endswith("]") else ""
    tag, colon, ipv6 = inner.partition(":")
    try:
        if colon and tag.lower() == "ipv6" and "%" not in ipv6:
            ipaddress.IPv6Address(ipv6)
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        msg = (
            f"domain of {email!r} must be a host name or an address literal "
            "like [192.0.2.1] or [IPv6:2001:db8::1]"
        )
        raise ValueError(msg) from None


def _check_mailbox(email: str) -> str:
    """Return *email* when it is exactly ``local@domain``; raise ``ValueError`` if not.

    Every way an address enters smtpkit (a string, ``Address(email=...)``, a
    ``(name, email)`` tuple, ``Envelope`` and ``envelope_sender``) ends here, and
    nothing is repaired.  The local part has no spaces, controls or RFC 5322
    specials; dots may sit anywhere (some providers issued ``a..b@`` addresses), and
    UTF-8 is allowed (RFC 6532).  Quoted local parts (``"john doe"@example.com``)
    are refused: they are rare, and smtplib re-parses every MAIL FROM and RCPT TO
    address with ``email.utils.parseaddr``, so they could not be sent unchanged.
    Exactly one ``@`` is allowed, so source routes (``@relay:user@host``) and
    ``a@b@c`` are refused too.
    """
    if len(email) <= _MAX_DOMAIN and _SIMPLE_MAILBOX_RE.fullmatch(email):
        return email  # so short that the domain cannot be too long either
    check_single_line(email, "email address")
    local, _, domain = email.partition("@")
    if not local or not domain or "@" in domain:
        msg = f"email address must be local@domain with exactly one '@': {email!r}"
        raise ValueError(msg)
    bad = next((ch for ch in local if ch.isspace() or ch in _SPECIALS), None)
    if bad is not None:
        quoted = " (quoted local parts are not supported)" if bad == '"' else ""
        msg = f"local part of {email!r} must not contain {bad!r}{quoted}"
        raise ValueError(msg)
    if len(local.encode()) > _MAX_LOCAL_PART:
        msg = f"local part of {email!r} is longer than {_MAX_LOCAL_PART} octets"
        raise ValueError(msg)
    _check_domain(domain, email)
    return email


def _parse_address(data: Any) -> Any:
    """Turn the accepted shorthand forms of an address into model fields."""
    if isinstance(data, str):
        return _parse_address_text(data)
    if _is_name_email_pair(data):
        return {"name": data[0] or None, "email": data[1]}
    return data


def _parse_address_text(text: str) -> dict[str, str | None]:
    """Split ``local@domain`` or ``Name <local@domain>`` without repairing anything.

    The name is a quoted string (``"Doe, John"``, with ``\\`` escapes) or a phrase
    without specials other than ``.``.  Surrounding white space is ignored; comments,
    a second address, or any text after ``>`` are refused, where
    ``email.utils.getaddresses`` would quietly drop or merge them.
    """
    check_single_line(text, "address")
    rest = text.strip()
    if "<" not in rest and not rest.startswith('"'):
        return {"email": rest, "name": None}  # checked by the email field
    if rest.startswith('"'):
        name, after = _split_quoted(rest, text)
        if after.startswith("@"):  # a quoted local part: the email check explains
            return {"email": rest, "name": None}
        rest = after.lstrip()
    else:
        phrase, _, after = rest.partition("<")
        name, rest = phrase.strip(), "<" + after
        bad = next((ch for ch in name if ch in _SPECIALS), None)
        if bad is not None:
            msg = f"display name in {text!r} must be quoted to contain {bad!r}"
            raise ValueError(msg)
    if not rest.startswith("<") or rest.find(">") != len(rest) - 1:
        msg = f"expected 'Name <local@domain>' and nothing after '>', got {text!r}"
        raise ValueError(msg)
    return {"email": rest[1:-1], "name": name or None}


def _split_quoted(text: str, whole: str) -> tuple[str, str]:
    """Return the unescaped content of the quoted string opening *text*, and the rest."""
    chars: list[str] = []
    escaped = False
    for index, ch in enumerate(text[1:], start=1):
        if escaped:
            chars.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return "".join(chars), text[index + 1 :]
        else:
            chars.append(ch)
    msg = f"unterminated quoted display name in {whole!r}"
    raise ValueError(msg)


def _quote_name(name: str) -> str:
    """Quote a display name where a phrase could not carry it unchanged."""
    if name == name.strip() and _SPECIALS.isdisjoint(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _envelope_address(email: str) -> str:
    """Check *email* and IDNA-encode its domain when the local part is ASCII.

    Then only a non-ASCII local part needs SMTPUTF8 (RFC 6531 §3.2).
    """
    _check_mailbox(email)
    local, _, domain = email.rpartition("@")
    return f"{local}@{_ascii_domain(domain)}" if local.isascii() else email


class Address(BaseModel):
    """A mailbox: an email address with an optional display name.

    Build it from ``"张三 <zs@example.com>"``, ``'"Doe, John" <jd@example.com>'``,
    ``("张三", "zs@example.com")``, ``"zs@example.com"`` or with keywords.  Every form
    is checked the same way and nothing is repaired: ``"ada@example.com extra"``,
    ``"ada @example.com"``, ``"a@b@c"`` and ``"Ada <a@x.org> trailing"`` raise
    ``ValueError`` (as ``pydantic.ValidationError``) naming the text.  Comments and
    quoted local parts are not supported.  An empty name is stored as ``None``.

    Unicode display names are RFC 2047 encoded on the wire, IDN domains are sent as
    A-labels (IDNA 2008 with ``smtpkit[idna]``; without it, a domain that IDNA 2003
    would change, like ``faß.de``, is refused), and a non-ASCII local part makes the
    message need SMTPUTF8 (RFC 6531).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    name: str | None = None

    def __init__(self, text: str | None = None, /, **fields: Any) -> None:
        """Build from one string (``Address("张三 <zs@example.com>")``) or keywords."""
        if text is None:
            super().__init__(**fields)
        else:
            if fields:
                msg = "pass either one address string or keywords, not both"
                raise TypeError(msg)
            # Validate the string itself, so errors are ValidationErrors as usual.
            self.__pydantic_validator__.validate_python(text, self_instance=self)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _parse_address(data)

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return _check_mailbox(value)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_single_line(value, "display name") or None

    @property
    def local_part(self) -> str:
        """The part before the last ``@``."""
        return self.email.rpartition("@")[0]

    @property
    def domain(self) -> str:
        """The part after the last ``@``, as given."""
        return self.email.rpartition("@")[2]

    @property
    def ascii_email(self) -> str:
        """The address with its domain IDNA-encoded (the local part is unchanged)."""
        return f"{self.local_part}@{_ascii_domain(self.domain)}"

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is non-ASCII, which only SMTPUTF8 can carry."""
        return not self.local_part.isascii()

    def dedupe_key(self) -> str:
        """Key for removing duplicates: local part as given, domain case-folded.

        RFC 5321 §2.4: the local part may be case-sensitive, the domain is not.
        """
        return f"{self.local_part}@{_ascii_domain(self.domain).lower()}"

    def __str__(self) -> str:
        """Render as ``Name <email>``, quoting the name where needed, so it parses back."""
        return f"{_quote_name(self.name)} <{self.email}>" if self.name else self.email


AddressLike = Address | str | tuple[str, str]
"""Anything accepted where an address is expected."""


def _is_name_email_pair(value: Any) -> bool:
    # A 2-tuple is (name, email) only when its first item has no "@", so it cannot be
    # an address: ("a@x.org", "b@x.org"), ("Tø <t@x.org>", "b@x.org") and even
    # ("a@b", "c@d") are two recipients.  A wrong guess then fails validation loudly;
    # the other guess would silently drop a recipient into a display name.
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
        and "@" not in value[0]
    )


def _as_tuple(value: Any) -> Any:
    if isinstance(value, str | Address | dict) or _is_name_email_pair(value):
        return (value,)
    return value


class Attachment(BaseModel):
    """A file attached to a message, or an inline image when ``content_id`` is set.

    Attributes:
        filename: The name mail clients show; non-ASCII names are encoded both as
            RFC 2231 and RFC 2047 so that common clients display them.
        content: The file's bytes.
        content_type: ``type/subtype``; guessed from ``filename`` when omitted.
        content_id: Makes this an inline part, referenced from HTML as
            ``<img src="cid:CONTENT_ID">``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    filename: str = Field(min_length=1)
    content: bytes
    content_type: str = ""
    content_id: str | None = None

    @field_validator("filename")
    @classmethod
    def _valid_filename(cls, value: str) -> str:
        return check_single_line(value, "filename")

    @field_validator("content_id")
    @classmethod
    def _valid_cid(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[!-;=?-~]+", value):
            msg = f"content_id must be printable ASCII without '<', '>' or spaces: {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _guess_type(self) -> Attachment:
        if not self.content_type:
            guessed = mimetypes.guess_type(self.filename, strict=False)[0]
            object.__setattr__(
                self, "content_type", guessed or "application/octet-stream"
            )
        elif not _CONTENT_TYPE_RE.fullmatch(self.content_type):
            msg = f"content_type must look like type/subtype: {self.content_type!r}"
            raise ValueError(msg)
        return self

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        filename: str | None = None,
        content_type: str = "",
        content_id: str | None = None,
    ) -> Attachment:
        """Read a file from disk; the filename defaults to the path's last part."""
        source = Path(path)
        return cls(
            filename=filename or source.name,
            content=source.read_bytes(),
            content_type=content_type,
            content_id=content_id,
        )

    @property
    def is_inline(self) -> bool:
        """True when the part is referenced from the HTML body by its Content-ID."""
        return self.content_id is not None


class Envelope(BaseModel):
    """The SMTP envelope: MAIL FROM and RCPT TO, independent of the headers.

    Attributes:
        sender: The reverse path; ``""`` is the null sender used for bounces.
        recipients: One or more forward paths, deduplicated in order.
        smtputf8: Ask for SMTPUTF8 even with ASCII addresses (for messages whose
            headers are raw UTF-8); non-ASCII addresses imply it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: str
    recipients: tuple[str, ...] = Field(min_length=1)
    smtputf8: bool = False

    @field_validator("sender")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        return value if value == "" else _envelope_address(value)

    @field_validator("recipients")
    @classmethod
    def _valid_recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_envelope_address(r) for r in value))

    @property
    def needs_smtputf8(self) -> bool:
        """True when an address is non-ASCII, which only SMTPUTF8 can carry."""
        return self.smtputf8 or not (
            self.sender.isascii() and all(r.isascii() for r in self.recipients)
        )

    def with_recipients(self, recipients: tuple[str, ...]) -> Envelope:
        """Return a copy for a subset of the recipients (used for retries)."""
        return self.model_copy(update={"recipients": recipients})


class Message(BaseModel):
    """An email to render with the stdlib ``email`` package and send.

    Attributes:
        sender: The ``From`` mailbox.
        to: ``To`` recipients.
        cc: ``Cc`` recipients.
        bcc: Recipients that get the message but never appear in its headers.
        reply_to: ``Reply-To`` mailboxes.
        subject: The subject; unicode is RFC 2047 encoded.
        text: The plain-text body.
        html: The HTML body; with ``text`` the message is multipart/alternative.
        attachments: Files and inline images.
        headers: Extra headers such as ``{"X-Campaign": "spring"}``.
        message_id: ``Message-ID`` with its angle brackets; generated when absent.
        date: ``Date``; the time of rendering when absent.
        list_unsubscribe: Unsubscribe URIs (``https:`` or ``mailto:``) for the
            ``List-Unsubscribe`` header.
        list_unsubscribe_one_click: Add ``List-Unsubscribe-Post`` (RFC 8058) so
            mail providers can offer a one-click unsubscribe button; needs an
            ``https:`` URI in ``list_unsubscribe``.
        envelope_sender: MAIL FROM (the bounce address) when it differs from
            ``sender``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: Address
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: Mapping[str, str] = Field(default_factory=dict)
    message_id: str | None = None
    date: datetime | None = None
    list_unsubscribe: tuple[str, ...] = ()
    list_unsubscribe_one_click: bool = False
    envelope_sender: str | None = None

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _one_is_many(cls, value: Any) -> Any:
        return _as_tuple(value)

    @field_validator("list_unsubscribe", mode="before")
    @classmethod
    def _one_uri_is_many(cls, value: Any) -> Any:
        # Not _as_tuple: a pair of URIs is two URIs, not a (name, email) address.
        return (value,) if isinstance(value, str) else value

    @field_validator("subject")
    @classmethod
    def _valid_subject(cls, value: str) -> str:
        return check_single_line(value, "subject")

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME_RE.fullmatch(name):
                msg = f"header name must be printable ASCII without ':' or spaces: {name!r}"
                raise ValueError(msg)
            if name.lower() in _RESERVED_HEADERS:
                msg = f"header {name!r} is set from a Message field; use that field instead"
                raise ValueError(msg)
            check_single_line(text, f"header {name}")
        return dict(value)

    @field_validator("message_id")
    @classmethod
    def _valid_message_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"<[!-;=?-~]+>", value):
            msg = f"message_id must look like <id@domain> in printable ASCII: {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("list_unsubscribe")
    @classmethod
    def _valid_unsubscribe(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            check_single_line(uri, "list_unsubscribe URI")
            if not uri.startswith(("https://", "http://", "mailto:")) or any(
                ch in uri for ch in "<> "
            ):
                msg = f"list_unsubscribe URIs must be http(s): or mailto: without '<>': {uri!r}"
                raise ValueError(msg)
        return value

    @field_validator("envelope_sender")
    @classmethod
    def _valid_envelope_sender(cls, value: str | None) -> str | None:
        return value if value in (None, "") else _check_mailbox(value)

    @model_validator(mode="after")
    def _consistent(self) -> Message:
        if self.list_unsubscribe_one_click and not any(
            uri.startswith("https://") for uri in self.list_unsubscribe
        ):
            msg = (
                "list_unsubscribe_one_click needs an https:// URI in list_unsubscribe "
                "(RFC 8058 §3.1)"
            )
            raise ValueError(msg)
        return self

    @property
    def recipients(self) -> tuple[Address, ...]:
        """To, Cc and Bcc without duplicates (domains compared case-insensitively)."""
        unique: dict[str, Address] = {}
        for address in (*self.to, *self.cc, *self.bcc):
            unique.setdefault(address.dedupe_key(), address)
        return tuple(unique.values())

    @property
    def needs_smtputf8(self) -> bool:
        """True when an address has a non-ASCII local part."""
        addresses = (self.sender, *self.to, *self.cc, *self.bcc, *self.reply_to)
        return (
            any(a.needs_smtputf8 for a in addresses)
            or not (self.envelope_sender or "").isascii()
        )

    def to_envelope(self) -> Envelope:
        """Derive the envelope: MAIL FROM from ``envelope_sender`` or ``sender``.

        Raises:
            InvalidMessageError: The message has no To, Cc or Bcc recipient.
        """
        recipients = tuple(a.ascii_email for a in self.recipients)
        if not recipients:
            msg = "message has no recipients: set to, cc or bcc, or pass an envelope"
            raise InvalidMessageError(msg)
        sender = (
            self.envelope_sender
            if self.envelope_sender is not None
            else self.sender.ascii_email
        )
        return Envelope(
            sender=sender, recipients=recipients, smtputf8=self.needs_smtputf8
        )
