"""The TLS modes, and what an unknown one most likely meant."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

__all__ = ["TLSMode", "TLSModeLike", "known_tls_mode"]


class TLSMode(str, Enum):
    """How the connection is protected.

    Attributes:
        IMPLICIT: TLS from the first byte ("SMTPS", port 465, RFC 8314).
        STARTTLS: Plain connect, then STARTTLS, which is required: a server that
            does not offer it, or refuses it, fails the connection before any
            credential or message is sent (port 587).
        NONE: No TLS at all (port 25; local relays and tests).
    """

    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


TLSModeLike = TLSMode | Literal["implicit", "starttls", "none"]
"""A ``TLSMode`` or its value; any other string is refused."""


def known_tls_mode(value: Any) -> Any:
    """Refuse an unknown TLS mode with the valid values and the likely one.

    Other libraries and settings call the modes "ssl", "tls" and so on;
    these are not accepted silently ("tls" means STARTTLS in Django and
    Laravel but implicit TLS elsewhere), but the error names the mode meant.
    """
    if isinstance(value, TLSMode) or (
        # Only a str is looked up: a list or dict is unhashable (TypeError).
        isinstance(value, str) and value in {m.value for m in TLSMode}
    ):
        return value
    valid = "tls must be one of 'implicit', 'starttls' or 'none'"
    word = value.strip().lower().replace("-", "_") if isinstance(value, str) else None
    if word is None:
        hint = "give a TLSMode or its value"
    elif word in {m.value for m in TLSMode}:
        hint = f"write it in lower case, tls={word!r}"
    elif word in {"ssl", "smtps", "ssl/tls", "implicit_tls", "tls_implicit"}:
        hint = "SSL/SMTPS, TLS from the first byte (port 465), is tls='implicit'"
    elif word == "tls":
        hint = (
            "'tls' is ambiguous: STARTTLS on port 587 (what Django's "
            "EMAIL_USE_TLS and Laravel's encryption=tls mean) is "
            "tls='starttls'; TLS from the first byte on port 465 is "
            "tls='implicit'"
        )
    elif word in {"start_tls", "starttls_required", "explicit", "explicit_tls"}:
        hint = "STARTTLS (port 587) is tls='starttls'"
    elif word in {"", "plain", "plaintext", "off", "false", "no", "disabled"}:
        hint = "no TLS at all (loopback or a trusted network only) is tls='none'"
    else:
        hint = "see TLSMode"
    msg = f"{valid}, not {value!r}: {hint}"
    raise ValueError(msg)
