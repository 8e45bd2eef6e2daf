"""AsyncMailer against aiosmtpd on 127.0.0.1: what the server really received."""

from __future__ import annotations

import asyncio

import pytest

from smtpkit import AsyncMailer, Message, PoolLimits, RetryPolicy

from .faults import FaultHandler, client_sockets, fault_servers

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def message(n: int) -> Message:
    return Message(
        sender="a@example.com",
        to=[f"u{n}@example.com"],
        subject=f"m{n}",
        text=f"body {n}",
        message_id=f"<m{n}@async>",
    )


async def test_concurrent_sends_arrive_once_each_within_the_pool(
    start_server, config_for
):
    server = start_server(pipelining=True)
    config = config_for(
        server, pool=PoolLimits(max_connections=3, max_messages_per_connection=1000)
    )
    async with AsyncMailer(config) as mailer:
        results = await asyncio.gather(*(mailer.send(message(n)) for n in range(300)))
    assert all(r.ok for r in results)
    ids = sorted(
        m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in server.messages
    )
    assert ids == sorted(f"<m{n}@async>".encode() for n in range(300))
    assert server.handler.sessions <= 3  # never more connections than the pool


async def test_send_many_and_a_retried_recipient(start_server, config_for):
    server = start_server(pipelining=True)
    server.handler.rcpt_replies["u1@example.com"] = ["451 4.3.0 later"]
    policy = RetryPolicy(attempts=3, wait_initial=0.01, wait_jitter=0)
    async with AsyncMailer(config_for(server), retry=policy) as mailer:
        results = await mailer.send_many([message(n) for n in range(40)])
    assert all(r.ok for r in results)
    assert results[1].attempts == 2
    assert len(server.messages) == 40


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


async def test_aclose_quits_every_idle_session(start_fault_server, config_for):
    server = start_fault_server(handler=FaultHandler(data_delay=0.02))
    handler = server.handler
    mailer = AsyncMailer(config_for(server, pool=PoolLimits(max_connections=4)))
    results = await asyncio.gather(*(mailer.send(message(n)) for n in range(16)))
    assert all(r.ok for r in results)
    opened = mailer.transport.stats().open  # type: ignore[attr-defined]
    assert opened == handler.sessions >= 2
    await mailer.aclose()
    stats = mailer.transport.stats()  # type: ignore[attr-defined]
    assert (stats.open, stats.idle, stats.in_use) == (0, 0, 0)
    assert client_sockets(server.port) == 0
    assert all(handler.commands_of(s)[-1] == "QUIT" for s in range(1, opened + 1))
