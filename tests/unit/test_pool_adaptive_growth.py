"""A shrunk pool's waits and a lowered message limit, as the adapter leaves them."""

from __future__ import annotations

import threading

import pytest

from smtpkit import PoolTimeoutError, ProviderAdaptation, SenderRefusedError
from smtpkit._message import Envelope
from smtpkit._transports._adaptive import PoolAdapter
from smtpkit._transports._session import Item
from smtpkit.testing import reply

from .test_pool import Harness

DMC = reply("450 MI:DMC 4.3.2 too many messages")


class Ticking:
    """A clock that moves on by *step* seconds at each reading."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _waiter(h: Harness, outcome: list[object]) -> threading.Thread:
    def wait() -> None:
        try:
            outcome.append(h.pool.acquire())
        except PoolTimeoutError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def _progress_until(h: Harness, thread: threading.Thread, seconds: float) -> None:
    for _ in range(int(seconds / 0.01)):
        h.pool.progressed()
        thread.join(0.01)


def test_a_wait_for_a_shrunk_pool_lasts_while_messages_settle():
    h = Harness(max_connections=2, acquire_timeout=0.05)
    h.pool.resize(1)  # the adapter learnt that the server allows one
    held = h.pool.acquire()
    outcome: list[object] = []
    thread = _waiter(h, outcome)
    _progress_until(h, thread, 0.3)  # six acquire_timeouts, with progress
    assert thread.is_alive()
    assert outcome == []
    h.pool.release(held, reusable=True)
    thread.join(5)
    assert outcome == [held]


def test_a_shrunk_pool_that_makes_no_progress_still_times_out():
    h = Harness(max_connections=2, acquire_timeout=0.05)
    h.pool.resize(1)
    held = h.pool.acquire()
    with pytest.raises(PoolTimeoutError, match="all 1 connections stayed busy"):
        h.pool.acquire()
    h.pool.release(held, reusable=True)


def test_at_its_configured_size_progress_does_not_extend_the_wait():
    h = Harness(max_connections=1, acquire_timeout=0.05)
    held = h.pool.acquire()
    outcome: list[object] = []
    thread = _waiter(h, outcome)
    _progress_until(h, thread, 0.3)
    thread.join(5)
    assert isinstance(outcome[0], PoolTimeoutError)
    h.pool.release(held, reusable=True)


def test_a_deadline_passed_with_progress_starts_again():
    h = Harness(max_connections=2, acquire_timeout=0.05)
    h.pool._clock = Ticking(0.02)  # every reading is 20 ms later
    h.pool.resize(1)
    held = h.pool.acquire()
    h.pool.progressed()
    outcome: list[object] = []
    thread = _waiter(h, outcome)
    thread.join(5)  # one restart at most: no progress after the snapshot
    assert isinstance(outcome[0], PoolTimeoutError)
    h.pool.release(held, reusable=True)


def _refused_after(adapter: PoolAdapter[object], h: Harness, carried: int) -> None:
    pooled = h.pool.acquire()
    pooled.messages = carried
    item = Item.prepare(Envelope(sender="a@x.org", recipients=("b@y.org",)), b"x\r\n")
    item.outcome = SenderRefusedError(DMC, sender="a@x.org")
    assert adapter.requeue(pooled, [item]) == 1
    h.pool.release(pooled, reusable=False)


def test_a_lowered_message_limit_doubles_back_and_a_refused_try_waits_longer():
    h = Harness(max_messages_per_connection=10)
    adapter: PoolAdapter[object] = PoolAdapter(h.pool, ProviderAdaptation(grow_after=5))
    _refused_after(adapter, h, 1)  # a spurious refusal after one message
    assert h.pool.max_messages == 1
    adapter.delivered(4)
    assert h.pool.max_messages == 1
    adapter.delivered(1)
    assert h.pool.max_messages == 2
    adapter.delivered(5)
    assert h.pool.max_messages == 4
    _refused_after(adapter, h, 3)  # the try was refused: the limit is 3
    assert h.pool.max_messages == 3
    adapter.delivered(5)
    assert h.pool.max_messages == 3  # now it takes 10
    adapter.delivered(5)
    assert h.pool.max_messages == 6
    adapter.delivered(5)
    assert h.pool.max_messages == 6
    adapter.delivered(5)  # the try held for a whole period: back to every 5
    assert h.pool.max_messages == 10  # never past the configured limit
    adapter.delivered(100)
    assert h.pool.max_messages == 10


def test_a_message_limit_does_not_grow_back_when_switched_off():
    h = Harness(max_messages_per_connection=10)
    h.pool.limit_messages(2)
    off = PoolAdapter(h.pool, ProviderAdaptation(reconnect_on_message_limit=False))
    off.delivered(1000)
    assert h.pool.max_messages == 2


def test_allow_messages_stays_between_one_and_the_configured_limit():
    h = Harness(max_messages_per_connection=10)
    h.pool.allow_messages(0)
    assert h.pool.max_messages == 1
    h.pool.allow_messages(50)
    assert h.pool.max_messages == 10 == h.pool.max_messages_configured
