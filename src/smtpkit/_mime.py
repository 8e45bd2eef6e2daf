"""Turn messages into the bytes of the DATA phase, with the stdlib ``email`` package.

No MIME is written by hand here.  ``Message`` is built with the ``email.mime``
classes under the ``compat32`` policy, the way Django has long done it: it is about
four times cheaper per message than ``EmailMessage`` with the modern policy (whose
header registry re-parses every header), and rendering is the biggest cost of a
send on a fast link.  ``email.header``, ``email.utils`` and ``email.encoders`` do
the RFC 2047 / RFC 2231 encoding.  Pre-built ``EmailMessage`` objects from users
are rendered with their own policy.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from email import encoders
from email import policy as email_policy
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.message import Message as MIMEMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from typing import Any, Final, cast

from ._exceptions import InvalidMessageError
from ._message import Address, Attachment, Envelope, Message

__all__ = [
    "envelope_of",
    "normalize_line_endings",
    "render",
    "render_email",
    "render_with_id",
]


class _WirePolicy(Compat32):
    """compat32 with CRLF, and without re-folding headers that already fit a line.

    compat32 runs every header through ``email.header.Header`` to fold it, which
    is most of the cost of rendering a small message.  A short ASCII value needs no
    folding; anything else still takes the stdlib path.  Under compat32, 8-bit
    values carried as surrogateescape are written out raw, as SMTPUTF8 needs.
    """

    def _fold(
        self, name: str, value: Any, sanitize: bool
    ) -> str:  # private stdlib hook
        if (
            isinstance(value, str)
            and len(name) + len(value) + 2 <= _FOLD_AT
            and value.isascii()
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return str(super()._fold(name, value, sanitize))  # type: ignore[misc]  # private stdlib hook


_WIRE_POLICY: Final = _WirePolicy(linesep="\r\n")
_UTF8_POLICY: Final = email_policy.SMTPUTF8
_BARE_EOL_RE: Final = re.compile(rb"\r\n|\r|\n")
_SPECIALS_RE: Final = re.compile(r'[][\\()<>@,:;".]')
_MAX_7BIT_LINE: Final = 998  # RFC 5322 §2.1.1
_FOLD_AT: Final = 78  # RFC 5322 §2.1.1 "SHOULD"
_UTF8_BASE64: Final = Charset("utf-8")
_UTF8_BASE64.body_encoding = BASE64
_ASCII_QP: Final = Charset("us-ascii")
_ASCII_QP.body_encoding = QP


def _raw_utf8(value: str) -> str:
    """Carry *value* as raw UTF-8 bytes through the compat32 generator."""
    return value.encode("utf-8").decode("ascii", "surrogateescape")


def _header_text(value: str, *, utf8: bool) -> str | Header:
    if value.isascii():
        return value
    # A Header object is folded between encoded words by the generator.
    return _raw_utf8(value) if utf8 else Header(value, "utf-8")


def _format_address(address: Address, *, utf8: bool) -> str:
    if not utf8:
        return formataddr((address.name or "", address.ascii_email), charset="utf-8")
    name = address.name or ""
    if name and _SPECIALS_RE.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _raw_utf8(f"{name} <{address.email}>" if name else address.email)


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    if text.isascii():
        long_lines = max(map(len, text.splitlines()), default=0) > _MAX_7BIT_LINE
        # 7bit keeps plain ASCII readable; QP only when a line is too long for SMTP.
        part.set_payload(text, _ASCII_QP if long_lines else "us-ascii")
    else:
        part.set_payload(text, _UTF8_BASE64)
    return part


def _file_part(attachment: Attachment) -> MIMEBase:
    maintype, _, subtype = attachment.content_type.partition("/")
    part = MIMEBase(maintype, subtype)
    if maintype == "text":
        # Readers decode text/* by its charset; label the bytes when they say it.
        try:
            attachment.content.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            label = "us-ascii" if attachment.content.isascii() else "utf-8"
            part.set_param("charset", label)
    part.set_payload(attachment.content)
    encoders.encode_base64(part)
    # RFC 2231 for non-ASCII names, on both headers: clients that read only
    # Content-Type (older Outlook) look for name=.
    charset = None if attachment.filename.isascii() else "utf-8"
    part.set_param("name", attachment.filename, charset=charset)
    disposition = "inline" if attachment.is_inline else "attachment"
    part["Content-Disposition"] = disposition
    part.set_param(
        "filename", attachment.filename, "Content-Disposition", charset=charset
    )
    if attachment.content_id is not None:
        part["Content-ID"] = f"<{attachment.content_id}>"
    return part


def _body(message: Message) -> MIMEMessage:
    inline = [a for a in message.attachments if a.is_inline]
    attached = [a for a in message.attachments if not a.is_inline]
    body: MIMEMessage
    if message.html is None:
        body = _text_part(message.text or "", "plain")
        attached = inline + attached  # nothing can reference a cid: without HTML
    else:
        body = _text_part(message.html, "html")
        if inline:
            body = MIMEMultipart("related", _subparts=[body, *map(_file_part, inline)])
        if message.text is not None:
            body = MIMEMultipart(
                "alternative", _subparts=[_text_part(message.text, "plain"), body]
            )
    if attached:
        body = MIMEMultipart("mixed", _subparts=[body, *map(_file_part, attached)])
    return body


def render_with_id(message: Message) -> tuple[bytes, str]:
    """Render *message*; return its bytes (CRLF, before dot-stuffing) and Message-ID.

    The Bcc header is never written.  Without SMTPUTF8 the result is 7-bit clean, so
    every server takes it with or without 8BITMIME.
    """
    utf8 = message.needs_smtputf8
    # compat32 takes Header objects as values (see email.header); typeshed says str.
    msg = cast("MIMEMessage[str, str | Header]", _body(message))
    msg["From"] = _format_address(message.sender, utf8=utf8)
    for name, addresses in (
        ("To", message.to),
        ("Cc", message.cc),
        ("Reply-To", message.reply_to),
    ):
        if addresses:
            msg[name] = ", ".join(_format_address(a, utf8=utf8) for a in addresses)
    if message.subject:
        msg["Subject"] = _header_text(message.subject, utf8=utf8)
    msg["Date"] = format_datetime(message.date or datetime.now(timezone.utc))
    sender_domain = message.sender.ascii_email.rpartition("@")[2]
    message_id = message.message_id or make_msgid(domain=sender_domain)
    msg["Message-ID"] = message_id
    if message.list_unsubscribe:
        msg["List-Unsubscribe"] = ", ".join(
            f"<{uri}>" for uri in message.list_unsubscribe
        )
    if message.list_unsubscribe_one_click:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in message.headers.items():
        msg[name] = _header_text(value, utf8=utf8)
    return msg.as_bytes(policy=_WIRE_POLICY), message_id


def render(message: Message) -> bytes:
    """Render *message* to CRLF-terminated bytes ready for DATA (before dot-stuffing)."""
    return render_with_id(message)[0]


def normalize_line_endings(data: bytes) -> bytes:
    """Make every line end in CRLF, including the last (RFC 5321 §2.3.8)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        # Counting is far cheaper than rewriting; rendered messages are clean.
        data = _BARE_EOL_RE.sub(b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def envelope_of(msg: EmailMessage) -> Envelope:
    """Derive an envelope from a pre-built message's headers, as smtplib does.

    MIME senders come from ``Sender`` or else ``From``; recipients from ``To``,
    ``Cc`` and ``Bcc``.

    Raises:
        InvalidMessageError: No sender or no recipient could be found.
    """
    senders = getaddresses(msg.get_all("Sender") or msg.get_all("From") or [])
    if len(senders) != 1 or not senders[0][1]:
        msg_text = (
            "pass an envelope: the message needs exactly one From (or Sender) address"
        )
        raise InvalidMessageError(msg_text)
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in msg.get_all(name) or []]
    recipients = tuple(addr for _, addr in getaddresses(fields) if addr)
    if not recipients:
        msg_text = "pass an envelope: the message has no To, Cc or Bcc address"
        raise InvalidMessageError(msg_text)
    return Envelope(sender=senders[0][1], recipients=recipients)


def render_email(msg: EmailMessage, *, smtputf8: bool) -> bytes:
    """Render a pre-built message without its Bcc and Resent-Bcc headers."""
    if "Bcc" in msg or "Resent-Bcc" in msg:
        # Deleting a header rebinds the copy's header list; the caller's is untouched.
        msg = copy.copy(msg)
        del msg["Bcc"]
        del msg["Resent-Bcc"]
    return msg.as_bytes(policy=_UTF8_POLICY if smtputf8 else email_policy.SMTP)
