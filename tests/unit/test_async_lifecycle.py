"""AsyncMailer's edges: opening, quota stop, stops during a retry wait."""

from __future__ import annotations

import asyncio
import threading

import pytest

from smtpkit import (
    AsyncMailer,
    ConfigurationError,
    ConnectError,
    DataRefusedError,
    Envelope,
    NotSentError,
    QuotaExceededError,
    RateLimit,
    RetryPolicy,
    SendResult,
    SMTPReply,
)
from smtpkit.testing import FakeTransport, no_wait

from .numbered import message

pytestmark = pytest.mark.asyncio

SFQ = "451 MI:SFQ 4.7.1 sending quota exceeded"


class FlakyOpen(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens == 1:
            raise ConnectError("refused")


async def test_a_failed_open_raises_and_the_next_open_tries_again() -> None:
    transport = FlakyOpen()
    mailer = AsyncMailer(transport=transport)
    with pytest.raises(ConnectError):
        await mailer.send(message())
    await asyncio.gather(mailer.open(), mailer.open())  # concurrent opens share one
    await mailer.open()  # already open: nothing to do
    assert transport.opens == 2
    assert (await mailer.send(message())).ok
    await mailer.aclose()


async def test_send_many_refuses_a_bad_concurrency() -> None:
    async with AsyncMailer(transport=FakeTransport()) as mailer:
        with pytest.raises(ConfigurationError):
            await mailer.send_many([message()], concurrency=0)


async def test_a_spent_quota_stops_send_many_with_every_message_accounted_for() -> None:
    sent = 0
    lock = threading.Lock()

    def handler(envelope: Envelope, data: bytes) -> SendResult | SMTPReply:
        nonlocal sent
        with lock:
            sent += 1
            if sent > 5:
                return SMTPReply.from_string(SFQ)
        return SendResult.delivered(envelope)

    fake = FakeTransport(handler)
    async with AsyncMailer(transport=fake, retry=no_wait()) as mailer:
        with pytest.raises(QuotaExceededError) as caught:
            await mailer.send_many([message(n) for n in range(500)], concurrency=1)
    results = caught.value.results
    assert caught.value.resume_after == 900.0
    assert sum(r.ok for r in results) == 5
    assert len(results) < 500  # reading stopped
    unsent = caught.value.unsent
    assert all(r.attempts == 0 for r in unsent)
    # Every message read is either delivered, refused for the quota, or unsent.
    assert sum(r.ok for r in results) + len(unsent) + (sent - 5) == len(results)


async def test_aclose_deadline_during_a_retry_wait_ends_the_retries() -> None:
    fake = FakeTransport()
    fake.fail_next(1, "451 4.3.0 busy")
    policy = RetryPolicy(attempts=3, wait_initial=0.3, wait_jitter=0)
    mailer = AsyncMailer(transport=fake, retry=policy)
    task = asyncio.ensure_future(mailer.send(message()))
    await asyncio.sleep(0.05)  # the first attempt failed; waiting to retry
    await mailer.aclose(timeout=0.05)
    with pytest.raises(DataRefusedError) as caught:
        await task
    assert caught.value.attempts == 1  # no retry started after the deadline
    assert len(fake.attempts) == 1


async def test_aclose_deadline_before_the_first_attempt_is_not_sent() -> None:
    waits: list[float] = []
    hold = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await hold.wait()

    fake = FakeTransport()
    mailer = AsyncMailer(transport=fake, rate_limit=RateLimit(1), sleep=sleep)
    await mailer.send(message(0))
    task = asyncio.ensure_future(mailer.send(message(1)))  # waits for the rate limit
    await asyncio.sleep(0.01)
    close = asyncio.ensure_future(mailer.aclose(timeout=0.05))
    await asyncio.sleep(0.1)
    hold.set()
    await close
    with pytest.raises(NotSentError) as caught:
        await task
    assert caught.value.attempts == 0
    assert len(fake.outbox) == 1


async def test_cancelled_during_a_retry_wait_reports_the_earlier_attempt() -> None:
    fake = FakeTransport()
    fake.fail_next(1, "451 4.3.0 busy")
    detached: list[SendResult] = []
    policy = RetryPolicy(attempts=3, wait_initial=5, wait_jitter=0)
    async with AsyncMailer(
        transport=fake, retry=policy, on_detached=detached.append
    ) as mailer:
        task = asyncio.ensure_future(mailer.send(message()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    [result] = detached
    assert isinstance(result.error, DataRefusedError)
    assert result.attempts == 1
    assert len(fake.attempts) == 1  # and no retry started


async def test_cancelled_while_queued_without_on_detached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()

    def handler(envelope: Envelope, data: bytes) -> SendResult:
        gate.wait(5)
        return SendResult.delivered(envelope)

    fake = FakeTransport(handler)
    async with AsyncMailer(transport=fake) as mailer:
        task = asyncio.ensure_future(mailer.send(message()))
        await asyncio.sleep(0.05)  # started in a worker, held by the handler
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
    assert "a cancelled send finished in the background: delivered" in caplog.text
    assert len(fake.outbox) == 1
