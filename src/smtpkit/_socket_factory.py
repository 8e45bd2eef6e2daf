"""`SocketFactory`: the extension point that opens the TCP connection to the server.

A value-level protocol (``SMTPConfig(socket_factory=...)`` holds one), so it lives
below the config; the transport calls it (``_transports/_connect.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import socket

__all__ = ["SocketFactory"]


@runtime_checkable
class SocketFactory(Protocol):
    """Opens a connected TCP socket to the SMTP server, e.g. through a proxy.

    smtpkit calls it for every new connection, with the configured server and
    connect timeout, and then speaks SMTP on the socket it returns: implicit TLS
    and STARTTLS wrap that socket and verify the server's certificate against
    *host*, as on a direct connection.  It must be safe to call from several
    threads at once (the pool opens connections in parallel).

    Raise ``OSError`` (``ConnectionRefusedError``, ``TimeoutError``...) for a
    failure that may heal: it is a transient ``ConnectError`` (or
    ``ConnectTimeoutError``).  Any other exception, and a TLS failure with the
    proxy, is a permanent ``ConnectError``.  Every one names the factory; only
    an ``OSError`` is kept as its cause (another may quote the proxy's
    credentials).  Spend at most *timeout* seconds in all: a factory that
    returns later gets a ``ConnectTimeoutError``.
    """

    def __call__(
        self,
        host: str,
        port: int,
        timeout: float,
        source_address: tuple[str, int] | None,
    ) -> socket.socket:
        """Return a socket connected to *host*:*port*, or raise.

        Args:
            host: The server as configured (a name is not resolved first, so a
                proxy can resolve it: SOCKS5 with a domain name, HTTP CONNECT).
            port: The server's TCP port.
            timeout: Seconds left of the connect timeout: a deadline for the
                whole exchange with the proxy, not for each read.
            source_address: ``SMTPConfig.source_address``: the local address
                (host, port) to bind to before connecting, or None.
        """
