"""A bounded, thread-safe, fork-aware LIFO pool of connections.

Generic over the connection type so it can be tested with dummy objects.  The pool
owns the *when* (limits, idle and lifetime expiry, checks after idleness); callables
given by the transport own the *how* (connect, check, close).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .._config import PoolLimits
from .._exceptions import ClosedError, PoolTimeoutError

__all__ = ["ConnectionPool", "PoolStats", "Pooled"]

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool's counters.

    Attributes:
        open: Connections currently open (idle plus in use).
        idle: Open connections waiting in the pool.
        in_use: Connections lent out to a send.
        created: Connections opened since the pool started.
        discarded: Connections closed because of an error, expiry or a failed check.
    """

    open: int
    idle: int
    in_use: int
    created: int
    discarded: int


@dataclass(eq=False, slots=True)
class Pooled(Generic[C]):
    """A connection with the bookkeeping the pool needs."""

    conn: C
    created_at: float
    last_used: float
    messages: int = 0
    reused: bool = False
    pid: int = field(default_factory=os.getpid)


class ConnectionPool(Generic[C]):
    """Lend connections to one thread at a time, creating them on demand.

    Args:
        create: Opens a ready connection (connected, greeted, logged in).
        dispose: Closes a connection; ``polite=True`` asks for a clean QUIT.
        close_all: Closes several healthy connections at once when the pool closes
            (so their QUITs can overlap); defaults to ``dispose`` on each.
        is_usable: Checks an idle connection (NOOP) before it is reused.
        is_alive: A cheap local check run before every reuse (no round trip),
            e.g. that the server has not closed the socket meanwhile.
        limits: The pool's limits.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        create: Callable[[], C],
        dispose: Callable[[C, bool], None],
        close_all: Callable[[list[C]], None] | None = None,
        is_usable: Callable[[C], bool],
        is_alive: Callable[[C], bool] | None = None,
        limits: PoolLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._create = create
        self._dispose = dispose
        self._close_all = close_all
        self._is_usable = is_usable
        self._is_alive = is_alive
        self._limits = limits
        self._clock = clock
        # What the server turned out to allow (see _adaptive.py): never above
        # the configured limits, never below 1.
        self._size = limits.max_connections
        self._max_messages = limits.max_messages_per_connection
        self._reset_state()

    @property
    def size(self) -> int:
        """Connections the pool opens at most, as learnt (``max_connections`` at first)."""
        return self._size

    @property
    def max_connections(self) -> int:
        """The configured ``max_connections``: the size never grows past it."""
        return self._limits.max_connections

    @property
    def max_messages(self) -> int:
        """Messages one connection carries before it is replaced, as learnt."""
        return self._max_messages

    def resize(self, size: int) -> None:
        """Set how many connections may be open, within 1 and ``max_connections``.

        Connections above a smaller size close as they come back.
        """
        with self._cond:
            self._size = max(1, min(size, self._limits.max_connections))
            self._cond.notify_all()

    def limit_messages(self, count: int) -> None:
        """Lower the messages per connection to *count* (never below 1, never up)."""
        with self._cond:
            self._max_messages = max(1, min(count, self._max_messages))

    def allow_messages(self, count: int) -> None:
        """Set the messages per connection, within 1 and the configured limit."""
        with self._cond:
            configured = self._limits.max_messages_per_connection
            self._max_messages = max(1, min(count, configured))

    @property
    def max_messages_configured(self) -> int:
        """The configured ``max_messages_per_connection``: the learnt one stays below."""
        return self._limits.max_messages_per_connection

    def established(self) -> tuple[int, int]:
        """Connections open and past their greeting, and those still connecting.

        Why a server refused one more is best judged by the ones it accepted:
        connections still connecting may be refused too.
        """
        with self._cond:
            open_ = len(self._idle) + self._in_use
            return open_ - self._connecting, self._connecting

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[Pooled[C]] = []
        self._in_use = 0
        self._connecting = 0  # reserved slots whose connection is being opened
        self._created = 0
        self._discarded = 0
        self._closed = False
        # Bumped whenever a message is settled or a slot comes back: a wait for a
        # pool the adapter shrank lasts as long as the pool keeps moving.
        self._progress = 0

    def progressed(self) -> None:
        """Note that a connection settled a message (see :meth:`acquire`)."""
        with self._cond:
            self._progress += 1

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # A forked child must never talk on the parent's sockets: forget them
            # (their file descriptors close with the objects, which leaves the
            # parent's sessions untouched) and start a pool of its own.
            closed = self._closed
            self._reset_state()
            self._closed = closed

    def acquire(self) -> Pooled[C]:
        """Lend a connection, opening one if the pool is below its limit.

        While the adapter keeps the pool below ``max_connections`` (the server
        allows fewer), the messages waiting for a connection are waiting
        because of that, not because the pool is stuck: the ``acquire_timeout``
        deadline then starts again whenever the last one passed with progress
        (a message settled, a connection given back).  Only a pool that made no
        progress at all for ``acquire_timeout`` fails the wait.

        Raises:
            PoolTimeoutError: Every connection stayed busy for ``acquire_timeout``
                (with no progress at all, when the pool was shrunk).
            ClosedError: The pool was closed.
        """
        self._check_fork()
        deadline = self._clock() + self._limits.acquire_timeout
        while True:
            pooled = self._take_idle_or_reserve(deadline)
            # From here a slot is taken: whatever happens, even an interrupt
            # (KeyboardInterrupt, a timeout signal) at any point, it comes back.
            new: Pooled[C] | None = None
            try:
                if pooled is None:
                    new = self._open_new()
                    return new
                expired = self._expired(pooled)
                usable = not expired and self._check(pooled)
            except BaseException:
                taken = pooled if pooled is not None else new
                if taken is None:
                    self._unreserve()
                else:
                    self._discard(taken, polite=False, counted=pooled is not None)
                raise
            if not usable:
                # An expired session is healthy and ends with QUIT; a failed one not.
                self._discard(pooled, polite=expired, counted=True)
                continue
            pooled.reused = True
            return pooled

    def _check(self, pooled: Pooled[C]) -> bool:
        """Run the cheap local check, then NOOP when the session sat idle long."""
        if self._is_alive is not None and not self._is_alive(pooled.conn):
            return False
        idle_for = self._clock() - pooled.last_used
        return idle_for <= self._limits.check_after_idle or self._is_usable(pooled.conn)

    def _take_idle_or_reserve(self, deadline: float) -> Pooled[C] | None:
        with self._cond:
            progress = self._progress
            while True:
                if self._closed:
                    msg = "the connection pool is closed"
                    raise ClosedError(msg)
                self._in_use += 1
                if self._idle:
                    return self._idle.pop()  # LIFO: the warmest connection
                if self._in_use <= self._size:
                    self._connecting += 1
                    return None  # a slot is reserved for a new connection
                self._in_use -= 1
                remaining = deadline - self._clock()
                if remaining > 0 and self._cond.wait(remaining):
                    continue
                if self._size < self._limits.max_connections and (
                    self._progress != progress
                ):
                    # Shrunk by the adapter and still moving: wait on.
                    progress = self._progress
                    deadline = self._clock() + self._limits.acquire_timeout
                    continue
                msg = (
                    f"all {self._size} connections stayed busy "
                    f"for {self._limits.acquire_timeout} s"
                )
                raise PoolTimeoutError(msg)

    def _open_new(self) -> Pooled[C]:
        """Open a connection for a reserved slot; the caller gives the slot back."""
        conn = self._create()
        try:
            now = self._clock()
            pooled = Pooled(conn=conn, created_at=now, last_used=now)
        except BaseException:  # interrupted right after connecting
            self._dispose(conn, False)
            raise
        with self._cond:
            self._created += 1
            self._connecting -= 1
        return pooled

    def _unreserve(self) -> None:
        with self._cond:
            self._in_use -= 1
            self._connecting -= 1
            self._progress += 1
            self._cond.notify()

    def _expired(self, pooled: Pooled[C]) -> bool:
        now = self._clock()
        lifetime = self._limits.max_lifetime
        return now - pooled.last_used > self._limits.idle_timeout or (
            lifetime is not None and now - pooled.created_at > lifetime
        )

    def release(self, pooled: Pooled[C], *, reusable: bool) -> None:
        """Return a lent connection; it is closed instead when not reusable or spent."""
        if pooled.pid != os.getpid():
            return  # lent before a fork; the child's pool does not know it
        pooled.last_used = self._clock()
        keep = (
            reusable
            and pooled.messages < self._max_messages
            and not self._expired(pooled)
        )
        with self._cond:
            # After a shrink, the connections above the new size close.
            keep = keep and self._in_use + len(self._idle) <= self._size
            if keep and not self._closed:
                self._idle.append(pooled)
                self._in_use -= 1
                self._progress += 1
                self._cond.notify()
                return
        # A healthy connection ends with a clean QUIT; a broken one is just closed.
        self._discard(pooled, polite=reusable, counted=not reusable)

    def _discard(self, pooled: Pooled[C], *, polite: bool, counted: bool) -> None:
        try:
            self._dispose(pooled.conn, polite)
        finally:
            with self._cond:
                self._in_use -= 1
                self._discarded += counted
                self._progress += 1
                self._cond.notify()

    def close(self) -> None:
        """Close idle connections now and lent ones when they come back; idempotent."""
        self._check_fork()
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._close_all is None:
            for pooled in idle:
                with contextlib.suppress(Exception):
                    self._dispose(pooled.conn, True)
        else:
            self._close_all([pooled.conn for pooled in idle])

    def stats(self) -> PoolStats:
        """Return the current counters."""
        with self._cond:
            idle = len(self._idle)
            return PoolStats(
                open=idle + self._in_use,
                idle=idle,
                in_use=self._in_use,
                created=self._created,
                discarded=self._discarded,
            )
