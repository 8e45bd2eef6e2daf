"""``AsyncMailer.send_many``: one task per message read, in a bounded window.

The input (a plain or an async iterable) is read on the loop, at most
``window`` messages ahead of the ones finished; each message becomes a task
that prepares it and delivers it through the mailer's dispatcher.  Results are
reported to ``on_progress`` in input order.  Stopping is defined as for
``Mailer.send_many``: the input or ``on_progress`` raising stops the reading
(what was read is still sent); a quota reply stops the reading and withdraws
the messages not yet started; a cancelled caller cancels every message's task
and hands every result it will not see to ``on_orphaned`` (``on_detached``):
the ones already known, the ones that end meanwhile, and (through each task's
own cancellation) the ones whose attempt was on the wire.

A message's task ends as soon as its outcome is known (``on_progress`` follows
the deliveries), which may be before its worker has put the connection back in
the pool; ``send`` therefore returns only once every batch that carried one of
its messages has ended, as ``Mailer.send_many`` returns after its workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sized
from typing import Protocol

from ._attempt import Prepared
from ._bulk import MAX_BATCH, BulkProgress, QuotaExceededError, SendManyAbortedError
from ._delivery import failed_result
from ._dispatch import Dispatcher, Job
from ._exceptions import InvalidMessageError
from ._outcomes import invalid, not_sent, quota_spent
from ._prepare import BulkItem
from ._transports.base import SendResult

__all__ = ["BulkSend", "Stop"]

logger = logging.getLogger("smtpkit")

YIELD_EVERY = 32  # messages read from a plain iterable between two loop turns


class Stop:
    """Ends the sending of one run's messages (or, for ``aclose``, of all).

    Once set, no attempt starts; the run's attempts still queued for a worker
    are withdrawn and resolved with ``NotSentError``.  It also keeps the run's
    batches that are still running (``hold``), for the run to wait for.
    """

    __slots__ = ("batches", "is_set", "jobs")

    def __init__(self) -> None:
        self.is_set = False
        self.jobs: set[tuple[Dispatcher, Job]] = set()  # queued or running
        self.batches: set[asyncio.Future[None]] = set()  # running, with a job's

    def hold(self, job: Job) -> None:
        """Keep *job*'s batch until it ends: its connection is not free yet."""
        batch = job.batch
        if batch is not None and not batch.done() and batch not in self.batches:
            self.batches.add(batch)
            batch.add_done_callback(self.batches.discard)

    def set(self) -> None:
        """Stop: withdraw every attempt of the run that has not started."""
        self.is_set = True
        jobs, self.jobs = self.jobs, set()
        for dispatcher, job in jobs:
            if dispatcher.withdraw(job):
                job.resolve(not_sent())


class Deliver(Protocol):
    """``AsyncMailer.deliver``: one prepared message, with retries."""

    def __call__(
        self, prepared: Prepared, dispatcher: Dispatcher, stop: Stop | None, /
    ) -> Awaitable[SendResult]:
        """Deliver *prepared*; raise when no recipient got it."""


