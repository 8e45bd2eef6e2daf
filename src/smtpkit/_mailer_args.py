"""Checks of what is passed to ``Mailer``: wrong kinds of argument say what to pass."""

from __future__ import annotations

import re
from typing import Final, TypeGuard

from ._address import ascii_domain
from ._config import SMTPConfig
from ._exceptions import ConfigurationError
from ._transports.base import Transport

__all__ = [
    "check_arguments",
    "id_domain",
    "max_concurrency",
    "positive_int",
    "transport_for",
]

_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_DOMAIN: Final = 253


def check_arguments(config: object, transport: object) -> None:
    """Refuse a wrong kind of argument with what to pass instead.

    The static signature already says so, but untyped callers would otherwise get
    an ``AttributeError`` from deep inside the transport.
    """
    if config is not None and not isinstance(config, SMTPConfig):
        if isinstance(config, Transport):
            name = type(config).__name__
            msg = f"Mailer(config) takes an SMTPConfig; pass transport={name}(...) by keyword"
        elif isinstance(config, str):
            msg = (
                "Mailer(config) takes an SMTPConfig, not a URL string; build a config "
                "with SMTPConfig.from_url(...): Mailer(SMTPConfig.from_url(url))"
            )
        else:
            msg = (
                f"Mailer(config) takes an SMTPConfig, not {type(config).__name__}; "
                "build one with SMTPConfig(host=...) or SMTPConfig.from_url(url)"
            )
        raise TypeError(msg)
    if transport is not None and not isinstance(transport, Transport):
        if isinstance(transport, SMTPConfig):
            msg = (
                "transport= takes a Transport; pass an SMTPConfig first: Mailer(config)"
            )
        else:
            msg = (
                f"transport= takes a Transport (such as FakeTransport() or "
                f"SMTPTransport(config)), not {type(transport).__name__}"
            )
        raise TypeError(msg)


def id_domain(domain: str) -> str:
    """*domain* checked as a host name (RFC 1123 §2.1) and IDNA-encoded.

    Encoded as addresses' domains are (``_address.ascii_domain``): IDNA 2008 with
    ``pysmtpkit[idna]``, and nothing that a mapping would change (``faß.de`` is not
    ``fass.de``; a soft hyphen or full-width letters are not dropped or folded).
    """
    try:
        encoded, problem = ascii_domain(domain), ""
    except ValueError as exc:
        encoded, problem = "", f": {exc}"
    labels = encoded.split(".")
    if not (
        0 < len(encoded) <= _MAX_DOMAIN
        and all(_LABEL_RE.fullmatch(label) for label in labels)
    ):
        msg = (
            f"message_id_domain must be a domain name such as 'mail.example.com', "
            f"not {domain!r}{problem}"
        )
        raise ConfigurationError(msg)
    return encoded


def positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def max_concurrency(transport: Transport) -> int:
    """*transport*'s ``max_concurrency``, checked: it may be a third party's."""
    name = f"{type(transport).__name__}.max_concurrency"
    try:
        limit: object = transport.max_concurrency
    except Exception as exc:
        msg = f"{name} raised {type(exc).__name__}: {exc}"
        raise ConfigurationError(msg) from exc
    if not positive_int(limit):
        msg = f"{name} must be a positive int, not {limit!r}"
        raise ConfigurationError(msg)
    return limit


def transport_for(config: SMTPConfig | None, transport: Transport | None) -> Transport:
    """The transport a mailer sends through: *transport*, or one for *config*.

    Raises:
        ConfigurationError: Neither or both are given.
    """
    if (config is None) == (transport is None):
        msg = "pass exactly one of config= or transport="
        raise ConfigurationError(msg)
    if transport is None:
        from ._transports.smtp import SMTPTransport  # noqa: PLC0415 - only the default needs smtplib

        assert config is not None  # noqa: S101 - checked above
        transport = SMTPTransport(config)
    return transport
