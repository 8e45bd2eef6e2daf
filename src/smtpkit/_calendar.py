"""The iCalendar text of a calendar invite: light checks and its iTIP method.

smtpkit does not build or fully parse iCalendar (use a library such as
``icalendar`` for that); it checks what the MIME part depends on.  iMIP (RFC 6047
§2.4) puts the object's ``METHOD`` on the part's Content-Type as ``method=``, and
mail clients (Outlook, Gmail) show the accept/decline buttons only when it is
there, so the method is read from the text and a calendar without one is refused.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["calendar_method", "check_calendar", "normalize_calendar"]

_EOL_RE: Final = re.compile(r"\r\n|\r|\n")
# RFC 5545 §3.1: a line break followed by one space or TAB continues the line.
_FOLD_RE: Final = re.compile(r"\r\n[ \t]")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
# RFC 5545 §3.1 contentline: name *(";" param) ":" value; a parameter value may be
# a quoted string holding ':'.  METHOD only ever appears on VCALENDAR (§3.7.2).
_METHOD_LINE_RE: Final = re.compile(
    r'METHOD(?:;(?:"[^"]*"|[^":])*)?:(?P<value>.*)', re.IGNORECASE
)
_IANA_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9-]+")  # RFC 5545 §3.1 iana-token


def normalize_calendar(text: str) -> str:
    """*text* with every line ending in CRLF, the last one included (RFC 5545 §3.1)."""
    text = _EOL_RE.sub("\r\n", text)
    return text if text.endswith("\r\n") else text + "\r\n"


def _content_lines(text: str) -> list[str]:
    unfolded = _FOLD_RE.sub("", normalize_calendar(text))
    return [line for line in unfolded.split("\r\n") if line.strip()]


def calendar_method(text: str) -> str:
    """Return the upper-cased ``METHOD`` of an iCalendar object (``REQUEST``...).

    Raises:
        ValueError: There is no METHOD, more than one, or it is not a token.
    """
    methods = {
        match["value"].strip().upper()
        for line in _content_lines(text)
        if (match := _METHOD_LINE_RE.fullmatch(line))
    }
    if not methods:
        msg = (
            "calendar has no METHOD property; an invite needs one on its VCALENDAR "
            "(RFC 6047 §2.4), such as METHOD:REQUEST, METHOD:CANCEL or METHOD:PUBLISH"
        )
        raise ValueError(msg)
    if len(methods) > 1:
        msg = (
            f"calendar has several METHOD values {sorted(methods)}; RFC 6047 §2.4 "
            "needs one message per method"
        )
        raise ValueError(msg)
    [method] = methods
    if not _IANA_TOKEN_RE.fullmatch(method):
        msg = f"calendar METHOD must be a token such as REQUEST: {method!r}"
        raise ValueError(msg)
    return method


def check_calendar(text: str) -> str:
    """Return *text* when it looks like one iCalendar object, else raise ``ValueError``.

    It must run from ``BEGIN:VCALENDAR`` to ``END:VCALENDAR``, be valid Unicode
    (no lone surrogates) and carry exactly one METHOD.
    """
    if not text.isascii() and _SURROGATE_RE.search(text):
        msg = "calendar must not contain lone surrogates (invalid Unicode)"
        raise ValueError(msg)
    lines = _content_lines(text)
    if not lines or lines[0].upper() != "BEGIN:VCALENDAR":
        msg = f"calendar must start with BEGIN:VCALENDAR: {text[:40]!r}"
        raise ValueError(msg)
    if lines[-1].upper() != "END:VCALENDAR":
        msg = f"calendar must end with END:VCALENDAR: {text[-40:]!r}"
        raise ValueError(msg)
    calendar_method(text)
    return text
