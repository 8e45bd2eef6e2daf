"""The fire-and-forget recipe's shutdown races: no message vanishes, none is misreported.

``examples/async_background.py`` promises one ``on_outcome`` call per message that
``submit`` accepted, with an honest outcome: the real result of a send, or
``NotSentError`` for a message that never started.  These tests close it while
submitters wait for room and while slow sends are in flight, at random moments.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smtpkit
from smtpkit import AsyncMailer, Envelope, SendResult
from smtpkit.testing import FakeTransport

from .test_async_recipes import Gate, Outcomes, _messages, background

pytestmark = pytest.mark.integration


class SlowTransport(FakeTransport):
    """A FakeTransport whose every send takes *delay* seconds (in its worker)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        time.sleep(self.delay)
        return super().send(envelope, data)


def test_submitters_waiting_for_room_at_the_timeout_are_reported() -> None:
    # The reviewer's scenario: one send in flight, the queue (1) full, a third
    # submit() waiting for room when aclose() times out.
    gate = Gate()
    fake = FakeTransport(gate)
    outcomes = Outcomes()
    first, second, third = _messages(3)

    async def run() -> None:
        async with AsyncMailer(transport=fake) as mailer:
            sender = background.BackgroundSender(
                mailer, on_outcome=outcomes, maxsize=1, senders=1
            )
            sender.start()
            await sender.submit(first)
            await asyncio.to_thread(gate.entered.acquire)  # m0 is in flight
            await sender.submit(second)  # the queue is full
            blocked = asyncio.create_task(sender.submit(third))
            await asyncio.sleep(0.05)
            assert not blocked.done()
            await sender.aclose(timeout=0.1)
            await blocked  # it returned normally: its message must be reported
            assert sender._queue.empty()  # nothing left where nobody reads
            assert set(outcomes.by_subject) == {"m1", "m2"}
            gate.open.set()

    asyncio.run(run())
    assert [type(o[0]) for o in outcomes.by_subject.values()] == [
        smtpkit.NotSentError,
        smtpkit.NotSentError,
        SendResult,
    ]
    assert list(outcomes.by_subject) == ["m1", "m2", "m0"]
    assert [m.subject for m in fake.outbox] == ["m0"]


def test_a_send_cancelled_from_outside_is_reported_delivery_unknown() -> None:
    # asyncio.run() ends while a send is on the wire: it cancels the send's task.
    # The recipe cannot know the outcome yet, so it says so; the mailer finishes
    # the attempt and hands the real outcome to on_detached.
    gate = Gate()
    fake = FakeTransport(gate)
    outcomes = Outcomes()
    detached: list[SendResult] = []
    reached = threading.Event()

    def on_detached(result: SendResult) -> None:
        detached.append(result)
        reached.set()

    [message] = _messages(1)
    message = message.model_copy(update={"message_id": "<m0@example.com>"})
    mailer = AsyncMailer(transport=fake, on_detached=on_detached)

    async def run() -> None:
        await mailer.open()
        sender = background.BackgroundSender(mailer, on_outcome=outcomes, senders=1)
        sender.start()
        await sender.submit(message)
        await asyncio.to_thread(gate.entered.acquire)  # on the wire
        await sender.aclose(timeout=0.05)
        # Return without closing the mailer: asyncio.run cancels the send.

    try:
        asyncio.run(run())
        [outcome] = outcomes.by_subject["m0"]
        assert isinstance(outcome, background.DeliveryUnknownError)
        assert not isinstance(outcome, smtpkit.NotSentError)
    finally:
        gate.open.set()
        assert reached.wait(10)
        mailer._close_after_loop()
    [result] = detached
    assert result.message_id == "<m0@example.com>"
    assert result.accepted == ("reader0@example.com",)
    assert [m.subject for m in fake.outbox] == ["m0"]


SHUTDOWNS = st.fixed_dictionaries(
    {
        "count": st.integers(0, 8),  # messages submitted at once
        "maxsize": st.integers(1, 3),
        "senders": st.integers(1, 3),
        "delay": st.sampled_from([0.0, 0.002, 0.01]),  # seconds per send
        "close_after": st.sampled_from([0.0, 0.001, 0.005, 0.02]),
        "timeout": st.sampled_from([0.0, 0.005, 0.05]),  # BackgroundSender.aclose
        "mailer_timeout": st.sampled_from([0.0, 30.0]),  # AsyncMailer.aclose
    }
)


@settings(max_examples=30, deadline=None)
@given(plan=SHUTDOWNS)
def test_every_accepted_message_is_reported_once_and_honestly(
    plan: dict[str, float],
) -> None:
    count, maxsize, senders = (
        int(plan["count"]),
        int(plan["maxsize"]),
        int(plan["senders"]),
    )
    delay, close_after = plan["delay"], plan["close_after"]
    timeout, mailer_timeout = plan["timeout"], plan["mailer_timeout"]
    transport = SlowTransport(delay)
    outcomes = Outcomes()
    messages = _messages(count)
    accepted: set[str] = set()

    async def run() -> None:
        mailer = AsyncMailer(transport=transport)
        await mailer.open()
        sender = background.BackgroundSender(
            mailer, on_outcome=outcomes, maxsize=maxsize, senders=senders
        )
        sender.start()
        submits = [asyncio.create_task(sender.submit(m)) for m in messages]
        await asyncio.sleep(close_after)
        await sender.aclose(timeout=timeout)
        done_all = await asyncio.gather(*submits, return_exceptions=True)
        for message, done in zip(messages, done_all, strict=True):
            if done is None:
                accepted.add(message.subject or "")
            else:
                assert isinstance(done, RuntimeError)  # refused: not queued
        await mailer.aclose(timeout=mailer_timeout)
        deadline = time.monotonic() + 5
        while len(outcomes.by_subject) < len(accepted):  # started sends finish
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)

    asyncio.run(run())
    assert set(outcomes.by_subject) == accepted
    assert all(len(o) == 1 for o in outcomes.by_subject.values())
    in_outbox = [m.subject for m in transport.outbox]
    assert sorted(in_outbox) == sorted(outcomes.sent())
    # The fake accepts everything: a failure can only be "not sent" (NotSentError
    # from either aclose(), or ClosedError when the mailer closed the transport
    # before a started batch reached this message); never a cancellation.
    for subject in outcomes.failed():
        [outcome] = outcomes.by_subject[subject]
        assert isinstance(outcome, (smtpkit.NotSentError, smtpkit.ClosedError)), outcome
