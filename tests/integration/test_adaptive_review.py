"""Adapting without side effects: waits a shrink caused, login spirals, MI:DMC hang-ups.

Real servers on 127.0.0.1: aiosmtpd with provider limits (providerserver.py) and
raw scripts (rawserver.py) that say exactly what a provider says.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from smtpkit import (
    AuthenticationError,
    Mailer,
    Message,
    PoolLimits,
    ProviderAdaptation,
    RetryPolicy,
    SMTPConfig,
)

from .providerserver import CountingHandler, LimitedSMTP, Limits
from .rawserver import RawConn, RawServer
from .smtpd import Server

pytestmark = pytest.mark.integration

QQ_535 = (
    b"535 Login Fail. Please enter your authorization code to login. More "
    b"information in https://service.mail.qq.com/detail/0/53\r\n"
)


def _messages(count: int) -> list[Message]:
    return [
        Message(sender="bulk@example.com", to=f"r{i}@example.net", text="hi\n")
        for i in range(count)
    ]


class SlowHandler(CountingHandler):
    """A provider that takes a while per message."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(0.03)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_limited():
    limits = Limits(max_connections=2)
    server = Server(SlowHandler(pipelining=True))
    controller = server.controller
    controller.factory = lambda: LimitedSMTP(  # type: ignore[method-assign]
        server.handler, limits, **controller.SMTP_kwargs
    )
    yield server, limits
    server.stop()


@pytest.mark.timeout(60)
def test_messages_waiting_for_a_shrunk_pool_do_not_time_out(slow_limited):
    server, limits = slow_limited
    config = SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        pool=PoolLimits(max_connections=4, acquire_timeout=0.3),
    )
    # A batch takes longer than acquire_timeout; 4 workers share what is left.
    with Mailer(config, retry=RetryPolicy.never()) as mailer:
        results = mailer.send_many(_messages(96))
        transport = mailer.transport
        learnt = transport._pool.size
        assert transport.max_concurrency == learnt < 4  # the next run starts fewer
    assert [r.error for r in results if r.error] == []
    assert len(server.messages) == 96
    assert limits.refused >= 1
    assert limits.peak <= 2


def _answer_data_or_quit(
    conn: RawConn, verb: bytes, received: list[bytes] | None = None
) -> bool:
    """Take a message after DATA (into *received*), bid QUIT goodbye, 502 the rest.

    Returns False after QUIT: the script ends there.
    """
    if verb == b"DATA":
        conn.send(b"354 go\r\n")
        data = conn.read_data()
        if received is not None:
            received.append(data)
        conn.send(b"250 queued\r\n")
    elif verb == b"QUIT":
        conn.send(b"221 bye\r\n")
        return False
    else:
        conn.send(b"502 no\r\n")
    return True


def _auth_script(auths: list[bytes], replies: list[bytes]):
    lock = threading.Lock()

    def script(conn: RawConn) -> None:
        conn.send(b"220 smtp.qq.example ESMTP\r\n")
        while line := conn.readline():
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"EHLO":
                conn.send(
                    b"250-smtp.qq.example\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"
                )
            elif verb == b"AUTH":
                with lock:
                    auths.append(line)
                    answer = replies[min(len(auths), len(replies)) - 1]
                conn.send(answer)
            elif verb in (b"MAIL", b"RCPT"):
                conn.send(b"250 ok\r\n")
            elif not _answer_data_or_quit(conn, verb):
                return

    return script


def _auth_config(server: RawServer, **adapt: object) -> SMTPConfig:
    return SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        allow_insecure_auth=True,
        username="user@qq.example",
        password="the-login-password",
        pool=PoolLimits(max_connections=4),
        adapt=ProviderAdaptation(**adapt),  # type: ignore[arg-type]
    )


@pytest.mark.timeout(60)
def test_a_refused_login_is_tried_once_for_a_whole_bulk_send():
    auths: list[bytes] = []
    with (
        RawServer(_auth_script(auths, [QQ_535])) as server,
        Mailer(_auth_config(server)) as mailer,
    ):
        results = mailer.send_many(_messages(1000))
    assert len(auths) == 1
    assert len(results) == 1000
    for result in results:
        error = result.error
        assert isinstance(error, AuthenticationError)
        assert error.reason == "auth_needs_app_password"
        assert error.reply.code == 535
        assert result.attempts == 1  # one attempt each, as for any refused login
    # One batch got the refusal itself; every other got copies of the held one.
    held = [r.error for r in results if "not tried again" in str(r.error)]
    assert 0 < len(held) < 1000
    assert all(str(e).endswith(f"hint: {e.hint}") for e in held if e is not None)


