"""The one place where smtplib, ssl and socket exceptions become smtpkit exceptions.

:func:`map_errors` works like httpx's ``map_httpcore_exceptions``: a context manager
around every piece of transport code that touches the network.  It knows the step
(``Progress.command``) and, for connection set-up, the server (``Endpoint``) and the
connect stage, so a message says where it failed and, for a TLS mode that does not
match the port, what to change (see ``_hints``).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from .._config import TLSMode
from .._exceptions import (
    AuthenticationError,
    ConnectError,
    ConnectTimeoutError,
    DataRefusedError,
    GreetingRefusedError,
    HeloRefusedError,
    NotSupportedError,
    ProtocolError,
    ReadTimeoutError,
    RecipientsRefusedError,
    SenderRefusedError,
    ServerDisconnectedError,
    SMTPKitError,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)
from .._reply import parse_reply
from ._connection import SMTPConnection
from ._hints import (
    Endpoint,
    is_lost_session_alert,
    lost_session_message,
    tls_failure,
    tls_step_text,
)

__all__ = ["Progress", "map_errors"]

_TLS_HANDSHAKES: Final = frozenset({"connect", "STARTTLS"})
_TLS_CLOSED: Final = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)

# smtplib's own reply exceptions, for subclasses that call its high-level methods.
_REPLY_ERRORS: Final[
    dict[type[smtplib.SMTPResponseException], type[SMTPReplyError]]
] = {
    smtplib.SMTPConnectError: GreetingRefusedError,
    smtplib.SMTPHeloError: HeloRefusedError,
    smtplib.SMTPAuthenticationError: AuthenticationError,
    smtplib.SMTPDataError: DataRefusedError,
}


@dataclass(slots=True)
class Progress:
    """Which step a connection was at, and where it goes, for error reports.

    Attributes:
        command: The SMTP step (``"connect"``, ``"STARTTLS"``, ``"MAIL"``...).
        endpoint: The server, when known: messages then name it.
        conn: The connection being opened, whose ``connect_stage`` tells TCP
            connect, TLS handshake and greeting apart.
        tls_min_version: The configured minimum, named when no version fits.
        client_cert: The configured client certificate path, named when the
            server refuses it.
        tls_up: The connection had finished the client's side of a TLS
            handshake when the error came: a TLS alert then came after it.
    """

    command: str = "connect"
    endpoint: Endpoint | None = None
    conn: SMTPConnection | None = None
    tls_min_version: str | None = None
    client_cert: str | None = None
    tls_up: bool = False


@contextlib.contextmanager
def map_errors(progress: Progress) -> Iterator[None]:  # noqa: PLR0912 - one branch per family
    """Translate smtplib, ssl and socket errors into smtpkit's hierarchy."""
    try:
        yield
    except SMTPKitError as exc:
        if isinstance(exc, TransportError):
            if exc.command is None:
                exc.command = progress.command
            diagnosed = _connect_phase(exc, progress)
            if diagnosed is not None:
                raise diagnosed from exc
        raise
    except smtplib.SMTPServerDisconnected as exc:
        cause = exc.__context__
        err: TransportError = (
            SMTPTimeoutError(f"timed out during {progress.command}")
            if isinstance(cause, TimeoutError)
            else ServerDisconnectedError(
                f"server disconnected during {progress.command}: {exc}"
            )
        )
        err.command = progress.command
        raise err from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise NotSupportedError(str(exc), command=progress.command) from exc
    except smtplib.SMTPSenderRefused as exc:
        reply = parse_reply(exc.smtp_code, exc.smtp_error)
        raise SenderRefusedError(reply, sender=str(exc.sender)) from exc
    except smtplib.SMTPResponseException as exc:
        reply = parse_reply(exc.smtp_code, exc.smtp_error)
        error_class = _REPLY_ERRORS.get(type(exc), SMTPReplyError)
        raise error_class(reply, command=progress.command) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        refused = {
            str(r): parse_reply(code, text)
            for r, (code, text) in exc.recipients.items()
        }
        if not refused:
            raise ProtocolError(str(exc), command=progress.command) from exc
        raise RecipientsRefusedError(refused) from exc
    except smtplib.SMTPException as exc:
        raise ProtocolError(str(exc), command=progress.command) from exc
    except ssl.SSLError as exc:  # includes SSLCertVerificationError
        raise _ssl_failure(exc, progress) from exc
    except (
        ssl.CertificateError
    ) as exc:  # pragma: no cover - an alias of the above since 3.7
        raise _tls_error(exc, progress) from exc
    except TimeoutError as exc:
        raise _timeout_error(progress) from exc
    except OSError as exc:
        err = (
            _connect_error(exc, progress.endpoint)
            if progress.command == "connect"
            else ServerDisconnectedError(
                f"connection lost during {progress.command}: {exc}"
            )
        )
        err.command = progress.command
        raise err from exc
    except ValueError as exc:  # UnicodeError included: a name or text the wire refuses
        # Not transient and nothing was delivered: the same input fails again.
        msg = f"{progress.command} failed: {exc}"
        raise TransportError(msg, command=progress.command) from exc