class BulkSend:
    """One ``send_many`` call."""

    def __init__(
        self,
        prepare: Callable[[BulkItem], Awaitable[Prepared]],
        deliver: Deliver,
        dispatcher: Dispatcher,
        *,
        workers: int,
        on_progress: Callable[[BulkProgress], None] | None,
        stop_on_quota: bool,
        on_orphaned: Callable[[SendResult], None],
    ) -> None:
        self._prepare = prepare
        self._on_orphaned = on_orphaned
        self._deliver = deliver
        self._dispatcher = dispatcher
        self._on_progress = on_progress
        self._stop_on_quota = stop_on_quota
        self._window = asyncio.Semaphore(2 * MAX_BATCH * workers)
        self._stop = Stop()
        self._results: list[SendResult | None] = []
        self._tasks: set[asyncio.Task[SendResult]] = set()
        self._reported = 0
        self._failed = 0
        self._total: int | None = None
        self._abort: tuple[str, Exception] | None = None
        self._halt: QuotaExceededError | None = None
        self._orphaned = False  # the caller was cancelled: results go elsewhere
        self._interrupted = False  # on_progress raised KeyboardInterrupt/SystemExit

    async def send(
        self, messages: Iterable[BulkItem] | AsyncIterable[BulkItem]
    ) -> list[SendResult]:
        """Send every message; see ``AsyncMailer.send_many``."""
        if isinstance(messages, Sized):
            self._total = len(messages)
        try:
            await self._read(messages)
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            self._orphan()
            for task in self._tasks:
                task.cancel()  # each withdraws its message or detaches it
            raise
        results = [r for r in self._results if r is not None]
        try:
            while self._stop.batches:  # connections still being given back
                await asyncio.wait(set(self._stop.batches))
        except asyncio.CancelledError:
            self._orphan()
            raise
        if self._abort is not None:
            where, cause = self._abort
            msg = (
                f"send_many stopped after {len(results)} message(s): {where} "
                f"raised {type(cause).__name__}: {cause}"
            )
            raise SendManyAbortedError(msg, results=results) from cause
        if self._halt is not None:
            self._halt.results = results
            raise self._halt
        return results

    async def _read(
        self, messages: Iterable[BulkItem] | AsyncIterable[BulkItem]
    ) -> None:
        try:
            if isinstance(messages, AsyncIterable):
                async for item in messages:
                    if not await self._start(item):
                        return
            else:
                for count, item in enumerate(messages, 1):
                    if not await self._start(item):
                        return
                    if count % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let results and the dispatcher run
        except Exception as exc:  # the caller's iterable: stop reading, keep sending
            self._abort = ("messages", exc)

    async def _start(self, item: BulkItem) -> bool:
        """Start *item*'s task after a slot frees; False once reading must stop."""
        if self._reading_stopped():
            return False
        await self._window.acquire()
        if self._reading_stopped():
            self._window.release()
            return False
        index = len(self._results)
        self._results.append(None)
        task = asyncio.get_running_loop().create_task(self._one(item))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(index, t))
        return True

    async def _one(self, item: BulkItem) -> SendResult:
        if isinstance(item, InvalidMessageError):
            # A stand-in for a message: reported as it is, never raised, so its
            # __traceback__ holds no frame of the run.
            return SendResult(envelope=None, error=item, attempts=0)
        try:
            prepared = await self._prepare(item)
        except Exception as exc:  # anything one message causes is its own result
            return SendResult(envelope=None, error=invalid(exc), attempts=0)
        try:
            return await self._deliver(prepared, self._dispatcher, self._stop)
        except Exception as exc:
            return failed_result(prepared, exc)

    def _orphan(self) -> None:
        """The caller was cancelled: hand every result it will not see to
        ``on_orphaned``, now for those known, later for those still coming
        (tasks that ended but whose ``_done`` has not run yet)."""
        self._orphaned = True
        for result in self._results:
            if result is not None:
                self._on_orphaned(result)

    def _done(self, index: int, task: asyncio.Task[SendResult]) -> None:
        self._tasks.discard(task)
        self._window.release()
        if task.cancelled():
            return  # withdrawn, or its outcome goes to on_detached on its own
        result = task.result()
        if self._orphaned:
            self._on_orphaned(result)
            return
        self._results[index] = result
        if self._stop_on_quota and self._halt is None:
            self._halt = quota_spent(result, name="send_many")
            if self._halt is not None:
                self._stop.set()
        results = self._results
        while self._reported < len(results):
            done = results[self._reported]
            if done is None:
                break
            self._reported += 1
            self._failed += done.error is not None
            if self._on_progress is None or self._abort or self._interrupted:
                continue
            try:
                self._on_progress(
                    BulkProgress(self._reported, self._failed, self._total)
                )
            except Exception as exc:
                self._abort = ("on_progress", exc)
            except BaseException:
                # Ctrl-C ends the loop; asyncio.run then cancels the tasks, and
                # results that end meanwhile must reach on_detached, not a callback
                # that raises again and breaks that cleanup.
                self._interrupted = True
                raise

    def _reading_stopped(self) -> bool:
        return (
            self._abort is not None
            or self._halt is not None
            or self._stop.is_set
            or self._interrupted
        )
