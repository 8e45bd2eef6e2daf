"""The token bucket behind Mailer(rate_limit=...), driven by a fake clock."""

from __future__ import annotations

import threading

import pydantic
import pytest

from smtpkit import RateLimit
from smtpkit._ratelimit import TokenBucket


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
