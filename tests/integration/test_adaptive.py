"""SMTPTransport adapts to provider limits instead of hammering the server.

A real aiosmtpd server on 127.0.0.1 refuses a third connection with ``421
HL:ICC``, a 51st message on one connection with ``450 MI:DMC`` and, when asked,
every message past a quota with ``451 MI:SFQ``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from smtpkit import (
    Mailer,
    Message,
    NotSentError,
    PoolLimits,
    ProviderAdaptation,
    QuotaExceededError,
    RetryPolicy,
    SendResult,
    SMTPConfig,
)

from .providerserver import Limits, limited_server

pytestmark = pytest.mark.integration

NEVER = RetryPolicy.never()


def _messages(count: int) -> list[Message]:
    return [
        Message(
            sender="bulk@example.com",
            to=f"r{i}@example.net",
            subject=f"n{i}",
            text="hello\n",
            message_id=f"<n{i}@example.com>",
        )
        for i in range(count)
    ]


@pytest.fixture
def limited(request):
    servers = []

    def start(limits: Limits):
        server = limited_server(limits)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _config(server, **fields) -> SMTPConfig:
    return SMTPConfig(host=server.host, port=server.port, tls="none", **fields)


def _subjects(server) -> list[bytes]:
    return sorted(
        m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in server.messages
    )


def _each_delivered_once(server, config: SMTPConfig, count: int) -> int:
    """send_many *count* messages: each delivered once, at its first attempt.

    Returns:
        The pool's size afterwards (what the adapter learnt).
    """
    with Mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(_messages(count))
        pool_size = mailer.transport._pool.size
    assert [r.error for r in results if r.error is not None] == []
    assert all(r.attempts == 1 for r in results)
    assert _subjects(server) == sorted(f"n{i}".encode() for i in range(count))
    return pool_size


@pytest.mark.timeout(120)
def test_two_connections_and_fifty_messages_are_learnt_not_fought(limited):
    limits = Limits(max_connections=2, max_messages=50)
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_connections=4))
    with Mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(_messages(2000))
        pool_size = mailer.transport._pool.size
        max_messages = mailer.transport._pool.max_messages
    assert [r.error for r in results if r.error is not None] == []
    assert all(r.attempts == 1 for r in results)
    # Every message arrived exactly once.
    assert _subjects(server) == sorted(f"n{i}".encode() for i in range(2000))
    assert pool_size <= 2
    assert max_messages == 50
    assert limits.peak <= 2
    # About 2,000 / 50 = 40 sessions; a refusal now and then while growing back.
    assert limits.sessions <= 45, limits.sessions
    assert limits.refused <= 12, limits.refused
    assert max(limits.carried) <= 50


def test_without_adaptation_too_many_connections_fail_messages(limited):
    limits = Limits(max_connections=2)
    server = limited(limits)
    config = _config(
        server,
        pool=PoolLimits(max_connections=4),
        adapt=ProviderAdaptation(learn_connection_limit=False),
    )
    with Mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(_messages(300))
    failed = [str(r.error) for r in results if r.error is not None]
    assert failed
    assert all("HL:ICC" in text for text in failed)
    assert len(server.messages) == 300 - len(failed)


def test_without_adaptation_too_many_messages_fail_messages(limited):
    limits = Limits(max_messages=50)
    server = limited(limits)
    config = _config(
        server,
        pool=PoolLimits(max_connections=1),
        adapt=ProviderAdaptation(reconnect_on_message_limit=False),
    )
    with Mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(_messages(120))
    failed = [str(r.error) for r in results if r.error is not None]
    assert failed
    assert all("MI:DMC" in text for text in failed)
    assert len(server.messages) == 120 - len(failed)


def test_a_refused_message_is_sent_again_on_a_new_connection_for_free(limited):
    limits = Limits(max_messages=3)
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_connections=1))
    with Mailer(config, retry=NEVER) as mailer:
        results = [mailer.send(m) for m in _messages(7)]
        max_messages = mailer.transport._pool.max_messages
    assert [r.attempts for r in results] == [1] * 7
    assert len(server.messages) == 7
    assert max_messages == 3
    # 3 + 3 + 1: the 4th message was refused once, then carried by session 2.
    assert limits.sessions == 3


def test_a_first_message_refused_for_the_limit_is_a_real_failure(limited):
    # A connection that carried nothing learnt nothing: no endless reconnects.
    limits = Limits(max_messages=0)
    server = limited(limits)
    with Mailer(_config(server), retry=NEVER) as mailer:
        results = mailer.send_many(_messages(3))
    assert all("MI:DMC" in str(r.error) for r in results)
    assert server.messages == []


def test_only_connection_refused_is_a_real_failure(limited):
    limits = Limits(max_connections=0)
    server = limited(limits)
    with Mailer(_config(server), retry=NEVER) as mailer:
        results = mailer.send_many(_messages(2))
    assert all("HL:ICC" in str(r.error) for r in results)


@pytest.mark.timeout(60)
def test_a_spent_quota_stops_send_many_with_every_message_accounted_for(limited):
    limits = Limits(quota=120)
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_connections=2))
    retry = RetryPolicy(attempts=5, wait_initial=0, wait_jitter=0)
    messages = _messages(1000)
    with (
        Mailer(config, retry=retry) as mailer,
        pytest.raises(QuotaExceededError) as info,
    ):
        mailer.send_many(messages)
    error = info.value
    results = error.results
    assert "MI:SFQ" in str(error)
    assert error.reply is not None
    assert error.reply.code == 451
    assert error.resume_after == 900.0  # NetEase's 15-minute window
    # Ordered, one per message read; stopped long before the end.
    assert 120 <= len(results) < 1000
    for message, result in zip(messages, results, strict=False):
        if result.envelope is not None:
            assert result.envelope.recipients == (message.to[0].email,)
    delivered = [r for r in results if r.error is None]
    refused = [r for r in results if r.error is not None and r.attempts == 1]
    unsent = error.unsent
    assert len(delivered) == len(server.messages) == 120
    assert len(delivered) + len(refused) + len(unsent) == len(results)
    assert all("MI:SFQ" in str(r.error) for r in refused)
    # A worker that took its batch as the stop came says "the bulk send stopped
    # before its turn"; the others "send_many stopped (...)": never sent, either way.
    assert all(isinstance(r.error, NotSentError) and r.attempts == 0 for r in unsent)
    assert all("not sent: " in str(r.error) for r in unsent)
    assert unsent == [r for r in results if r.attempts == 0]
    assert all(isinstance(r.error, NotSentError) for r in unsent)
    # No retry spent against the quota; what was under way finished, no more.
    assert limits.mails_after_quota == len(refused) <= 2 * 32


@pytest.mark.timeout(60)
def test_a_spent_quota_stops_send_iter_with_every_message_read_yielded(limited):
    limits = Limits(quota=120)
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_connections=2))
    retry = RetryPolicy(attempts=5, wait_initial=0, wait_jitter=0)
    messages = _messages(1000)
    pulled: list[Message] = []

    def reading() -> Iterator[Message]:
        for message in messages:
            pulled.append(message)
            yield message

    yielded: list[SendResult] = []
    with Mailer(config, retry=retry) as mailer:
        stream = mailer.send_iter(reading())
        with stream, pytest.raises(QuotaExceededError) as info:
            yielded.extend(stream)  # appended one by one, up to the error
        error = info.value
        assert not [t for t in threading.enumerate() if t.name.startswith("smtpkit")]
        assert mailer.send_many([]) == []  # still usable
    assert str(error).startswith("send_iter stopped: ")
    assert "MI:SFQ" in str(error)
    assert error.reply is not None
    assert error.reply.code == 451
    # Every result was yielded before the error: nothing left over or repeated.
    assert error.results == []
    assert error.unsent == []
    assert stream.leftover == []
    # One result per message read, in input order; reading stopped early.
    assert 120 <= len(yielded) == len(pulled) < 1000
    for message, result in zip(pulled, yielded, strict=True):
        if result.envelope is not None:
            assert result.envelope.recipients == (message.to[0].email,)
    delivered = [r for r in yielded if r.error is None]
    refused = [r for r in yielded if r.error is not None and r.attempts == 1]
    unsent = [r for r in yielded if isinstance(r.error, NotSentError)]
    assert len(delivered) + len(refused) + len(unsent) == len(yielded)
    assert unsent == [r for r in yielded if r.attempts == 0]
    # A worker that took its batch as the stop came says "the bulk send stopped
    # before its turn"; the others "send_iter stopped (...)": never sent, either way.
    assert all(isinstance(r.error, NotSentError) and r.attempts == 0 for r in unsent)
    assert all("not sent: " in str(r.error) for r in unsent)
    assert all("MI:SFQ" in str(r.error) for r in refused)
    assert len(delivered) == len(server.messages) == 120
    # The server holds exactly the messages the results say were delivered.
    subjects = [f"n{i}".encode() for i, r in enumerate(yielded) if r.error is None]
    assert _subjects(server) == sorted(subjects)
    assert limits.mails_after_quota == len(refused) <= 2 * 32


def test_stop_on_quota_can_be_switched_off(limited):
    limits = Limits(quota=5)
    server = limited(limits)
    config = _config(server, adapt=ProviderAdaptation(stop_on_quota=False))
    with Mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(_messages(10))
    assert len(server.messages) == 5
    assert sum(r.error is not None for r in results) == 5


@pytest.mark.timeout(60)
def test_too_many_connections_refused_at_mail_costs_no_attempt(limited):
    # The server greets every connection and refuses the extra ones' MAIL with
    # 421 HL:ICC: those messages never started and go to an open connection.
    limits = Limits(max_connections=2, refuse_at_mail=True)
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_connections=4))
    pool_size = _each_delivered_once(server, config, 400)
    assert limits.refused >= 1
    assert pool_size <= 2


def test_a_message_limit_refusal_mid_batch_leaves_the_others_delivered_once(limited):
    # MAIL 3 of the first connection is refused with 450 MI:DMC, the pipelined
    # messages behind it in the same write are accepted: only message 3 is
    # sent again (on a new connection), nothing twice, no attempt counted.
    limits = Limits(dmc_once_at=3)
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_connections=1))
    with Mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(_messages(10), concurrency=1)
        max_messages = mailer.transport._pool.max_messages
    assert [r.error for r in results] == [None] * 10
    assert [r.attempts for r in results] == [1] * 10
    assert _subjects(server) == sorted(f"n{i}".encode() for i in range(10))
    assert server.messages[-1].data.count(b"Subject: n3\r\n") == 1
    assert max_messages == 3  # what the connection carried before the refusal
    assert limits.sessions == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("close_delay", [0.05, 0.25])
def test_a_spent_connection_is_replaced_once_the_server_closed_it(limited, close_delay):
    # A server counts a session until it has closed it, after its 221 (Postfix's
    # smtpd reports the disconnect to anvil, then closes): QUIT waits for that
    # close, so the connection replacing a spent one (every 10 messages here)
    # is not refused "too many connections" with none of ours open.
    limits = Limits(max_connections=2, close_delay=close_delay)
    server = limited(limits)
    config = _config(
        server, pool=PoolLimits(max_connections=2, max_messages_per_connection=10)
    )
    pool_size = _each_delivered_once(server, config, 200)
    assert pool_size == 2
    assert limits.refused == 0
    assert limits.sessions == 20


def test_a_mailer_started_right_after_another_closed_is_not_refused(limited):
    # The same for the sessions a closing mailer QUITs: the next mailer (a CLI
    # run, a mailer per request) finds them closed on the server too.
    limits = Limits(max_connections=1, close_delay=0.2)
    server = limited(limits)
    for n in range(3):
        with Mailer(_config(server), retry=NEVER) as mailer:
            assert mailer.send(_messages(3)[n]).ok
    assert limits.refused == 0
    assert limits.sessions == 3


def test_a_server_that_stays_open_after_221_holds_quit_half_a_second(limited):
    limits = Limits(close_delay=30.0)  # never closes in time
    server = limited(limits)
    config = _config(server, pool=PoolLimits(max_messages_per_connection=1))
    with Mailer(config, retry=NEVER) as mailer:
        started = time.monotonic()
        assert mailer.send(_messages(1)[0]).ok  # then spent: QUIT, wait, close
        elapsed = time.monotonic() - started
        assert mailer.transport.stats().open == 0
    assert 0.4 <= elapsed < 2.0
