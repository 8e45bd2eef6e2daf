"""The ceiling: a minimal SMTP client on a raw socket that pipelines (RFC 2920).

About a hundred lines, no error recovery, no retries, no MIME: it sends one
pre-built message *count* times and checks every reply code, so it shows what a
Python client can do at best on this machine.  Per message it writes the previous
message's data and final dot together with the next MAIL, RCPT and DATA (DATA
ends a pipelined group, RFC 2920 §3.1), which costs one round trip per message,
as smtpkit's pipelined path does.  It dot-stuffs each message (RFC 5321 §4.5.2)
inside the timed run, with ``bytes.replace``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator


class RawClientError(RuntimeError):
    """The server did not answer as an accepting sink would."""


class _Replies:
    """Read complete SMTP replies (possibly several per recv) from a socket."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self._sock = sock
        self._buffer = b""

    def next(self, expect: int) -> bytes:
        """The next whole reply (every line); RawClientError unless its code is *expect*."""
        start = 0
        while True:
            end = self._buffer.find(b"\r\n", start)
            while end >= 0:
                line = self._buffer[start : end + 2]
                start = end + 2
                if line[3:4] != b"-":  # the last line of a reply
                    reply, self._buffer = self._buffer[:start], self._buffer[start:]
                    if int(line[:3]) != expect:
                        msg = f"expected {expect}, got {reply!r}"
                        raise RawClientError(msg)
                    return reply
                end = self._buffer.find(b"\r\n", start)
            chunk = self._sock.recv(65536)
            if not chunk:
                msg = "the server closed the connection"
                raise RawClientError(msg)
            self._buffer += chunk


def _session(  # noqa: PLR0917 - a private helper with one caller
    host: str,
    port: int,
    numbers: Iterator[int],
    lock: threading.Lock,
    data: bytes,
    envelope: bytes,
    context: ssl.SSLContext | None,
) -> None:
    sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), 30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies = _Replies(sock)
    replies.next(220)
    sock.sendall(b"EHLO client.example.com\r\n")
    if context is not None:
        replies.next(250)
        sock.sendall(b"STARTTLS\r\n")
        replies.next(220)
        sock = context.wrap_socket(sock, server_hostname=host)
        replies = _Replies(sock)
        sock.sendall(b"EHLO client.example.com\r\n")
    if b"PIPELINING" not in replies.next(250).upper():
        msg = "the server does not offer PIPELINING"
        raise RawClientError(msg)
    pending = False  # a message's DATA was answered with 354, its data not sent
    while True:
        with lock:
            more = next(numbers, None) is not None
        out = b""
        if pending:
            stuffed = data.replace(b"\r\n.", b"\r\n..")
            if stuffed.startswith(b"."):
                stuffed = b"." + stuffed
            out += stuffed + b".\r\n"
        if more:
            out += envelope
        elif not pending:
            break
        if out:
            sock.sendall(out)
        if pending:
            replies.next(250)  # the end-of-data reply
        if not more:
            break
        replies.next(250)  # MAIL
        replies.next(250)  # RCPT
        replies.next(354)  # DATA
        pending = True
    sock.sendall(b"QUIT\r\n")
    replies.next(221)
    sock.close()


def send_pipelined(
    host: str,
    port: int,
    count: int,
    data: bytes,
    *,
    sender: str,
    recipient: str,
    connections: int = 1,
    context: ssl.SSLContext | None = None,
) -> None:
    """Send *data* (CRLF lines, not dot-stuffed) *count* times over *connections*."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    envelope = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
    numbers, lock = iter(range(count)), threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _session(host, port, numbers, lock, data, envelope, context)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
