"""The reply reader of ``SMTPConnection`` on a real loopback socket.

Pipelined replies arrive several to a ``recv``; the reader takes a complete
one-line reply straight from its buffer.  These tests feed the same bytes cut at
every offset, several replies and stray bytes in one segment, multiline and
oversize replies, and check the answers and the errors are the same either way.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import ProtocolError, SMTPReply, parse_reply
from smtpkit._transports._connection import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    SMTPConnection,
)

pytestmark = pytest.mark.integration

STREAM = (
    b"250 2.1.0 Ok\r\n"
    b"250-first\r\n250-2.1.5 second\r\n250 third\r\n"
    b"354 End data with <CR><LF>.<CR><LF>\r\n"
    b"250 2.0.0 Ok: queued as ABC\r\n"
)
EXPECTED = [
    parse_reply(250, b"2.1.0 Ok"),
    parse_reply(250, b"first\n2.1.5 second\nthird"),
    parse_reply(354, b"End data with <CR><LF>.<CR><LF>"),
    parse_reply(250, b"2.0.0 Ok: queued as ABC"),
]


class Pair:
    """An ``SMTPConnection`` on one end of a loopback TCP connection; ``peer`` is
    the server's end."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname()[:2], timeout=2)
            self.peer, _ = listener.accept()
        self.conn = SMTPConnection(timeout=2.0, local_hostname="client.example")
        self.conn.sock = client
        self.conn.connect_stage = "open"
        self.conn.established = True

    def send_later(self, data: bytes, delay: float) -> threading.Timer:
        """Send *data* from the server after *delay* seconds."""
        timer = threading.Timer(delay, self.peer.sendall, (data,))
        timer.start()
        return timer

    def close(self) -> None:
        self.conn.close()
        self.peer.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    pair = Pair()
    yield pair
    pair.close()


def read_all(pair: Pair, count: int) -> list[SMTPReply]:
    return [pair.conn.read_reply() for _ in range(count)]


def test_replies_cut_at_every_offset_read_the_same(pair):
    # One connection per stream would be slow; the stream repeats on one socket.
    for offset in range(1, len(STREAM)):
        pair.peer.sendall(STREAM[:offset])
        timer = pair.send_later(STREAM[offset:], 0.002)
        assert read_all(pair, len(EXPECTED)) == EXPECTED, offset
        timer.join()
        assert pair.conn.pending_bytes() == 0


def test_every_reply_of_one_segment_is_read_from_the_buffer(pair):
    pair.peer.sendall(STREAM * 3)
    assert read_all(pair, 3 * len(EXPECTED)) == EXPECTED * 3
    assert pair.conn.pending_bytes() == 0


def test_a_reply_and_unsolicited_bytes_in_one_segment(pair):
    pair.peer.sendall(b"250 2.1.0 Ok\r\n250 2.1.0 Ok\r\n")  # the server answered twice
    assert pair.conn.read_reply() == parse_reply(250, b"2.1.0 Ok")
    with pytest.raises(ProtocolError, match="unexpected bytes before RCPT"):
        pair.conn.check_quiet("RCPT")
    assert pair.conn.sock is None  # closed: the session cannot be trusted


def test_a_line_at_the_limit_is_read_from_the_buffer(pair):
    text = b"x" * (MAX_REPLY_LINE - 6)
    pair.peer.sendall(b"250 first\r\n250 " + text + b"\r\n")
    assert pair.conn.read_reply().text == "first"
    assert pair.conn.read_reply() == parse_reply(250, text)


def test_a_line_over_the_limit_is_refused_from_the_buffer(pair):
    pair.peer.sendall(b"250 first\r\n250 " + b"x" * (MAX_REPLY_LINE - 5) + b"\r\n")
    assert pair.conn.read_reply().text == "first"
    with pytest.raises(ProtocolError, match="reply line longer"):
        pair.conn.read_reply()


def test_too_many_lines_are_refused_from_the_buffer(pair):
    lines = b"250-x\r\n" * MAX_REPLY_LINES + b"250 end\r\n"
    pair.peer.sendall(b"250 first\r\n" + lines)
    assert pair.conn.read_reply().text == "first"
    with pytest.raises(ProtocolError, match="reply longer than"):
        pair.conn.read_reply()


@pytest.mark.parametrize(
    "bad",
    [b"25x ok\r\n", b"250ok\r\n", b"2\r\n", b"abc def\r\n", b"250-a\r\n251 b\r\n"],
)
def test_a_malformed_reply_after_a_good_one_is_refused(pair, bad):
    pair.peer.sendall(b"250 first\r\n" + bad)
    assert pair.conn.read_reply().text == "first"
    with pytest.raises(ProtocolError, match=r"malformed|code changed"):
        pair.conn.read_reply()


def test_a_bare_code_line_is_a_reply(pair):
    pair.peer.sendall(b"250 first\r\n250\r\n250 \r\n")
    assert [r.text for r in read_all(pair, 3)] == ["first", "", ""]


# A reply line as servers write it, or nearly: the reader must agree with a
# plain reading of RFC 5321 §4.2 whether the line is in its buffer or not.
_LINE = st.builds(
    lambda code, sep, text: code + sep + text + b"\r\n",
    st.sampled_from([b"250", b"354", b"451", b"25", b"2a0", b""]),
    st.sampled_from([b" ", b"-", b"", b"\t"]),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b),
)


def expected_outcome(line: bytes) -> SMTPReply | type[Exception]:
    """What a reply consisting of *line* alone must give."""
    head, sep = line[:3], line[3:4]
    if len(line) < 3 or not head.isdigit() or sep not in (b" ", b"-", b"\r", b"\n"):
        return ProtocolError
    if sep == b"-":
        return ProtocolError  # a continuation line, then the server went away
    return parse_reply(int(head), line[4:].strip(b" \t\r\n"))


@settings(deadline=None)
@given(line=_LINE)
def test_a_line_from_the_buffer_reads_as_specified(line):
    pair = Pair()
    try:
        pair.peer.sendall(b"250 first\r\n" + line)
        pair.peer.shutdown(socket.SHUT_WR)  # nothing after it: EOF, not a wait
        assert pair.conn.read_reply().text == "first"
        expected = expected_outcome(line)
        if isinstance(expected, SMTPReply):
            assert pair.conn.read_reply() == expected
        else:
            with pytest.raises((ProtocolError, ConnectionError)):
                pair.conn.read_reply()
    finally:
        pair.close()
