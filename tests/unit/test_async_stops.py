"""AsyncMailer stopped from outside: cancelled aclose, cancelled opener, rate-limit
waits, cancelled send_many, a stopped loop, aclose during a retry backoff.

Each test is a reproducer of a review finding (issue 10) that failed before
its fix: a send hanging forever, a caller cancelled by someone else's cancel,
a token kept by a cancelled send, a result lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from smtpkit import (
    AsyncMailer,
    DataRefusedError,
    Envelope,
    NotSentError,
    RateLimit,
    RetryPolicy,
    SendResult,
)
from smtpkit._dispatch import Dispatcher
from smtpkit._transports.base import Transport
from smtpkit.testing import FakeTransport

from .numbered import message

WAIT = 10.0  # seconds a test waits for something that must happen


class SlowTransport(Transport):
    """Delivers every message after *delay* seconds; never refuses after close().

    (``FakeTransport`` refuses the rest of a running batch once closed, which
    would hide what the mailer itself does with its queue.)
    """

    def __init__(self, *, concurrency: int = 1, delay: float = 0.05) -> None:
        self.concurrency = concurrency
        self.delay = delay
        self.sent: list[Envelope] = []
        self.lock = threading.Lock()
        self.opened = threading.Event()
        self.open_gate = threading.Event()
        self.open_gate.set()

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def open(self) -> None:
        self.opened.set()
        self.open_gate.wait(WAIT)

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        threading.Event().wait(self.delay)
        with self.lock:
            self.sent.append(envelope)
        return SendResult.delivered(envelope)


async def until(condition: object, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- 1. aclose() itself cancelled -------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancelled_aclose_fails_every_queued_send_none_hangs() -> None:
    transport = SlowTransport(concurrency=1, delay=0.1)
    mailer = AsyncMailer(transport=transport)
    await mailer.open()
    tasks = [asyncio.ensure_future(mailer.send(message(n))) for n in range(40)]
    await asyncio.sleep(0.05)
    with pytest.raises(asyncio.TimeoutError):  # e.g. a lifespan's shutdown timeout
        await asyncio.wait_for(mailer.aclose(timeout=10), 0.2)
    done, pending = await asyncio.wait(tasks, timeout=5)
    assert not pending  # before the fix: 32 sends hung forever
    sent = [t for t in done if t.exception() is None]
    unsent = [t for t in done if isinstance(t.exception(), NotSentError)]
    assert len(sent) + len(unsent) == 40
    assert len(sent) == len(transport.sent)  # what was sent was reported sent
    assert all(t.exception().attempts == 0 for t in unsent)  # type: ignore[union-attr]
    with pytest.raises(Exception, match="closed"):
        await mailer.send(message())


def test_the_dispatcher_fails_a_batch_its_executor_refuses() -> None:
    async def run() -> None:
        executor = ThreadPoolExecutor(max_workers=1)
        executor.shutdown()
        dispatcher = Dispatcher(
            FakeTransport(),
            executor,
            asyncio.get_running_loop(),
            max_batches=1,
            reports_results=True,
            on_idle=lambda: None,
        )
        envelope = Envelope(sender="a@example.com", recipients=("b@example.com",))
        jobs = [dispatcher.submit(envelope, b"x") for _ in range(3)]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(job.future for job in jobs)), WAIT
        )
        assert all(isinstance(o, NotSentError) for o in outcomes)
        assert not dispatcher.busy

    asyncio.run(run())


# -- 2. a cancelled lazy open() -----------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancelled_opener_does_not_cancel_the_others_waiting() -> None:
    transport = SlowTransport()
    transport.open_gate.clear()
    mailer = AsyncMailer(transport=transport)
    first = asyncio.ensure_future(mailer.send(message(1)))  # starts the open
    await until(transport.opened.is_set)
    second = asyncio.ensure_future(mailer.send(message(2)))  # waits for that open
    await asyncio.sleep(0.02)
    first.cancel()
    await asyncio.sleep(0.02)
    transport.open_gate.set()
    result = await asyncio.wait_for(second, WAIT)  # before the fix: CancelledError
    assert result.ok
    assert first.cancelled()
    assert [e.recipients for e in transport.sent] == [("u2@example.com",)]
    await mailer.aclose()


@pytest.mark.asyncio
async def test_an_open_whose_only_caller_was_cancelled_still_opens() -> None:
    transport = SlowTransport()
    transport.open_gate.clear()
    mailer = AsyncMailer(transport=transport)
    opener = asyncio.ensure_future(mailer.open())
    await until(transport.opened.is_set)
    opener.cancel()
    transport.open_gate.set()
    await asyncio.sleep(0.05)
    assert (await mailer.send(message())).ok
    await mailer.aclose()


@pytest.mark.asyncio
async def test_aclose_during_an_open_waits_for_it_then_closes() -> None:
    transport = SlowTransport()
    transport.open_gate.clear()
    mailer = AsyncMailer(transport=transport)
    sender = asyncio.ensure_future(mailer.send(message()))
    await until(transport.opened.is_set)
    closing = asyncio.ensure_future(mailer.aclose())
    await asyncio.sleep(0.02)
    assert not closing.done()  # the transport is still opening
    transport.open_gate.set()
    await asyncio.wait_for(closing, WAIT)
    with pytest.raises(Exception, match="closed"):
        await sender
    assert transport.sent == []


# -- 3. the rate limit: a cancelled wait gives its token back -----------------------


@pytest.mark.asyncio
async def test_sends_timed_out_in_their_rate_limit_wait_book_no_turn() -> None:
    fake = FakeTransport()
    # One token a second: the first send takes the token there is, and the
    # next token comes a whole second later, so a loaded CI machine has 0.8 s
    # for that first send and the other 39 still time out waiting.
    mailer = AsyncMailer(transport=fake, rate_limit=RateLimit(per_second=1))
    await mailer.open()

    async def timed() -> bool:
        try:
            await asyncio.wait_for(mailer.send(message()), 0.8)
        except asyncio.TimeoutError:
            return False
        return True

    sent = await asyncio.gather(*(timed() for _ in range(40)))
    assert sent.count(True) == 1
    await asyncio.sleep(1.0)  # the bucket has its token again
    started = time.monotonic()
    await asyncio.wait_for(mailer.send(message()), 5)  # before the fix: 18.8 s
    assert time.monotonic() - started < 0.5
    await mailer.aclose()
    assert len(fake.outbox) == 2


@pytest.mark.asyncio
async def test_a_send_stopped_by_aclose_in_its_rate_limit_wait_gives_its_token_back() -> (
    None
):
    fake = FakeTransport()
    mailer = AsyncMailer(transport=fake, rate_limit=RateLimit(per_second=0.1))
    await mailer.send(message(0))
    waiting = asyncio.ensure_future(mailer.send(message(1)))  # 10 s to wait
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await mailer.aclose(timeout=0.05)
    with pytest.raises(NotSentError) as caught:
        await asyncio.wait_for(waiting, 1)
    assert time.monotonic() - started < 1  # not the 10 s wait
    assert caught.value.attempts == 0
    assert mailer._bucket is not None
    assert mailer._bucket.reserve() > 9  # the token came back: one turn, not two


# -- 4. a cancelled send_many: every result reaches on_detached ---------------------


class SlowFake(FakeTransport):
    @property
    def max_concurrency(self) -> int:
        return 2

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        threading.Event().wait(0.01)
        return super().send(envelope, data)


@pytest.mark.asyncio
async def test_a_cancelled_send_many_hands_every_delivered_result_to_on_detached() -> (
    None
):
    fake = SlowFake()
    detached: list[SendResult] = []
    progress: list[object] = []
    mailer = AsyncMailer(transport=fake, on_detached=detached.append)
    task = asyncio.ensure_future(
        mailer.send_many([message(n) for n in range(300)], on_progress=progress.append)
    )
    await until(lambda: len(progress) >= 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The batches on the wire finish in their workers; wait for them all.
    await until(lambda: len(detached) == len(fake.outbox) and not mailer._active)
    await asyncio.sleep(0.2)
    delivered = sorted(m.envelope.recipients[0] for m in fake.outbox)
    # Before the fix, the results known before the cancel were lost.
    assert len(detached) == len(fake.outbox) > len(progress)
    assert sorted(r.envelope.recipients[0] for r in detached if r.envelope) == delivered
    assert all(r.ok for r in detached)
    assert len(fake.outbox) < 300  # nothing more was started
    await mailer.aclose()


# -- 5. the loop stopped (not closed) when a detached attempt ends ------------------


def test_a_detached_outcome_is_settled_in_the_worker_when_the_loop_is_stopped() -> None:
    gate = threading.Event()

    def slow(envelope: Envelope, data: bytes) -> SendResult:
        gate.wait(WAIT)
        return SendResult.delivered(envelope)

    fake = FakeTransport(slow)
    detached: list[tuple[SendResult, int]] = []
    reported = threading.Event()

    def on_detached(result: SendResult) -> None:
        detached.append((result, threading.get_ident()))
        reported.set()

    mailer = AsyncMailer(transport=fake, on_detached=on_detached)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mailer.send(message()), 0.1)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())  # the loop is now stopped, not closed
        gate.set()  # the attempt ends while nobody runs the loop
        assert reported.wait(WAIT)  # before the fix: lost once the loop closes
    finally:
        loop.close()
        mailer._close_after_loop()
    [(result, thread)] = detached
    assert result.ok
    assert thread != threading.get_ident()  # from the worker
    assert len(fake.outbox) == 1


# -- 6. aclose() during a retry backoff ---------------------------------------------


@pytest.mark.asyncio
async def test_aclose_deadline_ends_a_retry_backoff_at_once() -> None:
    fake = FakeTransport()
    fake.fail_next(1)
    policy = RetryPolicy(wait_initial=5, wait_max=5, wait_jitter=0)
    mailer = AsyncMailer(transport=fake, retry=policy)
    started = time.monotonic()
    task = asyncio.ensure_future(mailer.send(message()))
    await asyncio.sleep(0.1)  # the first attempt failed: 5 s to the retry
    await mailer.aclose(timeout=0.3)
    with pytest.raises(DataRefusedError) as caught:
        await asyncio.wait_for(task, 1)  # before the fix: at 5 s
    assert time.monotonic() - started < 2
    assert caught.value.attempts == 1
    assert len(fake.attempts) == 1


@pytest.mark.asyncio
async def test_the_injected_sleep_error_still_surfaces() -> None:
    async def broken(seconds: float) -> None:
        raise RuntimeError("sleep broke")

    fake = FakeTransport()
    fake.fail_next(1)
    async with AsyncMailer(
        transport=fake, retry=RetryPolicy(wait_jitter=0), sleep=broken
    ) as mailer:
        with pytest.raises(RuntimeError, match="sleep broke"):
            await mailer.send(message())


@pytest.mark.asyncio
async def test_rate_limited_sends_failed_in_the_queue_by_aclose_give_their_tokens_back() -> (
    None
):
    transport = SlowTransport(concurrency=1, delay=0.3)
    mailer = AsyncMailer(
        transport=transport, rate_limit=RateLimit(per_second=0.001, burst=10)
    )
    await mailer.open()
    sends = [asyncio.ensure_future(mailer.send(message(n))) for n in range(5)]
    await asyncio.sleep(0.05)  # one on the wire, four queued, five tokens taken
    await mailer.aclose(timeout=0.05)
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    assert sum(isinstance(o, NotSentError) for o in outcomes) == 4
    assert mailer._bucket is not None
    assert 8.99 < mailer._bucket._tokens < 9.01  # only the sent one spent its token
