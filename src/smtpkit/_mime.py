"""Turn messages into the bytes of the DATA phase, with the stdlib ``email`` package.

No MIME is written by hand here: ``EmailMessage`` builds the structure, the policy
folds and encodes headers, and this module only chooses the policy and the layout.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from email import policy as email_policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Final

from ._exceptions import InvalidMessageError
from ._message import Address, Attachment, Envelope, Message

__all__ = [
    "envelope_of",
    "normalize_line_endings",
    "render",
    "render_email",
    "render_email_message",
]

# Without SMTPUTF8 the message must be 7-bit clean: every server takes it, with or
# without 8BITMIME, so bodies go out as quoted-printable or base64 when needed.
_ASCII_POLICY: Final = email_policy.SMTP.clone(cte_type="7bit")
_UTF8_POLICY: Final = email_policy.SMTPUTF8
_BARE_EOL_RE: Final = re.compile(rb"\r\n|\r|\n")


def _header_address(address: Address, *, utf8: bool) -> HeaderAddress:
    domain = address.domain if utf8 else address.ascii_email.rpartition("@")[2]
    return HeaderAddress(
        display_name=address.name or "", username=address.local_part, domain=domain
    )


def _set_addresses(
    msg: EmailMessage, name: str, addresses: tuple[Address, ...], *, utf8: bool
) -> None:
    if addresses:
        msg[name] = [_header_address(a, utf8=utf8) for a in addresses]


def _add_part(target: MIMEPart, attachment: Attachment, *, related: bool) -> None:
    maintype, _, subtype = attachment.content_type.partition("/")
    cid = f"<{attachment.content_id}>" if attachment.content_id else None
    add = target.add_related if related else target.add_attachment
    add(
        attachment.content,
        maintype=maintype,
        subtype=subtype,
        filename=attachment.filename,
        cid=cid,
        disposition="inline" if attachment.is_inline else "attachment",
    )
    part = list(target.iter_parts())[-1]
    if not attachment.filename.isascii():
        # The stdlib writes RFC 2231 (filename*=utf-8''...) on Content-Disposition;
        # clients that read only Content-Type (older Outlook) need name*= there too.
        part.set_param("name", attachment.filename, header="Content-Type")


def render_email_message(message: Message) -> EmailMessage:
    """Build the ``EmailMessage`` for *message*; the Bcc header is never set."""
    utf8 = message.needs_smtputf8
    msg = EmailMessage(policy=_UTF8_POLICY if utf8 else _ASCII_POLICY)
    _set_addresses(msg, "From", (message.sender,), utf8=utf8)
    _set_addresses(msg, "To", message.to, utf8=utf8)
    _set_addresses(msg, "Cc", message.cc, utf8=utf8)
    _set_addresses(msg, "Reply-To", message.reply_to, utf8=utf8)
    if message.subject:
        msg["Subject"] = message.subject
    msg["Date"] = format_datetime(message.date or datetime.now(timezone.utc))
    sender_domain = message.sender.ascii_email.rpartition("@")[2]
    msg["Message-ID"] = message.message_id or make_msgid(domain=sender_domain)
    if message.list_unsubscribe:
        msg["List-Unsubscribe"] = ", ".join(
            f"<{uri}>" for uri in message.list_unsubscribe
        )
    if message.list_unsubscribe_one_click:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in message.headers.items():
        msg[name] = value

    inline = [a for a in message.attachments if a.is_inline]
    attached = [a for a in message.attachments if not a.is_inline]
    if message.html is None:
        msg.set_content(message.text or "", subtype="plain")
        attached = inline + attached  # nothing can reference a cid: without HTML
    else:
        if message.text is not None:
            msg.set_content(message.text, subtype="plain")
            msg.add_alternative(message.html, subtype="html")
            html_part = list(msg.iter_parts())[-1]
        else:
            msg.set_content(message.html, subtype="html")
            html_part = msg
        for attachment in inline:
            _add_part(html_part, attachment, related=True)
    for attachment in attached:
        _add_part(msg, attachment, related=False)
    return msg


def render(message: Message) -> bytes:
    """Render *message* to CRLF-terminated bytes ready for DATA (before dot-stuffing)."""
    return render_email_message(message).as_bytes()


def normalize_line_endings(data: bytes) -> bytes:
    """Make every line end in CRLF, including the last (RFC 5321 §2.3.8)."""
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
