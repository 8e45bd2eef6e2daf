"""AsyncMailer's dispatcher: when a send is finished, the acquire timeout, batching.

Parity with ``Mailer`` (issue 10): ``send()`` returns only once its connection is
back in the pool; a ``send()`` waiting for a worker fails with ``PoolTimeoutError``
after ``PoolLimits.acquire_timeout`` (send_many's queue is unbounded, as
``Mailer.send_many``'s); a burst is spread over every free worker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpkit import (
    AsyncMailer,
    BulkProgress,
    Envelope,
    PoolLimits,
    PoolTimeoutError,
    SendResult,
    SMTPConfig,
    TransportError,
)
from smtpkit._transports.base import OnResult, Transport

from .numbered import message

WAIT = 10.0  # seconds a test waits for something that must happen


class HoldingTransport(Transport):
    """Reports every outcome at once, then holds the batch until ``release`` is set.

    Like ``SMTPTransport`` after the last reply of a batch: the outcomes are known,
    but the connection is not back in the pool yet (RSET, QUIT of a spent session).
    """

    def __init__(self, *, concurrency: int = 1) -> None:
        self.concurrency = concurrency
        self.release = threading.Event()
        self.reported = threading.Event()
        self.ended: list[float] = []
        self.sent: list[Envelope] = []
        self.lock = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        [outcome] = self.send_batch([(envelope, data)])
        if isinstance(outcome, TransportError):
            raise outcome
        assert isinstance(outcome, SendResult)
        return outcome

    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | TransportError]:  # type: ignore[override]
        outcomes: list[SendResult | TransportError] = []
        for index, (envelope, _) in enumerate(items):
            with self.lock:
                self.sent.append(envelope)
            result = SendResult.delivered(envelope)
            outcomes.append(result)
            if on_result is not None:
                on_result(index, result)
        self.reported.set()
        self.release.wait(WAIT)
        with self.lock:
            self.ended.append(time.monotonic())
        return outcomes


class ConfiguredTransport(HoldingTransport):
    """A transport with an ``SMTPConfig``: its pool limits bound a send's wait."""

    def __init__(self, acquire_timeout: float) -> None:
        super().__init__(concurrency=1)
        self.config = SMTPConfig(
            host="mail.example.com",
            pool=PoolLimits(max_connections=1, acquire_timeout=acquire_timeout),
        )


async def wait_for(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT)


# -- a send is finished when its connection is free ------------------------------


@pytest.mark.asyncio
async def test_send_returns_only_after_its_batch_gave_the_connection_back() -> None:
    transport = HoldingTransport()
    async with AsyncMailer(transport=transport) as mailer:
        task = asyncio.ensure_future(mailer.send(message()))
        await wait_for(transport.reported)  # the outcome is known...
        await asyncio.sleep(0.05)
        assert not task.done()  # ...but the connection is still held
        transport.release.set()
        result = await task
        returned = time.monotonic()
    assert result.ok
    assert transport.ended
    assert transport.ended[0] <= returned


@pytest.mark.asyncio
async def test_send_many_reports_progress_at_once_but_returns_after_its_batches() -> (
    None
):
    transport = HoldingTransport()
    seen: list[BulkProgress] = []
    async with AsyncMailer(transport=transport) as mailer:
        task = asyncio.ensure_future(
            mailer.send_many([message(n) for n in range(3)], on_progress=seen.append)
        )
        await wait_for(transport.reported)
        for _ in range(100):  # on_progress runs on the loop: give it turns
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
        assert [p.done for p in seen] == [1, 2, 3]  # before the batch ended
        assert not task.done()
        transport.release.set()
        results = await task
    assert [r.ok for r in results] == [True, True, True]
    assert len(transport.ended) == 1


