"""``AsyncMailer``'s dispatcher: attempts queued on the event loop, sent by threads.

Every ``await send()`` and every message of ``send_many`` puts one attempt (a
``Job``) into one queue.  The dispatcher hands up to ``MAX_BATCH`` waiting jobs
at a time to a worker thread of the mailer's executor, which makes them with one
``transport.send_batch`` call: on ``SMTPTransport`` one pooled connection,
pipelined.  At most ``max_batches`` batches are in flight, so the transport's
pool never sees more callers than it has connections, however many coroutines
wait.  What waits is cut into even batches over all workers, at most
``MAX_BATCH`` each (as ``BulkRun`` cuts a read chunk), so that a burst smaller
than ``max_batches * MAX_BATCH``, and the tail of a long run, still keep every
connection busy.

Each outcome goes back to the loop (``call_soon_threadsafe``) as soon as the
transport knows it.  Who hears of it then depends on the job:

* a ``send()`` job (``early=False``) resolves its future only when its batch has
  ended, that is when ``send_batch`` returned and the connection is back in the
  pool (after the RSET of a refused transaction, the QUIT of a spent session),
  as ``Mailer.send`` returns: the caller's next ``send()`` then finds that
  connection idle instead of opening a second one;
* a ``send_many`` job (``early=True``) resolves at once, so ``on_progress``
  follows the deliveries; ``send_many`` itself waits for the batches of its
  jobs (``Job.batch``) before it returns;
* a job whose caller was cancelled hands its outcome to ``on_late`` at once.

A ``send()`` job also has a deadline (the pool's ``acquire_timeout``): still
waiting for a worker when it passes, it is withdrawn and fails with
``PoolTimeoutError``, as ``Mailer.send`` fails waiting for a pooled connection.
The deadline ends when the job is handed to a worker: the time the worker thread
takes to start is not waiting for a connection (with ``acquire_timeout=0`` a
send to an idle pool must not fail).

A job's life: QUEUED (in the deque) -> HANDED (in a batch given to the
executor) -> STARTED (its worker called ``send_batch`` with it) -> resolved.
``withdraw()`` (a cancelled caller) drops a QUEUED or HANDED job, which is then
never sent; a STARTED one runs to its outcome, which goes to the job's
``on_late`` callback instead of the caller.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor

from ._bulk import MAX_BATCH, NotSentError
from ._delivery import batch_outcomes
from ._exceptions import PoolTimeoutError, SMTPKitError
from ._message import Envelope
from ._outcomes import checked
from ._transports.base import SendResult, Transport

__all__ = ["Dispatcher", "Job"]

logger = logging.getLogger("smtpkit")

Outcome = SendResult | SMTPKitError


class JobState(enum.Enum):
    QUEUED = 1
    HANDED = 2
    STARTED = 3
    DROPPED = 4


class Job:
    """One attempt of one message, from the queue to its outcome.

    ``future`` gets the outcome on the loop: at once for an ``early`` job, else
    once its batch has ended (see the module docstring).  A caller that stops
    waiting (it was cancelled) sets ``on_late`` to hear of an outcome that
    arrives later.  ``batch`` is the job's batch once handed to a worker: done
    when the batch has ended and its connection is back in the pool.
    """

    __slots__ = (
        "batch",
        "data",
        "early",
        "envelope",
        "future",
        "on_late",
        "outcome",
        "state",
        "timer",
    )

    def __init__(
        self,
        envelope: Envelope,
        data: bytes,
        future: asyncio.Future[Outcome],
        *,
        early: bool,
    ) -> None:
        self.envelope = envelope
        self.data = data
        self.future = future
        self.early = early
        self.state = JobState.QUEUED
        self.outcome: Outcome | None = None
        self.on_late: Callable[[Outcome], None] | None = None
        self.batch: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def resolve(self, outcome: object) -> None:
        """Take the attempt's outcome (on the loop); the first one counts.

        A started job that is not ``early`` keeps it until ``release()``.
        """
        if self.outcome is not None:
            return
        self.outcome = known = checked(outcome)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.on_late is not None:
            self.on_late(known)
        elif self.early or self.state is not JobState.STARTED:
            self._settle()

    def release(self) -> None:
        """The job's batch ended (on the loop): hand over a held outcome."""
        if self.on_late is None:
            self._settle()

    def _settle(self) -> None:
        if self.outcome is not None and not self.future.done():
            self.future.set_result(self.outcome)

    def resolve_after_loop(self, outcome: object) -> None:
        """Take the outcome in a worker thread: the job's event loop is closed,
        or stopped (nothing runs its callbacks; closing it would drop them).

        Nobody can await the future any more; a detached caller's ``on_late``
        (``on_detached``) still hears of the outcome, from this thread.
        """
        if self.outcome is not None:
            return  # heard already (``on_result``, then the batch's end)
        self.outcome = known = checked(outcome)
        if self.on_late is not None:
            self.on_late(known)
        else:
            logger.warning("smtpkit: an attempt ended after its event loop closed")


