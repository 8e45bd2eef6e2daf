"""ConnectionPool driven with dummy connections and a fake clock."""

from __future__ import annotations

import os
import threading

import pytest

from smtpkit import ClosedError, PoolLimits, PoolStats, PoolTimeoutError
from smtpkit._transports import _pool
from smtpkit._transports._pool import ConnectionPool


class Conn:
    """A stand-in for an SMTP session."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.usable = True

    def __repr__(self) -> str:
        return f"Conn({self.number})"


class Harness:
    """Builds a pool and records everything it does to connections."""

    def __init__(self, **limits: object) -> None:
        self.now = 0.0
        self.created: list[Conn] = []
        self.disposed: list[tuple[Conn, bool]] = []
        self.checked: list[Conn] = []
        self.fail_create: Exception | None = None
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            create=self.create,
            dispose=self.dispose,
            is_usable=self.is_usable,
            limits=PoolLimits(**limits),
            clock=lambda: self.now,
        )

    def create(self) -> Conn:
        if self.fail_create is not None:
            raise self.fail_create
        conn = Conn(len(self.created) + 1)
        self.created.append(conn)
        return conn

    def dispose(self, conn: Conn, polite: bool) -> None:
        self.disposed.append((conn, polite))

    def is_usable(self, conn: Conn) -> bool:
        self.checked.append(conn)
        return conn.usable


@pytest.fixture
def h() -> Harness:
    return Harness(max_connections=2, acquire_timeout=0.05)


def test_creates_on_demand_and_reuses(h):
    first = h.pool.acquire()
    assert first.conn.number == 1
    assert not first.reused
    assert first.created_at == first.last_used == 0.0
    h.pool.release(first, reusable=True)
    again = h.pool.acquire()
    assert again is first
    assert again.reused
    assert len(h.created) == 1


def test_lifo_reuse(h):
    a, b = h.pool.acquire(), h.pool.acquire()
    h.now = 1.0
    h.pool.release(a, reusable=True)
    h.pool.release(b, reusable=True)
    assert h.pool.acquire() is b  # the warmest one
    assert h.pool.acquire() is a


def test_max_connections_and_acquire_timeout(h):
    lent = [h.pool.acquire(), h.pool.acquire()]
    with pytest.raises(PoolTimeoutError, match="all 2 connections stayed busy"):
        h.pool.acquire()
    assert len(h.created) == 2
    assert h.pool.stats() == PoolStats(open=2, idle=0, in_use=2, created=2, discarded=0)
    h.pool.release(lent[0], reusable=True)
    assert h.pool.acquire() is lent[0]


def test_zero_acquire_timeout_fails_at_once():
    h = Harness(max_connections=1, acquire_timeout=0)
    h.pool.acquire()
    with pytest.raises(PoolTimeoutError):
        h.pool.acquire()


def test_waiter_gets_released_connection():
    h = Harness(max_connections=1, acquire_timeout=5)
    held = h.pool.acquire()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(h.pool.acquire()))
    waiter.start()
    waiter.join(0.05)
    assert waiter.is_alive()  # blocked on the full pool
    h.pool.release(held, reusable=True)
    waiter.join(5)
    assert got == [held]
    assert len(h.created) == 1


def test_idle_timeout_expiry_disposes_politely():
    h = Harness(idle_timeout=30, check_after_idle=1000)
    pooled = h.pool.acquire()
    h.pool.release(pooled, reusable=True)
    h.now = 30.5
    fresh = h.pool.acquire()
    assert fresh is not pooled
    assert h.disposed == [(pooled.conn, True)]
    assert h.pool.stats().discarded == 1


def test_not_expired_at_the_limit():
    h = Harness(idle_timeout=30, check_after_idle=1000)
    pooled = h.pool.acquire()
    h.pool.release(pooled, reusable=True)
    h.now = 30.0
    assert h.pool.acquire() is pooled


def test_max_lifetime():
    h = Harness(max_lifetime=100, idle_timeout=60, check_after_idle=1000)
    pooled = h.pool.acquire()
    for step in range(1, 5):  # kept busy, never idle for long
        h.now = step * 25.0
        h.pool.release(pooled, reusable=True)
        if step < 4:
            assert h.pool.acquire() is pooled
    # 100 s old at release: still not past the lifetime, so it went back idle.
    h.now = 100.5
    assert h.pool.acquire() is not pooled
    assert h.disposed == [(pooled.conn, True)]


def test_max_lifetime_checked_at_release():
    h = Harness(max_lifetime=10)
    pooled = h.pool.acquire()
    h.now = 11
    h.pool.release(pooled, reusable=True)
    assert h.disposed == [(pooled.conn, True)]
    assert h.pool.stats().idle == 0


def test_check_after_idle_keeps_a_usable_connection():
    h = Harness(check_after_idle=5)
    pooled = h.pool.acquire()
    h.pool.release(pooled, reusable=True)
    h.now = 5.0
    assert h.pool.acquire() is pooled
    assert h.checked == []  # not idle for longer than 5 s
    h.pool.release(pooled, reusable=True)
    h.now = 10.5
    assert h.pool.acquire() is pooled
    assert h.checked == [pooled.conn]


def test_check_after_idle_discards_a_failing_one():
    h = Harness(check_after_idle=5)
    pooled = h.pool.acquire()
    h.pool.release(pooled, reusable=True)
    pooled.conn.usable = False
    h.now = 6
    fresh = h.pool.acquire()
    assert fresh is not pooled
    assert h.disposed == [(pooled.conn, False)]
    assert h.pool.stats() == PoolStats(open=1, idle=0, in_use=1, created=2, discarded=1)


def test_max_messages_per_connection_disposes_politely():
    h = Harness(max_messages_per_connection=2)
    pooled = h.pool.acquire()
    pooled.messages = 1
    h.pool.release(pooled, reusable=True)
    assert h.pool.acquire() is pooled
    pooled.messages = 2
    h.pool.release(pooled, reusable=True)
    assert h.disposed == [(pooled.conn, True)]
    assert h.pool.stats() == PoolStats(open=0, idle=0, in_use=0, created=1, discarded=0)
    assert h.pool.acquire() is not pooled


def test_release_not_reusable_counts_discarded(h):
    pooled = h.pool.acquire()
    h.pool.release(pooled, reusable=False)
    assert h.disposed == [(pooled.conn, False)]
    assert h.pool.stats() == PoolStats(open=0, idle=0, in_use=0, created=1, discarded=1)


def test_dispose_error_still_frees_the_slot():
    h = Harness(max_connections=1, acquire_timeout=0)

    def explode(conn: Conn, polite: bool) -> None:
        raise OSError("socket already gone")

    h.pool._dispose = explode  # type: ignore[method-assign]
    pooled = h.pool.acquire()
    with pytest.raises(OSError, match="already gone"):
        h.pool.release(pooled, reusable=False)
    assert h.pool.stats().in_use == 0
    assert h.pool.acquire().conn.number == 2


def test_create_failure_frees_the_slot():
    h = Harness(max_connections=1, acquire_timeout=0)
    h.fail_create = ConnectionRefusedError("down")
    with pytest.raises(ConnectionRefusedError):
        h.pool.acquire()
    assert h.pool.stats() == PoolStats(open=0, idle=0, in_use=0, created=0, discarded=0)
    h.fail_create = None
    assert h.pool.acquire().conn.number == 1


def test_close_disposes_idle_and_later_released(h):
    idle, lent = h.pool.acquire(), h.pool.acquire()
    h.pool.release(idle, reusable=True)
    h.pool.close()
    assert h.disposed == [(idle.conn, True)]
    h.pool.release(lent, reusable=True)
    assert h.disposed == [(idle.conn, True), (lent.conn, True)]
    assert h.pool.stats() == PoolStats(open=0, idle=0, in_use=0, created=2, discarded=0)
    h.pool.close()  # idempotent
    assert len(h.disposed) == 2


def test_broken_connection_released_after_close(h):
    lent = h.pool.acquire()
    h.pool.close()
    h.pool.release(lent, reusable=False)
    assert h.disposed == [(lent.conn, False)]
    assert h.pool.stats().discarded == 1


def test_closed_error_after_close(h):
    h.pool.close()
    with pytest.raises(ClosedError, match="closed"):
        h.pool.acquire()


def test_stats(h):
    assert h.pool.stats() == PoolStats(open=0, idle=0, in_use=0, created=0, discarded=0)
    a, b = h.pool.acquire(), h.pool.acquire()
    h.pool.release(a, reusable=True)
    assert h.pool.stats() == PoolStats(open=2, idle=1, in_use=1, created=2, discarded=0)
    h.pool.release(b, reusable=False)
    assert h.pool.stats() == PoolStats(open=1, idle=1, in_use=0, created=2, discarded=1)


def test_fork_starts_a_fresh_pool(h, monkeypatch):
    parent_idle, parent_lent = h.pool.acquire(), h.pool.acquire()
    h.pool.release(parent_idle, reusable=True)
    child_pid = os.getpid() + 1
    monkeypatch.setattr(_pool.os, "getpid", lambda: child_pid)
    # In the child, the parent's sessions are forgotten, never used nor QUIT.
    child = h.pool.acquire()
    assert child is not parent_idle
    assert child.conn.number == 3
    assert h.disposed == []
    assert h.pool.stats() == PoolStats(open=1, idle=0, in_use=1, created=1, discarded=0)
    h.pool.release(parent_lent, reusable=True)  # lent before the fork: ignored
    h.pool.release(parent_idle, reusable=False)
    assert h.disposed == []
    assert h.pool.stats() == PoolStats(open=1, idle=0, in_use=1, created=1, discarded=0)


def test_fork_keeps_closed_state(h, monkeypatch):
    h.pool.close()
    child_pid = os.getpid() + 1
    monkeypatch.setattr(_pool.os, "getpid", lambda: child_pid)
    with pytest.raises(ClosedError):
        h.pool.acquire()
