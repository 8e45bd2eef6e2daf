"""What a failed upload, a garbled final reply, a refused RSET or a stray reply
really means for the message (issue 8, items 13-17), against scripted servers.

Each script speaks correct SMTP except for the one fault under test, so the
assertions are about classification: certain or unknown, transient or permanent,
retried or not, and what the server really holds afterwards.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from smtpkit import (
    DataRefusedError,
    ProtocolError,
    ReadTimeoutError,
    ServerDisconnectedError,
    SMTPConfig,
    SMTPConnection,
    SMTPTimeoutError,
    SMTPTransport,
    TransportError,
)

from .rawserver import RawConn, RawServer
from .scriptsmtp import (
    NEVER,
    TWICE,
    DataHandler,
    Script,
    accept,
    config,
    message,
    retries_seen,
)

pytestmark = pytest.mark.integration


# -- 13. an upload cut before the final dot is a certain, transient failure ------------


def cut_after(count: int) -> DataHandler:
    """Read *count* bytes of the data, then abort the connection with a RST."""

    def handle(conn: RawConn, number: int) -> bool:
        taken = 0
        while taken < count:
            got = conn.read_some(count - taken)
            if not got:
                break
            taken += got
        conn.reset()
        return False

    return handle


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_reset_during_upload_is_certain_and_retried(make_mailer, pipelining):
    script = Script(pipelining=pipelining, data=[cut_after(64 * 1024)])
    errors, hook = retries_seen()
    with RawServer(script, rcvbuf=64 * 1024) as server:
        with make_mailer(config(server), retry=TWICE, on_retry=hook) as mailer:
            result = mailer.send(message(size=16 * 1024 * 1024))
    assert result.ok
    assert result.attempts == 2
    assert len(script.received) == 1  # delivered once, by the second attempt
    [error] = errors
    assert isinstance(error, ServerDisconnectedError)
    assert not error.delivery_unknown  # the final dot never left: nothing queued
    assert error.is_transient
    assert error.command == "DATA"
    assert "bytes written" in str(error)


@pytest.fixture(scope="module")
def tls_pair() -> tuple[ssl.SSLContext, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    return server_context, ca.cert_pem.bytes().decode()


def test_tls_close_during_upload_is_a_network_error_not_a_tls_failure(
    make_mailer, tls_pair, tmp_path
):
    server_context, ca_pem = tls_pair
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    script = Script(tls=server_context, data=[cut_after(64 * 1024)])
    errors, hook = retries_seen()
    with RawServer(script, rcvbuf=64 * 1024) as server:
        cfg = config(server, tls="implicit", ca_file=str(ca_file))
        with make_mailer(cfg, retry=TWICE, on_retry=hook) as mailer:
            result = mailer.send(message(size=16 * 1024 * 1024))
    assert result.ok
    assert result.attempts == 2
    assert len(script.received) == 1
    [error] = errors
    assert isinstance(error, ServerDisconnectedError)
    assert not error.delivery_unknown


def stall_after(count: int, release: threading.Event) -> DataHandler:
    """Read *count* bytes, then stop reading until the test ends."""

    def handle(conn: RawConn, number: int) -> bool:
        taken = 0
        while taken < count and (got := conn.read_some(count - taken)):
            taken += got
        release.wait(10)
        return False

    return handle


def test_stalled_upload_times_out_as_a_certain_failure(make_mailer):
    release = threading.Event()
    script = Script(data=[stall_after(64 * 1024, release)])
    with RawServer(script, rcvbuf=64 * 1024) as server:
        with make_mailer(config(server, timeout=0.5), retry=NEVER) as mailer:
            started = time.monotonic()
            with pytest.raises(SMTPTimeoutError) as info:
                mailer.send(message(size=16 * 1024 * 1024))
            took = time.monotonic() - started
        release.set()
    assert not info.value.delivery_unknown
    assert info.value.is_transient
    assert info.value.command == "DATA"
    assert took < 5


# -- 14. the timeout bounds silence, not the length of a slow but steady upload --------


def slow_reader(chunk: int, pause: float) -> DataHandler:
    """Read the data *chunk* bytes at a time with a *pause* between chunks."""

    def handle(conn: RawConn, number: int) -> bool:
        data = bytearray(conn._buf)  # what readline already pulled in
        conn._buf.clear()
        taken = 0
        while not data.endswith(b"\r\n.\r\n"):
            got = conn._recv(chunk - taken)  # a TLS record at most, when secure
            if not got:
                return False
            data += got
            taken += len(got)
            if taken >= chunk:
                taken = 0
                time.sleep(pause)
        conn.received.append(bytes(data))  # type: ignore[attr-defined]
        conn.send(f"250 2.0.0 queued as Q{number}\r\n".encode())
        return True

    return handle


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
def test_slow_steady_reader_is_not_cut_off_by_the_reply_timeout(
    make_mailer, secure, tls_pair, tmp_path
):
    # About 2.5 MB/s for 12 MB: far longer than the 1 s timeout in total, but the
    # server never stays silent for long.
    server_context, ca_pem = tls_pair
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    script = Script(
        data=[slow_reader(256 * 1024, 0.1)], tls=server_context if secure else None
    )
    tls = {"tls": "implicit", "ca_file": str(ca_file)} if secure else {}
    with RawServer(script, rcvbuf=128 * 1024) as server:
        with make_mailer(config(server, timeout=1.0, **tls), retry=NEVER) as mailer:
            started = time.monotonic()
            result = mailer.send(message(size=12 * 1024 * 1024))
            took = time.monotonic() - started
    assert result.ok
    assert took > 1.5  # the upload really outlasted the timeout
    assert len(script.received) == 1
    assert len(script.received[0]) > 12 * 1024 * 1024


# -- 15. a garbled reply to the final dot: the server may have the message ---------------


@pytest.mark.parametrize(
    ("final", "error", "unknown"),
    [
        (b"garbage\r\n", ProtocolError, True),
        (b"250-" + b"x" * 5000 + b"\r\n", ProtocolError, True),
        (b"354 again\r\n", ProtocolError, True),
        (b"554 5.6.0 rejected\r\n", DataRefusedError, False),
    ],
    ids=["malformed", "oversize", "impossible-code", "refused"],
)
def test_protocol_error_after_the_final_dot_is_delivery_unknown(
    make_mailer, final, error, unknown
):
    # A garbled answer to the final dot may hide a queued message; a refusal not.
    def reply(conn: RawConn, number: int) -> bool:
        conn.received.append(conn.read_data() or b"")  # type: ignore[attr-defined]
        conn.send(final)
        conn.wait_closed()
        return False

    script = Script(data=[reply])
    with RawServer(script) as server:
        with make_mailer(config(server), retry=TWICE) as mailer:
            with pytest.raises(error) as info:
                mailer.send(message())
    assert info.value.delivery_unknown is unknown
    assert info.value.attempts == 1  # not resent (a 554 is permanent anyway)
    assert len(script.received) == 1


# -- 16. a refused RSET ends the connection's use; the rest go elsewhere ----------------


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_refused_rset_moves_the_rest_of_the_batch_to_a_new_connection(
    make_mailer, pipelining
):
    script = Script(
        pipelining=pipelining,
        replies={
            "RCPT": [b"550 5.1.1 no such user\r\n"],
            "RSET": [b"500 5.5.1 no\r\n"],
        },
    )
    with RawServer(script) as server:
        with make_mailer(config(server), retry=NEVER) as mailer:
            results = mailer.send_many([message(n) for n in range(4)], concurrency=1)
    assert [r.ok for r in results] == [False, True, True, True]
    assert results[1].attempts == 1  # moving on did not count as an attempt
    assert len(script.received) == 3
    assert script.sessions == 2


# -- 17. a stray reply waiting before a lock-step command is never paired with it ---------


def test_stray_reply_in_its_own_segment_is_caught_before_the_next_command():
    stray_sent = threading.Event()

    def greet_then_stray(conn: RawConn) -> None:
        conn.send(b"220 edge ESMTP\r\n")
        conn.readline()  # EHLO
        conn.send(b"250 edge\r\n")
        time.sleep(0.2)
        conn.send(b"250 2.1.0 ok\r\n")  # answers nothing
        stray_sent.set()
        conn.wait_closed()

    with RawServer(greet_then_stray) as server:
        conn = SMTPConnection(timeout=3.0, local_hostname="client.example")
        conn.open(server.host, server.port, 3.0)
        conn.ehlo()
        assert stray_sent.wait(5)
        time.sleep(0.1)  # the stray line is now in the kernel, not yet read
        with pytest.raises(ProtocolError, match="unexpected bytes before MAIL"):
            conn.putcmd("MAIL", "FROM:<a@example.com>")
        conn.close()


def test_stray_reply_during_pacing_does_not_answer_the_next_message(make_mailer):
    # The second message waits on its pooled connection (per-connection pacing)
    # while a stray "250" arrives; it must not be taken as MAIL's reply.
    def stray(conn: RawConn) -> None:
        time.sleep(0.15)
        conn.send(b"250 2.0.0 stray\r\n")

    script = Script(pipelining=False, data=[accept], after_reply={})
    script.data = [_accept_then(stray)]
    with RawServer(script) as server:
        cfg = config(server, pool={"per_connection_rate": 2.0, "max_connections": 1})
        with make_mailer(cfg, retry=NEVER) as mailer:
            results = mailer.send_many([message(0), message(1)], concurrency=1)
    assert [r.ok for r in results] == [True, True]
    assert [r.attempts for r in results] == [1, 1]
    assert len(script.received) == 2
    assert script.sessions == 2  # the polluted session was dropped


def _accept_then(after: Callable[[RawConn], None]) -> DataHandler:
    def handle(conn: RawConn, number: int) -> bool:
        ok = accept(conn, number)
        after(conn)
        return ok

    return handle


def test_a_silent_server_after_a_small_message_times_out_on_time(make_mailer):
    # The data is acknowledged at once; the watch for a draining send queue must
    # not stretch the reply deadline for it.
    def never_reply(conn: RawConn, number: int) -> bool:
        conn.received.append(conn.read_data() or b"")  # type: ignore[attr-defined]
        conn.wait_closed()
        return False

    script = Script(data=[never_reply])
    with RawServer(script) as server:
        with make_mailer(config(server, timeout=0.5), retry=NEVER) as mailer:
            started = time.monotonic()
            with pytest.raises(ReadTimeoutError) as info:
                mailer.send(message(size=64 * 1024))
            took = time.monotonic() - started
    assert info.value.delivery_unknown
    assert took < 0.5 + 0.45


# -- nothing but smtpkit errors leaves the transport ---------------------------------


class NonAsciiCommand(SMTPTransport):
    """A subclass whose handshake sends a command the wire cannot carry."""

    def handshake(self, conn: SMTPConnection) -> None:
        super().handshake(conn)
        conn.putcmd("XTAG", "café")  # smtplib encodes commands as ASCII


def test_a_value_error_inside_the_session_becomes_a_transport_error(make_mailer):
    with RawServer(Script()) as server:
        with make_mailer(
            transport=NonAsciiCommand(config(server)), retry=TWICE
        ) as mailer:
            with pytest.raises(TransportError) as info:
                mailer.send(message())
    error = info.value
    assert isinstance(error.__cause__, UnicodeEncodeError)
    assert not error.is_transient
    assert not error.delivery_unknown
    assert error.attempts == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "smtp..example.com"},
        {"local_hostname": "héllo.example"},
        {"local_hostname": "a b"},
    ],
    ids=["empty-label", "non-ascii-ehlo", "space-in-ehlo"],
)
def test_names_the_socket_or_ehlo_cannot_carry_are_refused_by_the_config(fields):
    with pytest.raises(ValueError, match="host"):
        SMTPConfig(**{"host": "smtp.example.com", "tls": "none", **fields})


class SmallSendBuffer(SMTPTransport):
    """Shrinks the client's send buffer, so a slow reader is felt at once."""

    def create_connection(self) -> SMTPConnection:
        conn = super().create_connection()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        return conn


def test_slow_tls_reader_below_the_old_piece_rate_is_not_cut_off(
    make_mailer, tls_pair, tmp_path
):
    # About 210 KB/s with a 1 s timeout: a 256 KiB TLS write would need more than
    # the timeout in one send() call; one record at a time keeps making progress.
    server_context, ca_pem = tls_pair
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    script = Script(data=[slow_reader(64 * 1024, 0.3)], tls=server_context)
    with RawServer(script, rcvbuf=64 * 1024) as server:
        cfg = config(server, timeout=1.0, tls="implicit", ca_file=str(ca_file))
        with make_mailer(transport=SmallSendBuffer(cfg), retry=NEVER) as mailer:
            result = mailer.send(message(size=1024 * 1024))
    assert result.ok
    assert len(script.received) == 1
