"""What users send: `Attachment`, `Message`, and the SMTP `Envelope`.

Every model refuses CR, LF, NUL and the other line breaks wherever a value reaches a
header line or an SMTP command, so header and command injection is impossible by
construction.  Addresses (``_address``) are checked strictly and never repaired.
Rendering to MIME lives in ``_mime``.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._address import (
    FORBIDDEN_CHARS,
    Address,
    AddressLike,
    check_mailbox,
    check_single_line,
    envelope_address,
    is_name_email_pair,
)
from ._calendar import check_calendar
from ._content_type import check_charset, parse_content_type
from ._exceptions import InvalidMessageError
from ._positional import bind_positional, validates_like_base_init
from ._strict import json_array_as_tuple

__all__ = [
    "FORBIDDEN_CHARS",
    "Address",
    "AddressLike",
    "Attachment",
    "Envelope",
    "Message",
    "check_single_line",
]

# RFC 5322 §3.6.8: a field name is printable US-ASCII except the colon.
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_HEADER_NAME_RE: Final = re.compile(r"^[!-9;-~]+$")
# Headers smtpkit writes from Message fields; setting them through ``headers`` would
# produce duplicates or a broken MIME structure.
_RESERVED_HEADERS: Final = frozenset(
    {
        "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id",
        "mime-version", "content-type", "content-transfer-encoding",
        "content-disposition", "list-unsubscribe", "list-unsubscribe-post",
    }
)  # fmt: skip


def _as_tuple(value: Any) -> Any:
    if isinstance(value, str | Address | dict) or is_name_email_pair(value):
        return (value,)
    return value


class Attachment(BaseModel):
    """A file attached to a message, or an inline image when ``content_id`` is set.

    Attributes:
        filename: The name mail clients show; non-ASCII names are encoded both as
            RFC 2231 and RFC 2047 so that common clients display them.
        content: The file's bytes.
        content_type: ``type/subtype``, optionally with parameters such as
            ``text/calendar; method=REQUEST``; guessed from ``filename`` when
            omitted.  Kept in a canonical form: media type and parameter names
            lower-cased, values as written (quoted where they need it).  ``name``
            and ``boundary`` cannot be given (smtpkit writes ``name`` from
            ``filename``); a ``charset`` must agree with ``content``, and replaces
            the ``us-ascii``/``utf-8`` label smtpkit gives text/* files.
        content_id: Makes this an inline part, referenced from HTML as
            ``<img src="cid:CONTENT_ID">``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    filename: str = Field(min_length=1)
    content: bytes
    content_type: str = ""
    content_id: str | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            filename: str,
            content: bytes,
            *,
            content_type: str = "",
            content_id: str | None = None,
        ) -> None:
            """Attach *content* under *filename*."""

    else:

        @validates_like_base_init
        def __init__(self, *args: Any, **data: Any) -> None:
            """Take ``filename`` and ``content`` positionally too."""
            names = ("filename", "content")
            super().__init__(**bind_positional("Attachment", names, args, data))

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
            return self
        # RFC 2045 §5.1: the media type and parameter names are case-insensitive;
        # keep them lower-cased so they compare, and the values as written.
        parsed = parse_content_type(self.content_type)
        check_charset(parsed, self.content)
        object.__setattr__(self, "content_type", str(parsed))
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
    def media_type(self) -> str:
        """``type/subtype`` without parameters, lower-cased (``text/calendar``)."""
        return self.content_type.partition(";")[0]

    @property
    def content_type_params(self) -> tuple[tuple[str, str], ...]:
        """The ``content_type`` parameters as ``(name, value)`` pairs, in order."""
        return parse_content_type(self.content_type).params

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

    if TYPE_CHECKING:

        def __init__(
            self,
            sender: str,
            recipients: str | Sequence[str],
            *,
            smtputf8: bool = False,
        ) -> None:
            """Address MAIL FROM *sender* and RCPT TO each of *recipients*."""

    else:

        @validates_like_base_init
        def __init__(self, *args: Any, **data: Any) -> None:
            """Take ``sender`` and ``recipients`` positionally too."""
            names = ("sender", "recipients")
            super().__init__(**bind_positional("Envelope", names, args, data))

    @field_validator("recipients", mode="before")
    @classmethod
    def _one_recipient_is_many(cls, value: Any, info: ValidationInfo) -> Any:
        # The static type says str | Sequence[str]; a str is one recipient, not
        # a sequence of one-letter recipients.
        return (value,) if isinstance(value, str) else json_array_as_tuple(value, info)

    @field_validator("sender")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        return value if value == "" else envelope_address(value)

    @field_validator("recipients")
    @classmethod
    def _valid_recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(envelope_address(r) for r in value))

    @property
    def needs_smtputf8(self) -> bool:
        """True when an address is non-ASCII, which only SMTPUTF8 can carry."""
        return self.smtputf8 or not (
            self.sender.isascii() and all(map(str.isascii, self.recipients))
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
        calendar: An iCalendar object (``BEGIN:VCALENDAR`` ... ``END:VCALENDAR``)
            for a calendar invite, sent as a ``text/calendar; method=...;
            charset=utf-8`` part after ``text`` and ``html`` in the
            multipart/alternative, which is where Outlook and Gmail look for it.
            Its own ``METHOD`` property (REQUEST, CANCEL, REPLY, PUBLISH...; not
            one inside a VEVENT) is required, must be an ASCII token, and becomes
            the part's ``method=``.  Exactly one VCALENDAR object, its components
            properly nested.  Line endings become CRLF (RFC 5545 §3.1; CR CR LF
            counts as one).  No ``.ics`` attachment is added; attach one
            yourself for clients that read only attachments.
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
    calendar: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: Mapping[str, str] = Field(default_factory=dict)
    message_id: str | None = None
    date: datetime | None = None
    list_unsubscribe: tuple[str, ...] = ()
    list_unsubscribe_one_click: bool = False
    envelope_sender: str | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            sender: AddressLike,
            to: AddressLike | Sequence[AddressLike] = (),
            cc: AddressLike | Sequence[AddressLike] = (),
            bcc: AddressLike | Sequence[AddressLike] = (),
            reply_to: AddressLike | Sequence[AddressLike] = (),
            subject: str = "",
            text: str | None = None,
            html: str | None = None,
            calendar: str | None = None,
            attachments: Sequence[Attachment] = (),
            headers: Mapping[str, str] = ...,
            message_id: str | None = None,
            date: datetime | None = None,
            list_unsubscribe: str | Sequence[str] = (),
            list_unsubscribe_one_click: bool = False,
            envelope_sender: str | None = None,
        ) -> None:
            """Build a message; see the class docstring for each field."""

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _one_is_many(cls, value: Any, info: ValidationInfo) -> Any:
        return json_array_as_tuple(_as_tuple(value), info)

    @field_validator("list_unsubscribe", mode="before")
    @classmethod
    def _one_uri_is_many(cls, value: Any, info: ValidationInfo) -> Any:
        # Not _as_tuple: a pair of URIs is two URIs, not a (name, email) address.
        return (value,) if isinstance(value, str) else json_array_as_tuple(value, info)

    @field_validator("subject")
    @classmethod
    def _valid_subject(cls, value: str) -> str:
        return check_single_line(value, "subject")

    @field_validator("text", "html")
    @classmethod
    def _encodable_body(cls, value: str | None) -> str | None:
        # Any text is fine in a body, but a lone surrogate cannot be encoded at all.
        if value is not None and not value.isascii() and _SURROGATE_RE.search(value):
            msg = "the body must not contain lone surrogates (invalid Unicode)"
            raise ValueError(msg)
        return value

    @field_validator("calendar")
    @classmethod
    def _valid_calendar(cls, value: str | None) -> str | None:
        return value if value is None else check_calendar(value)

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
            if name.lower().startswith("resent-"):
                # RFC 5322 §3.6.6: Resent- fields describe a resend (and Resent-Bcc
                # would be transmitted); resend an EmailMessage for that.
                msg = (
                    f"header {name!r} belongs to a resent message; send an EmailMessage"
                )
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
        return value if value in (None, "") else check_mailbox(value)

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

    def as_bytes(self) -> bytes:
        """Return the bytes a send would transmit; the same as ``smtpkit.render(self)``.

        CRLF line endings, no Bcc header, no envelope.  A missing Message-ID or
        Date is added as a send adds it (a fresh id, the current time), so the
        bytes are the same on every call only when both are set.  Write them to
        a ``.eml`` file to export the message.

        Raises:
            InvalidMessageError: The message cannot be rendered.
        """
        # The renderer sits above the models (it builds MIME from them); the
        # method is here because users look for it on the message.
        from ._mime import render_with_id  # noqa: PLC0415 - see above

        return render_with_id(self)[0]
