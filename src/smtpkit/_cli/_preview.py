"""An HTML preview of rendered bytes: the HTML part, its ``cid:`` images inlined.

A browser cannot resolve ``cid:`` URLs (RFC 2392), so each one naming a part of
the message becomes a ``data:`` URI of that part; nothing else in the HTML is
changed, added or escaped, so the browser shows what a mail client would.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from email.message import EmailMessage
from typing import Final
from urllib.parse import unquote

__all__ = ["NoHTMLError", "preview_html"]

# A cid: URL inside an attribute value (quoted or not) or a CSS url(...).
_CID_RE: Final = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)


class NoHTMLError(ValueError):
    """The message has no text/html part to preview."""


def preview_html(data: bytes) -> bytes:
    """Return the HTML part of the message *data*, with ``cid:`` images inlined.

    The result keeps the part's own charset, so a ``<meta charset>`` in it stays
    true.

    Raises:
        NoHTMLError: The message has no HTML part.
    """
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # noqa: S101 - the default policy's class
    html_part = message.get_body(preferencelist=("html",))
    if html_part is None:
        msg = "the message has no HTML part to preview (give --html FILE)"
        raise NoHTMLError(msg)
    html: str = html_part.get_content()
    images = _parts_by_content_id(message)

    def inline(match: re.Match[str]) -> str:
        found = images.get(unquote(match[1]))
        return match[0] if found is None else found

    charset = html_part.get_content_charset() or "utf-8"
    return _CID_RE.sub(inline, html).encode(charset, errors="xmlcharrefreplace")


def _parts_by_content_id(message: EmailMessage) -> dict[str, str]:
    """Each part with a Content-ID, as a ``data:`` URI, by its id without ``<>``."""
    found: dict[str, str] = {}
    for part in message.walk():
        content_id = part.get("Content-ID")
        if content_id is None or part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):  # pragma: no cover - a leaf part has bytes
            continue
        encoded = base64.b64encode(payload).decode("ascii")
        key = str(content_id).strip().removeprefix("<").removesuffix(">")
        found.setdefault(key, f"data:{part.get_content_type()};base64,{encoded}")
    return found
