"""The token bucket behind Mailer(rate_limit=...), driven by a fake clock."""

from __future__ import annotations

import threading

import pydantic
import pytest

from smtpkit import (
    Envelope,
    Mailer,
    Message,
    QuotaExceededError,
    RateLimit,
    SendResult,
    SMTPReply,
)
from smtpkit._ratelimit import TokenBucket
from smtpkit.testing import FakeTransport, no_wait


class FakeTime:
    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)


def test_burst_passes_then_waits_one_interval_each():
    time = FakeTime()
    bucket = TokenBucket(
        RateLimit(per_second=4, burst=3), sleep=time.sleep, clock=time.clock
    )
    waits = [bucket.acquire() for _ in range(6)]
    # Nobody's sleep advances the fake clock: each later caller reserves the next slot.
    assert waits == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75]
    assert time.sleeps == [0.25, 0.5, 0.75]


def test_waits_follow_the_clock():
    time = FakeTime()
    bucket = TokenBucket(RateLimit(per_second=2), sleep=time.sleep, clock=time.clock)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == 0.5
    time.now += 1.5  # the reserved slot passed, plus one more token
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == 0.5
    assert time.sleeps == [0.5, 0.5]


def test_tokens_never_exceed_burst():
    time = FakeTime()
    bucket = TokenBucket(
        RateLimit(per_second=10, burst=2), sleep=time.sleep, clock=time.clock
    )
    time.now += 3600
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.1]


def test_rate_limit_validation():
    assert RateLimit(per_second=1).burst == 1
    with pytest.raises(pydantic.ValidationError, match="per_second"):
        RateLimit(per_second=0)
    with pytest.raises(pydantic.ValidationError, match="burst"):
        RateLimit(per_second=1, burst=0)


def test_thread_safety_smoke():
    time = FakeTime()
    per_second, burst, threads, each = 100.0, 5, 8, 25
    bucket = TokenBucket(
        RateLimit(per_second=per_second, burst=burst),
        sleep=time.sleep,
        clock=time.clock,
    )
    waits: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()
        for _ in range(each):
            wait = bucket.acquire()
            with lock:
                waits.append(wait)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    # With a frozen clock every token is handed out exactly once, in some order.
    total = threads * each
    expected = [0.0] * burst + [n / per_second for n in range(1, total - burst + 1)]
    assert sorted(waits) == pytest.approx(expected)
    assert len(time.sleeps) == total - burst


def test_refund_gives_a_reserved_turn_back_and_never_exceeds_burst():
    time = FakeTime()
    bucket = TokenBucket(RateLimit(per_second=1), sleep=time.sleep, clock=time.clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    bucket.refund(2)  # two reservations cancelled: their turns are free again
    assert bucket.reserve() == 1.0
    time.now += 3600
    bucket.refund(5)
    assert [bucket.reserve() for _ in range(2)] == [0.0, 1.0]  # burst 1 still


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_acquire_interrupted_during_its_wait_gives_the_token_back(interrupt):
    time = FakeTime()
    bucket = TokenBucket(RateLimit(per_second=1), sleep=time.sleep, clock=time.clock)
    assert bucket.acquire() == 0.0

    def interrupted(seconds: float) -> None:
        raise interrupt

    for _ in range(5):  # e.g. send_many interrupted while it waits for the bucket
        with pytest.raises(interrupt):
            bucket.acquire(sleep=interrupted)
    time.now += 1.0
    assert bucket.acquire() == 0.0  # without the refunds: a 5 s wait


def test_mailer_send_interrupted_in_its_rate_limit_wait_books_no_turn():
    time = FakeTime()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise KeyboardInterrupt

    fake = FakeTransport()
    mailer = Mailer(
        transport=fake,
        rate_limit=RateLimit(per_second=1),
        sleep=sleep,
        clock=time.clock,
    )
    msg = Message(sender="a@example.com", to=["b@example.com"], subject="s", text="x")
    mailer.send(msg)
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            mailer.send(msg)
    assert waits == [1.0, 1.0, 1.0]  # each waited for the same, unbooked, turn
    time.now += 1.0
    mailer.send(msg)  # no wait: would sleep (and raise) 3 s without the refunds
    assert len(fake.outbox) == 2


def test_send_many_stopped_by_a_spent_quota_gives_back_the_tokens_it_did_not_use():
    time = FakeTime()
    attempts = 0

    def handler(envelope: Envelope, data: bytes) -> SendResult | SMTPReply:
        nonlocal attempts
        attempts += 1
        if attempts > 3:
            return SMTPReply.from_string("451 MI:SFQ 4.7.1 sending quota exceeded")
        return SendResult.delivered(envelope)

    fake = FakeTransport(handler)
    burst = 1000
    mailer = Mailer(
        transport=fake,
        rate_limit=RateLimit(per_second=1, burst=burst),
        retry=no_wait(),
        sleep=time.sleep,
        clock=time.clock,
    )
    msgs = [
        Message(sender="a@example.com", to=[f"u{n}@example.com"], subject="s", text="x")
        for n in range(200)
    ]
    with pytest.raises(QuotaExceededError):
        mailer.send_many(msgs, concurrency=2)
    assert mailer._bucket is not None
    # Only the attempts made spent a token: the batches stopped before theirs
    # gave theirs back.
    assert mailer._bucket.reserve() == 0.0
    assert mailer._bucket._tokens == burst - len(fake.attempts) - 1


def test_send_many_with_a_broken_sleep_reports_it_and_books_no_turn():
    time = FakeTime()

    def broken(seconds: float) -> None:
        raise RuntimeError("sleep broke")

    fake = FakeTransport()
    mailer = Mailer(
        transport=fake,
        rate_limit=RateLimit(per_second=1),
        sleep=broken,
        clock=time.clock,
    )
    msgs = [
        Message(sender="a@example.com", to=[f"u{n}@example.com"], subject="s", text="x")
        for n in range(3)
    ]
    results = mailer.send_many(msgs, concurrency=1)
    assert [r.ok for r in results] == [True, False, False]
    assert all("sleep broke" in str(r.error) for r in results[1:])
    time.now += 1.0
    assert mailer._bucket is not None
    assert mailer._bucket.reserve() == 0.0  # the failed waits kept no turn
