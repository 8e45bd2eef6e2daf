"""Open the TCP connection of a new session: directly, or through a ``SocketFactory``.

The factory is the caller's code (a proxy client): what it raises becomes an
smtpkit error here, and what it returns is checked to be a connected socket,
before smtplib or TLS touch it.
"""

from __future__ import annotations

import contextlib
import socket

from .._exceptions import ConnectError
from .._socket_factory import SocketFactory

__all__ = ["open_socket"]


def open_socket(
    host: str,
    port: int,
    timeout: float,
    *,
    factory: SocketFactory | None,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """Connect to *host*:*port* within *timeout* seconds and return the socket.

    Raises:
        OSError: The connection failed (from ``socket.create_connection`` or
            the factory): the caller maps it to a ``ConnectError`` or timeout.
        ConnectError: The factory raised anything else (permanent), or returned
            something that is not a connected socket.
    """
    if factory is None:
        sock = socket.create_connection((host, port), timeout, source_address)
    else:
        sock = _from_factory(factory, host, port, timeout, source_address)
    # Every write is a whole request group, joined here already; Nagle's
    # algorithm would hold its last, short segment back until the server
    # ACKs, and a server that waits for the whole BDAT chunk ACKs late.
    with contextlib.suppress(OSError):  # not every socket family has it
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _from_factory(
    factory: SocketFactory,
    host: str,
    port: int,
    timeout: float,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    name = getattr(factory, "__qualname__", type(factory).__qualname__)
    try:
        sock: object = factory(host, port, timeout, source_address)
    except OSError:
        raise  # a refused, unreachable or slow proxy or server: may heal
    except Exception as exc:
        text = str(exc)
        msg = f"socket_factory {name} raised {type(exc).__name__}" + (
            f": {text}" if text else ""
        )
        raise ConnectError(msg, command="connect", transient=False) from exc
    if not isinstance(sock, socket.socket):
        if callable(getattr(sock, "close", None)):
            with contextlib.suppress(Exception):
                sock.close()  # type: ignore[attr-defined] # checked just above
        msg = f"socket_factory {name} returned {type(sock).__name__}, not a socket"
        raise ConnectError(msg, command="connect", transient=False)
    try:
        # smtplib and TLS expect a blocking socket bounded by the timeout; a
        # proxy client may hand it over non-blocking or without one.
        sock.settimeout(timeout)
        sock.getpeername()  # connected, or OSError (ENOTCONN)
    except OSError as exc:
        sock.close()
        msg = f"socket_factory {name} returned a socket that is not connected: {exc}"
        raise ConnectError(msg, command="connect", transient=False) from exc
    return sock
