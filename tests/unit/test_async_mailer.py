"""AsyncMailer through FakeTransport: the same results and errors as Mailer."""

from __future__ import annotations

import asyncio
import random

import pytest

from smtpkit import (
    AsyncMailer,
    BulkProgress,
    ClosedError,
    DataRefusedError,
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    RetryPolicy,
    SendResult,
)
from smtpkit.testing import FakeTransport, no_wait

pytestmark = pytest.mark.asyncio


def message(n: int = 0, to: str = "bob@example.com") -> Message:
    return Message(
        sender="alice@example.com", to=[to], subject=f"hi {n}", text=f"body {n}"
    )


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_send_delivers_through_the_transport() -> None:
    fake = FakeTransport()
    async with AsyncMailer(transport=fake) as mailer:
        result = await mailer.send(message())
    assert result.ok
    assert result.accepted == ("bob@example.com",)
    assert result.message_id is not None
    assert [m.subject for m in fake.outbox] == ["hi 0"]


async def test_send_opens_the_mailer_on_first_use_and_aclose_is_idempotent() -> None:
    mailer = AsyncMailer(transport=FakeTransport())
    assert "unopened" in repr(mailer)
    await mailer.send(message())
    assert "opened" in repr(mailer)
    await mailer.aclose()
    await mailer.aclose()
    assert "closed" in repr(mailer)
    with pytest.raises(ClosedError):
        await mailer.send(message())
    with pytest.raises(ClosedError):
        await mailer.send_many([message()])
    with pytest.raises(ClosedError):
        await mailer.open()


async def test_aclose_of_an_unopened_mailer_closes_the_transport() -> None:
    fake = FakeTransport()
    mailer = AsyncMailer(transport=fake)
    await mailer.aclose()
    with pytest.raises(ClosedError):
        await mailer.send(message())


async def test_concurrent_sends_share_batches_and_each_gets_its_result() -> None:
    fake = FakeTransport()
    async with AsyncMailer(transport=fake) as mailer:
        results = await asyncio.gather(*(mailer.send(message(n)) for n in range(200)))
    assert all(r.ok for r in results)
    assert [r.message_id for r in results] == [
        m.message["Message-ID"]
        for m in sorted(fake.outbox, key=lambda m: int(m.subject.split()[1]))
    ]
    assert len(fake.outbox) == 200


async def test_retries_wait_with_the_async_sleep_and_match_mailer() -> None:
    policy = RetryPolicy(attempts=3, wait_initial=1.0, wait_jitter=0.0)
    sleep = SleepRecorder()
    fake = FakeTransport()
    fake.fail_next(2, "451 4.3.0 busy")
    async with AsyncMailer(
        transport=fake, retry=policy, sleep=sleep, rng=random.Random(0)
    ) as mailer:
        result = await mailer.send(message())
    assert result.ok
    assert result.attempts == 3
    assert sleep.waits == [1.0, 2.0]

    waits: list[float] = []
    sync_fake = FakeTransport()
    sync_fake.fail_next(2, "451 4.3.0 busy")
    with Mailer(
        transport=sync_fake, retry=policy, sleep=waits.append, rng=random.Random(0)
    ) as sync_mailer:
        sync_result = sync_mailer.send(message())
    assert waits == sleep.waits
    assert sync_result.attempts == result.attempts


async def test_a_permanent_refusal_raises_like_mailer() -> None:
    fake = FakeTransport()
    fake.fail_next(1, "550 5.1.1 no such user")
    async with AsyncMailer(transport=fake, retry=no_wait()) as mailer:
        with pytest.raises(DataRefusedError) as caught:
            await mailer.send(message())
    assert caught.value.attempts == 1


async def test_retries_run_out_with_attempts_and_history() -> None:
    fake = FakeTransport()
    fake.fail_next(5, "451 4.3.0 busy")
    async with AsyncMailer(
        transport=fake, retry=no_wait(RetryPolicy(attempts=3))
    ) as mailer:
        with pytest.raises(DataRefusedError) as caught:
            await mailer.send(message())
    assert caught.value.attempts == 3
    assert len(caught.value.history) == 2


async def test_invalid_messages_raise_invalid_message_error() -> None:
    async with AsyncMailer(transport=FakeTransport()) as mailer:
        with pytest.raises(InvalidMessageError):
            await mailer.send(b"raw without envelope")
        with pytest.raises(InvalidMessageError):
            await mailer.send(object())  # type: ignore[arg-type]


async def test_raw_bytes_with_an_envelope() -> None:
    fake = FakeTransport()
    envelope = Envelope(sender="a@example.com", recipients=["b@example.com"])
    async with AsyncMailer(transport=fake) as mailer:
        result = await mailer.send(b"Subject: x\n\nhello\n", envelope=envelope)
    assert result.ok
    assert fake.outbox[0].data.endswith(b"hello\r\n")


async def test_send_many_accepts_sync_and_async_iterables_in_order() -> None:
    async def agen():
        for n in range(50):
            yield message(n)

    fake = FakeTransport()
    progress: list[BulkProgress] = []
    async with AsyncMailer(transport=fake) as mailer:
        from_list = await mailer.send_many(
            [message(n) for n in range(70)], on_progress=progress.append
        )
        from_async = await mailer.send_many(agen(), concurrency=2)
    assert [r.ok for r in from_list] == [True] * 70
    assert [p.done for p in progress] == list(range(1, 71))
    assert progress[-1] == BulkProgress(70, 0, 70)
    assert len(from_async) == 50
    assert len(fake.outbox) == 120


async def test_send_many_reports_one_bad_message_without_raising() -> None:
    fake = FakeTransport()
    fake.fail_next(1, "550 5.1.1 no such user")
    items: list = [message(0), b"no envelope", message(2)]
    async with AsyncMailer(transport=fake, retry=no_wait()) as mailer:
        results = await mailer.send_many(items, concurrency=1)
    assert isinstance(results[0].error, DataRefusedError)
    assert isinstance(results[1].error, InvalidMessageError)
    assert results[1].attempts == 0
    assert results[2].ok


async def test_send_result_type() -> None:
    async with AsyncMailer(transport=FakeTransport()) as mailer:
        assert isinstance(await mailer.send(message()), SendResult)
        assert mailer.transport is not None