@pytest.mark.timeout(60)
def test_a_login_is_tried_again_after_the_pause_and_success_clears_it():
    auths: list[bytes] = []
    replies = [QQ_535, b"235 ok\r\n"]
    with (
        RawServer(_auth_script(auths, replies)) as server,
        Mailer(
            _auth_config(server, auth_refusal_pause=0.3), retry=RetryPolicy.never()
        ) as mailer,
    ):
        first = mailer.send_many(_messages(50))
        assert all(r.error is not None for r in first)
        assert len(auths) == 1
        threading.Event().wait(0.4)
        second = mailer.send_many(_messages(50))
    assert [r.error for r in second if r.error] == []
    assert len(auths) >= 2


@pytest.mark.timeout(60)
def test_holding_a_refused_login_can_be_switched_off():
    auths: list[bytes] = []
    with (
        RawServer(_auth_script(auths, [QQ_535])) as server,
        Mailer(_auth_config(server, hold_auth_refusal=False)) as mailer,
    ):
        results = mailer.send_many(_messages(200))
    assert all(isinstance(r.error, AuthenticationError) for r in results)
    assert len(auths) > 1  # one per batch: what the switch brings back


def _dmc_then_hang_up(pipelining: bool, received: list[bytes]):
    def script(conn: RawConn) -> None:
        conn.send(b"220 smtp.163.example ESMTP\r\n")
        mails = 0
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                extension = b"250-PIPELINING\r\n" if pipelining else b""
                conn.send(b"250-smtp.163.example\r\n" + extension + b"250 8BITMIME\r\n")
            elif verb == b"MAIL" and mails == 3:
                conn.send(b"450 MI:DMC 4.3.2 Connection closed, too many messages\r\n")
                conn.hang_up()
                return
            elif verb == b"MAIL":
                mails += 1
                conn.send(b"250 ok\r\n")
            elif verb in (b"RCPT", b"RSET"):
                conn.send(b"250 ok\r\n")
            elif not _answer_data_or_quit(conn, verb, received):
                return

    return script


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "lockstep"])
def test_a_message_limit_refusal_followed_by_a_hang_up_is_learnt(pipelining):
    received: list[bytes] = []
    with RawServer(_dmc_then_hang_up(pipelining, received)) as server:
        config = SMTPConfig(
            host=server.host,
            port=server.port,
            tls="none",
            pool=PoolLimits(max_connections=1),
        )
        with Mailer(config, retry=RetryPolicy.never()) as mailer:
            results = mailer.send_many(_messages(10), concurrency=1)
            assert mailer.transport._pool.max_messages == 3
    assert [r.error for r in results if r.error] == []
    assert all(r.attempts == 1 for r in results)
    assert len(received) == 10
    assert len(server.connections) == 4  # 3 + 3 + 3 + 1


@pytest.mark.timeout(60)
def test_a_spurious_message_limit_refusal_is_not_kept_forever():
    refused = threading.Event()

    def script(conn: RawConn) -> None:
        conn.send(b"220 smtp.163.example ESMTP\r\n")
        mails = 0
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.send(b"250-smtp.163.example\r\n250 PIPELINING\r\n")
            elif verb == b"MAIL" and mails == 1 and not refused.is_set():
                refused.set()  # once, on the first connection's second message
                conn.send(b"450 MI:DMC 4.3.2 too many messages\r\n")
            elif verb == b"MAIL":
                mails += 1
                conn.send(b"250 ok\r\n")
            elif verb in (b"RCPT", b"RSET"):
                conn.send(b"250 ok\r\n")
            elif not _answer_data_or_quit(conn, verb):
                return

    with RawServer(script) as server:
        config = SMTPConfig(
            host=server.host,
            port=server.port,
            tls="none",
            pool=PoolLimits(max_connections=1, max_messages_per_connection=16),
            adapt=ProviderAdaptation(grow_after=5),
        )
        with Mailer(config, retry=RetryPolicy.never()) as mailer:
            results = mailer.send_many(_messages(80), concurrency=1)
            learnt = mailer.transport._pool.max_messages
    assert [r.error for r in results if r.error] == []
    assert refused.is_set()
    assert learnt == 16  # 1, then 2, 4, 8, back to the configured limit
    assert len(server.connections) < 20  # not one connection per message
