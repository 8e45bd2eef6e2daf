"""send_many reports progress per message as deliveries happen, sized by the transport."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from smtpkit import BulkProgress, Message, PoolLimits, SMTPTransport

from .faults import FaultHandler, fault_servers


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


@dataclass
class TimedHandler(FaultHandler):
    """Records when each message's data arrived, before the end-of-data delay."""

    arrived: list[float] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.arrived.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


def message(i: int) -> Message:
    return Message(
        sender="s@example.com", to="r@example.com", text="hi", message_id=f"<m{i}@p>"
    )


@pytest.mark.parametrize("pipelining", [True, False])
def test_progress_follows_each_delivery_not_each_batch(
    make_mailer, start_fault_server, config_for, pipelining
):
    server = start_fault_server(
        handler=TimedHandler(pipelining=pipelining, data_delay=0.05)
    )
    seen: list[tuple[float, BulkProgress]] = []
    count = 12  # one batch on one connection: the old code reported all at its end
    with make_mailer(config_for(server), sleep=[].append) as mailer:
        results = mailer.send_many(
            [message(i) for i in range(count)],
            concurrency=1,
            on_progress=lambda p: seen.append((time.monotonic(), p)),
        )
    assert all(r.ok for r in results)
    arrived = server.handler.arrived
    assert len(arrived) == count
    assert [p for _, p in seen] == [
        BulkProgress(done=k, failed=0, total=count) for k in range(1, count + 1)
    ]
    # Progress for message k came while the server still had k+2 to receive:
    # interleaved with the deliveries, never bunched at the end of the batch.
    for k in range(count - 2):
        assert seen[k][0] < arrived[k + 2], k


def test_failures_that_will_not_be_retried_are_reported_at_once(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server(handler=TimedHandler(pipelining=True, data_delay=0.05))
    server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
    messages = [message(i) for i in range(8)]
    messages[1] = Message(sender="s@example.com", to="gone@example.com", text="x")
    seen: list[tuple[float, BulkProgress]] = []
    with make_mailer(config_for(server), sleep=[].append) as mailer:
        results = mailer.send_many(
            iter(messages),
            concurrency=1,
            on_progress=lambda p: seen.append((time.monotonic(), p)),
        )
    assert results[1].error is not None
    assert [p.failed for _, p in seen] == [0] + [1] * 7
    assert all(p.total is None for _, p in seen)  # a plain iterator has no length
    # The refusal did not hold back the messages after it until the batch ended.
    arrived = server.handler.arrived  # the refused message never reached DATA
    assert seen[2][0] < arrived[-1]


def test_send_many_uses_the_pool_size_of_a_transport_passed_directly(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(data_delay=0.1))
    config = config_for(server, pool=PoolLimits(max_connections=7))
    transport = SMTPTransport(config)
    assert transport.max_concurrency == 7
    with make_mailer(transport=transport, sleep=[].append) as mailer:
        results = mailer.send_many([message(i) for i in range(28)])
    assert all(r.ok for r in results)
    assert server.handler.max_open == 7  # not the old fixed 4
