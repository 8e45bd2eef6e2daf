"""Header blocks a parser cut short: fields it would send as body text, lines it drops.

The stdlib parser ends a header block at the first line that is not a field, and at
an empty line, which a bare CR makes out of ``Subject: hi\r\r\n`` (a file converted
to CRLF twice).  Either way the fields after the cut become body text: a ``Bcc``
there would be shown to every recipient and not sent to.  It also drops, without a
trace in the output, a part's first line when that line starts with white space or
``From ``.  This module refuses such messages before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.errors import (
    FirstHeaderLineIsContinuationDefect,
    InvalidHeaderDefect,
    MessageDefect,
    MisplacedEnvelopeHeaderDefect,
    MissingHeaderBodySeparatorDefect,
)
from email.message import Message as MIMEMessage
from typing import Final

from ._exceptions import InvalidMessageError

__all__ = ["as_unicode", "check_body_start", "check_header_blocks", "cut_short"]

# A line that starts a header field (the obsolete white space before the colon of
# RFC 5322 §4.5 included), and the line ends a parser may have split a body at
# (CR CR LF and CR CR CR LF are one line end here).
_FIELD_LINE_RE: Final = re.compile(r"([!-9;-~]+)[ \t]*:")
_LINE_END_RE: Final = re.compile(r"\r*\n|\r")
_BLIND_FIELDS: Final = frozenset({"bcc", "resent-bcc"})
_RECIPIENT_FIELDS: Final = frozenset({"to", "cc", "resent-to", "resent-cc"})
# Defects of a header line the parser dropped: a folded line with no field before
# it, a "From " line after the first, a line starting with ':'.
_LOST_LINE_DEFECTS: Final = (
    FirstHeaderLineIsContinuationDefect,
    MisplacedEnvelopeHeaderDefect,
    InvalidHeaderDefect,
)


def check_header_blocks(msg: MIMEMessage) -> None:
    """Refuse a message whose parser stopped reading a header block at a bad line.

    A line that is not a field (no colon, or the obsolete ``Subject : x`` of RFC
    5322 §4.5) ends the header block for the stdlib parser
    (``MissingHeaderBodySeparatorDefect``): every field after it becomes body text.
    A ``Bcc`` there would be neither removed nor sent to, and every recipient would
    read it.  Every part is checked, attached messages included: the rest of a
    part's fields (``Content-Transfer-Encoding``...) would be lost the same way,
    and an attached message would be rewritten with a blank line after the bad one.
    A part with no field at all loses nothing (its body merely lacks the blank line
    before it, which rendering adds), unless its first line is a field written in
    the obsolete ``Name : value`` form, or one the parser drops (see
    ``_check_lines_kept``).

    An empty line ends the block without a defect, and the stdlib reads a bare CR
    as a line end: ``Subject: hi\r\r\n`` (a file converted to CRLF twice) is a
    line and an empty line.  So a message whose body's first paragraph holds a
    ``Bcc`` or ``Resent-Bcc`` field is refused too (see ``check_body_start``).

    Raises:
        InvalidMessageError: Naming the line and the part, or the fields the
            body starts with.
    """
    for number, part in enumerate(msg.walk()):
        if number:
            _check_lines_kept(number, part)
        if not cut_short(part):
            continue
        payload = part.get_payload() if not part.is_multipart() else part.preamble
        text = as_unicode(payload) if isinstance(payload, str) else ""
        line = text.lstrip("\r\n").splitlines()[0] if text.strip() else ""
        if number and not part.keys() and not _FIELD_LINE_RE.match(line):
            continue  # a part (never the message: a Bcc could hide) without fields
        at = f"at the line {line!r}, which" if line else "at a line that"
        msg_text = (
            f"the message cannot be sent as it is: {_where(number, part)} ends early "
            f"{at} is not a 'Name: value' field, so the fields after it "
            "would be sent as body text (a Bcc among them would be shown to every "
            "recipient and not sent to); correct that line or remove it, then parse "
            "the message again (write 'Subject: x', not the obsolete 'Subject : x')"
        )
        raise InvalidMessageError(msg_text)
    check_body_start(msg, recipients=False)


def _where(number: int, part: MIMEMessage) -> str:
    if number == 0:
        return "its header block"
    return f"the header block of part {number} ({part.get_content_type()})"


def _check_lines_kept(number: int, part: MIMEMessage) -> None:
    """Refuse a MIME part whose header block holds a line the parser dropped.

    The parser reads a part's first lines as its header block up to a line that
    cannot start a field.  A line there that starts with white space and follows
    no field, a ``From `` line after the first (or one starting with ``:``) is
    dropped with a defect; a first line starting with ``From `` is kept apart as
    the part's mbox "unixfrom", which the generator never writes.  In a part with
    no field at all, that line was the first line of its text (``  Total: 100``,
    ``From the accounts team``); in a part with fields it is junk in its header
    block.  Either way it would silently not be sent.  A line of white space alone
    loses nothing, and an attached message's own ``From `` line (an mbox export)
    is not text: neither is refused.
    """
    headerless = not part.keys()
    lost = [
        _defect_line(defect)
        for defect in part.defects
        if isinstance(defect, _LOST_LINE_DEFECTS) and _defect_line(defect).strip()
    ]
    unixfrom = part.get_unixfrom()
    if headerless and unixfrom:
        lost.insert(0, unixfrom)
    if not lost:
        return
    line = lost[0]
    shown = f"the line {line!r}" if line != ":" else "a line that starts with ':'"
    if headerless:
        msg_text = (
            f"the message cannot be sent as it is: part {number} "
            f"({part.get_content_type()}) has no header, so the parser reads its "
            f"first lines as one and would drop {shown} (a line that starts with "
            "white space, 'From ' or ':' is not kept in a part's text); start the "
            "part with an empty line (an empty header block), then parse the "
            "message again"
        )
    else:
        msg_text = (
            f"the message cannot be sent as it is: {_where(number, part)} holds "
            f"{shown}, which is not a 'Name: value' field and would be dropped; "
            "correct that line or remove it, then parse the message again"
        )
    raise InvalidMessageError(msg_text)


def _defect_line(defect: MessageDefect) -> str:
    """The line a defect is about, without its line end (':' when it has none)."""
    line = getattr(defect, "line", None)
    if isinstance(defect, InvalidHeaderDefect) or not isinstance(line, str):
        return ":"  # "Missing header name.": the parser keeps no line
    return as_unicode(line).rstrip("\r\n")


def check_body_start(msg: MIMEMessage, *, recipients: bool) -> None:
    """Refuse a message whose body starts with fields its header block lost.

    Only the first paragraph of the message's own body (or a multipart's
    preamble) is read, after any blank lines: the lost fields are there, whatever
    junk (or blank lines, from CR CR CR LF) the cut left around them, and the
    message's own fields alone make the envelope and are left out as Bcc.  A
    ``Bcc`` or ``Resent-Bcc`` there is always refused.  A ``To``, ``Cc``,
    ``Resent-To`` or ``Resent-Cc`` with an address is refused only when
    *recipients* come from the headers (an explicit envelope loses nobody) and
    the header block has no field of that name (one it has makes a cut before
    the body's field unlikely): an inline forward (``From:``, ``Sent:``, ``To:``)
    or a form notification that starts ``To: sales@example.com`` is sent.  A body
    meant to hold such fields starts with a paragraph without them.
    """
    own = {name.lower() for name in msg}
    found = [
        name
        for name, value in _leading_fields(msg)
        if name.lower() in _BLIND_FIELDS
        or (
            recipients
            and name.lower() in _RECIPIENT_FIELDS
            and name.lower() not in own
            and "@" in value
        )
    ]
    if not found:
        return
    blind = any(name.lower() in _BLIND_FIELDS for name in found)
    lost = (
        "a Bcc would be shown to every recipient and not sent to"
        if blind
        else "their addresses would not be sent to"
    )
    msg_text = (
        "the message cannot be sent as it is: its header block probably ends "
        "early, as the first paragraph of its body holds header fields "
        f"({', '.join(found)}) that would be sent as body text ({lost}). A line "
        "that ends in a bare CR (CR CR LF, as in a file converted to CRLF twice) or "
        "an empty line ends the header block: fix the line endings "
        "(re.sub(rb'\\r+\\n', b'\\r\\n', raw)) and parse the message again; a body "
        "meant to hold these lines must start with a paragraph without them (a "
        "line of other text, then an empty line)"
    )
    raise InvalidMessageError(msg_text)


def _leading_fields(msg: MIMEMessage) -> list[tuple[str, str]]:
    """The name and value of each field line in the body's first paragraph.

    Blank lines (empty, or white space alone) before it are skipped: CR CR CR LF
    at the cut leaves one, and so does a line of white space after it.  The
    paragraph then runs to the next empty line, past lines that are no field (a
    header block can hold junk that the cut, not the junk, ended); a line of white
    space alone does not end it, as it does not end a header block.  Folded lines
    belong to the field before them, and to none after a line that is no field.
    """
    body = msg.preamble if msg.is_multipart() else msg.get_payload()
    fields: list[tuple[str, str]] = []
    folding = False  # whether a folded line continues the last field
    started = False
    for line in _lines(body if isinstance(body, str) else ""):
        if not line.strip():
            if started and not line:
                break
            continue
        started = True
        if line[:1] in (" ", "\t"):
            if folding:
                fields[-1] = (fields[-1][0], fields[-1][1] + line)
        elif field := _FIELD_LINE_RE.match(line):
            fields.append((field[1], line[field.end() :]))
            folding = True
        else:
            folding = False
    return fields


def _lines(text: str) -> Iterator[str]:
    """Each line of *text*, lazily: a body can be megabytes long."""
    start = 0
    for end in _LINE_END_RE.finditer(text):
        yield text[start : end.start()]
        start = end.end()
    yield text[start:]


def cut_short(part: MIMEMessage) -> bool:
    """Whether the parser ended *part*'s header block at a line that is no field."""
    return any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in part.defects)


def as_unicode(text: str) -> str:
    """*text* with raw UTF-8 bytes (parsed, as surrogate escapes) decoded."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return text  # another 8-bit charset: compared as it is
