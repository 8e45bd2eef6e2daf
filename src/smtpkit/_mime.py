"""Turn messages into the bytes of the DATA phase, with the stdlib ``email`` package.

No MIME is written by hand here.  ``Message`` is built with the ``email.mime``
classes under the ``compat32`` policy, the way Django has long done it: it is about
four times cheaper per message than ``EmailMessage`` with the modern policy (whose
header registry re-parses every header), and rendering is the biggest cost of a
send on a fast link.  ``email.charset`` makes the RFC 2047 encoded words and
``urllib.parse.quote`` the RFC 2231 percent-encoding.

Pre-built ``EmailMessage`` objects go through ``_email_message`` instead.

Promises kept for every message the models accept: no header line but the ones
smtpkit means to write (a control character or line break anywhere in a header is
refused, whatever the models let through), and no line over 998 octets (RFC 5322
§2.1.1): headers are folded at white space, text that cannot be folded becomes
encoded words, file names become RFC 2231 sections, and what is left (a single
unbreakable token such as a 1,100-character URL) is refused with
``InvalidMessageError`` before anything is sent.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timezone
from email import encoders
from email.charset import BASE64, QP, Charset
from email.message import Message as MIMEMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, make_msgid, quote
from io import BytesIO
from typing import Any, Final
from urllib.parse import quote as percent_encode

from ._calendar import calendar_method, normalize_calendar
from ._content_type import format_value, looks_encoded
from ._exceptions import InvalidMessageError
from ._message import FORBIDDEN_CHARS, Address, Attachment, Message
from ._wire_generator import WireGenerator

__all__ = [
    "MAX_LINE",
    "check_header_text",
    "has_dot_line",
    "normalize_line_endings",
    "render",
    "render_with_id",
]

MAX_LINE: Final = 998  # RFC 5322 §2.1.1 "MUST", octets without CRLF
_FOLD_AT: Final = 78  # RFC 5322 §2.1.1 "SHOULD"
_MAX_ENCODED_WORD: Final = 75  # RFC 2047 §2
_SECTION: Final = 60  # RFC 2231 section length: one section per folded line
_SHORT_PARAM: Final = 60  # a quoted file name this short never needs folding
_NAME_WORD: Final = 70  # encoded words in name="...", after ' name="' on a line
_UNSAFE_RE: Final = re.compile("[" + re.escape("".join(sorted(FORBIDDEN_CHARS))) + "]")
# Fold points: white space outside quoted strings first; inside a quoted string
# only when it cannot fit a line by itself (between the encoded words of name=).
_TOKEN_RE: Final = re.compile(r'[ \t]*(?:[^ \t"]|"(?:[^"\\]|\\.)*"?)+|[ \t]+')
_WSP_SPLIT_RE: Final = re.compile(r"(?<=[^ \t])(?=[ \t]+[^ \t])")
_WSP_RE: Final = re.compile(r"[ \t]+")
_EOL_RE: Final = re.compile(r"\r\n|\r|\n")
_BARE_EOL_RE: Final = re.compile(rb"\r\n|\r|\n")
_LONE_CR_RE: Final = re.compile(rb"\r(?!\n)")  # starts with a literal: a fast scan
_SPECIALS_RE: Final = re.compile(r'[][\\()<>@,:;".]')
_ATTRIBUTE_CHARS: Final = "!#$&+^`{|}"  # RFC 2231 §7 attribute-char beyond quote()'s
_URI_CHARS: Final = "".join(map(chr, range(0x21, 0x7F)))  # kept as they are
# RFC 2046 §5.2: these message/* types travel only as 7bit or 8bit, never encoded.
_UNENCODED_MESSAGES: Final = {
    "rfc822": "8bit",
    "partial": "7bit",
    "external-body": "7bit",
}
_UTF8_WORDS: Final = Charset("utf-8")  # encoded words in B or Q, whichever is shorter
_UTF8_BASE64: Final = Charset("utf-8")
_UTF8_BASE64.body_encoding = BASE64
_ASCII_QP: Final = Charset("us-ascii")
_ASCII_QP.body_encoding = QP
_ASCII_7BIT: Final = Charset("us-ascii")
_UTF8_QP: Final = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_UTF8_7BIT: Final = Charset("utf-8")  # ASCII text labelled utf-8, sent as 7bit
# None means 7bit/8bit, as for us-ascii; typeshed types the attribute as int.
_UTF8_7BIT.body_encoding = None  # type: ignore[assignment]


def check_header_text(what: str, text: str) -> None:
    """Refuse a control character or line break in a header value.

    Each of them can end a header line somewhere: compat32 and the modern policy
    fold with ``str.splitlines``, which breaks at VT, FF, FS, GS, RS, U+0085,
    U+2028 and U+2029 as well as CR and LF.
    """
    if bad := _UNSAFE_RE.search(text):
        msg = f"{what} must not contain control characters or line breaks ({bad[0]!r}): {text!r}"
        raise InvalidMessageError(msg)


def _fold_header(name: str, value: str) -> str:
    """Fold one header at white space into lines of at most 78 octets where possible.

    A word longer than a line gets a line of its own; one too long for 998 octets
    cannot be folded (RFC 5322 §2.2.3 folds only at white space) and is refused.
    """
    text = value
    if not value.isascii():  # raw UTF-8 carried as surrogate escapes (SMTPUTF8)
        text = value.encode("ascii", "surrogateescape").decode("utf-8")
    check_header_text(f"header {name}", text)
    lines = []
    line = f"{name}: "
    has_text = False
    for token in _TOKEN_RE.findall(value):
        for piece in [token] if len(token) < _FOLD_AT else _WSP_SPLIT_RE.split(token):
            if has_text and len(line) + len(piece) > _FOLD_AT and piece.strip(" \t"):
                lines.append(line)  # the piece starts with WSP: RFC 5322 §2.2.3
                line = piece
            else:
                line += piece
            has_text = True
    lines.append(line)
    if (longest := max(map(len, lines))) > MAX_LINE:
        msg = (
            f"header {name} holds a word that cannot be folded into lines of at "
            f"most {MAX_LINE} octets (RFC 5322 §2.1.1); its longest line would be "
            f"{longest} octets"
        )
        raise InvalidMessageError(msg)
    return "\r\n".join(lines)


class _WirePolicy(Compat32):
    """compat32 with CRLF, and smtpkit's own folding instead of ``Header``'s.

    A short printable ASCII value is written as it is, which is most headers and
    most of the saving.  Everything else is checked for line breaks and folded at
    white space only; ``Header`` would split at ``str.splitlines`` boundaries and
    leave long words and raw UTF-8 unfolded.  Under compat32, 8-bit values carried
    as surrogate escapes are written out raw, as SMTPUTF8 needs.
    """

    def _fold(
        self, name: str, value: Any, sanitize: bool
    ) -> str:  # private stdlib hook
        text = str(value)
        if (
            len(name) + len(text) + 2 <= _FOLD_AT
            and text.isascii()
            and text.isprintable()
        ):
            return f"{name}: {text}{self.linesep}"
        return _fold_header(name, text) + self.linesep


_WIRE_POLICY: Final = _WirePolicy(linesep="\r\n")


def _raw_utf8(value: str) -> str:
    """Carry *value* as raw UTF-8 bytes through the compat32 generator."""
    return (
        value if value.isascii() else value.encode().decode("ascii", "surrogateescape")
    )


def _fits(text: str, limit: int) -> bool:
    """Whether every run of *text* without white space is at most *limit* octets."""
    if len(text) <= limit and text.isascii():
        return True
    return max(len(word.encode()) for word in _WSP_RE.split(text)) <= limit


def _encoded_words(text: str, *, first: int, width: int = _MAX_ENCODED_WORD) -> str:
    """RFC 2047 encoded words of at most *width* characters, separated by spaces.

    RFC 2047 §2 caps an encoded word at 75 characters; *first* (shorter) leaves
    room for what precedes the first word on its line.  Readers join adjacent
    encoded words and drop the space between them (§6.2), so any text, white
    space included, comes back exactly.
    """
    widths = itertools.chain([min(first, width)], itertools.repeat(width))
    words = _UTF8_WORDS.header_encode_lines(text, widths)
    # None stands for "not even one character fits in *first*".
    return " ".join(word for word in words if word)


def _unstructured(name: str, value: str, *, utf8: bool) -> str:
    """*value* as the wire carries it: as it is when it can, else encoded words.

    Encoded words carry what plain text cannot: non-ASCII without SMTPUTF8, leading
    white space (parsers strip it), text that looks like an encoded word (readers
    would decode it), and a word too long to fold (RFC 5322 §2.1.1).
    """
    if (
        (utf8 or value.isascii())
        and value[:1] not in (" ", "\t")
        and "=?" not in value
        and _fits(value, MAX_LINE - len(name) - 2)
    ):
        return _raw_utf8(value)
    check_header_text(f"header {name}", value)  # before encoding hides it
    return _encoded_words(value, first=_FOLD_AT - len(name) - 2)


def _phrase(name: str, *, utf8: bool, limit: int, first: int) -> str:
    """A display name as an RFC 5322 §3.2.5 phrase: atoms, a quoted string, or
    RFC 2047 encoded words (``formataddr`` makes one encoded word of any length)."""
    if name.isprintable() and (utf8 or name.isascii()) and "=?" not in name:
        phrase = name
        if _SPECIALS_RE.search(name) or name.strip(" ") != name or "  " in name:
            phrase = f'"{quote(name)}"'  # a quoted string keeps its white space
        if _fits(phrase, limit):
            return phrase
    check_header_text("display name", name)
    return _encoded_words(name, first=first)


def _addresses(name: str, addresses: tuple[Address, ...], *, utf8: bool) -> str:
    limit = MAX_LINE - len(name) - 5  # room for "Name: ", quotes and a comma
    first = _FOLD_AT - len(name) - 2
    formatted = []
    for address in addresses:
        email = address.email if utf8 else address.ascii_email
        if address.name:
            phrase = _phrase(address.name, utf8=utf8, limit=limit, first=first)
            email = f"{phrase} <{email}>"
        formatted.append(email)
    return _raw_utf8(", ".join(formatted))


def _list_unsubscribe(uris: tuple[str, ...], *, utf8: bool) -> str:
    value = ", ".join(f"<{uri}>" for uri in uris)
    if value.isascii() or utf8:
        return _raw_utf8(value)
    check_header_text("header List-Unsubscribe", value)
    # RFC 3987 §3.1: an IRI becomes a URI by percent-encoding its UTF-8.
    return ", ".join(f"<{percent_encode(uri, safe=_URI_CHARS)}>" for uri in uris)


def _longest_line(text: str) -> int:
    """Characters in *text*'s longest line, ended by CR, LF or CRLF only.

    The wire knows no other line end: ``str.splitlines`` would also break at FF,
    VT, FS, GS, RS and so undercount.
    """
    lines = text.split("\n") if "\r" not in text else _EOL_RE.split(text)
    return max(map(len, lines))


def _text_part(text: str, subtype: str, *, utf8: bool = False) -> MIMENonMultipart:
    """A text/* part; ASCII text is labelled us-ascii unless *utf8* asks for utf-8."""
    part = MIMENonMultipart("text", subtype)
    if text.isascii():
        # 7bit keeps plain ASCII readable; QP when RFC 2045 §2.7 rules 7bit out:
        # a line over 998 octets, or a NUL.
        needs_qp = "\0" in text or (
            len(text) > MAX_LINE and _longest_line(text) > MAX_LINE
        )
        labels = (_UTF8_QP, _UTF8_7BIT) if utf8 else (_ASCII_QP, _ASCII_7BIT)
        if needs_qp:
            part.set_payload(text, labels[0])
        else:
            _set_7bit_payload(part, subtype, text, labels[1])
    else:
        part.set_payload(text, _UTF8_BASE64)
    return part


def _set_7bit_payload(
    part: MIMENonMultipart, subtype: str, text: str, charset: Charset
) -> None:
    """What ``part.set_payload(text, charset)`` does for ASCII text sent as 7bit.

    The same headers in the same order (``set_param`` moves Content-Type after
    MIME-Version), the same payload and charset, without parsing Content-Type
    back for its parameters: for a short text part that parsing cost more
    than writing the message out.
    """
    del part["Content-Type"]
    part["Content-Type"] = f'text/{subtype}; charset="{charset.get_output_charset()}"'
    part.set_payload(text)
    part._charset = charset  # type: ignore[attr-defined]  # what set_charset keeps
    part["Content-Transfer-Encoding"] = "7bit"


def _calendar_part(calendar: str) -> MIMENonMultipart:
    """The iMIP part (RFC 6047 §2.4): ``text/calendar; charset=utf-8; method=M``."""
    part = _text_part(normalize_calendar(calendar), "calendar", utf8=True)
    # Unquoted, as Outlook and Google write it; a token needs no quotes.
    part.set_param("method", calendar_method(calendar), requote=False)
    return part


def _params(params: tuple[tuple[str, str], ...]) -> list[str]:
    """Content-Type parameters as the wire carries them, each short enough to fold.

    A short printable ASCII value is written as a token or quoted string; a long
    or non-ASCII one, or one a reader could decode as an encoded word, as RFC 2231
    sections.
    """
    written = []
    for name, value in params:
        if (
            len(value) <= _SHORT_PARAM
            and value.isascii()
            and value.isprintable()
            and not looks_encoded(value)
        ):
            written.append(f"{name}={format_value(value)}")
        else:
            written.extend(_rfc2231(name, value))
    return written


def _rfc2231(param: str, value: str) -> list[str]:
    """*param* as RFC 2231 extended parameters: UTF-8, percent-encoded (§4), in
    sections short enough to fold (§3), each ending at a character boundary."""
    sections = []
    section = "utf-8''"
    for char in value:
        encoded = percent_encode(char, safe=_ATTRIBUTE_CHARS)
        if len(section) + len(encoded) > _SECTION:
            sections.append(section)
            section = ""
        section += encoded
    sections.append(section)
    if len(sections) == 1:
        return [f"{param}*={section}"]
    return [f"{param}*{i}*={section}" for i, section in enumerate(sections)]


def _set_filename(part: MIMEBase, attachment: Attachment) -> None:
    filename = attachment.filename
    disposition = "inline" if attachment.is_inline else "attachment"
    if (
        len(filename) <= _SHORT_PARAM
        and filename.isascii()
        and filename.isprintable()
        and not any(s in filename for s in ('"', "\\", "=?"))
    ):
        part.set_param("name", filename)
        part.add_header("Content-Disposition", disposition, filename=filename)
        return
    check_header_text("filename", filename)  # before encoding hides it
    # RFC 2047 words in name= for clients that read only Content-Type (older
    # Outlook); the standard RFC 2231 form on Content-Disposition.
    part.set_param("name", _encoded_words(filename, first=_NAME_WORD, width=_NAME_WORD))
    part["Content-Disposition"] = "; ".join(
        [disposition, *_rfc2231("filename", filename)]
    )


def _set_message_payload(part: MIMEBase, attachment: Attachment) -> None:
    """Attach a message/rfc822 (or partial, external-body) part as it is.

    RFC 2046 §5.2 allows these only unencoded, so a forwarded message stays
    readable.  8-bit bytes go out as 8bit (message/rfc822 only), which needs the
    server's 8BITMIME: the transport asks for it, or raises ``NotSupportedError``
    when the server lacks it.  A NUL or a line over 998 octets has no legal form.
    """
    data = _BARE_EOL_RE.sub(b"\r\n", attachment.content)
    cte = "7bit" if data.isascii() else _UNENCODED_MESSAGES[part.get_content_subtype()]
    problem = None
    if b"\0" in data:
        problem = "contains a NUL byte"
    elif max(map(len, data.split(b"\r\n"))) > MAX_LINE:
        problem = f"has a line over {MAX_LINE} octets (RFC 5322 §2.1.1)"
    elif cte == "7bit" and not data.isascii():
        problem = "contains 8-bit bytes, which RFC 2046 §5.2 does not allow for it"
    if problem is not None:
        msg = (
            f"attachment {attachment.filename!r} ({attachment.content_type}) "
            f"{problem} and cannot be sent unencoded; attach it as "
            "application/octet-stream to send it base64-encoded"
        )
        raise InvalidMessageError(msg)
    part.set_payload(data.decode("ascii", "surrogateescape"))
    part["Content-Transfer-Encoding"] = cte


def _file_part(attachment: Attachment) -> MIMEBase:
    maintype, _, subtype = attachment.media_type.partition("/")
    if maintype == "multipart" or (
        maintype == "message" and subtype not in _UNENCODED_MESSAGES
    ):
        # RFC 2045 §6.4 forbids encoding a multipart, and without its boundary
        # parameter the raw bytes cannot be parsed; other message/* types
        # (delivery-status, global...) have structures the generator cannot write
        # from bytes.
        msg = (
            f"attachment {attachment.filename!r}: {attachment.content_type} content "
            "cannot be attached; use message/rfc822 for a whole message or "
            "application/octet-stream"
        )
        raise InvalidMessageError(msg)
    part = MIMEBase(maintype, subtype)
    params = attachment.content_type_params
    if maintype == "text" and not any(name == "charset" for name, _ in params):
        # Readers decode text/* by its charset; label the bytes when they say it.
        try:
            attachment.content.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            label = "us-ascii" if attachment.content.isascii() else "utf-8"
            part.set_param("charset", label)
    if maintype == "message":
        _set_message_payload(part, attachment)
    else:
        part.set_payload(attachment.content)
        encoders.encode_base64(part)
    _set_filename(part, attachment)
    if params:
        # Appended to the finished header: set_param would re-serialise RFC 2231
        # sections as one unfoldable line.
        content_type = "; ".join([str(part["Content-Type"]), *_params(params)])
        part.replace_header("Content-Type", content_type)
    if attachment.content_id is not None:
        part["Content-ID"] = f"<{attachment.content_id}>"
    return part


def _body(message: Message) -> MIMEMessage:
    inline = [a for a in message.attachments if a.is_inline]
    attached = [a for a in message.attachments if not a.is_inline]
    # Alternatives from plainest to richest (RFC 2046 §5.1.4); the calendar goes
    # last, where Outlook and Gmail look for an invite.
    alternatives: list[MIMEMessage] = []
    if message.text is not None or message.html is message.calendar is None:
        alternatives.append(_text_part(message.text or "", "plain"))
    if message.html is None:
        attached = inline + attached  # nothing can reference a cid: without HTML
    else:
        html: MIMEMessage = _text_part(message.html, "html")
        if inline:
            # RFC 2387 §3.1: type= names the root part, and it is required.
            parts = [html, *map(_file_part, inline)]
            html = MIMEMultipart("related", _subparts=parts, type="text/html")
        alternatives.append(html)
    if message.calendar is not None:
        alternatives.append(_calendar_part(message.calendar))
    body = alternatives[0]
    if len(alternatives) > 1:
        body = MIMEMultipart("alternative", _subparts=alternatives)
    if attached:
        body = MIMEMultipart("mixed", _subparts=[body, *map(_file_part, attached)])
    return body


def render_with_id(
    message: Message, *, id_domain: str | None = None
) -> tuple[bytes, str]:
    """Render *message*; return its bytes (CRLF, before dot-stuffing) and Message-ID.

    Every line ends in CRLF, the last one included, even when the body does not
    end with a line break.  A generated Message-ID ends in *id_domain* (already
    checked and in ASCII), or else in the sender's domain.

    The Bcc header is never written.  Without SMTPUTF8 the result is 7-bit clean,
    so every server takes it with or without 8BITMIME, except for an attached
    message/rfc822 with 8-bit bytes, which RFC 2046 §5.2.1 lets travel only as
    8bit.  No line exceeds 998 octets.

    Raises:
        InvalidMessageError: A header holds a control character or line break, a
            word that cannot be folded within 998 octets (such as a 1,100-character
            List-Unsubscribe URL), or text that is not valid Unicode; or an
            attachment has no legal transfer encoding.
    """
    utf8 = message.needs_smtputf8
    try:
        msg = _body(message)
        msg["From"] = _addresses("From", (message.sender,), utf8=utf8)
        for name, addresses in (
            ("To", message.to),
            ("Cc", message.cc),
            ("Reply-To", message.reply_to),
        ):
            if addresses:
                msg[name] = _addresses(name, addresses, utf8=utf8)
        if message.subject:
            msg["Subject"] = _unstructured("Subject", message.subject, utf8=utf8)
        msg["Date"] = format_datetime(message.date or datetime.now(timezone.utc))
        domain = id_domain or message.sender.ascii_email.rpartition("@")[2]
        message_id = message.message_id or make_msgid(domain=domain)
        msg["Message-ID"] = message_id
        if message.list_unsubscribe:
            msg["List-Unsubscribe"] = _list_unsubscribe(
                message.list_unsubscribe, utf8=utf8
            )
        if message.list_unsubscribe_one_click:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        for name, value in message.headers.items():
            msg[name] = _unstructured(name, value, utf8=utf8)
        out = BytesIO()
        WireGenerator(out, mangle_from_=False, policy=_WIRE_POLICY).flatten(msg)
        # The generator ends with the body's last character (or the closing
        # boundary); the transport contract promises CRLF-terminated lines.
        return _ending_in_crlf(out.getvalue()), message_id
    except UnicodeEncodeError as exc:  # a lone surrogate, which UTF-8 cannot carry
        msg_text = f"message text is not valid Unicode: {exc.object!r}"
        raise InvalidMessageError(msg_text) from exc


def render(message: Message) -> bytes:
    """Render *message* to CRLF-terminated bytes ready for DATA (before dot-stuffing)."""
    return render_with_id(message)[0]


def _ending_in_crlf(data: bytes) -> bytes:
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class _CRLFBytes(bytes):
    """Bytes that ``normalize_line_endings`` returned: not scanned a second time.

    The mailer normalises raw bytes, and the SMTP transport normalises what it is
    given again (its callers may be anyone's code); for a 100 KB message each
    scan costs more than sending it.
    """

    __slots__ = ()


class _DotFreeBytes(_CRLFBytes):
    """Normalised bytes in which no line starts with ``.``: DATA sends them as they are."""

    __slots__ = ()


class _DottedBytes(_CRLFBytes):
    """Normalised bytes in which some line starts with ``.``: DATA doubles it."""

    __slots__ = ()


_NORMALISED: Final = frozenset({_CRLFBytes, _DotFreeBytes, _DottedBytes})
# One scan finds both what normalising and dot-stuffing look for after a line
# feed: a bare one (no CR before it), or a line that starts with a dot.  Each
# starts with a literal, which the regex engine scans for fast.
_BARE_LF_OR_DOT_RE: Final = re.compile(rb"\n(?:(?<!\r\n)|\.)")
_BARE_LF_RE: Final = re.compile(rb"\n(?<!\r\n)")
_DOT_AFTER_LF_RE: Final = re.compile(rb"\n\.")


def normalize_line_endings(data: bytes) -> bytes:
    """Make every line end in CRLF, including the last (RFC 5321 §2.3.8)."""
    if type(data) in _NORMALISED:
        return data
    found = _BARE_LF_OR_DOT_RE.search(data)
    dotted = data.startswith(b".")
    if found is not None and found.end() - found.start() == 2:
        # A line starting with a dot after a CRLF: look on for a bare LF.
        dotted = True
        found = _BARE_LF_RE.search(data, found.end())
    if found is not None or _LONE_CR_RE.search(data):
        return _CRLFBytes(_ending_in_crlf(_BARE_EOL_RE.sub(b"\r\n", data)))
    data = _ending_in_crlf(data)  # adds no line, so no dot line either
    return _DottedBytes(data) if dotted else _DotFreeBytes(data)


def has_dot_line(data: bytes) -> bool:
    """True when a line of CRLF-normalised *data* starts with ``.`` (RFC 5321 §4.5.2).

    Known without a scan for what ``normalize_line_endings`` returned.
    """
    kind = type(data)
    if kind is _DotFreeBytes:
        return False
    if kind is _DottedBytes:
        return True
    # A regex search for a literal runs a fast scan, unlike ``b"\n." in data``.
    return data.startswith(b".") or _DOT_AFTER_LF_RE.search(data) is not None
