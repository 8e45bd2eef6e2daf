"""Pre-built ``EmailMessage`` objects (forwarding, resending): envelope and bytes.

The user's message is rendered with its own policy, after the same promises are
checked as for a ``Message``: no header value that would write a line of its own,
no address the parser had to repair, no line over 998 octets.  The envelope
follows smtplib's ``send_message`` rule, ``Resent-`` blocks included.
"""

from __future__ import annotations

import copy
import re
from email import policy as email_policy
from email.errors import InvalidHeaderDefect
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Final

from ._exceptions import InvalidMessageError
from ._message import Envelope
from ._mime import MAX_LINE, check_header_text

__all__ = ["envelope_of", "render_email"]

_FIELD_NAME_RE: Final = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8
# Folding white space in a parsed header: a line break, then WSP, then text.
_VALID_FOLD_RE: Final = re.compile(r"\r?\n(?=[ \t]+[^ \t\r\n])")
_ADDRESS_FIELDS: Final = (
    "From", "Sender", "Reply-To", "To", "Cc",
    "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
)  # fmt: skip
_UTF8_POLICY: Final = email_policy.SMTPUTF8


def envelope_of(msg: EmailMessage) -> Envelope:
    """Derive an envelope from a pre-built message's headers, as smtplib does.

    MIME senders come from ``Sender`` or else ``From``; recipients from ``To``,
    ``Cc`` and ``Bcc``.  A resent message (one ``Resent-Date``, RFC 5322 §3.6.6)
    goes to its ``Resent-`` block instead: ``Resent-Sender`` or ``Resent-From``,
    and ``Resent-To``, ``Resent-Cc`` and ``Resent-Bcc``, the rule of smtplib's
    ``send_message``.  Like smtplib, more than one ``Resent-Date`` is refused:
    which block is the newest cannot be told reliably.

    Raises:
        InvalidMessageError: No sender or no recipient could be found, the
            message has more than one ``Resent-`` block, or an address field holds
            a control character or line break.
    """
    resent = msg.get_all("Resent-Date") or []
    if len(resent) > 1:
        msg_text = "pass an envelope: the message has more than one Resent- block"
        raise InvalidMessageError(msg_text)
    prefix = "Resent-" if resent else ""
    senders = _addresses_of(
        _field_values(msg, f"{prefix}Sender") or _field_values(msg, f"{prefix}From")
    )
    if len(senders) != 1 or not senders[0][1]:
        msg_text = (
            f"pass an envelope: the message needs exactly one {prefix}From "
            f"(or {prefix}Sender) address"
        )
        raise InvalidMessageError(msg_text)
    fields = [
        v for name in ("To", "Cc", "Bcc") for v in _field_values(msg, prefix + name)
    ]
    recipients = tuple(addr for _, addr in _addresses_of(fields) if addr)
    if not recipients:
        msg_text = (
            f"pass an envelope: the message has no {prefix}To, {prefix}Cc or "
            f"{prefix}Bcc address"
        )
        raise InvalidMessageError(msg_text)
    return Envelope(sender=senders[0][1], recipients=recipients)


def _addresses_of(values: list[str]) -> list[tuple[str, str]]:
    """Parse address header values the way smtplib does, but never repair them.

    ``getaddresses`` "repairs" what it cannot parse (``ada@example.com extra``
    becomes ``ada@example.comextra``), which would send the mail elsewhere.  An
    address that does not appear in the header text as written is refused.
    """
    parsed = getaddresses(values)
    for _, addr in parsed:
        if addr and not any(addr in value for value in values):
            msg = (
                f"pass an envelope: an address header would have to be rewritten "
                f"to read {addr!r}, which it does not contain as written"
            )
            raise InvalidMessageError(msg)
    return parsed


def _check_field(name: str, text: str) -> bool:
    """Refuse a header value that would write a line of its own when re-folded.

    Values parsed from bytes are stored raw, and both policies re-fold them with
    ``str.splitlines``: a VT, FF or U+2028 there becomes a CRLF.  Folding already
    in a parsed value (a line break, then white space and text) is left alone.

    Returns:
        Whether the value holds non-ASCII text that is valid UTF-8 (bytes of an
        unknown 8-bit charset do not count).
    """
    utf8 = False
    if not text.isascii():  # raw bytes from a parser are surrogate escapes
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            msg = f"header {name} is not valid Unicode: {text!r}"
            raise InvalidMessageError(msg) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
        else:
            utf8 = True
    check_header_text(f"header {name}", _VALID_FOLD_RE.sub("", text))
    return utf8


