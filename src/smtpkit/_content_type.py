"""An attachment's ``Content-Type``: a media type and its parameters, checked.

The text is parsed by the stdlib's header registry (``email.headerregistry``), the
parser ``email.policy.default`` uses, so quoted strings, comments and RFC 2231
extended values are read as every mail reader reads them; anything it reports as a
defect is refused rather than guessed at.  On top of that come the checks that keep
a header safe to write: media type and parameter names are RFC 2045 §5.1 tokens,
and no value (once RFC 2231 percent-decoding has run) holds a control character or
line break.  Rendering the parameters lives in ``_mime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import ContentTypeHeader
from email.utils import quote
from typing import Any, Final
from urllib.parse import quote as percent_encode

from ._address import check_single_line

__all__ = [
    "RESERVED_PARAMS",
    "ContentType",
    "check_charset",
    "format_param",
    "format_value",
    "looks_encoded",
    "parse_content_type",
]

# RFC 2045 §5.1: token := 1*<any US-ASCII CHAR except SPACE, CTLs, or tspecials>.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+.0-9A-Z^_`a-z{|}~-]+")
# Written bare: a token without "'" and "*", which parsers read as RFC 2231 syntax.
_BARE_VALUE_RE: Final = re.compile(r"[!#$%&+.0-9A-Z^_`a-z{|}~-]+")
_MAX_NAME: Final = 64  # a parameter name must fit one folded header line
# Parameters the renderer writes itself: ``name`` comes from the filename and
# ``boundary`` exists only on multipart/*, which cannot be attached.
RESERVED_PARAMS: Final = {
    "name": "it is set from the attachment's filename",
    "boundary": "only multipart/* types have one, and they cannot be attached",
}


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed, checked media type with its parameters in their given order."""

    media_type: str
    params: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        """The canonical text: ``type/subtype; name=value; name="quoted value"``."""
        return "; ".join(
            [self.media_type, *(format_param(n, v) for n, v in self.params)]
        )


def looks_encoded(value: str) -> bool:
    """Whether readers could take part of *value* for an RFC 2047 encoded word.

    The stdlib (and other readers) decode encoded words even inside quoted
    strings, so such a value is only safe in RFC 2231 form.
    """
    return "=?" in value


def format_value(value: str) -> str:
    """*value* as a bare token when it is one, else as an RFC 5322 quoted string."""
    return value if _BARE_VALUE_RE.fullmatch(value) else f'"{quote(value)}"'


def format_param(name: str, value: str) -> str:
    """``name=value``, or ``name*=utf-8''...`` when a quoted string would be misread."""
    if looks_encoded(value):
        return f"{name}*=utf-8''{percent_encode(value, safe='')}"
    return f"{name}={format_value(value)}"


def parse_content_type(text: str) -> ContentType:
    """Parse ``type/subtype; name=value ...`` or raise ``ValueError`` saying why.

    The media type and parameter names come back lower-cased (RFC 2045 §5.1 makes
    them case-insensitive); values are kept as written, RFC 2231 forms decoded.
    """
    check_single_line(text, "content_type")
    maintype, _, subtype = text.partition(";")[0].partition("/")
    maintype, subtype = maintype.strip(), subtype.strip()
    if not (_TOKEN_RE.fullmatch(maintype) and _TOKEN_RE.fullmatch(subtype)):
        msg = f"content_type must start with a media type like type/subtype: {text!r}"
        raise ValueError(msg)
    # The documented hook a header class parses with; it fills in the keywords.
    parsed: dict[str, Any] = {"defects": []}
    ContentTypeHeader.parse(text, parsed)
    if defects := parsed["defects"]:
        reason = str(defects[0]) or type(defects[0]).__name__
        msg = f"content_type is not a valid Content-Type ({reason}): {text!r}"
        raise ValueError(msg)
    params = tuple((str(name), str(value)) for name, value in parsed["params"].items())
    # The parser keeps the first of two names differing only in case, silently.
    if len(params) != len(list(parsed["parse_tree"].params)):
        msg = f"content_type names a parameter twice: {text!r}"
        raise ValueError(msg)
    for name, value in params:
        _check_param(name, value)
    return ContentType(f"{maintype}/{subtype}".lower(), params)


def _check_param(name: str, value: str) -> None:
    if not _TOKEN_RE.fullmatch(name) or len(name) > _MAX_NAME:
        msg = (
            "content_type parameter names must be tokens of at most "
            f"{_MAX_NAME} characters: {name!r}"
        )
        raise ValueError(msg)
    if reason := RESERVED_PARAMS.get(name):
        msg = f"content_type parameter {name!r} cannot be given: {reason}"
        raise ValueError(msg)
    # Checked again after parsing: RFC 2231 percent-encoding can spell a CR or LF.
    check_single_line(value, f"content_type parameter {name}")
    if "\t" in value:
        msg = f"content_type parameter {name} must not contain a TAB: {value!r}"
        raise ValueError(msg)


def check_charset(content_type: ContentType, content: bytes) -> None:
    """Refuse a ``charset`` parameter that the content's bytes contradict.

    A charset Python knows must decode the content; an unknown name is left to
    the reader (``x-`` charsets exist).
    """
    charset = dict(content_type.params).get("charset")
    if charset is None:
        return
    try:
        content.decode(charset)
    except LookupError:  # unknown, or not a text encoding (base64, rot13)
        return
    except UnicodeDecodeError:
        msg = f"content_type says charset={charset} but the content is not valid {charset}"
        raise ValueError(msg) from None
