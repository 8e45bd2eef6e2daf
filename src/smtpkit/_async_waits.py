"""``AsyncMailer``'s waits on the loop: turns to render, rate-limit tokens, and
sleeps that ``aclose`` ends.

All are about fairness to the rest of the event loop and to the mailer's own
shutdown, not about I/O (which runs in worker threads).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from ._attempt import Interrupted
from ._ratelimit import TokenBucket

__all__ = ["RenderTurns", "interruptible_sleep", "take_token"]


class RenderTurns:
    """Lets at most *per_turn* messages render in one iteration of the loop.

    A thousand ``send()`` calls started together would otherwise all render in
    one iteration (about 0.2 ms each), holding up every other task.  The first
    *per_turn* callers of an iteration go on at once; the others wait in a FIFO
    that each following iteration releases *per_turn* at a time.  (Waiting by
    ``await asyncio.sleep(0)`` in a loop instead costs every waiter a wake-up
    per iteration: quadratic in the number of waiters.)

    Invariant: a reset is scheduled on the loop exactly when ``_used > 0``.
    """

    def __init__(self, per_turn: int) -> None:
        self._per_turn = per_turn
        self._used = 0  # slots taken in this iteration
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self) -> None:
        """Return once the caller may render a message in this iteration."""
        if self._used < self._per_turn and not self._waiters:
            self._take(asyncio.get_running_loop())
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        await turn  # a cancelled waiter's future is skipped when its turn comes

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        self._used += 1
        if self._used == 1:
            loop.call_soon(self._next_turn, loop)

    def _next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new iteration: release the next *per_turn* waiters, in order.

        Their tasks run in the iteration after this one, as does the next reset
        (scheduled after their wake-ups), so each iteration renders at most
        *per_turn* messages.
        """
        self._used = 0
        while self._waiters and self._used < self._per_turn:
            turn = self._waiters.popleft()
            if not turn.done():  # not cancelled meanwhile
                turn.set_result(None)
                self._take(loop)


async def interruptible_sleep(
    sleep: Callable[[float], Awaitable[None]],
    seconds: float,
    stop: asyncio.Event,
) -> None:
    """``await sleep(seconds)``, ended early by *stop*: then raise ``Interrupted``.

    ``aclose()`` sets *stop* at its deadline, so a send waiting for a retry or
    for the rate limit fails at once instead of outliving the mailer.
    """
    if stop.is_set():
        raise Interrupted
    sleeper = asyncio.ensure_future(sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (sleeper, stopper):
            waiting.cancel()
    if stop.is_set():
        raise Interrupted
    sleeper.result()  # the injected sleep's own error, if any


async def take_token(
    bucket: TokenBucket | None,
    sleep: Callable[[float], Awaitable[None]],
    stopped: Callable[[], bool],
) -> None:
    """Wait for a rate-limit token; raise ``Interrupted`` if *stopped* meanwhile.

    A caller that does not go on to send (cancelled, or stopped by ``aclose()``
    or its run) gives its token back, so the turns booked after it move up
    instead of waiting for a message that never goes.
    """
    if bucket is None:
        if stopped():
            raise Interrupted
        return
    wait = bucket.reserve()
    try:
        if wait:
            await sleep(wait)
        if stopped():
            raise Interrupted  # noqa: TRY301 - refunded below like a cancel
    except BaseException:
        bucket.refund()
        raise
