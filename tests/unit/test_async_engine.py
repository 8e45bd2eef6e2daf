"""AsyncMailer's engine: threads, shutdown, callbacks, rate limit, cancellation mixes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpkit import (
    AsyncMailer,
    Envelope,
    NotSentError,
    RateLimit,
    RetryPolicy,
    SendManyAbortedError,
    SendResult,
    TransportError,
)
from smtpkit._transports.base import OnResult, Transport
from smtpkit.testing import FakeTransport, no_wait

from .numbered import message


class GatedTransport(Transport):
    """Delivers everything, records the threads it runs on, and can be held."""

    def __init__(self, *, concurrency: int = 2, delay: float = 0.0) -> None:
        self.threads: set[int] = set()
        self.sent: list[Envelope] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.delay = delay
        self.concurrency = concurrency
        self.closed = False
        self.lock = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def open(self) -> None:
        self.threads.add(threading.get_ident())

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        self.threads.add(threading.get_ident())
        self.entered.set()
        self.gate.wait(10)
        if self.delay:
            threading.Event().wait(self.delay)
        with self.lock:
            self.sent.append(envelope)
        return SendResult.delivered(envelope)

    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | TransportError]:  # type: ignore[override]
        self.threads.add(threading.get_ident())
        return super().send_batch(items, on_result=on_result)  # type: ignore[return-value]

    def close(self) -> None:
        self.threads.add(threading.get_ident())
        self.closed = True


@pytest.mark.asyncio
async def test_transport_code_never_runs_on_the_loop_thread() -> None:
    transport = GatedTransport()
    async with AsyncMailer(transport=transport) as mailer:
        await asyncio.gather(*(mailer.send(message(n)) for n in range(100)))
        await mailer.send_many([message(n) for n in range(50)])
    assert transport.closed
    assert len(transport.sent) == 150
    assert threading.get_ident() not in transport.threads


@pytest.mark.asyncio
async def test_connections_never_exceed_max_concurrency() -> None:
    transport = GatedTransport(concurrency=3, delay=0.002)
    inside = 0
    peak = 0
    lock = threading.Lock()
    original = transport.send_batch

    def counting(items, *, on_result=None):  # type: ignore[no-untyped-def]
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        try:
            return original(items, on_result=on_result)
        finally:
            with lock:
                inside -= 1

    transport.send_batch = counting  # type: ignore[method-assign]
    async with AsyncMailer(transport=transport) as mailer:
        await asyncio.gather(*(mailer.send(message(n)) for n in range(300)))
    assert peak <= 3
    assert len(transport.sent) == 300


@pytest.mark.asyncio
async def test_aclose_waits_then_fails_the_unstarted_with_not_sent() -> None:
    transport = GatedTransport(concurrency=1)
    transport.gate.clear()
    mailer = AsyncMailer(transport=transport)
    await mailer.open()
    first = asyncio.ensure_future(mailer.send(message(1)))
    await asyncio.to_thread(transport.entered.wait, 5)
    queued = [asyncio.ensure_future(mailer.send(message(n))) for n in range(2, 5)]
    await asyncio.sleep(0.01)
    threading.Timer(0.3, transport.gate.set).start()
    await mailer.aclose(timeout=0.1)
    assert (await first).ok  # in flight: finished
    for task in queued:
        with pytest.raises(NotSentError) as caught:
            await task
        assert caught.value.attempts == 0
    assert len(transport.sent) == 1
    assert transport.closed


@pytest.mark.asyncio
async def test_aclose_waits_for_running_sends() -> None:
    transport = GatedTransport(concurrency=1)
    transport.gate.clear()
    mailer = AsyncMailer(transport=transport)
    tasks = [asyncio.ensure_future(mailer.send(message(n))) for n in range(3)]
    await asyncio.to_thread(transport.entered.wait, 5)
    threading.Timer(0.1, transport.gate.set).start()
    await mailer.aclose(timeout=None)
    assert all(t.result().ok for t in tasks)  # finished before aclose returned
    assert len(transport.sent) == 3


@pytest.mark.asyncio
async def test_a_raising_on_retry_fails_the_message_like_mailer() -> None:
    fake = FakeTransport()
    fake.fail_next(1, "451 4.3.0 busy")

    def on_retry(details: object) -> None:
        raise ValueError("hook broke")

    async with AsyncMailer(transport=fake, retry=no_wait(), on_retry=on_retry) as m:
        with pytest.raises(ValueError, match="hook broke"):  # as Mailer.send
            await m.send(message())
        fake.fail_next(1, "451 4.3.0 busy")
        [failed, sent] = await m.send_many([message(2), message(3)], concurrency=1)
        assert isinstance(failed.error, TransportError)
        assert "hook raised ValueError" in str(failed.error)
        assert sent.ok


@pytest.mark.asyncio
async def test_a_raising_on_progress_aborts_send_many_but_reports_what_was_read() -> (
    None
):
    fake = FakeTransport()
    calls = 0

    def on_progress(progress: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("progress bar broke")

    async with AsyncMailer(transport=fake) as mailer:
        with pytest.raises(SendManyAbortedError) as caught:
            await mailer.send_many(
                (message(n) for n in range(1000)), on_progress=on_progress
            )
    assert calls == 1
    results = caught.value.results
    assert results
    assert all(r.ok for r in results)
    assert len(fake.outbox) == len(results)  # everything read was sent and reported


@pytest.mark.asyncio
async def test_a_raising_input_aborts_send_many_and_reports_what_was_read() -> None:
    def messages():
        yield message(1)
        yield message(2)
        raise KeyError("bad row")

    async def amessages():
        yield message(3)
        raise KeyError("bad async row")

    fake = FakeTransport()
    async with AsyncMailer(transport=fake) as mailer:
        with pytest.raises(SendManyAbortedError) as caught:
            await mailer.send_many(messages())
        assert [r.ok for r in caught.value.results] == [True, True]
        with pytest.raises(SendManyAbortedError):
            await mailer.send_many(amessages())
    assert len(fake.outbox) == 3


@pytest.mark.asyncio
async def test_rate_limit_waits_with_the_async_sleep() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    now = [0.0]
    fake = FakeTransport()
    async with AsyncMailer(
        transport=fake,
        rate_limit=RateLimit(10),
        sleep=sleep,
        clock=lambda: now[0],
    ) as mailer:
        for n in range(3):
            await mailer.send(message(n))
    assert waits == [pytest.approx(0.1), pytest.approx(0.2)]
    assert len(fake.outbox) == 3


@pytest.mark.asyncio
async def test_send_many_cancelled_sends_no_unstarted_message() -> None:
    transport = GatedTransport(concurrency=1)
    transport.gate.clear()
    detached: list[SendResult] = []
    async with AsyncMailer(transport=transport, on_detached=detached.append) as m:
        task = asyncio.ensure_future(m.send_many([message(n) for n in range(100)]))
        await asyncio.to_thread(transport.entered.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        transport.gate.set()
        for _ in range(200):
            if detached and len(detached) == len(transport.sent):
                break
            await asyncio.sleep(0.01)
    # Only the started batch (up to 32 messages) was sent; all reached on_detached.
    assert 1 <= len(transport.sent) <= 32
    assert len(detached) == len(transport.sent)
    assert all(r.ok for r in detached)


@pytest.mark.asyncio
async def test_used_from_a_second_loop_is_refused() -> None:
    mailer = AsyncMailer(transport=FakeTransport())
    await mailer.send(message())

    def other_loop() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            asyncio.run(mailer.send(message()))

    await asyncio.to_thread(other_loop)
    await mailer.aclose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cancels=st.lists(
        st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=30
    )
)
def test_any_mix_of_cancellations_never_loses_or_duplicates(
    cancels: list[tuple[bool, int]],
) -> None:
    """Every message: returned to its caller, or reported detached, or not sent."""

    async def run() -> None:
        transport = GatedTransport(concurrency=2, delay=0.0005)
        detached: list[SendResult] = []
        policy = no_wait(RetryPolicy(attempts=2))
        async with AsyncMailer(
            transport=transport, retry=policy, on_detached=detached.append
        ) as mailer:
            tasks = [
                asyncio.ensure_future(mailer.send(message(n)))
                for n in range(len(cancels))
            ]
            for task, (cancel, turns) in zip(tasks, cancels, strict=False):
                if cancel:
                    for _ in range(turns):
                        await asyncio.sleep(0)
                    task.cancel()
            returned = []
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    returned.append(await task)
        sent = [e.recipients[0] for e in transport.sent]
        assert len(sent) == len(set(sent))  # never twice
        reported = [r.accepted[0] for r in [*returned, *detached]]
        assert sorted(reported) == sorted(sent)  # every copy sent is reported once

    asyncio.run(run())


def test_keyboard_interrupt_in_on_progress_sends_nothing_new_and_loses_nothing() -> (
    None
):
    """Ctrl-C from a callback ends asyncio.run; started messages reach on_detached."""
    transport = GatedTransport(concurrency=1, delay=0.002)
    detached: list[SendResult] = []

    def on_progress(progress: object) -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        mailer = AsyncMailer(transport=transport, on_detached=detached.append)
        await mailer.send_many(
            [message(n) for n in range(200)], on_progress=on_progress
        )

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    for _ in range(500):  # the started batch finishes in its worker thread
        if len(detached) == len(transport.sent):
            threading.Event().wait(0.1)
            if len(detached) == len(transport.sent):
                break
        threading.Event().wait(0.01)
    sent = [e.recipients[0] for e in transport.sent]
    assert len(sent) == len(set(sent)) <= 32  # only the started batch; no resend
    # Every message the server got was handed to on_detached, the one whose
    # progress raised included: the cancelled send_many returned none of them.
    assert sorted(r.envelope.recipients[0] for r in detached if r.envelope) == sorted(
        sent
    )
    assert all(r.ok for r in detached)


@pytest.mark.asyncio
async def test_aclose_deadline_fails_the_queue_of_a_lower_concurrency_send_many() -> (
    None
):
    transport = GatedTransport(concurrency=4)
    transport.gate.clear()
    mailer = AsyncMailer(transport=transport)
    await mailer.open()
    task = asyncio.ensure_future(
        mailer.send_many([message(n) for n in range(100)], concurrency=1)
    )
    await asyncio.to_thread(transport.entered.wait, 5)
    threading.Timer(0.3, transport.gate.set).start()
    await mailer.aclose(timeout=0.1)
    results = await task
    sent = [r for r in results if r.ok]
    unsent = [r for r in results if isinstance(r.error, NotSentError)]
    assert len(sent) == len(transport.sent) <= 32  # the batch on the wire finished
    assert len(sent) + len(unsent) == len(results)
    assert all(r.attempts == 0 for r in unsent)


@pytest.mark.asyncio
async def test_cancelled_after_its_batch_was_handed_to_a_busy_executor() -> None:
    """Handed to a worker but not started: the worker drops it; nothing is sent."""
    transport = GatedTransport(concurrency=2)
    transport.gate.clear()
    detached: list[SendResult] = []
    async with AsyncMailer(transport=transport, on_detached=detached.append) as m:
        # Two batches hold both worker threads.
        busy = []
        for n in range(2):  # one batch each
            busy.append(asyncio.ensure_future(m.send(message(n))))
            await asyncio.sleep(0.05)
        # Its own dispatcher (concurrency 1) hands a batch to the busy executor.
        bulk = asyncio.ensure_future(
            m.send_many([message(n) for n in range(10, 15)], concurrency=1)
        )
        await asyncio.sleep(0.05)
        bulk.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bulk
        transport.gate.set()
        for task in busy:
            assert (await task).ok
        assert (await m.send(message(99))).ok
    sent = sorted(e.recipients[0] for e in transport.sent)
    assert sent == ["u0@example.com", "u1@example.com", "u99@example.com"]
    assert detached == []  # nothing of the cancelled run had started
