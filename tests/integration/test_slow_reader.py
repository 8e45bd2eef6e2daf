"""A server that reads a large message slowly but steadily is never timed out.

``timeout`` bounds silence, not duration: while the kernel's send queue drains,
the wait for the reply goes on, and a write waits for progress, not for room
for all of the message.  The server here reads at a fixed, slow rate from a
small receive buffer, then answers, the reply split across two segments or not.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from smtpkit import Envelope, Mailer, RetryPolicy, SMTPConfig, SMTPTransport

from .rawserver import RawServer

pytestmark = pytest.mark.integration

ENVELOPE = Envelope("a@example.com", ["b@example.com"])


def message(size: int) -> bytes:
    lines = size // 78
    return (
        b"Subject: big\r\nMessage-ID: <big@x>\r\n\r\n" + (b"x" * 76 + b"\r\n") * lines
    )


class SlowReader:
    """One-connection SMTP server reading DATA at *rate* bytes per second."""

    def __init__(self, rate: float, *, split_reply: bool) -> None:
        self.rate = rate
        self.split_reply = split_reply
        self.received = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 slow ESMTP\r\n")
            while line := lines.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250 slow\r\n")
                elif verb in (b"MAIL", b"RCPT", b"RSET"):
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    self._read_data(lines)
                    if self.split_reply:
                        conn.sendall(b"250 2.0.0 O")
                        time.sleep(0.05)
                        conn.sendall(b"k queued\r\n")
                    else:
                        conn.sendall(b"250 2.0.0 Ok queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return

    def _read_data(self, lines) -> None:  # type: ignore[no-untyped-def]
        step = 16 * 1024
        pause = step / self.rate
        next_pause = step
        while (line := lines.readline()) != b".\r\n":
            if not line:
                return
            self.received += len(line)
            if self.received >= next_pause:
                time.sleep(pause)
                next_pause += step

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=10)


@pytest.fixture
def slow_reader(request: pytest.FixtureRequest) -> Iterator[SlowReader]:
    rate, split = request.param
    server = SlowReader(rate, split_reply=split)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("slow_reader", "size"),
    [
        ((2_000_000, True), 1_600_000),
        ((2_000_000, False), 1_600_000),
        # Large enough to fill the send buffer the kernel grows to: it reports
        # room again only after a third has drained, longer than the timeout.
        ((800_000, False), 4_700_000),
    ],
    ids=["reply-split", "reply-whole", "buffer-filled"],
    indirect=["slow_reader"],
)
def test_a_slow_steady_reader_gets_the_whole_message_and_its_reply(slow_reader, size):
    data = message(size)  # drains for longer than the timeout
    config = SMTPConfig(
        host="127.0.0.1", port=slow_reader.port, tls="none", timeout=0.5
    )
    with Mailer(config, retry=RetryPolicy.never()) as mailer:
        [result] = mailer.send_many([(data, ENVELOPE)])
    assert result.error is None, result.error
    assert result.ok
    assert slow_reader.received == len(data)


@pytest.mark.parametrize("size", [b"\xb2", b"12\xb3", b"\xb9", b""])
def test_a_size_keyword_with_odd_digits_is_no_limit_not_a_raw_error(size):
    # EHLO is read as latin-1 (and a server may send anything): str.isdigit()
    # passes "²", which int() refuses.  An unreadable SIZE states no limit.
    def script(conn):  # type: ignore[no-untyped-def]
        conn.send(b"220 odd ESMTP\r\n")
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.send(b"250-odd\r\n250 SIZE " + size + b"\r\n")
            elif verb == b"DATA":
                conn.send(b"354 go\r\n")
                conn.read_data()
                conn.send(b"250 ok\r\n")
            elif verb == b"QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:
                conn.send(b"250 ok\r\n")

    with RawServer(script) as server:
        config = SMTPConfig(host=server.host, port=server.port, tls="none", timeout=2)
        transport = SMTPTransport(config)
        try:
            result = transport.send(ENVELOPE, b"Subject: x\r\n\r\nhi\r\n")
        finally:
            transport.close()
    assert result.ok
    assert server.errors == []


def test_connections_send_each_request_group_at_once():
    # Writes are whole request groups already: Nagle would only delay them.
    def greet(conn):  # type: ignore[no-untyped-def]
        conn.send(b"220 hi\r\n")
        conn.wait_closed()

    with RawServer(greet) as server:
        config = SMTPConfig(host=server.host, port=server.port, tls="none")
        transport = SMTPTransport(config)
        conn = transport.create_connection()
        try:
            assert conn.sock is not None
            nodelay = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            conn.close()
            transport.close()
    assert nodelay == 1
