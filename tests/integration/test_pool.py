"""The connection pool against a real server: reuse, limits, checks and cleanup.

Every claim is checked on the server side: which session each message arrived on,
which commands (NOOP, RSET, QUIT) each session saw, how many were open at once.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from smtpkit import (
    Message,
    PoolLimits,
    PoolTimeoutError,
    RecipientsRefusedError,
)

from .faults import (
    FaultHandler,
    client_sockets,
    fault_servers,
    open_fds,
    server_sockets,
    wait_until,
)

SENDER = "sender@example.com"


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


def message(i: int, to: str = "rcpt@example.com") -> Message:
    return Message(
        sender=SENDER, to=to, subject=f"m{i}", text="hi", message_id=f"<m{i}@test>"
    )


@pytest.fixture
def mailer_for(make_mailer):
    """Build a Mailer (or AsyncMailer) with a recording sleep and these pool limits."""

    def build(server, config_for, waits=None, on_retry=None, **pool):
        return make_mailer(
            config_for(server, pool=PoolLimits(**pool)),
            sleep=(waits if waits is not None else []).append,
            on_retry=on_retry,
            rng=random.Random(0),
        )

    return build


def test_sequential_sends_share_one_session(mailer_for, start_fault_server, config_for):
    server = start_fault_server()
    with mailer_for(server, config_for) as mailer:
        mailer.send(message(1))
        mailer.send(message(2))
        stats = mailer.transport.stats()
    assert [m.session_id for m in server.messages] == [1, 1]
    assert server.handler.sessions == 1
    assert (stats.created, stats.open, stats.idle, stats.discarded) == (1, 1, 1, 0)


def test_max_connections_is_respected_under_concurrency(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(data_delay=0.05))
    with mailer_for(server, config_for, max_connections=2) as mailer:
        with ThreadPoolExecutor(max_workers=6) as threads:
            results = list(threads.map(mailer.send, [message(i) for i in range(12)]))
        stats = mailer.transport.stats()
    assert all(r.ok for r in results)
    assert len(server.messages) == 12
    # Six threads wanted a connection; the server never saw more than two at once.
    assert server.handler.max_open == 2
    assert server.handler.sessions == 2
    assert stats.created == 2


def test_max_messages_per_connection_retires_sessions_with_quit(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    handler = server.handler
    mailer = mailer_for(server, config_for, max_messages_per_connection=3)
    with mailer:
        for i in range(7):
            mailer.send(message(i))
        assert [m.session_id for m in server.messages] == [1, 1, 1, 2, 2, 2, 3]
        # The spent sessions ended politely; the live one is still in the pool.
        assert handler.commands_of(1)[-1] == "QUIT"
        assert handler.commands_of(2)[-1] == "QUIT"
        assert "QUIT" not in handler.commands_of(3)
        stats = mailer.transport.stats()
        assert (stats.created, stats.open, stats.discarded) == (3, 1, 0)
    assert handler.commands_of(3)[-1] == "QUIT"


@pytest.mark.parametrize(("check_after_idle", "noop"), [(0.0, True), (60.0, False)])
def test_idle_connection_is_checked_with_noop(
    mailer_for, start_fault_server, config_for, check_after_idle, noop
):
    server = start_fault_server()
    with mailer_for(server, config_for, check_after_idle=check_after_idle) as mailer:
        mailer.send(message(1))
        mailer.send(message(2))
    expected = ["EHLO", "MAIL 250", "RCPT 250", "EOD"]
    expected += ["NOOP"] if noop else []
    expected += ["MAIL 250", "RCPT 250", "EOD", "QUIT"]
    assert server.handler.commands_of(1) == expected


@pytest.mark.parametrize("check_after_idle", [0.0, 60.0], ids=["noop", "no-check"])
def test_connection_closed_by_server_while_idle_is_replaced(
    mailer_for, start_fault_server, config_for, check_after_idle
):
    # aiosmtpd drops a session after `timeout` seconds without a command.
    server = start_fault_server(timeout=0.3)
    handler = server.handler
    waits: list[float] = []
    retries = []
    mailer = mailer_for(
        server, config_for, waits, retries.append, check_after_idle=check_after_idle
    )
    with mailer:
        mailer.send(message(1))
        assert wait_until(lambda: not handler.open_sessions)
        result = mailer.send(message(2))
        stats = mailer.transport.stats()
    assert result.ok
    assert result.attempts == 1
    assert waits == []
    assert retries == []
    assert [m.session_id for m in server.messages] == [1, 2]
    assert (stats.created, stats.discarded) == (2, 1)


def test_421_at_mail_on_a_reused_connection_is_not_an_attempt(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    handler = server.handler
    waits: list[float] = []
    with mailer_for(server, config_for, waits) as mailer:
        mailer.send(message(1))
        handler.queue("MAIL", "421 4.3.2 service shutting down")
        result = mailer.send(message(2))
        stats = mailer.transport.stats()
    assert result.ok
    assert result.attempts == 1
    assert waits == []
    assert handler.commands_of(1)[-1] == "MAIL 421"
    assert [m.session_id for m in server.messages] == [1, 2]
    assert (stats.created, stats.discarded) == (2, 1)


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_rset_after_a_failed_transaction_before_reuse(
    mailer_for, start_fault_server, config_for, pipelining
):
    handler = FaultHandler(pipelining=pipelining)
    handler.rcpt_replies["nobody@example.com"] = "550 5.1.1 no such user"
    server = start_fault_server(handler=handler)
    with mailer_for(server, config_for) as mailer:
        with pytest.raises(RecipientsRefusedError) as info:
            mailer.send(message(1, to="nobody@example.com"))
        mailer.send(message(2))
        stats = mailer.transport.stats()
    assert info.value.attempts == 1
    commands = handler.commands_of(1)
    assert commands[:4] == ["EHLO", "MAIL 250", "RCPT 550", "RSET"]
    assert commands[4:] == ["MAIL 250", "RCPT 250", "EOD", "QUIT"]
    assert [m.session_id for m in server.messages] == [1]
    assert (stats.created, stats.discarded) == (1, 0)


def test_close_quits_and_closes_every_connection(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(data_delay=0.02))
    handler = server.handler
    # Let the server finish with the controller's start-up probe first.
    assert wait_until(lambda: server_sockets(server.port) == 0)
    # Built first: AsyncMailer's event loop (its selector) holds descriptors too.
    mailer = mailer_for(server, config_for, max_connections=4)
    baseline = open_fds()
    results = mailer.send_many([message(i) for i in range(16)], concurrency=4)
    assert all(r.ok for r in results)
    opened = mailer.transport.stats().open
    assert opened == handler.sessions >= 2
    assert client_sockets(server.port) == opened
    assert open_fds() >= baseline + 2 * opened  # client and server end of each
    mailer.close()
    stats = mailer.transport.stats()
    assert (stats.open, stats.idle, stats.in_use) == (0, 0, 0)
    assert client_sockets(server.port) == 0
    assert all(handler.commands_of(s)[-1] == "QUIT" for s in range(1, opened + 1))
    # The server closes its ends asynchronously; then nothing is left over.
    assert wait_until(lambda: open_fds() == baseline, 3.0), (open_fds(), baseline)


@pytest.mark.parametrize("acquire_timeout", [0.0, 0.0005])
def test_a_zero_acquire_timeout_fails_no_send_to_an_idle_pool(
    mailer_for, start_fault_server, config_for, acquire_timeout
):
    """Waiting for a connection is bounded; a worker thread's start-up is not
    waiting (``AsyncMailer`` once failed sends to an idle pool this way)."""
    server = start_fault_server(handler=FaultHandler())
    mailer = mailer_for(
        server, config_for, max_connections=4, acquire_timeout=acquire_timeout
    )
    with mailer:
        results = [mailer.send(message(i)) for i in range(30)]
    assert all(result.ok for result in results)
    assert len(server.handler.messages) == 30


def test_pool_timeout_when_every_connection_is_busy_is_not_retried(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(block=threading.Event()))
    handler = server.handler
    assert handler.block is not None
    waits: list[float] = []
    mailer = mailer_for(
        server, config_for, waits, max_connections=1, acquire_timeout=0.2
    )
    first: list[object] = []
    busy = threading.Thread(target=lambda: first.append(mailer.send(message(1))))
    # Unblocks the server if the second send waits instead of timing out.
    release = threading.Timer(3.0, handler.block.set)
    with mailer:
        busy.start()
        release.start()
        try:
            assert handler.blocked.wait(5)
            start = time.monotonic()
            with pytest.raises(PoolTimeoutError) as info:
                mailer.send(message(2))
            elapsed = time.monotonic() - start
        finally:
            release.cancel()
            handler.block.set()
            busy.join(5)
        stats = mailer.transport.stats()
    assert not info.value.is_transient
    assert info.value.attempts == 1
    assert waits == []
    assert 0.15 <= elapsed < 2.0
    assert len(first) == 1
    assert [m.session_id for m in server.messages] == [1]
    assert handler.sessions == 1
    assert stats.created == 1
