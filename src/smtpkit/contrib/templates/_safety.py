"""What keeps recipient data in its place: one-line subjects and safe link schemes.

HTML autoescaping (Jinja2's) keeps data from becoming markup, but an escaped
``javascript:alert(1)`` is still a working link, and a subject is a header, where
a line break in the data would start a header of its own.  So every rendered
subject is checked to be one line, and every URL attribute of the final HTML
(after CSS inlining, as the client will read it) to use an allowed scheme.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from typing import Final

from typing_extensions import override

from ._errors import TemplateRenderError

__all__ = [
    "DEFAULT_URL_SCHEMES",
    "check_tag",
    "check_urls",
    "escape_attribute_brackets",
    "one_line",
    "subject_value",
]

DEFAULT_URL_SCHEMES: Final = frozenset({"http", "https", "mailto", "tel", "cid"})
"""URL schemes a link or image in a rendered HTML part may use; a relative URL
(no scheme) is always allowed.  ``cid:`` names an inline attachment."""

# Attributes whose value a mail client (or the browser it opens) follows as a URL.
_URL_ATTRIBUTES: Final = frozenset(
    {"href", "src", "action", "formaction", "background", "poster", "cite",
     "longdesc", "xlink:href", "data"}
)  # fmt: skip
# WHATWG URL parsing drops leading C0 controls and spaces and every tab and line
# break inside, so "java\tscript:" and " javascript:" are javascript: URLs.
_IGNORED_BY_BROWSERS_RE: Final = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# <meta http-equiv="refresh" content="0; url=...">: a redirect some clients follow.
_REFRESH_URL_RE: Final = re.compile(r"^[^;,]*[;,]\s*(?:url\s*=\s*)?['\"]?", re.I)
# ASCII white space and what str.splitlines breaks at; other spaces (NBSP) stay.
_LINE_SPACE_RE: Final = re.compile(r"[ \t\r\n\v\f\x1c-\x1f\x85\u2028\u2029]+")


# A start tag as an HTML5 serializer (css-inline's) writes it: every attribute
# value double-quoted, with no raw '"' inside (but raw '<' and '>').
_SERIALIZED_TAG_RE: Final = re.compile(
    r'<[A-Za-z][^\s/>]*(?:\s+[^\s"\'<>/=]+(?:="[^"]*")?)*\s*/?>'
)
_QUOTED_VALUE_RE: Final = re.compile(r'="([^"]*)"')


def _escape_brackets(value: re.Match[str]) -> str:
    escaped = value[1].replace("<", "&lt;").replace(">", "&gt;")
    return f'="{escaped}"'


def escape_attribute_brackets(html: str) -> str:
    """Write ``<`` and ``>`` inside attribute values as character references.

    HTML5 serialization (what the CSS inliner writes) leaves them raw in quoted
    attributes: harmless to a conforming parser, but the kind of text that naive
    mail sanitizers have misread.  So escaped data stays escaped on the wire.
    """
    return _SERIALIZED_TAG_RE.sub(
        lambda tag: _QUOTED_VALUE_RE.sub(_escape_brackets, tag[0]), html
    )


def _is_line_control(char: str) -> bool:
    # Cc covers CR, LF, TAB, NUL, DEL, C1 and the FS/GS/RS that str.splitlines
    # (used by the stdlib when folding headers) breaks at; Zl/Zp are U+2028/9.
    return unicodedata.category(char) in {"Cc", "Zl", "Zp"}


def _control_in(text: str) -> str | None:
    return next((char for char in text if _is_line_control(char)), None)


def subject_value(value: object) -> object:
    """Refuse a subject expression's value holding a control character.

    The subject environment's ``finalize``: every ``{{ ... }}`` of a subject
    template passes through it, so recipient data with a line break fails its
    row instead of writing a header of its own (or being silently rewritten).

    Raises:
        TemplateRenderError: The value's text holds a control character or a
            line separator.
    """
    if (char := _control_in(str(value))) is not None:
        msg = (
            f"a value in the subject holds the control character U+{ord(char):04X};"
            " a subject is one line of text"
        )
        raise TemplateRenderError(msg)
    return value


def one_line(subject: str) -> str:
    """The rendered subject as one line: the template's own line breaks and
    indentation (around ``{% if %}`` blocks, say) become single spaces.

    Raises:
        TemplateRenderError: A control character other than white space is left
            (written into the template itself).
    """
    line = _LINE_SPACE_RE.sub(" ", subject).strip(" ")
    if (char := _control_in(line)) is not None:
        msg = f"the subject holds the control character U+{ord(char):04X}"
        raise TemplateRenderError(msg)
    return line


def scheme_of(url: str) -> str | None:
    """The scheme of *url* as a browser reads it, lower case; None if relative."""
    match = _SCHEME_RE.match(_IGNORED_BY_BROWSERS_RE.sub("", url))
    return None if match is None else match[1].lower()


def check_tag(
    tag: str, attrs: list[tuple[str, str | None]], schemes: frozenset[str]
) -> None:
    """Refuse a start tag with a URL attribute whose scheme is not in *schemes*.

    Raises:
        TemplateRenderError: A link, image or form uses a scheme not allowed.
    """
    fields = dict(attrs)
    for name, value in attrs:
        if value is None:
            continue
        if name == "srcset":
            # Candidates "URL [descriptor]", separated by commas.
            urls = [part.split()[0] for part in value.split(",") if part.split()]
        elif name in _URL_ATTRIBUTES:
            urls = [value]
        elif (
            tag == "meta"
            and name == "content"
            and (fields.get("http-equiv") or "").lower() == "refresh"
        ):
            urls = [_REFRESH_URL_RE.sub("", value, count=1)]
        else:
            continue
        for url in urls:
            scheme = scheme_of(url)
            if scheme is not None and scheme not in schemes:
                # The URL itself stays out: it may hold a personal token.
                msg = (
                    f"<{tag} {name}=...> uses the URL scheme {scheme!r}, which is "
                    f"not allowed (allowed: {', '.join(sorted(schemes))})"
                )
                raise TemplateRenderError(msg)


class _URLChecker(HTMLParser):
    """Raises at the first URL attribute whose scheme is not allowed."""

    def __init__(self, schemes: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.schemes = schemes

    @override
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        check_tag(tag, attrs, self.schemes)


def check_urls(html: str, schemes: frozenset[str]) -> None:
    """Refuse a URL attribute in *html* whose scheme is not in *schemes*.

    Character references are decoded first (``&#106;avascript:`` is
    ``javascript:``), then what browsers ignore in a URL is dropped.

    Raises:
        TemplateRenderError: A link, image or form uses a scheme not allowed.
    """
    checker = _URLChecker(schemes)
    checker.feed(html)
    checker.close()
