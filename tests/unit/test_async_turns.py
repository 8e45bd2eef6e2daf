"""AsyncMailer's fairness on the loop: render turns (a FIFO, not a spin), and
batches that keep every connection busy."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import (
    AsyncMailer,
    Envelope,
    RateLimit,
    SendResult,
    TransportError,
)
from smtpkit._async_waits import RenderTurns, interruptible_sleep, take_token
from smtpkit._attempt import Interrupted
from smtpkit._dispatch import Dispatcher
from smtpkit._ratelimit import TokenBucket
from smtpkit._transports.base import OnResult, Transport
from smtpkit.testing import FakeTransport

from .numbered import message


class Ticker:
    """Counts the iterations of the running loop (one callback per iteration)."""

    def __init__(self) -> None:
        self.tick = 0
        self._running = True

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        self.tick += 1
        if self._running:
            asyncio.get_running_loop().call_soon(self._step)

    def stop(self) -> None:
        self._running = False


@settings(max_examples=30, deadline=None)
@given(
    waiters=st.integers(1, 200),
    per_turn=st.integers(1, 10),
    cancelled=st.sets(st.integers(0, 199), max_size=30),
)
def test_render_turns_release_in_order_at_most_per_turn_per_iteration(
    waiters: int, per_turn: int, cancelled: set[int]
) -> None:
    async def run() -> None:
        turns = RenderTurns(per_turn)
        ticker = Ticker()
        ticker.start()
        order: list[int] = []
        ticks: list[int] = []

        async def render(n: int) -> None:
            await turns.wait()
            order.append(n)
            ticks.append(ticker.tick)

        tasks = [asyncio.ensure_future(render(n)) for n in range(waiters)]
        await asyncio.sleep(0)
        for n in cancelled:
            if n < waiters:
                tasks[n].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ticker.stop()
        expected = [n for n in range(waiters) if n not in cancelled or n < per_turn]
        assert order == expected  # FIFO; cancelled waiters skipped
        assert max(collections.Counter(ticks).values()) <= per_turn

    asyncio.run(run())


@pytest.mark.asyncio
async def test_many_concurrent_sends_do_not_spin_on_sleep_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 senders waiting for a render turn: one wake-up each, not one per
    iteration of the loop (the old spin made ~124,000 ``sleep(0)`` calls)."""
    zero_sleeps = 0
    real_sleep = asyncio.sleep

    async def counting(delay: float, result: object = None) -> object:
        nonlocal zero_sleeps
        zero_sleeps += delay == 0
        return await real_sleep(delay, result)

    fake = FakeTransport()
    async with AsyncMailer(transport=fake) as mailer:
        monkeypatch.setattr(asyncio, "sleep", counting)
        results = await asyncio.gather(*(mailer.send(message(n)) for n in range(1000)))
        monkeypatch.undo()
    assert all(r.ok for r in results)
    assert zero_sleeps < 100


class BlockedTransport(Transport):
    """Records each batch's size; every batch waits for ``gate``."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.gate = threading.Event()
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        return SendResult.delivered(envelope)

    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | TransportError]:  # type: ignore[override]
        with self.lock:
            self.sizes.append(len(items))
        self.gate.wait(10)
        return [SendResult.delivered(envelope) for envelope, _ in items]


@pytest.mark.asyncio
async def test_a_burst_fills_every_worker_with_batches_of_at_most_32() -> None:
    transport = BlockedTransport(4)
    executor = ThreadPoolExecutor(4)
    dispatcher = Dispatcher(
        transport,
        executor,
        asyncio.get_running_loop(),
        max_batches=4,
        reports_results=True,
        on_idle=lambda: None,
    )
    envelope = Envelope(sender="a@example.com", recipients=("b@example.com",))
    jobs = [dispatcher.submit(envelope, b"x", early=True) for _ in range(200)]
    await asyncio.sleep(0.2)
    assert transport.sizes == [32, 32, 32, 32]  # a share of 50 each, capped
    transport.gate.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 10)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert sum(transport.sizes) == 200
    assert max(transport.sizes) <= 32
    executor.shutdown()


@pytest.mark.asyncio
async def test_a_sleep_asked_for_after_the_stop_raises_at_once() -> None:
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(Interrupted):
        await interruptible_sleep(asyncio.sleep, 3600, stop)


@pytest.mark.asyncio
async def test_a_token_taken_after_the_stop_is_given_back() -> None:
    bucket = TokenBucket(RateLimit(per_second=1))
    with pytest.raises(Interrupted):
        await take_token(bucket, asyncio.sleep, lambda: True)
    assert bucket.reserve() == 0.0  # the burst token is still there
    with pytest.raises(Interrupted):
        await take_token(None, asyncio.sleep, lambda: True)
