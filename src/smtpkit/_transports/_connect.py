"""Open the TCP connection of a new session: directly, or through a ``SocketFactory``.

The factory is the caller's code (a proxy client): what it raises becomes an
smtpkit error here, naming the factory rather than the SMTP server, and what it
returns is checked to be a connected socket, in time, before smtplib or TLS
touch it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time

from .._exceptions import ConnectError, ConnectTimeoutError
from .._socket_factory import SocketFactory

__all__ = ["open_socket"]

# A failed TLS handshake with an HTTPS proxy that may heal: the proxy closed it.
_TLS_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def open_socket(
    host: str,
    port: int,
    timeout: float,
    *,
    factory: SocketFactory | None,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """Connect to *host*:*port* within *timeout* seconds and return the socket.

    Args:
        host: The server.
        port: Its port.
        timeout: Seconds left for connecting: a factory gets them, and one that
            returns later fails with ``ConnectTimeoutError``.
        factory: ``SMTPConfig.socket_factory``, or None to connect directly.
        source_address: ``SMTPConfig.source_address``.

    Raises:
        OSError: A direct connection failed: the caller maps it to a
            ``ConnectError`` or timeout naming the server.
        ConnectError: The factory failed (transient for an ``OSError``,
            ``ConnectTimeoutError`` for a timeout), returned something that is
            not a connected socket, or the source address cannot be bound
            (permanent).
    """
    if factory is not None:
        sock = _from_factory(factory, host, port, timeout, source_address)
    elif source_address is None:
        sock = socket.create_connection((host, port), timeout)
    else:
        sock = _connect_from(host, port, timeout, source_address)
    # Every write is a whole request group, joined here already; Nagle's
    # algorithm would hold its last, short segment back until the server
    # ACKs, and a server that waits for the whole BDAT chunk ACKs late.
    with contextlib.suppress(OSError):  # not every socket family has it
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _connect_from(
    host: str, port: int, timeout: float, source_address: tuple[str, int]
) -> socket.socket:
    """``socket.create_connection`` from *source_address*, telling bind from connect.

    An address this host does not have stays so: a failed bind is a permanent
    ``ConnectError`` naming ``source_address``; a failed connect is the
    ``OSError`` it is.
    """
    version = ipaddress.ip_address(source_address[0].split("%", 1)[0]).version
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    try:
        candidates = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except socket.gaierror:
        socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)  # no such name at all?
        msg = (
            f"source_address {source_address[0]} is IPv{version}, "
            f"and {host} has no IPv{version} address"
        )
        raise ConnectError(msg, command="connect", transient=False) from None
    last: OSError | None = None
    for af, kind, proto, _, address in candidates:
        sock = socket.socket(af, kind, proto)
        connected = False
        try:
            sock.settimeout(timeout)
            try:
                sock.bind(source_address)
            except OSError as exc:  # ConnectError is an OSError: raised outside
                reason = (exc.strerror or str(exc)).lower()
                where = f"{source_address[0]}:{source_address[1]}"
                bind_error = ConnectError(
                    f"cannot bind source_address {where}: {reason}",
                    command="connect",
                    transient=False,
                )
                raise bind_error from exc
            try:
                sock.connect(address)
                connected = True
            except OSError as exc:
                last = exc
        finally:
            if not connected:
                sock.close()
        if connected:
            return sock
    assert last is not None  # noqa: S101 - getaddrinfo returns at least one or raises
    raise last


def _factory_name(factory: SocketFactory) -> str:
    return str(getattr(factory, "__qualname__", type(factory).__qualname__))


def _from_factory(
    factory: SocketFactory,
    host: str,
    port: int,
    timeout: float,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    name = _factory_name(factory)
    deadline = time.monotonic() + timeout
    error: ConnectError | None = None
    cause: Exception | None = None
    try:
        sock: object = factory(host, port, timeout, source_address)
    except Exception as exc:  # the caller's code: all of it is mapped
        error, cause = _factory_error(name, exc, timeout), _safe_cause(exc)
    if error is not None:
        # Raised outside the handler: a dropped cause is not kept as context.
        raise error from cause
    if not isinstance(sock, socket.socket):
        if callable(getattr(sock, "close", None)):
            with contextlib.suppress(Exception):
                sock.close()  # type: ignore[attr-defined] # checked just above
        msg = f"socket_factory {name} returned {type(sock).__name__}, not a socket"
        raise ConnectError(msg, command="connect", transient=False)
    if sock.type != socket.SOCK_STREAM:
        sock.close()
        msg = (
            f"socket_factory {name} returned a socket that is not a stream (TCP) socket"
        )
        raise ConnectError(msg, command="connect", transient=False)
    left = deadline - time.monotonic()
    if left <= 0:
        sock.close()
        msg = (
            f"timed out: socket_factory {name} took longer than the {timeout:.2g} s "
            "left of the connect timeout"
        )
        raise ConnectTimeoutError(msg, command="connect")
    try:
        # smtplib and TLS expect a blocking socket bounded by the timeout; a
        # proxy client may hand it over non-blocking or without one.
        sock.settimeout(left)
        sock.getpeername()  # connected, or OSError (ENOTCONN)
    except OSError as exc:
        sock.close()
        msg = f"socket_factory {name} returned a socket that is not connected: {exc}"
        raise ConnectError(msg, command="connect", transient=False) from exc
    return sock


def _factory_error(name: str, exc: Exception, timeout: float) -> ConnectError:
    """The ``ConnectError`` for what factory *name* raised, naming the factory.

    A proxy is between smtpkit and the server, so none of it blames the server.
    ``OSError`` (a refused, unreachable or slow proxy or server) may heal; a
    TLS failure with the proxy and anything else does not.  A ``UnicodeError``
    is named by type and codec reason only: its text and its ``object`` hold
    the string that failed, such as a proxy password.
    """
    what = f"socket_factory {name}"
    if isinstance(exc, TimeoutError):
        msg = f"timed out: {what} did not connect within {timeout:.2g} s"
        return ConnectTimeoutError(msg, command="connect")
    if isinstance(exc, ssl.SSLError):
        # Built by hand (or by a proxy client), it may lack the attributes.
        detail = (
            getattr(exc, "verify_message", None)
            or getattr(exc, "reason", None)
            or str(exc)
        )
        msg = f"{what} failed TLS with the proxy: {detail}"
        return ConnectError(
            msg, command="connect", transient=isinstance(exc, _TLS_CLOSED)
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ConnectError(f"{what} failed: {reason}", command="connect")
    if isinstance(exc, UnicodeError):
        reason = getattr(exc, "reason", "")
        codec = getattr(exc, "encoding", "")
        detail = f" ({codec} codec: {reason})" if codec and reason else ""
        msg = f"{what} raised {type(exc).__name__}{detail}"
        return ConnectError(msg, command="connect", transient=False)
    text = str(exc)
    msg = f"{what} raised {type(exc).__name__}" + (f": {text}" if text else "")
    return ConnectError(msg, command="connect", transient=False)


def _safe_cause(exc: Exception) -> Exception | None:
    """*exc* as the cause, or None when it or its chain holds a ``UnicodeError``.

    Only an ``OSError`` is chained at all: the proxy client's other errors may
    quote its credentials (a ``UnicodeError`` always holds its whole input).
    """
    if not isinstance(exc, OSError):
        return None
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, UnicodeError):
            return None
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return exc
