"""Client-side send rate limiting (a token bucket shared by a Mailer's threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ._positional import bind_positional, validates_like_base_init

__all__ = ["RateLimit", "TokenBucket"]


class RateLimit(BaseModel):
    """At most ``per_second`` messages per second on average, ``burst`` at once.

    Providers throttle (Amazon SES starts at 14 messages/s, QQ Mail far lower);
    staying under their limit is cheaper than being refused with 4xx and retried.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)

    if TYPE_CHECKING:

        def __init__(self, per_second: float, *, burst: int = 1) -> None:
            """Allow *per_second* messages a second on average, *burst* at once."""

    else:

        @validates_like_base_init
        def __init__(self, *args: Any, **data: Any) -> None:
            """Take ``per_second`` positionally too: ``RateLimit(10)``."""
            super().__init__(
                **bind_positional("RateLimit", ("per_second",), args, data)
            )


class TokenBucket:
    """Thread-safe token bucket; ``acquire`` blocks (through *sleep*) for a token."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(limit.burst)
        self._updated = clock()

    def acquire(self, *, sleep: Callable[[float], None] | None = None) -> float:
        """Take one token, waiting as needed; return the seconds waited.

        *sleep* replaces the bucket's own for this wait (``send_many`` passes one
        that an interrupt ends).
        """
        wait = self.reserve()
        if wait:
            try:
                (self._sleep if sleep is None else sleep)(wait)
            except BaseException:  # interrupted: nothing is sent with this token
                self.refund()
                raise
        return wait

    def reserve(self) -> float:
        """Take one token now and return the seconds to wait before using it.

        ``AsyncMailer`` awaits the wait with ``asyncio.sleep`` instead of
        blocking; the token is spent either way, so callers queue in order.
        """
        with self._lock:
            self._refill()
            self._tokens -= 1
            # A negative balance is a reservation: this caller waits its turn.
            rate = self._limit.per_second
            return 0.0 if self._tokens >= 0 else -self._tokens / rate

    def refund(self, tokens: int = 1) -> None:
        """Give back *tokens* taken by ``reserve`` but never used to send.

        A caller cancelled (or interrupted) while waiting for its reservation
        sends nothing; without a refund its turn would stay booked and every
        later caller would wait for it (40 cancelled sends at 2/s: 20 s).
        """
        with self._lock:
            self._refill()
            self._tokens = min(float(self._limit.burst), self._tokens + tokens)

    def _refill(self) -> None:
        """Add the tokens earned since the last update (under the lock)."""
        now = self._clock()
        earned = (now - self._updated) * self._limit.per_second
        self._tokens = min(self._limit.burst, self._tokens + earned)
        self._updated = now
