"""`Address`: one mailbox, parsed strictly, and the checks every header value gets.

Nothing here repairs input: text that would have to be rewritten to become an
address (trailing words, a second ``@``, a source route, a comment) is refused and
the error names it.  Domains are IDNA-encoded without ever changing which domain
is meant (IDNA 2008 with the optional ``idna`` package; otherwise anything IDNA 2003
would remap is refused).  ``FORBIDDEN_CHARS`` is the one definition of what may not
appear in a header value or an SMTP command argument.
"""

from __future__ import annotations

import encodings.idna
import functools
import ipaddress
import re
import unicodedata
from typing import Any, Final, TypeAlias, overload

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ._positional import validates_like_base_init

__all__ = [
    "FORBIDDEN_CHARS",
    "Address",
    "AddressLike",
    "ascii_domain",
    "check_mailbox",
    "check_single_line",
    "envelope_address",
    "is_name_email_pair",
]

# Every C0 control but TAB, DEL, and the Unicode line breaks: each can end a header
# line somewhere (``str.splitlines`` splits on VT, FF, FS, GS, RS, U+0085, U+2028 and
# U+2029, and compat32 folds with it), so none may reach a header or a command.
FORBIDDEN_CHARS: Final = frozenset(
    [chr(c) for c in range(0x20) if c != 0x09] + ["\x7f", "\x85", "\u2028", "\u2029"]
)
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
# Letters, marks and digits that IDNA 2008 reads differently or not at all although
# IDNA 2003 takes them: the default-ignorable ones UTS 46 drops (variation selectors,
# Hangul fillers), conjoining Hangul jamo (RFC 5892 §2.9), combining marks for
# symbols, musical notation, and the vertical kana and ideographic repeat marks.
_NOT_IDNA_2008: Final = (
    (0x034F, 0x034F), (0x1100, 0x11FF), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x20D0, 0x20FF), (0x302E, 0x302F), (0x3031, 0x3035), (0x303B, 0x303B),
    (0x3164, 0x3164), (0xA960, 0xA97F), (0xD7B0, 0xD7FF), (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0), (0x1D100, 0x1D24F), (0xE0100, 0xE01EF),
)  # fmt: skip
_IDNA_CATEGORIES: Final = frozenset({"Ll", "Lo", "Lm", "Mn", "Mc", "Nd"})
_IDNA_HINT: Final = (
    "install pysmtpkit[idna] for IDNA 2008 (RFC 5891) or give the A-label (xn--...)"
)


_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_LDH_LABEL_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", re.ASCII)


def check_single_line(value: str, what: str) -> str:
    """Return *value*, or raise ``ValueError`` when it holds a control character.

    TAB is allowed (it is folding white space); everything in ``FORBIDDEN_CHARS``
    is refused, and the error shows the value with the character escaped.
    """
    if not FORBIDDEN_CHARS.isdisjoint(value):
        bad = next(ch for ch in value if ch in FORBIDDEN_CHARS)
        msg = f"{what} must not contain control characters or line breaks ({bad!r}): {value!r}"
        raise ValueError(msg)
    if not value.isascii() and _SURROGATE_RE.search(value):
        # A lone surrogate cannot be encoded at all: it would fail at render time.
        msg = f"{what} must not contain lone surrogates (invalid Unicode): {value!r}"
        raise ValueError(msg)
    return value


@functools.cache
def _has_idna() -> bool:
    """Tell whether the optional ``idna`` package (``pysmtpkit[idna]``) can be imported.

    Imported on the first non-ASCII domain, never by ``import smtpkit``.
    """
    try:
        import idna  # noqa: F401, PLC0415 - optional extra, needed for IDNs only
    except ImportError:
        return False
    return True


