"""A Django ``EmailMessage`` into what ``Mailer.send`` takes: a message and its envelope.

The message is Django's own ``message()``, so its MIME structure (alternatives,
attachments, inline images with their Content-ID) is exactly what the stock
backend sends; the Bcc recipients are only in the envelope, as there.  Two
things differ: addresses are parsed and checked by ``smtpkit.Address`` (IDN
domains become A-labels, a non-ASCII local part asks for SMTPUTF8), and an
address with a non-ASCII local part is written in the headers as UTF-8 (RFC
6532), where Django before 6.0 puts an RFC 2047 encoded word inside the address
(``=?utf-8?b?...?=@example.com``), which no mail client can reply to.  Django
6 builds a stdlib ``email.message.EmailMessage``, which smtpkit renders in
UTF-8 itself; its values are checked the same way, as its parser silently
repairs a broken one (``Ann <用户@example.com`` gets its ``>``).
"""

from __future__ import annotations

from email import policy as email_policy
from email.errors import InvalidHeaderDefect
from email.message import EmailMessage as ModernMessage
from email.message import Message as MIMEMessage
from email.utils import formataddr
from typing import Any, Final

from django.core.mail import EmailMessage as DjangoMessage
from pydantic import ValidationError

from smtpkit import Address, Envelope

__all__ = ["to_smtpkit"]

_LIST_FIELDS: Final = (("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to"))
# The modern header parser: it reads groups, comments and empty addresses.
_HEADER_POLICY: Final = email_policy.default


def to_smtpkit(message: DjangoMessage) -> tuple[MIMEMessage, Envelope] | None:
    """Return the message to send and its envelope; None when it has no recipient.

    Raises:
        ValueError: An address is invalid (as Django's backend raises, whatever
            ``fail_silently`` says: it is the caller's mistake, not the server's).
    """
    recipients = message.recipients()
    if not recipients:
        return None
    sender = _address(message.from_email)
    envelope = Envelope(sender.email, [_address(r).email for r in recipients])
    built = message.message()
    fields = _utf8_address_fields(built, message)
    if not isinstance(built, ModernMessage):
        for field, text in fields.items():
            # compat32 writes surrogate-escaped bytes back as the raw bytes.
            built.replace_header(
                field, text.encode().decode("ascii", "surrogateescape")
            )
    return built, envelope


def _address(value: Any) -> Address:
    """One address as Django accepts it: a string (lazy too) or a (name, address) pair."""
    try:
        if isinstance(value, tuple):
            name, email = value
            return Address((str(name), str(email)))
        return Address(str(value))
    except (ValidationError, ValueError):  # ValueError: not a pair
        pass  # raised below, without pydantic's chained detail
    msg = f"Invalid address {value!r}"
    raise ValueError(msg)


def _utf8_address_fields(built: MIMEMessage, message: DjangoMessage) -> dict[str, str]:
    """The address fields holding a non-ASCII local part, as their values were written.

    A field is listed only when one of its values (the ones Django used:
    ``extra_headers`` first, as ``message()`` does) has an address with a
    non-ASCII local part, and then as those values are, joined by commas: group
    names, comments and display names stay as written, in UTF-8 (RFC 6532 §3.2;
    the message goes with SMTPUTF8 anyway).  Django's legacy (compat32) message
    gets these fields written so, where Django put an encoded word in the
    addr-spec and dropped the groups; every other field
    (``undisclosed-recipients:;``, ``"Sales" <>``) is left exactly as Django
    wrote it.  Django 6's message needs no rewriting, but its values get the
    same check, so that a broken one is refused on every Django version rather
    than sent repaired.

    Raises:
        ValueError: A value with a non-ASCII local part is not a valid address
            list.
    """
    sources: list[tuple[str, list[Any]]] = [
        ("From", [message.extra_headers.get("From", message.from_email)])
    ]
    for field, attribute in _LIST_FIELDS:
        if field in message.extra_headers:
            sources.append((field, [message.extra_headers[field]]))
        else:
            sources.append((field, list(getattr(message, attribute))))
    fields: dict[str, str] = {}
    for field, values in sources:
        if field not in built:
            continue
        pieces = [_piece(field, value) for value in values]
        if any(utf8 for _, utf8 in pieces):
            fields[field] = ", ".join(piece for piece, _ in pieces)
    return fields


def _piece(field: str, value: Any) -> tuple[str, bool]:
    """One Django value as header text, and whether it has a non-ASCII local part.

    A string is kept as written; a ``(name, address)`` pair becomes
    ``name <address>``.  Only non-ASCII text is parsed.

    Raises:
        ValueError: The value has a non-ASCII local part but does not parse as
            an address list without repairs.
    """
    if isinstance(value, tuple):
        address = _address(value)
        return _mailbox(address), not address.email.partition("@")[0].isascii()
    text = str(value)
    if text.isascii():
        return text, False
    header = _HEADER_POLICY.header_factory(field, text)
    utf8 = any(not a.username.isascii() for a in header.addresses)
    if utf8 and any(isinstance(d, InvalidHeaderDefect) for d in header.defects):
        msg = f"Invalid address {value!r}"
        raise ValueError(msg)
    return text, utf8


def _mailbox(address: Address) -> str:
    """``name <local@domain>``: the name RFC 2047 encoded if needed, the address raw."""
    if address.name is None:
        return address.email
    # formataddr quotes or encodes the name; it refuses a non-ASCII address.
    return formataddr((address.name, "x@x"))[: -len("<x@x>")] + f"<{address.email}>"
