"""A socket server on 127.0.0.1 that plays a scripted, possibly broken, SMTP conversation.

aiosmtpd always speaks correct SMTP; these servers do not: they refuse the
greeting, never greet, trickle bytes or send replies no client should accept.
Each accepted connection runs ``script(conn)`` in its own thread; :meth:`RawServer.stop`
(or leaving the ``with`` block) wakes every script, closes every socket and joins
the threads, so nothing outlives the test.

Example::

    def greet_and_hang(conn: RawConn) -> None:
        conn.send(b"220 hello\\r\\n")
        conn.wait_closed()

    with RawServer(greet_and_hang) as server:
        ...  # connect to server.host, server.port
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable
from types import TracebackType

from typing_extensions import Self

__all__ = ["RawConn", "RawServer"]

_POLL = 0.05  # seconds between checks of the stop flag while blocked


class RawConn:
    """One accepted connection, as seen by a script.

    Attributes:
        lines: Every line the script read from the client, in order.
    """

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self._sock = sock
        self._stopping = stopping
        self._buf = bytearray()
        self.lines: list[bytes] = []
        sock.settimeout(_POLL)

    @property
    def stopping(self) -> bool:
        """True once the server is stopping; long-running scripts should return."""
        return self._stopping.is_set()

    def send(self, data: bytes) -> None:
        """Send *data* to the client."""
        self._sock.sendall(data)

    def readline(self) -> bytes:
        """Read one line from the client; ``b""`` when it closed or the server stops."""
        while b"\n" not in self._buf:
            chunk = self._recv()
            if not chunk:
                return b""
            self._buf += chunk
        end = self._buf.index(b"\n") + 1
        line = bytes(self._buf[:end])
        del self._buf[:end]
        self.lines.append(line)
        return line

    def has_buffered(self) -> bool:
        """True when client bytes are waiting unread (the client sent ahead)."""
        if self._buf:
            return True
        self._sock.setblocking(False)
        try:
            chunk = self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        finally:
            self._sock.settimeout(_POLL)
        self._buf += chunk
        return bool(chunk)

    def hang_up(self) -> None:
        """Close the connection from the server side."""
        self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection's socket (TLS wrapper included)."""
        self._sock.close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), not a clean FIN."""
        raw = self._sock
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Run the server side of a TLS handshake (implicit TLS or after STARTTLS)."""
        self._sock.settimeout(5.0)
        self._sock = context.wrap_socket(self._sock, server_side=True)
        self._sock.settimeout(_POLL)

    def read_data(self) -> bytes | None:
        """Read message data up to and including the ``.`` line; None if cut."""
        lines = []
        while (line := self.readline()) != b".\r\n":
            if not line:
                return None
            lines.append(line)
        return b"".join(lines)

    def read_exact(self, count: int) -> bytes | None:
        """Read exactly *count* bytes (a BDAT chunk); None if the client hung up."""
        while len(self._buf) < count:
            chunk = self._recv()
            if not chunk:
                return None
            self._buf += chunk
        data = bytes(self._buf[:count])
        del self._buf[:count]
        return data

    def read_some(self, count: int) -> int:
        """Read and discard up to *count* bytes; return how many were read."""
        if self._buf:
            taken = min(count, len(self._buf))
            del self._buf[:taken]
            return taken
        chunk = self._recv(count)
        return len(chunk)

    def sleep(self, seconds: float) -> bool:
        """Wait *seconds*; False when the server began stopping meanwhile."""
        return not self._stopping.wait(seconds)

    def wait_closed(self) -> None:
        """Read and discard everything until the client closes or the server stops."""
        while self._recv():
            pass

    def _recv(self, size: int = 65536) -> bytes:
        while not self._stopping.is_set():
            try:
                return self._sock.recv(size)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return b""


Script = Callable[[RawConn], None]


class RawServer:
    """Listen on 127.0.0.1 (a free port) and run *script* for each connection.

    Attributes:
        host: Always ``"127.0.0.1"``.
        port: The port it listens on.
        connections: Every accepted connection, in order.
        errors: Unexpected exceptions raised by scripts (tests should assert it is empty).
    """

    def __init__(self, script: Script, *, rcvbuf: int | None = None) -> None:
        self._script = script
        self._stopping = threading.Event()
        self._listener = socket.socket()
        if rcvbuf is not None:  # a small window makes a slow reader slow for real
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._listener.settimeout(_POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self.connections: list[RawConn] = []
        self.errors: list[BaseException] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"rawserver-{self.port}", daemon=True
        )
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = RawConn(sock, self._stopping)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._sockets.append(sock)
                self.connections.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: RawConn) -> None:
        try:
            self._script(conn)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the client hung up mid-script: expected in these tests
        except BaseException as exc:
            self.errors.append(exc)

    def stop(self) -> None:
        """Wake every script, close every socket and join every thread."""
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            threads, sockets = list(self._threads), list(self._sockets)
        for thread in threads:
            thread.join(timeout=5)
        for sock in sockets:
            sock.close()
        for conn in list(self.connections):
            conn.close()  # a TLS wrapper replaces the accepted socket

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