def ascii_domain(domain: str) -> str:
    """Return *domain* with its non-ASCII labels as A-labels, or raise ``ValueError``.

    With ``pysmtpkit[idna]`` this is IDNA 2008 with the UTS 46 mapping, as browsers do
    it (``faß.de`` is ``xn--fa-hia.de``).  Without it, the stdlib's IDNA 2003 codec
    is used only where it agrees with IDNA 2008 (see ``_ascii_domain_2003``).
    """
    if domain.isascii():
        return domain
    encoded = (
        _ascii_domain_2003(domain) if not _has_idna() else _ascii_domain_2008(domain)
    )
    if not all(_LDH_LABEL_RE.fullmatch(label) for label in encoded.split(".")):
        # NFC can turn a letter into ASCII punctuation (U+037E is ";").
        msg = f"domain {domain!r} is not a host name once encoded: {encoded!r}"
        raise ValueError(msg)
    return encoded


def _ascii_domain_2008(domain: str) -> str:
    """IDNA 2008 with UTS 46 (``pysmtpkit[idna]``), refusing what the mapping changes.

    UTS 46 also drops invisible characters (U+200B, a soft hyphen) and folds
    compatibility forms; sending to the result would send to an address that was
    never written.  Only a change of case (and NFC) is accepted.
    """
    import idna  # noqa: PLC0415 - already in sys.modules: _has_idna() imported it

    try:
        encoded = idna.encode(domain, uts46=True, std3_rules=True).decode("ascii")
        reading = idna.decode(encoded)
    except idna.IDNAError as exc:
        msg = f"domain {domain!r} is not a valid IDNA 2008 domain name: {exc}"
        raise ValueError(msg) from None
    if reading != unicodedata.normalize("NFC", domain.lower()):
        msg = (
            f"domain {domain!r} would be changed by IDNA encoding to {reading!r}; "
            "write the domain as it is meant"
        )
        raise ValueError(msg)
    return encoded


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
    for label in reading.split("."):
        problem = _label_problem_2003(label)
        if problem is not None:
            msg = f"domain {domain!r} {problem}; {_IDNA_HINT}"
            raise ValueError(msg)
    return ".".join(a_label for a_label, _ in pairs)


def _label_problem_2003(label: str) -> str | None:
    """Why the stdlib's reading of *label* might not be IDNA 2008's, or None.

    Only what both standards read the same way passes: letters, marks and digits
    (RFC 5892 PVALID is a subset of them) that UTS 46 would not map to anything
    else and that are not in ``_NOT_IDNA_2008``, no label
    that starts with a combining mark (RFC 5891 §5.4), and no right-to-left or
    Arabic-digit text, whose Bidi rule (RFC 5893) the stdlib does not check.
    """
    if label.isascii():
        return None
    if unicodedata.category(label[0]).startswith("M"):
        return f"has a label that starts with the combining mark {label[0]!r}"
    for ch in label:
        if ch.isascii():
            continue
        if (
            unicodedata.category(ch) not in _IDNA_CATEGORIES
            or unicodedata.normalize("NFKC", ch.casefold()) != ch
            or any(low <= ord(ch) <= high for low, high in _NOT_IDNA_2008)
        ):
            return f"has {ch!r}, which IDNA 2008 (RFC 5892) may read differently"
        if unicodedata.bidirectional(ch) in ("R", "AL", "AN"):
            return f"has the right-to-left or Arabic-digit character {ch!r}"
    return None


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
    encoded = ascii_domain(domain)
    if len(encoded) > _MAX_DOMAIN:
        msg = f"domain of {email!r} is longer than {_MAX_DOMAIN} octets"
        raise ValueError(msg)
    if any(len(label) > _MAX_LABEL for label in encoded.split(".")):
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


def check_mailbox(email: str) -> str:
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
    if is_name_email_pair(data):
        return {"name": data[0] or None, "email": data[1]}
    if isinstance(data, tuple):
        # Otherwise pydantic's "valid dictionary or instance of Address" would be all
        # that is said about Message(sender=("a@x.org", "b@x.org")).
        if len(data) == 2 and all(isinstance(item, str) for item in data):
            msg = (
                "a (name, email) pair needs a display name without '@' first, got "
                f"{data!r}; one address is expected here, and several go in a list "
                "(to=[...])"
            )
        else:
            msg = (
                "an address is 'local@domain', 'Name <local@domain>', an Address or "
                f"a (name, email) pair of two strings, not {data!r}"
            )
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports only ValueError
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


