"""SMTP URLs (``smtps://user:pass@host:465?timeout=10``) into ``SMTPConfig`` fields.

The user name and password must be percent-encoded.  A URL where that was
forgotten is refused rather than read with part of the password as the host, and
no error here quotes any part of the user name or password: errors are raised
outside ``except`` blocks, so no chained exception quotes them either.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

from ._exceptions import ConfigurationError

__all__ = ["smtp_url_fields"]

# The scheme and authority of a URL, as urlsplit finds them (RFC 3986 §3.2).
_URL_AUTHORITY_RE: Final = re.compile(
    r" *[A-Za-z][A-Za-z0-9+.-]*://(?P<authority>[^/?#]*)(?P<rest>.*)", re.DOTALL
)
_BAD_PERCENT_RE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PERCENT_ENCODE: Final = (
    "percent-encode the password (e.g. urllib.parse.quote(password, safe='')) "
    "and the user name"
)


def smtp_url_fields(url: str) -> dict[str, Any]:
    """Split an SMTP URL into SMTPConfig fields; raise ``ConfigurationError`` if it fails.

    No message quotes the userinfo (see ``_userinfo_problem``), and every error is
    raised outside an ``except`` block, so no chained exception quotes it either.
    """
    problem = _userinfo_problem(url)
    if problem is not None:
        msg = f"invalid SMTP URL: {problem}; {_PERCENT_ENCODE}"
        raise ConfigurationError(msg)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # Some of urlsplit's messages quote the netloc, userinfo included.
        failure: str | None = str(exc)
        if "@" in url:
            failure = f"it cannot be split into user, host and port; {_PERCENT_ENCODE}"
    else:
        failure = None
    if failure is not None:
        msg = f"invalid SMTP URL: {failure}"
        raise ConfigurationError(msg)
    schemes = {"smtp": "starttls", "smtps": "implicit"}  # TLSMode values
    if parts.scheme not in schemes:
        # Without "//", urlsplit may take a user name for the scheme: never echo it.
        shown = "" if "@" in url else f", not {parts.scheme!r}"
        msg = f"SMTP URL scheme must be smtp:// or smtps://{shown}"
        raise ConfigurationError(msg)
    if not parts.hostname:
        msg = "SMTP URL has no host"
        raise ConfigurationError(msg)
    fields: dict[str, Any] = {"host": parts.hostname, "tls": schemes[parts.scheme]}
    if port is not None:
        fields["port"] = port
    for name, raw in (("username", parts.username), ("password", parts.password)):
        if raw is not None:
            fields[name] = _percent_decode(raw)
    fields.update(parse_qsl(parts.query, keep_blank_values=False))
    return fields


def _userinfo_problem(url: str) -> str | None:
    """Say why the user name or password of *url* cannot be read safely, if so.

    A ``/``, ``?`` or ``#`` in the password ends the authority early, so its ``@``
    turns up after the host; a second ``@`` or a ``[`` makes ``urlsplit`` read part
    of the password as the host.  Either way host and port come out wrong, and
    errors about them would quote pieces of the password.
    """
    if any(ch < " " or ch == "\x7f" for ch in url):
        return "it contains control characters or line breaks"
    match = _URL_AUTHORITY_RE.match(url)
    if match is None:
        return None  # no authority: the scheme or host check reports it
    userinfo = match["authority"].rpartition("@")[0]
    if "@" in match["rest"]:
        return (
            "an '@' follows the host, so a '/', '?' or '#' in the user name or "
            "password ended it early (in a query value, write '@' as %40)"
        )
    if any(ch in userinfo for ch in "@[]"):
        return "the user name or password contains '@', '[' or ']'"
    if _BAD_PERCENT_RE.search(userinfo):
        return "the user name or password has a '%' that does not start a %XX escape"
    return None


def _percent_decode(raw: str) -> str:
    """Percent-decode a user name or password as UTF-8, refusing invalid bytes."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        pass  # raised below, so the error does not chain the bytes
    msg = (
        "invalid SMTP URL: the user name or password is not UTF-8 once "
        f"percent-decoded; {_PERCENT_ENCODE}"
    )
    raise ConfigurationError(msg)
