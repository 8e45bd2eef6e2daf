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

# "\r\r\n" is one line break: CRLF text written again through a text-mode file
# (Windows) doubles the CR, and reading it as two breaks would put a blank line
# inside a folded line (RFC 5545 §3.1), ending the fold.
_EOL_RE: Final = re.compile(r"\r\r\n|\r\n|\r|\n")
# RFC 5545 §3.1: a line break followed by one space or TAB continues the line.
_FOLD_RE: Final = re.compile(r"\r\n[ \t]")
_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
# RFC 5545 §3.1 contentline: name *(";" param) ":" value; a parameter value may be
# a quoted string holding ':'.  METHOD only ever appears on VCALENDAR (§3.7.2).
_METHOD_LINE_RE: Final = re.compile(
    r'METHOD(?:;(?:"[^"]*"|[^":])*)?:(?P<value>.*)', re.IGNORECASE
)
# BEGIN:name and END:name delimit components (RFC 5545 §3.4, §3.6); names are
# ASCII, compared case-insensitively.
_COMPONENT_RE: Final = re.compile(r"(BEGIN|END):([A-Za-z0-9-]+)", re.IGNORECASE)
# RFC 5545 §3.1 iana-token, checked before upper-casing: str.upper() turns
# non-ASCII letters into ASCII ones (U+017F becomes "S", U+0131 becomes "I").
_IANA_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9-]+")


def normalize_calendar(text: str) -> str:
    """*text* with every line ending in CRLF, the last one included (RFC 5545 §3.1).

    CR CR LF counts as one line ending (see ``_EOL_RE``); no other text changes.
    """
    text = _EOL_RE.sub("\r\n", text)
    return text if text.endswith("\r\n") else text + "\r\n"


def _content_lines(text: str) -> list[str]:
    unfolded = _FOLD_RE.sub("", normalize_calendar(text))
    return [line for line in unfolded.split("\r\n") if line.strip()]


def _calendar_level_lines(text: str) -> list[str]:
    """The content lines of the one VCALENDAR object in *text*, its own properties only.

    Lines of nested components (VEVENT, VTIMEZONE, VALARM...) are left out.

    Raises:
        ValueError: *text* is not exactly one VCALENDAR object, or a component's
            BEGIN and END do not match.
    """
    lines = _content_lines(text)
    if not lines or lines[0].upper() != "BEGIN:VCALENDAR":
        msg = f"calendar must start with BEGIN:VCALENDAR: {text[:40]!r}"
        raise ValueError(msg)
    if lines[-1].upper() != "END:VCALENDAR":
        msg = f"calendar must end with END:VCALENDAR: {text[-40:]!r}"
        raise ValueError(msg)
    open_components: list[str] = []
    own: list[str] = []
    for number, line in enumerate(lines):
        if not open_components and number:
            msg = (
                "calendar must hold one VCALENDAR object; more follows its "
                f"END:VCALENDAR: {line[:40]!r} (send one invite per message)"
            )
            raise ValueError(msg)
        component = _COMPONENT_RE.fullmatch(line)
        if component is None:
            if len(open_components) == 1:
                own.append(line)
            continue
        kind, name = component[1].upper(), component[2].upper()
        if kind == "BEGIN":
            open_components.append(name)
        elif open_components[-1] != name:
            msg = f"calendar has END:{name} where END:{open_components[-1]} belongs"
            raise ValueError(msg)
        else:
            open_components.pop()
    return own


def calendar_method(text: str) -> str:
    """Return the upper-cased ``METHOD`` of an iCalendar object (``REQUEST``...).

    Only the VCALENDAR's own METHOD counts (RFC 5545 §3.7.2); one inside a VEVENT
    is not the object's method.

    Raises:
        ValueError: There is no METHOD, more than one, it is not an ASCII token, or
            *text* is not one well-nested VCALENDAR object.
    """
    values = set()
    for line in _calendar_level_lines(text):
        match = _METHOD_LINE_RE.fullmatch(line)
        if match is None:
            continue
        value = match["value"].strip()
        if not _IANA_TOKEN_RE.fullmatch(value):
            msg = (
                "calendar METHOD must be a token of ASCII letters, digits and '-' "
                f"such as REQUEST: {value!r}"
            )
            raise ValueError(msg)
        values.add(value.upper())
    if not values:
        msg = (
            "calendar has no METHOD property; an invite needs one on its VCALENDAR "
            "(RFC 6047 §2.4), such as METHOD:REQUEST, METHOD:CANCEL or METHOD:PUBLISH"
            ", outside its VEVENT"
        )
        raise ValueError(msg)
    if len(values) > 1:
        msg = (
            f"calendar has several METHOD values {sorted(values)}; RFC 6047 §2.4 "
            "needs one message per method"
        )
        raise ValueError(msg)
    [method] = values
    return method


def check_calendar(text: str) -> str:
    """Return *text* when it looks like one iCalendar object, else raise ``ValueError``.

    It must run from ``BEGIN:VCALENDAR`` to ``END:VCALENDAR`` with nothing after
    it, nest its components' BEGIN and END lines properly, be valid Unicode (no
    lone surrogates) and carry exactly one METHOD on the VCALENDAR itself.
    """
    if not text.isascii() and _SURROGATE_RE.search(text):
        msg = "calendar must not contain lone surrogates (invalid Unicode)"
        raise ValueError(msg)
    calendar_method(text)
    return text