def envelope_address(email: str) -> str:
    """Check *email* and IDNA-encode its domain when the local part is ASCII.

    Then only a non-ASCII local part needs SMTPUTF8 (RFC 6531 §3.2).
    """
    check_mailbox(email)
    local, _, domain = email.rpartition("@")
    return f"{local}@{ascii_domain(domain)}" if local.isascii() else email


class Address(BaseModel):
    """A mailbox: an email address with an optional display name.

    Build it from ``"张三 <zs@example.com>"``, ``'"Doe, John" <jd@example.com>'``,
    ``("张三", "zs@example.com")``, ``"zs@example.com"`` or with keywords.  Every form
    is checked the same way and nothing is repaired: ``"ada@example.com extra"``,
    ``"ada @example.com"``, ``"a@b@c"`` and ``"Ada <a@x.org> trailing"`` raise
    ``ValueError`` (as ``pydantic.ValidationError``) naming the text.  Comments and
    quoted local parts are not supported.  An empty name is stored as ``None``.

    Unicode display names are RFC 2047 encoded on the wire, IDN domains are sent as
    A-labels (IDNA 2008 with ``pysmtpkit[idna]``; without it, a domain that IDNA 2003
    would change, like ``faß.de``, is refused), and a non-ASCII local part makes the
    message need SMTPUTF8 (RFC 6531).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    name: str | None = None

    @overload
    def __init__(self, text: str, /) -> None: ...
    @overload
    def __init__(self, pair: tuple[str, str], /) -> None: ...
    @overload
    def __init__(self, *, email: str, name: str | None = None) -> None: ...
    # *text rather than "text=None, /": mypy cannot match that to the overloads.
    @validates_like_base_init
    def __init__(self, *text: str | tuple[str, str], **fields: Any) -> None:
        """Build from one string (``Address("张三 <zs@example.com>")``), a
        ``(name, email)`` pair (``Address(("张三", "zs@example.com"))``) or keywords."""
        if not text:
            super().__init__(**fields)
        else:
            if fields or len(text) > 1:
                msg = "pass either one address string or keywords, not both"
                raise TypeError(msg)
            # Validate the string itself, so errors are ValidationErrors as usual.
            self.__pydantic_validator__.validate_python(text[0], self_instance=self)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return _parse_address(data)

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return check_mailbox(value)

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
        return f"{self.local_part}@{ascii_domain(self.domain)}"

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is non-ASCII, which only SMTPUTF8 can carry."""
        return not self.local_part.isascii()

    def dedupe_key(self) -> str:
        """Key for removing duplicates: local part as given, domain case-folded.

        RFC 5321 §2.4: the local part may be case-sensitive, the domain is not.
        """
        return f"{self.local_part}@{ascii_domain(self.domain).lower()}"

    def __str__(self) -> str:
        """Render as ``Name <email>``, quoting the name where needed, so it parses back."""
        return f"{_quote_name(self.name)} <{self.email}>" if self.name else self.email


AddressLike: TypeAlias = Address | str | tuple[str, str]
"""An ``Address``, ``"ada@example.com"``, ``"Ada <ada@example.com>"`` or ``("Ada", "a@x.org")``.

What ``Message`` accepts for ``sender`` (and, one or a sequence of them, for ``to``,
``cc``, ``bcc`` and ``reply_to``).  In those lists a 2-tuple whose first item
contains ``@`` is two addresses, never a name and an address.  The ``{"email": ...,
"name": ...}`` dict that ``model_dump()`` produces is accepted by ``model_validate``
(and JSON), not by the constructors.
"""


def is_name_email_pair(value: Any) -> bool:
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
