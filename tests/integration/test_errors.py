"""Errors: the smtplib/ssl/socket translation table, and real misbehaving servers.

The first half is a table test of ``_map_errors``, the one place where foreign
exceptions become smtpkit ones.  The second half talks to scripted socket servers
(``rawserver.RawServer``) that break SMTP in the ways real networks do.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time

import pytest

from smtpkit import (
    AuthenticationError,
    ConnectError,
    ConnectTimeoutError,
    DataRefusedError,
    GreetingRefusedError,
    HeloRefusedError,
    Mailer,
    Message,
    NotSupportedError,
    ProtocolError,
    ReadTimeoutError,
    RecipientsRefusedError,
    RetryPolicy,
    SenderRefusedError,
    ServerDisconnectedError,
    SMTPConfig,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)
from smtpkit._transports._errors import Progress as _Progress
from smtpkit._transports._errors import map_errors as _map_errors

from .rawserver import RawConn, RawServer
from .smtpd import free_port

pytestmark = pytest.mark.integration

SMTPLIB_ERRORS = sorted(
    (
        obj
        for obj in vars(smtplib).values()
        if isinstance(obj, type) and issubclass(obj, smtplib.SMTPException)
    ),
    key=lambda cls: cls.__name__,
)


def make_smtplib_error(cls: type[smtplib.SMTPException]) -> smtplib.SMTPException:
    """An instance of any smtplib exception class, with realistic arguments."""
    if issubclass(cls, smtplib.SMTPSenderRefused):
        return cls(451, b"4.3.0 try later", "a@example.com")
    if issubclass(cls, smtplib.SMTPRecipientsRefused):
        return cls({"b@example.com": (550, b"5.1.1 no such user")})
    if issubclass(cls, smtplib.SMTPResponseException):
        return cls(451, b"4.3.0 try later")
    return cls("something broke")


def test_the_table_lists_every_smtplib_exception():
    names = {cls.__name__ for cls in SMTPLIB_ERRORS}
    # The classes smtplib has had since 3.5; a new one appears here automatically.
    assert {
        "SMTPException",
        "SMTPNotSupportedError",
        "SMTPServerDisconnected",
        "SMTPResponseException",
        "SMTPSenderRefused",
        "SMTPRecipientsRefused",
        "SMTPDataError",
        "SMTPConnectError",
        "SMTPHeloError",
        "SMTPAuthenticationError",
    } <= names


@pytest.mark.parametrize("cls", SMTPLIB_ERRORS, ids=lambda cls: cls.__name__)
def test_every_smtplib_exception_is_translated(cls):
    original = make_smtplib_error(cls)
    with pytest.raises(TransportError) as info, _map_errors(_Progress(command="MAIL")):
        raise original
    exc = info.value
    assert exc.__cause__ is original
    assert exc.command == ("RCPT" if cls is smtplib.SMTPRecipientsRefused else "MAIL")
    assert not isinstance(exc, smtplib.SMTPException)
    specific = {
        smtplib.SMTPSenderRefused: SenderRefusedError,
        smtplib.SMTPRecipientsRefused: RecipientsRefusedError,
        smtplib.SMTPConnectError: GreetingRefusedError,
        smtplib.SMTPHeloError: HeloRefusedError,
        smtplib.SMTPAuthenticationError: AuthenticationError,
        smtplib.SMTPDataError: DataRefusedError,
    }
    if cls in specific:
        assert type(exc) is specific[cls]
    if isinstance(original, smtplib.SMTPRecipientsRefused):
        assert exc.refused["b@example.com"].code == 550
        assert not exc.is_transient
    elif isinstance(original, smtplib.SMTPResponseException):
        # The server's reply survives the translation, and with it transience.
        assert isinstance(exc, SMTPReplyError)
        assert exc.reply.code == 451
        assert str(exc.reply.enhanced) == "4.3.0"
        assert exc.is_transient
    elif isinstance(original, smtplib.SMTPServerDisconnected):
        assert isinstance(exc, ServerDisconnectedError)
        assert exc.is_transient
    elif isinstance(original, smtplib.SMTPNotSupportedError):
        assert isinstance(exc, NotSupportedError)
        assert not exc.is_transient
    else:
        assert isinstance(exc, ProtocolError)
        assert not exc.is_transient


def _disconnected_by_timeout() -> smtplib.SMTPServerDisconnected:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")  # noqa: B904
    except smtplib.SMTPServerDisconnected as exc:
        return exc


@pytest.mark.parametrize(
    ("command", "original", "expected", "transient"),
    [
        ("STARTTLS", ssl.SSLError(1, "handshake failure"), TLSError, False),
        ("connect", ssl.SSLCertVerificationError(1, "bad cert"), TLSError, False),
        ("connect", TimeoutError("timed out"), ConnectTimeoutError, True),
        ("MAIL", TimeoutError("timed out"), SMTPTimeoutError, True),
        ("connect", ConnectionRefusedError(111, "refused"), ConnectError, True),
        ("RCPT", ConnectionResetError(104, "reset"), ServerDisconnectedError, True),
        ("connect", OSError(101, "network unreachable"), ConnectError, True),
        ("DATA", OSError(32, "broken pipe"), ServerDisconnectedError, True),
        ("MAIL", _disconnected_by_timeout(), SMTPTimeoutError, True),
    ],
    ids=lambda value: (
        type(value).__name__ if isinstance(value, BaseException) else None
    ),
)
def test_ssl_and_socket_errors_are_translated(command, original, expected, transient):
    with pytest.raises(expected) as info, _map_errors(_Progress(command=command)):
        raise original
    exc = info.value
    assert exc.__cause__ is original
    assert exc.command == command
    assert exc.is_transient is transient
    if expected is not ConnectTimeoutError and command != "connect":
        assert not isinstance(exc, ConnectError)


def test_smtpkit_errors_pass_through_with_their_command_filled_in():
    original = ProtocolError("bad reply")
    with pytest.raises(ProtocolError) as info, _map_errors(_Progress(command="RCPT")):
        raise original
    assert info.value is original
    assert original.command == "RCPT"


def test_errors_that_are_not_io_errors_are_not_swallowed():
    with pytest.raises(KeyError), _map_errors(_Progress(command="MAIL")):
        raise KeyError("a bug, not a network problem")


# -- real servers that misbehave -------------------------------------------------


def send_to(port: int, **fields) -> None:
    """Send one message to 127.0.0.1:*port*, without retries."""
    fields.setdefault("timeout", 2.0)
    config = SMTPConfig(host="127.0.0.1", port=port, tls="none", **fields)
    message = Message(sender="a@example.com", to="b@example.com", text="hi")
    with Mailer(config, retry=RetryPolicy.never()) as mailer:
        mailer.send(message)


def greet_then(reply_to_ehlo: bytes):
    """A script: greet, answer EHLO with *reply_to_ehlo*, then wait."""

    def script(conn: RawConn) -> None:
        conn.send(b"220 raw.test ESMTP\r\n")
        if conn.readline().upper().startswith(b"EHLO"):
            conn.send(reply_to_ehlo)
        conn.wait_closed()

    return script


def test_closed_port_is_a_transient_connect_error():
    port = free_port()  # nothing listens there any more
    with pytest.raises(ConnectError) as info:
        send_to(port)
    assert not isinstance(info.value, SMTPTimeoutError)
    assert info.value.is_transient
    assert info.value.command == "connect"
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_refused_greeting():
    def script(conn: RawConn) -> None:
        conn.send(b"554 5.7.1 go away\r\n")
        conn.wait_closed()

    with RawServer(script) as server:
        with pytest.raises(GreetingRefusedError) as info:
            send_to(server.port)
        # The client hung up without saying anything: no EHLO, no MAIL.
        [conn] = server.connections
        assert conn.lines == []
    assert info.value.reply.code == 554
    assert info.value.reply.text == "go away"
    assert not info.value.is_transient
    assert server.errors == []


def test_no_greeting_times_out_within_connect_timeout():
    def script(conn: RawConn) -> None:
        conn.wait_closed()  # accept, then say nothing

    with RawServer(script) as server:
        start = time.monotonic()
        with pytest.raises(ConnectTimeoutError) as info:
            send_to(server.port, connect_timeout=0.5, timeout=5.0)
        elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 1.5
    assert info.value.is_transient
    assert isinstance(info.value, ConnectError)  # also a connect failure


def test_trickling_reply_hits_the_reply_deadline():
    def script(conn: RawConn) -> None:
        conn.send(b"220 raw.test ESMTP\r\n")
        conn.readline()
        conn.send(b"250-")
        while conn.sleep(0.2):
            conn.send(b"x")  # one byte at a time, never a line end

    with RawServer(script) as server:
        start = time.monotonic()
        with pytest.raises(ReadTimeoutError) as info:
            send_to(server.port, timeout=1.0)
        elapsed = time.monotonic() - start
    # A per-recv timeout would wait forever: each byte arrives within 0.2 s.
    assert elapsed < 2.0
    assert info.value.command == "EHLO"
    assert info.value.is_transient
    assert server.errors == []


def test_endless_multiline_reply_is_a_protocol_error():
    def script(conn: RawConn) -> None:
        conn.send(b"220 raw.test ESMTP\r\n")
        conn.readline()
        while not conn.stopping:
            conn.send(b"250-x\r\n" * 64)

    with RawServer(script) as server:
        start = time.monotonic()
        with pytest.raises(ProtocolError) as info:
            send_to(server.port)
        assert time.monotonic() - start < 2.0
    assert info.value.command == "EHLO"
    assert not info.value.is_transient


def test_overlong_reply_line_is_a_protocol_error():
    script = greet_then(b"250 " + b"x" * 5000 + b"\r\n")
    with RawServer(script) as server, pytest.raises(ProtocolError, match="longer than"):
        send_to(server.port)


def test_overlong_line_without_end_is_a_protocol_error_not_a_timeout():
    with RawServer(greet_then(b"250-" + b"x" * 5000)) as server:
        start = time.monotonic()
        with pytest.raises(ProtocolError, match="longer than"):
            send_to(server.port, timeout=5.0)
        assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    "greeting", [b"hello\r\n", b"22O not a code\r\n", b"220-first\r\n221 second\r\n"]
)
def test_garbage_reply_is_a_protocol_error(greeting):
    def script(conn: RawConn) -> None:
        conn.send(greeting)
        conn.wait_closed()

    with RawServer(script) as server, pytest.raises(ProtocolError) as info:
        send_to(server.port)
    assert info.value.command == "connect"
    assert not info.value.is_transient


def test_server_that_hangs_up_after_greeting_is_a_network_error():
    def script(conn: RawConn) -> None:
        conn.send(b"220 raw.test ESMTP\r\n")
        conn.readline()
        conn._sock.shutdown(socket.SHUT_RDWR)

    with RawServer(script) as server, pytest.raises(ServerDisconnectedError) as info:
        send_to(server.port)
    assert info.value.command == "EHLO"
    assert info.value.is_transient
    assert not info.value.delivery_unknown
