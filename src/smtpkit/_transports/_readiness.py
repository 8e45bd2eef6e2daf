"""Non-blocking looks at a socket: is something waiting to be read, is our data acknowledged.

Split from ``_connection.py``; both are used by ``SMTPConnection``'s reply reader.
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
from typing import Final

__all__ = ["ReadableCheck", "unacked_bytes"]

_HAS_POLL: Final = hasattr(select, "poll")

try:  # Linux: how much of what we sent the peer has not acknowledged yet
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - Windows
    _OUTQ = None


def unacked_bytes(sock: socket.socket | None) -> int | None:
    """Bytes still in the socket's send queue, or None where that is unknown.

    A shrinking queue means the server is reading: with it, a wait for the reply
    to a large message times out on silence rather than on total duration.
    """
    if _OUTQ is None or sock is None:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return int.from_bytes(raw, sys.byteorder, signed=True)


class ReadableCheck:
    """Tells, without blocking, whether a socket has something to read.

    ``poll`` where the platform has it: ``select`` cannot watch a descriptor
    numbered 1024 or more, which is common in a busy process.  The poll object
    is kept for the socket it was made for (asked twice per pipelined write).
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None

    def __call__(self, sock: socket.socket) -> bool:
        """True when *sock* has something to read (data, EOF or an error), now."""
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # already decrypted, waiting inside the TLS layer
        fd = sock.fileno()
        if fd < 0:
            return True
        if not _HAS_POLL:  # pragma: no cover - Windows
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable)
        if sock is not self._sock or self._poller is None:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN | select.POLLPRI)
            self._sock = sock
        return bool(self._poller.poll(0))