@pytest.mark.asyncio
async def test_send_many_cancelled_while_its_batch_ends_reports_every_result() -> None:
    transport = HoldingTransport()
    seen: list[BulkProgress] = []
    detached: list[SendResult] = []
    async with AsyncMailer(transport=transport, on_detached=detached.append) as mailer:
        task = asyncio.ensure_future(
            mailer.send_many([message(n) for n in range(3)], on_progress=seen.append)
        )
        await wait_for(transport.reported)
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        transport.release.set()
    # Every message was delivered; the caller never saw a result: on_detached did.
    assert sorted(r.accepted[0] for r in detached) == [
        f"u{n}@example.com" for n in range(3)
    ]
    assert len(transport.sent) == 3


# -- acquire_timeout ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_send_waiting_for_a_busy_connection_fails_with_pool_timeout() -> None:
    transport = ConfiguredTransport(acquire_timeout=0.1)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncMailer(transport=transport, sleep=sleep) as mailer:
        first = asyncio.ensure_future(mailer.send(message(1)))
        await wait_for(transport.reported)
        start = time.monotonic()
        with pytest.raises(PoolTimeoutError) as info:
            await mailer.send(message(2))
        elapsed = time.monotonic() - start
        transport.release.set()
        assert (await first).ok
        # The connection is free again: the next send goes through.
        assert (await mailer.send(message(3))).ok
    assert not info.value.is_transient
    assert info.value.attempts == 1
    assert waits == []  # not retried
    assert 0.05 <= elapsed < WAIT
    assert [e.recipients[0] for e in transport.sent] == [
        "u1@example.com",
        "u3@example.com",
    ]


@pytest.mark.asyncio
async def test_a_started_send_is_not_timed_out_by_acquire_timeout() -> None:
    transport = ConfiguredTransport(acquire_timeout=0.05)
    async with AsyncMailer(transport=transport) as mailer:
        task = asyncio.ensure_future(mailer.send(message()))
        await wait_for(transport.reported)
        await asyncio.sleep(0.15)  # past acquire_timeout, while it runs
        transport.release.set()
        assert (await task).ok


@pytest.mark.asyncio
async def test_send_many_waits_for_a_worker_without_a_bound() -> None:
    """As ``Mailer.send_many``: its messages queue, however long the pool is busy."""
    transport = ConfiguredTransport(acquire_timeout=0.05)
    async with AsyncMailer(transport=transport) as mailer:
        busy = asyncio.ensure_future(mailer.send(message(0)))
        await wait_for(transport.reported)
        bulk = asyncio.ensure_future(mailer.send_many([message(1), message(2)]))
        await asyncio.sleep(0.2)  # four times acquire_timeout in the queue
        transport.release.set()
        results = await bulk
        assert (await busy).ok
    assert all(r.ok for r in results)
    assert len(transport.sent) == 3


# -- a burst keeps every connection busy -------------------------------------------


class CountingTransport(Transport):
    """Holds each batch until as many run at once as expected (or a timeout)."""

    def __init__(self, concurrency: int, expected: int) -> None:
        self.concurrency = concurrency
        self.expected = expected
        self.cond = threading.Condition()
        self.running = 0
        self.most = 0
        self.sizes: list[int] = []

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        raise AssertionError("the dispatcher sends batches")  # pragma: no cover

    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | TransportError]:  # type: ignore[override]
        with self.cond:
            self.running += 1
            self.most = max(self.most, self.running)
            self.sizes.append(len(items))
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.most >= self.expected, timeout=2.0)
            self.running -= 1
        return [SendResult.delivered(envelope) for envelope, _ in items]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(count=st.integers(1, 120), workers=st.integers(1, 8), bulk=st.booleans())
def test_a_burst_is_spread_over_every_free_worker(
    count: int, workers: int, bulk: bool
) -> None:
    """Every worker gets a batch; none exceeds 32 or the worker limit."""

    async def run() -> None:
        transport = CountingTransport(workers, expected=min(count, workers))
        async with AsyncMailer(transport=transport) as mailer:
            messages = [message(n) for n in range(count)]
            if bulk:
                results = await mailer.send_many(messages)
            else:
                results = await asyncio.gather(*(mailer.send(m) for m in messages))
        assert all(r.ok for r in results)
        assert transport.most == min(count, workers)
        assert sum(transport.sizes) == count
        assert max(transport.sizes) <= 32

    asyncio.run(run())
