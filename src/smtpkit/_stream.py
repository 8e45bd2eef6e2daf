"""The bulk engine: batches on worker threads, results handed over in input order.

``Mailer.send_iter`` returns a :class:`SendStream` over a :class:`BulkRun`;
``Mailer.send_many`` is a list of one.  The run reads the input lazily into
batches, keeps at most ``2 * workers`` of them in flight, and hands each result
over as soon as it and every result before it are known.  Once handed over, a
result is the caller's alone: the run keeps only its window, so memory does not
grow with the number of messages.

Stopping early (the caller closes the stream, breaks out of a ``with`` block, the
stream is garbage-collected, or Ctrl-C) goes through one path, :meth:`BulkRun.stop`:
read nothing more, start nothing new, retry nothing, wait for the sends already
on the wire, and account for every message read but not handed over.  It runs
only in the consuming thread and never while the generator runs: a ``close()``
from ``on_progress``, a signal handler or another thread only raises a flag
(:meth:`BulkRun.request_stop`) that the consumer acts on at its next step.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from typing_extensions import Self

from ._bulk import (
    Batch,
    BatchReader,
    BulkProgress,
    Halt,
    NotSentError,
    Report,
    SendManyAbortedError,
    _Halted,
    run_batch,
)
from ._exceptions import TransportError
from ._transports.base import SendResult

__all__ = ["BulkRun", "SendStream"]

logger = logging.getLogger("smtpkit")

T = TypeVar("T")


class BulkRun(Generic[T]):
    """One bulk send: its input, its worker threads, and the results in flight.

    Args:
        messages: The caller's input; read lazily, one batch at a time.
        send_batch: Sends one batch; must call ``report(index, result)`` once per
            message, as early as it can.
        name: The public method, for log lines and error messages.
        workers: Threads sending at once.
        batch_size: Messages per batch.
        on_progress: Called in the consuming thread once per result.
        interrupted: Set when the run stops early, so that batches under way
            make no further retries and send nothing still waiting for the rate
            limit.
        halt: Asked about every result as soon as it is known; the first error
            it returns stops the run (see :meth:`results`).
    """

    def __init__(
        self,
        messages: Iterable[T],
        send_batch: Callable[[list[T], Report], None],
        *,
        name: str,
        workers: int,
        batch_size: int,
        on_progress: Callable[[BulkProgress], None] | None,
        interrupted: threading.Event,
        halt: Halt | None = None,
    ) -> None:
        self.total = _length(messages)
        self._reader = BatchReader(
            iter(messages), workers=workers, batch_size=batch_size
        )
        self._send_batch = send_batch
        self._name = name
        self._workers = workers
        self._on_progress = on_progress
        self._interrupted = interrupted
        self._halted = _Halted(halt, name, interrupted)
        self._window: collections.deque[Batch[T]] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None
        self._abort: tuple[str, Exception] | None = None  # why reading stopped
        self._over = False
        # Set by request_stop() from anywhere (on_progress, a signal handler,
        # another thread); only the consuming thread acts on it, at its next step.
        self.stop_requested = False
        self.done = 0  # results handed over
        self.failed = 0  # of which failed
        self.leftover: list[SendResult] = []
        self.unfinished = 0  # leftover still being sent when a 2nd Ctrl-C came

    def request_stop(self, *, interrupt: bool) -> None:
        """Ask the consuming thread to stop the run at its next step.

        Safe from any thread and from a signal handler: it only sets a flag,
        which reading and handing over check.  With *interrupt*, the batches
        under way also stop retrying at once; a signal handler must not ask
        for it (it sets a ``threading.Event``, which is not reentrant).
        """
        self.stop_requested = True
        if interrupt:
            self._interrupted.set()

    def results(self) -> Generator[SendResult, None, None]:
        """Yield one result per message, in input order, as each is known.

        When *halt* stops the run, nothing more is read and no batch starts;
        the batches under way finish, and every message read but not started
        is yielded with a ``NotSentError`` before the halt's error is raised.
        After :meth:`request_stop`, the next step stops the run (see
        :meth:`stop`) and ends the iteration.

        Raises:
            SendManyAbortedError: The input or *on_progress* raised; every
                message read before was still sent, and its result yielded.
            QuotaExceededError: *halt* stopped the run; every message read was
                accounted for in a result yielded before, so ``results`` is
                empty.
        """
        pool = self._pool = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="smtpkit"
        )
        try:
            while True:
                self._fill(pool)
                if not self._window or self.stop_requested:
                    break
                batch = self._window[0]
                index = batch.handed_over
                if index == batch.size:
                    self._window.popleft()
                    continue
                result = batch.wait(index)
                failed = self.failed + (result.error is not None)
                self._report_progress(failed)
                # The bookkeeping is one statement with no call in it, right
                # before the yield: CPython runs signal handlers only at calls,
                # backward jumps and resumptions, so a Ctrl-C cannot land
                # between a result counted as handed over and its hand-over.
                batch.handed_over, self.done, self.failed = (
                    index + 1,
                    self.done + 1,
                    failed,
                )
                yield result
        except BaseException as exc:  # closed early, Ctrl-C, ...: see stop()
            self.stop(None if isinstance(exc, GeneratorExit) else exc)
            raise
        if self.stop_requested:
            self.stop(None)
            return
        self._over = True
        pool.shutdown(wait=True)
        if self._abort is not None:
            where, cause = self._abort
            msg = (
                f"{self._name} stopped after {self.done} message(s): {where} "
                f"raised {type(cause).__name__}: {cause}"
            )
            raise SendManyAbortedError(msg, results=[]) from cause
        if self._halted.error is not None:
            self._halted.error.results = []
            raise self._halted.error

    def stop(self, cause: BaseException | None = None) -> list[SendResult]:
        """Stop early, and account for every message read but not handed over.

        Nothing more is read and no batch starts; batches under way make no
        further retries and send nothing still waiting for the rate limit, and
        their first attempts (already on the wire) are waited for, so each
        message's fate is known.  Idempotent; a no-op once every result was
        handed over.  Call it only from the consuming thread, never while
        :meth:`results` is running (use :meth:`request_stop` there).

        Args:
            cause: What stopped the run (Ctrl-C, the caller's exception), or
                None for a plain close.

        Returns:
            ``leftover``: one result per message read but not handed over, in
            input order.  A message never handed to the transport has a
            ``NotSentError``.
        """
        if self._over:
            return self.leftover
        self._over = True
        self.stop_requested = True
        self._interrupted.set()
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            # Each batch in the window either never starts or is waited for,
            # whatever the pool did with it (even a Ctrl-C inside submit()).
            for batch in self._window:
                if not batch.cancel():
                    batch.wait_all()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        finally:  # also when a second Ctrl-C cuts the wait short
            self.leftover = self._uncollected()
            self._window.clear()
            _log_stop(self._name, cause, self)
        return self.leftover

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        """Read and start batches until ``2 * workers`` are in flight.

        Once halted, nothing more is read: the batches already read join the
        window at once, and each reports its messages as not sent.  Once a stop
        is requested, nothing more is read or started.
        """
        if self._halted.error is not None:
            for read in self._reader.drain():
                self._start(pool, read)
            return
        while self._abort is None and len(self._window) < 2 * self._workers:
            try:
                items = self._reader.next_batch()
            except Exception as exc:  # the caller's iterator: reported at the end
                self._abort = ("the input", exc)
                return
            if items is None:
                return
            if self.stop_requested:  # asked while the input was being read
                self._reader.unread(items)
                return
            self._start(pool, items)

    def _start(self, pool: ThreadPoolExecutor, items: list[T]) -> None:
        batch = Batch(items, self._halted)
        # In the window before it is submitted: stop() accounts for a batch
        # even when a Ctrl-C lands inside submit() (which starts a thread).
        self._window.append(batch)
        # A copy of the consuming thread's context as it is now, when the batch
        # is read: hooks in the worker see the caller's current span (of the
        # iteration, not of the send_iter() call that made the stream).
        pool.submit(contextvars.copy_context().run, run_batch, self._send_batch, batch)

    def _report_progress(self, failed: int) -> None:
        if self._on_progress is None or self._abort is not None:
            return
        try:
            self._on_progress(BulkProgress(self.done + 1, failed, self.total))
        except Exception as exc:  # raised once every result is handed over
            self._abort = ("on_progress", exc)

    def _uncollected(self) -> list[SendResult]:
        """The results of every message read but not handed over, in input order."""
        leftover: list[SendResult] = []
        for batch in self._window:
            for index in range(batch.handed_over, batch.size):
                result = batch.results[index]
                if result is None:
                    error = self._unfinished(batch)
                    # attempts == 0 promises "never on the wire": not for these.
                    attempts = 0 if isinstance(error, NotSentError) else 1
                    result = SendResult(envelope=None, error=error, attempts=attempts)
                leftover.append(result)
        for items in self._reader.drain():
            leftover.extend(
                SendResult(envelope=None, error=self._not_sent(), attempts=0)
                for _ in items
            )
        return leftover

    def _not_sent(self) -> NotSentError:
        return NotSentError(f"not sent: {self._name} stopped before its turn")

    def _unfinished(self, batch: Batch[T]) -> TransportError:
        if batch.cancelled or batch.cancel():  # its batch never started
            return self._not_sent()
        # A second Ctrl-C cut short the wait for a batch under way: an attempt
        # was on its way, so the message may have been delivered.
        self.unfinished += 1
        return TransportError(
            f"{self._name} was interrupted while this message was being sent",
            delivery_unknown=True,
        )


class _Engine(Protocol):
    """What a :class:`SendStream` needs of its run (any ``BulkRun[T]``)."""

    total: int | None
    done: int
    failed: int
    leftover: list[SendResult]
    unfinished: int
    stop_requested: bool

    def results(
        self,
    ) -> Generator[SendResult, None, None]: ...  # pragma: no cover - a Protocol

    def request_stop(  # pragma: no cover - a Protocol
        self, *, interrupt: bool
    ) -> None: ...

    def stop(  # pragma: no cover - a Protocol
        self, cause: BaseException | None = None
    ) -> list[SendResult]: ...


class SendStream(Iterator[SendResult]):
    """The results of ``Mailer.send_iter``: one per message, in input order.

    Each result is yielded as soon as it and every one before it are known, and
    the stream keeps none of them: memory stays flat however many messages go
    through.  At most ``2 * concurrency`` batches are in flight, and the input
    is read no further ahead than that.

    Stopping early: leaving a ``with`` block (``break``, ``return``, an exception
    of yours, Ctrl-C), calling :meth:`close`, or dropping the stream
    (garbage collection) reads nothing more and starts nothing new.  Sends
    already on the wire finish their current attempt (no retries), and every
    message read but not yielded gets its result in :attr:`leftover`, in input
    order: delivered, failed, or ``NotSentError`` when it never reached the
    server.  A WARNING on the ``smtpkit`` logger counts them.  Use ``with``: a
    stream left unclosed and still referenced keeps its threads until it is
    closed or collected.

    Thread safety: one thread iterates.  :meth:`close` may be called from any
    thread, from ``on_progress`` and from a signal handler (a SIGTERM graceful
    shutdown); each message is still reported exactly once, yielded or in
    :attr:`leftover`.

    A spent quota (``SMTPConfig.adapt.stop_on_quota``) stops the run from the
    server's side: nothing more is read, every message read is still yielded
    (``NotSentError`` for those never sent), then ``QuotaExceededError`` is
    raised.
    """

    def __init__(self, run: _Engine) -> None:
        self._run = run
        self._results = run.results()
        # Who is stepping or stopping the run.  Reentrant, so that a signal
        # handler calling close() in the middle of __next__ cannot deadlock.
        self._turn = threading.Condition(threading.RLock())
        self._owner: int | None = None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> SendResult:
        me = threading.get_ident()
        with self._turn:
            if self._owner == me:  # next() from on_progress: Python's ValueError
                return next(self._results)
            self._turn.wait_for(lambda: self._owner is None)
            self._owner = me
        try:
            if self._run.stop_requested:  # close() was asked for meanwhile
                self._stop_now(None)
            return next(self._results)
        finally:
            self._release()

    @property
    def progress(self) -> BulkProgress:
        """How many results were yielded so far, and how many of them failed."""
        return BulkProgress(self._run.done, self._run.failed, self._run.total)

    @property
    def leftover(self) -> list[SendResult]:
        """After an early stop, the results of messages read but not yielded.

        In input order; they follow the last result yielded.  Empty until the
        stream is stopped early, and when it ran to its end.
        """
        return self._run.leftover

    def close(self) -> None:
        """Stop early (see the class docstring); idempotent; never raises.

        When no ``next()`` is running, it stops the stream itself: it waits for
        the sends already on the wire, so it may take as long as one attempt;
        afterwards :attr:`leftover` is set and iteration ends.

        When a ``next()`` is running (``close()`` from ``on_progress``, from a
        signal handler, or from another thread while the consumer iterates), it
        only asks the iterating thread to stop, and returns at once: the result
        being fetched is still yielded, then the next ``next()`` stops the
        stream (as above), sets :attr:`leftover` and ends the iteration.  From
        another thread, it also stops the retries of the batches under way at
        once.  To know when the stop is complete, wait for the consuming
        thread's loop (or its ``with`` block) to end.
        """
        self._stop(None, wait=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop(exc, wait=True)

    def _stop(self, cause: BaseException | None, *, wait: bool) -> None:
        """Stop now if no one else is stepping the run; otherwise ask for it.

        With *wait* (leaving the ``with`` block), a stop in another thread is
        waited for, so that :attr:`leftover` is set when the block ends.
        """
        me = threading.get_ident()
        with self._turn:
            if self._owner == me:  # inside next(): on_progress, a signal handler
                self._run.request_stop(interrupt=False)
                return
            if self._owner is not None:  # another thread steps or stops the run
                self._run.request_stop(interrupt=True)
                if not wait:
                    return
                self._turn.wait_for(lambda: self._owner is None)
            self._owner = me
        try:
            self._stop_now(cause)
        finally:
            self._release()

    def _stop_now(self, cause: BaseException | None) -> None:
        self._run.request_stop(interrupt=False)
        self._run.stop(cause)
        self._results.close()  # ends iteration; the run is already stopped

    def _release(self) -> None:
        with self._turn:
            self._owner = None
            self._turn.notify_all()


def _length(messages: Iterable[object]) -> int | None:
    """``len(messages)`` for ``BulkProgress.total``; None when it has none."""
    if not isinstance(messages, Sized):
        return None
    try:
        length = len(messages)
    except Exception:  # a __len__ that raises is no reason to fail the run
        return None
    return length


def _log_stop(name: str, cause: BaseException | None, run: _Engine) -> None:
    """Say what a run that stopped early delivered, so a rerun can avoid duplicates.

    An interrupt (Ctrl-C, ``SystemExit``) is always logged, and the summary is
    added to it as a note (Python 3.11+); a close or an exception of the caller's
    is logged when some results were not handed over.  Every message delivered
    also has its own INFO line, with its Message-ID, in the ``smtpkit`` log.
    """
    leftover, unknown = run.leftover, run.unfinished
    interrupt = cause is not None and not isinstance(cause, Exception)
    if not interrupt and not leftover:
        return
    not_sent = sum(isinstance(r.error, NotSentError) for r in leftover)
    delivered = run.done - run.failed + sum(r.error is None for r in leftover)
    failed = run.done + len(leftover) - delivered - not_sent - unknown
    if cause is None:
        how = "closed early"
    elif interrupt:
        how = f"interrupted by {type(cause).__name__}"
    else:
        how = f"stopped by {type(cause).__name__}"
    summary = (
        f"{name} {how}: {delivered} message(s) delivered, {failed} failed, "
        f"{not_sent} not sent, {unknown} not finished; {len(leftover)} result(s) "
        "not handed over; the INFO lines of the smtpkit logger name each "
        "delivered Message-ID"
    )
    logger.warning("%s", summary)
    if interrupt and cause is not None and hasattr(cause, "add_note"):  # Python 3.11+
        cause.add_note(summary)