def _timeout_error(progress: Progress) -> SMTPTimeoutError:
    """A socket timeout, named by step; while connecting, also by stage and server."""
    endpoint = progress.endpoint
    if progress.command != "connect":
        err = SMTPTimeoutError(f"timed out during {progress.command}")
    elif endpoint is None:
        err = ConnectTimeoutError("timed out connecting")
    else:
        stage = progress.conn.connect_stage if progress.conn is not None else "tcp"
        err = ConnectTimeoutError(endpoint.connect_timeout_message(stage))
    err.command = progress.command
    return err


def _ssl_failure(exc: ssl.SSLError, progress: Progress) -> TransportError:
    """A lost TLS session, or a ``TLSError`` naming the server and the fix."""
    if isinstance(exc, _TLS_CLOSED) and progress.command not in _TLS_HANDSHAKES:
        # An established TLS session that ends is a lost connection, like a
        # reset: transient, and a stale pooled session is replaced for free.
        msg = f"connection lost during {progress.command}: {exc}"
        return ServerDisconnectedError(msg, command=progress.command)
    if is_lost_session_alert(exc):
        # An alert that does not refuse this client (internal_error from a
        # server under load...), also inside the handshake: a lost session.
        return _lost_session(exc, progress)
    return _tls_error(exc, progress)


def _tls_step(progress: Progress, endpoint: Endpoint) -> tuple[str, bool]:
    """Name the TLS step that failed, and say if its handshake was already done.

    Returns:
        The step (``"connect"`` for implicit TLS, or ``"STARTTLS"``), and True
        when the error came after the client's side of the handshake succeeded.
    """
    # After the handshake, the server's alert came on a later read (TLS 1.3
    # checks the client certificate then).
    after_handshake = progress.tls_up or (
        progress.conn is not None and progress.conn.is_tls
    )
    if endpoint.tls is TLSMode.STARTTLS and progress.command != "connect":
        # A TLS 1.3 server's refusal of the client certificate may be read
        # only at the EHLO after the handshake: it still failed STARTTLS.
        return "STARTTLS", after_handshake
    return progress.command, after_handshake


def _tls_error(exc: ssl.SSLError | ValueError, progress: Progress) -> TLSError:
    """A ``TLSError`` naming the server and, where clear, the fix."""
    step = progress.command
    if progress.endpoint is None or not isinstance(exc, ssl.SSLError):
        err = TLSError(f"TLS failed: {exc}")
    else:
        step, after_handshake = _tls_step(progress, progress.endpoint)
        err = tls_failure(
            exc,
            progress.endpoint,
            step=step,
            min_version=progress.tls_min_version,
            client_cert=progress.client_cert,
            after_handshake=after_handshake,
        )
    err.command = step
    return err


def _lost_session(exc: ssl.SSLError, progress: Progress) -> ServerDisconnectedError:
    """The lost connection for a server's TLS alert that is no refusal, named."""
    endpoint = progress.endpoint
    if endpoint is None:
        msg = f"connection lost during {progress.command}: {exc}"
        return ServerDisconnectedError(msg, command=progress.command)
    step, after_handshake = _tls_step(progress, endpoint)
    msg = lost_session_message(
        exc, endpoint, where=tls_step_text(step, after_handshake=after_handshake)
    )
    return ServerDisconnectedError(msg, command=step)


def _connect_error(exc: OSError, endpoint: Endpoint | None) -> ConnectError:
    """A refused, unreachable or unresolvable server, named."""
    if endpoint is None:
        return ConnectError(f"cannot connect: {exc}")
    if isinstance(exc, socket.gaierror):
        # A name that does not exist stays so; only EAI_AGAIN may heal.
        msg, transient = endpoint.resolve_failure(exc)
        return ConnectError(msg, transient=transient)
    return ConnectError(endpoint.connect_failure(exc))


def _connect_phase(exc: TransportError, progress: Progress) -> TransportError | None:
    """Diagnose an smtpkit error from opening a connection, or add the endpoint.

    Returns a new error for a missing greeting or TLS bytes instead of one, and
    None after adding the endpoint to any other message in place.
    """
    endpoint, conn = progress.endpoint, progress.conn
    if endpoint is None or conn is None or progress.command != "connect":
        return None
    stage = conn.connect_stage
    if stage == "greeting" and isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        msg, mismatch = endpoint.greeting_timeout_message(
            endpoint.greeting_wait(), conn.greeting_received
        )
        if mismatch:
            # The port wants TLS first: waiting longer or retrying cannot help.
            return TLSError(msg, command="connect")
        return ConnectTimeoutError(msg, command="connect")
    if stage == "greeting" and isinstance(exc, TLSError):
        return TLSError(endpoint.tls_first_message(), command="connect")
    exc.args = (endpoint.in_context(str(exc)), *exc.args[1:])
    return None
