"""Bulk sending and rate limiting through one shared Mailer against a real server."""

from __future__ import annotations

import collections
import random
import re
import time

import pytest

from smtpkit import (
    BulkProgress,
    Message,
    PoolLimits,
    RateLimit,
    RecipientsRefusedError,
)

from .faults import FaultHandler, fault_servers, open_fds, server_sockets, wait_until

SENDER = "sender@example.com"
REFUSED = "refused@example.com"
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)\r$", re.MULTILINE | re.IGNORECASE)


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


def message(i: int, to: str = "rcpt@example.com") -> Message:
    return Message(
        sender=SENDER, to=to, subject=f"m{i}", text="hi", message_id=f"<m{i}@bulk>"
    )


def received_ids(server) -> list[bytes]:
    ids = []
    for received in server.messages:
        match = MESSAGE_ID.search(received.data)
        assert match is not None
        ids.append(match.group(1))
    return ids


def test_send_many_2000_messages_from_8_threads(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(pipelining=True))
    server.handler.rcpt_replies[REFUSED] = "550 5.1.1 no such user"
    refused_at = {13, 777, 1999}
    messages = [
        message(i, to=REFUSED if i in refused_at else "rcpt@example.com")
        for i in range(2000)
    ]
    assert wait_until(lambda: server_sockets(server.port) == 0)
    progress: list[BulkProgress] = []
    # Built first: AsyncMailer's event loop (its selector) holds descriptors too.
    mailer = make_mailer(
        config_for(server, pool=PoolLimits(max_connections=8)),
        sleep=[].append,
        rng=random.Random(0),
    )
    baseline = open_fds()
    start = time.monotonic()
    with mailer:
        results = mailer.send_many(messages, concurrency=8, on_progress=progress.append)
        assert mailer.transport.stats().open <= 8
    elapsed = time.monotonic() - start

    # In input order, one result per message.
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    failed = [i for i, r in enumerate(results) if r.error is not None]
    assert failed == sorted(refused_at)
    for i in refused_at:
        assert isinstance(results[i].error, RecipientsRefusedError)
        assert results[i].error.refused[REFUSED].code == 550
        assert results[i].attempts == 1
    assert all(
        r.ok and r.attempts == 1 for i, r in enumerate(results) if i not in refused_at
    )

    # Each accepted message reached the server exactly once.
    ids = received_ids(server)
    duplicates = [mid for mid, n in collections.Counter(ids).items() if n > 1]
    assert duplicates == []
    expected = {
        m.message_id.encode() for i, m in enumerate(messages) if i not in refused_at
    }
    assert set(ids) == expected
    assert len(ids) == 1997
    assert server.handler.max_open <= 8

    assert progress[-1] == BulkProgress(done=2000, failed=3, total=2000)
    assert [p.done for p in progress] == list(range(1, 2001))
    assert elapsed < 30
    assert wait_until(lambda: open_fds() == baseline, 3.0), (open_fds(), baseline)


def test_send_many_consumes_a_generator_lazily(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server()
    total = 200
    yielded = 0
    lag: list[int] = []

    def generate():
        nonlocal yielded
        for i in range(total):
            yielded += 1
            yield message(i)

    with make_mailer(config_for(server), sleep=[].append) as mailer:
        results = mailer.send_many(
            generate(),
            concurrency=1,
            on_progress=lambda p: lag.append(yielded - p.done),
        )
    assert len(results) == total == len(server.messages)
    # Progress was reported while most of the input was still unread.
    assert lag[0] < total // 2
    assert max(lag) < total // 2


def test_send_many_reports_failures_without_raising(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server()
    server.handler.rcpt_replies[REFUSED] = "550 5.1.1 no such user"
    server.handler.queue("EOD", "554 5.7.1 spam")
    progress: list[BulkProgress] = []
    with make_mailer(config_for(server), sleep=[].append) as mailer:
        results = mailer.send_many(
            [message(0, to=REFUSED), message(1), message(2)],
            concurrency=1,
            on_progress=progress.append,
        )
    assert isinstance(results[0].error, RecipientsRefusedError)
    assert results[1].error is not None
    assert results[1].error.reply.code == 554
    assert results[2].ok
    assert [r.message_id for r in results] == ["<m0@bulk>", "<m1@bulk>", "<m2@bulk>"]
    assert received_ids(server) == [b"<m2@bulk>"]
    assert progress[-1] == BulkProgress(done=3, failed=2, total=3)


@pytest.mark.parametrize(("burst", "waits"), [(1, [0.05] * 9), (3, [0.05] * 7)])
def test_rate_limit_spaces_sends(
    make_mailer, start_fault_server, config_for, burst, waits
):
    server = start_fault_server()
    now = [0.0]
    recorded: list[float] = []

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        now[0] += seconds

    mailer = make_mailer(
        config_for(server),
        rate_limit=RateLimit(per_second=20, burst=burst),
        sleep=sleep,
        clock=lambda: now[0],
    )
    with mailer:
        for i in range(10):
            mailer.send(message(i))
    assert recorded == pytest.approx(waits)
    assert now[0] == pytest.approx(sum(waits))
    assert len(server.messages) == 10


def test_rate_limit_is_shared_by_threads_with_the_real_clock(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server()
    with make_mailer(config_for(server), rate_limit=RateLimit(per_second=20)) as mailer:
        start = time.monotonic()
        results = mailer.send_many([message(i) for i in range(10)], concurrency=4)
        elapsed = time.monotonic() - start
    assert all(r.ok for r in results)
    assert len(server.messages) == 10
    # Nine gaps of 1/20 s, whichever threads took the tokens.
    assert 0.4 <= elapsed < 5