class Dispatcher:
    """Feeds queued jobs to worker threads in batches; see the module docstring.

    Used on one event loop only (the one the mailer first ran on); its lock
    guards the job states that the loop and the workers both change.
    """

    def __init__(
        self,
        transport: Transport,
        executor: Executor,
        loop: asyncio.AbstractEventLoop,
        *,
        max_batches: int,
        batch_size: int = MAX_BATCH,
        reports_results: bool,
        on_idle: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._executor = executor
        self._loop = loop
        self._max_batches = max_batches
        self._batch_size = batch_size
        self._reports_results = reports_results
        self._on_idle = on_idle
        self._queue: collections.deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._pump_scheduled = False
        self._handed: set[Job] = set()  # given to the executor, not yet done
        self._round_left = 0  # jobs of the current round still in the queue
        self._round_parts = 0  # batches of the current round still to cut

    @property
    def busy(self) -> bool:
        """Whether a batch is in flight or a job waits (on the loop).

        ``_pump`` empties the queue whenever a worker is free, so a queue left
        holding only withdrawn jobs means every worker is busy anyway.
        """
        return self._in_flight > 0 or bool(self._queue)

    def submit(
        self,
        envelope: Envelope,
        data: bytes,
        *,
        early: bool = False,
        acquire_timeout: float | None = None,
    ) -> Job:
        """Queue one attempt; the dispatcher starts it when a worker is free.

        Jobs submitted in the same loop iteration share batches: the queue is
        pumped once, after the caller's step.

        Args:
            envelope: The attempt's envelope (the recipients still pending).
            data: The message.
            early: Resolve the job's future as soon as its outcome is known,
                not when its batch has ended (``send_many``).
            acquire_timeout: Seconds the job may wait for a worker before it is
                withdrawn and fails with ``PoolTimeoutError``; None: no bound.
        """
        job = Job(envelope, data, self._loop.create_future(), early=early)
        self._queue.append(job)
        if acquire_timeout is not None:
            job.timer = self._loop.call_later(
                acquire_timeout, self._expire, job, acquire_timeout
            )
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)
        return job

    def withdraw(self, job: Job) -> bool:
        """Drop *job* unless its batch started; True when it will not be sent."""
        with self._lock:
            if job.state is JobState.STARTED:
                return False
            job.state = JobState.DROPPED
        return True

    def fail_unstarted(self, error: Callable[[], SMTPKitError]) -> int:
        """Resolve every job not yet started with ``error()``; return how many."""
        failed = []
        with self._lock:
            for job in self._queue:
                if job.state is JobState.QUEUED:
                    job.state = JobState.DROPPED
                    failed.append(job)
            self._queue.clear()
            for job in self._handed:
                if job.state is JobState.HANDED:
                    job.state = JobState.DROPPED
                    failed.append(job)
        for job in failed:
            job.resolve(error())
        return len(failed)

    # -- on the loop -----------------------------------------------------------

    def _expire(self, job: Job, timeout: float) -> None:
        """*job* waited *timeout* seconds for a worker: fail it, unsent."""
        job.timer = None
        if not self.withdraw(job):
            return  # started meanwhile: the transport's own pool wait applies
        msg = f"all {self._max_batches} connections stayed busy for {timeout} s"
        job.resolve(PoolTimeoutError(msg))

    def _pump(self) -> None:
        self._pump_scheduled = False
        while self._in_flight < self._max_batches and self._queue:
            size = self._next_batch_size()
            batch: list[Job] = []
            with self._lock:
                while self._queue and len(batch) < size:
                    job = self._queue.popleft()
                    self._round_left -= 1
                    if job.state is JobState.QUEUED:
                        job.state = JobState.HANDED
                        batch.append(job)
                        if job.timer is not None:
                            # It has a worker: from here only the transport's
                            # own pool wait applies, as for ``Mailer.send``.
                            job.timer.cancel()
                            job.timer = None
            if not batch:
                continue
            try:
                done = self._loop.run_in_executor(self._executor, self._run, batch)
            except RuntimeError as exc:  # the executor was shut down (aclose)
                self._refused(batch, exc)
                continue
            self._in_flight += 1
            self._handed.update(batch)
            done.add_done_callback(functools.partial(self._batch_done, batch=batch))
            for job in batch:
                job.batch = done
        if not self.busy:
            self._on_idle()

    def _refused(self, batch: list[Job], exc: RuntimeError) -> None:
        """The executor refused *batch*: none of it was sent; fail each job."""
        logger.warning("smtpkit: %d message(s) not sent: %s", len(batch), exc)
        with self._lock:
            for job in batch:
                job.state = JobState.DROPPED
        for job in batch:
            error = NotSentError(f"not sent: no worker would take it ({exc})")
            error.attempts = 0
            job.resolve(error)

    def _next_batch_size(self) -> int:
        """How many waiting jobs the next batch takes.

        What waits when a round begins is cut into ``max_batches`` even
        batches of at most ``batch_size`` (each takes ``ceil(left / parts
        left)``: 4 jobs on 3 workers are 2, 1 and 1, not 2 and 2 with one
        worker idle), as ``_bulk._split`` cuts a read chunk for
        ``Mailer.send_many``.  A round ends after ``max_batches`` batches (or
        when its jobs are gone), so a small burst does not queue on one
        connection while others idle, and the end of a long run is shared
        evenly, not left to one worker's full batch; while a run is long,
        batches stay full.
        """
        if self._round_parts <= 0 or self._round_left <= 0:
            self._round_left = len(self._queue)
            self._round_parts = self._max_batches
        share = -(-self._round_left // self._round_parts)
        self._round_parts -= 1
        return max(1, min(self._batch_size, share))

    def _batch_done(self, done: asyncio.Future[None], *, batch: list[Job]) -> None:
        self._in_flight -= 1
        self._handed.difference_update(batch)
        if not done.cancelled() and done.exception() is not None:
            # _run catches everything a transport does; this is a bug of ours
            # (or the executor refused work): no job may stay unresolved.
            error = done.exception()
            logger.error("smtpkit dispatcher batch failed: %r", error)
        for job in batch:
            if job.state is JobState.STARTED and job.outcome is None:
                job.resolve(
                    SMTPKitError("internal error: the batch ended without an outcome")
                )
            job.release()  # the connection is back in the pool
        self._pump()

    # -- in a worker thread ----------------------------------------------------

    def _run(self, batch: list[Job]) -> None:
        with self._lock:  # a job cancelled after it was handed is dropped here
            started = [job for job in batch if job.state is JobState.HANDED]
            for job in started:
                job.state = JobState.STARTED
        if not started:
            return
        items = [(job.envelope, job.data) for job in started]

        def post(job: Job, outcome: object) -> None:
            if job.on_late is not None and not self._loop.is_running():
                # A detached caller, and a loop stopped (maybe never run
                # again, then closed, which drops its callbacks): settle here.
                job.resolve_after_loop(outcome)
                return
            try:
                self._loop.call_soon_threadsafe(job.resolve, outcome)
            except RuntimeError:  # the loop closed under a running attempt
                job.resolve_after_loop(outcome)

        def on_result(index: int, outcome: SendResult | SMTPKitError) -> None:
            if 0 <= index < len(started):
                post(started[index], outcome)

        outcomes = batch_outcomes(
            self._transport, items, on_result if self._reports_results else None
        )
        for job, outcome in zip(started, outcomes, strict=True):
            post(job, outcome)
