"""Exit codes of the ``smtpkit`` command, and which error gets which.

A script tells "fix your settings" (2) from "the server is unreachable" (3) from
"the password is wrong" (4) by the code alone; the sentence on stderr is the
library's own error text (a refused login already says what to check), and for
configuration and connection errors one more line of advice.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

from pydantic import ValidationError

from .._exceptions import (
    AuthenticationError,
    ConfigurationError,
    GreetingRefusedError,
    HeloRefusedError,
    InvalidMessageError,
    NetworkError,
    NotSupportedError,
    SMTPKitError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)

__all__ = [
    "STARTTLS_ADVICE",
    "ExitCode",
    "UsageError",
    "advice_for",
    "exit_code_for",
    "input_errors",
    "is_starttls_failure",
]


class ExitCode(enum.IntEnum):
    """What ``smtpkit`` returns to the shell."""

    OK = 0
    FAILED = 1  # a message or recipient was refused, or another SMTP failure
    CONFIG = 2  # bad URL, option, file or message: nothing was sent
    CONNECT = 3  # no connection, timeout, TLS failure, greeting refused
    AUTH = 4  # the server refused the credentials
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class UsageError(Exception):
    """A command-line mistake the parser cannot see: a missing file, no URL."""


@contextlib.contextmanager
def input_errors(what: str) -> Iterator[None]:
    """Turn any unforeseen error while reading *what* into a ``UsageError``.

    The input is the user's (files, options, stdin): whatever it makes the
    parsers raise (a ``RecursionError`` from deep JSON, an ``OSError`` from a
    device) is a usage error, exit 2, not a traceback.  smtpkit's and
    pydantic's own errors pass through with their exit codes.
    """
    try:
        yield
    except (UsageError, SMTPKitError, ValidationError):
        raise
    except RecursionError:
        msg = f"cannot read {what}: it is nested too deeply"
        raise UsageError(msg) from None
    except Exception as exc:
        msg = f"cannot read {what}: {type(exc).__name__}: {exc}"
        raise UsageError(msg) from None


# Checked in order: the first class that matches decides.
_CODES: tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...] = (
    (
        (UsageError, ConfigurationError, InvalidMessageError, ValidationError),
        ExitCode.CONFIG,
    ),
    ((AuthenticationError,), ExitCode.AUTH),
    (
        (
            NetworkError,
            SMTPTimeoutError,
            TLSError,
            GreetingRefusedError,
            HeloRefusedError,
        ),
        ExitCode.CONNECT,
    ),
)
# No AUTH mechanism in common is a login problem; no STARTTLS a TLS one.
_NOT_SUPPORTED = {"AUTH": ExitCode.AUTH, "STARTTLS": ExitCode.CONNECT}


def is_starttls_failure(exc: BaseException) -> bool:
    """True when STARTTLS was refused (454) or broken (bytes before the handshake).

    Not a failed handshake (``TLSError``, with its own advice), nor a server
    that does not offer STARTTLS at all.
    """
    return (
        isinstance(exc, TransportError)
        and exc.command == "STARTTLS"
        and not isinstance(exc, (TLSError, NotSupportedError))
    )


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the exit code for an error that ended a command."""
    if is_starttls_failure(exc):
        return ExitCode.CONNECT  # a TLS failure, whatever the server replied
    if isinstance(exc, NotSupportedError):
        return _NOT_SUPPORTED.get(exc.command or "", ExitCode.FAILED)
    for classes, code in _CODES:
        if isinstance(exc, classes):
            return code
    return ExitCode.FAILED


_ADVICE = {
    ExitCode.CONFIG: (
        "fix the URL or the options (smtpkit COMMAND --help); nothing was sent"
    ),
    ExitCode.CONNECT: (
        "check the host and port, and the scheme: smtps:// for port 465, smtp:// "
        "(STARTTLS) for 587; a firewall may block outgoing SMTP"
    ),
}


STARTTLS_ADVICE = (
    "the server would not start TLS: a 454 is temporary, so try again later; "
    "if the server offers implicit TLS, use smtps:// (port 465); never send "
    "the password with tls=none"
)


def advice_for(code: ExitCode) -> str | None:
    """One line saying what to do about errors with this exit code, if any."""
    return _ADVICE.get(code)