def _field_values(msg: EmailMessage, name: str) -> list[str]:
    """Every value of the *name* header, checked by ``_check_field``.

    The modern policy's parser "repairs" an address list it cannot read
    (``ada@example.com extra`` reads as ``ada@example.com``) and notes a defect;
    such a header is refused rather than sent to whatever the repair made of it.
    """
    headers = msg.get_all(name) or []
    for header in headers:
        for defect in getattr(header, "defects", ()):
            if isinstance(defect, InvalidHeaderDefect):
                msg_text = (
                    f"pass an envelope: the {name} header cannot be read as "
                    f"addresses without rewriting it ({defect})"
                )
                raise InvalidMessageError(msg_text)
    values = [str(value) for value in headers]
    for value in values:
        _check_field(name, value)
    return values


def _check_headers(msg: EmailMessage) -> bool:
    """Check every field of every part, attachments' parameters included.

    Returns:
        Whether a value is raw UTF-8 text (stored under compat32, or parsed), which
        only SMTPUTF8 carries as it is: the ``SMTP`` policy would encode it when
        the line is long and fail when it is short.  Header objects of the modern
        policy encode themselves and do not count.
    """
    utf8 = False
    for part in msg.walk():
        for name, value in part.raw_items():
            if not _FIELD_NAME_RE.fullmatch(name):
                msg_text = f"header name must be printable ASCII without ':': {name!r}"
                raise InvalidMessageError(msg_text)
            raw_text = _check_field(name, str(value))
            utf8 = utf8 or (raw_text and type(value) is str)
    return utf8


def _check_lines(data: bytes) -> None:
    """Refuse a line over 998 octets (RFC 5322 §2.1.1); a bare CR ends a line too."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    longest = max(lines, key=len)
    if len(longest) > MAX_LINE:
        msg = (
            f"the message has a line of {len(longest)} octets, over the "
            f"{MAX_LINE} RFC 5322 §2.1.1 allows: {longest[:60]!r}..."
        )
        raise InvalidMessageError(msg)


def render_email(msg: EmailMessage, envelope: Envelope) -> tuple[Envelope, bytes]:
    """Check and render a pre-built message; return its envelope and bytes.

    The Bcc and Resent-Bcc headers are left out; *msg* is not changed.  What can
    be written only as UTF-8 (RFC 6532 §3.2) makes the envelope ask for SMTPUTF8:
    addresses in the headers that are not ASCII (``用户@例子.cn``; the ``SMTP``
    policy would put encoded words inside them), and raw UTF-8 header text (set
    under compat32, or parsed; see ``_check_headers``).  The transport then raises
    ``NotSupportedError`` when the server does not offer SMTPUTF8.

    Raises:
        InvalidMessageError: A header name or value would break the header block
            (see ``_check_field``), text cannot be encoded (not valid Unicode, or
            a compat32 body without a charset), or a line of the result exceeds
            998 octets.
    """
    raw_utf8 = _check_headers(msg)
    if not envelope.needs_smtputf8:
        fields = [str(v) for name in _ADDRESS_FIELDS for v in msg.get_all(name) or []]
        if raw_utf8 or not all(addr.isascii() for _, addr in getaddresses(fields)):
            envelope = envelope.model_copy(update={"smtputf8": True})
    if "Bcc" in msg or "Resent-Bcc" in msg:
        # Deleting a header rebinds the copy's header list; the caller's is untouched.
        msg = copy.copy(msg)
        del msg["Bcc"]
        del msg["Resent-Bcc"]
    policy = _UTF8_POLICY if envelope.needs_smtputf8 else email_policy.SMTP
    try:
        data = msg.as_bytes(policy=policy)
    except UnicodeEncodeError as exc:  # e.g. a compat32 str body without a charset
        msg_text = f"the message holds text its policy cannot encode: {exc}"
        raise InvalidMessageError(msg_text) from exc
    _check_lines(data)
    return envelope, data
