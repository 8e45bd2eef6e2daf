"""Bulk sending's parts: batches, their results, and the values callers see.

The mailer hands the engine (``_stream.BulkRun``) a function that sends one batch
and reports each message's final result the moment it is known (a pipelined batch
learns them one by one).  This module cuts the input into batches, runs one batch
so that every message gets a result whatever happens, and defines what callers
of ``send_many`` and ``send_iter`` get back: ``BulkProgress``,
``SendManyAbortedError``, ``QuotaExceededError`` and ``NotSentError``.  A run's
halt switch (``Halt``, ``_Halted``) sees every result as soon as it is known, and
the first one that asks stops the whole run (a spent quota).
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ._exceptions import SMTPKitError, TransportError
from ._reply import SMTPReply
from ._transports.base import SendResult, contract_breach

__all__ = [
    "MAX_BATCH",
    "Batch",
    "BatchReader",
    "BulkProgress",
    "Halt",
    "NotSentError",
    "QuotaExceededError",
    "Report",
    "SendManyAbortedError",
    "run_batch",
]

MAX_BATCH: Final = 32  # messages a worker pipelines on one connection per call

T = TypeVar("T")

Report = Callable[[int, SendResult], None]
"""``report(index, result)``: the final result of the batch's message *index*."""


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """Counters passed to ``send_many``'s ``on_progress`` after each message.

    Attributes:
        done: Messages finished so far, sent or failed.
        failed: Messages among ``done`` that failed (``result.error`` is set).
        total: How many messages were passed, when the input has a length (a
            list, a tuple); None for a generator or another plain iterable.
    """

    done: int
    failed: int
    total: int | None = None


class SendManyAbortedError(SMTPKitError):
    """A bulk send stopped early because the caller's own code raised.

    The input iterable (a generator hitting a bad row, say) or the
    ``on_progress`` callback raised.  No further message was read; every message
    read before that was still sent and reported, in input order, so nothing
    delivered goes unreported.  The caller's exception is the ``__cause__``.

    From ``send_many``, ``results`` holds one result per message read before the
    failure.  ``send_iter`` yields each of those results before raising this
    error, so there ``results`` is empty: it only ever holds results the caller
    has not been given.

    Attributes:
        results: The results of messages read but not yet handed to the caller,
            in input order.
    """

    def __init__(self, message: str, *, results: list[SendResult]) -> None:
        super().__init__(message)
        self.results = results


class NotSentError(TransportError):
    """The message was never handed to the server: its bulk send stopped first.

    A ``send_iter`` stream closed early, or a ``KeyboardInterrupt``, stops a bulk
    send; the messages it had read but not yet started (or that were waiting for
    the rate limit) get a result with this error and ``attempts == 0``.  Sending
    such a message again cannot make a duplicate.
    """

    transient_default = True  # nothing was tried: a later send may well succeed


class QuotaExceededError(SendManyAbortedError):
    """A bulk send stopped early: the server said the sending quota is spent.

    Nothing is retried or started after the quota reply (a retry would only
    spend the quota's next window): batches already on the wire finish their
    current pipelined write, and the messages of theirs that needed a retry keep
    their first attempt's outcome.  From ``send_many``, ``results`` holds one result per
    message read, in input order: the ones refused for the quota carry the
    server's reply; the ones never sent have a ``NotSentError`` and
    ``attempts == 0`` (:attr:`unsent`).  The messages after ``len(results)``
    were not read.  ``send_iter`` yields every one of those results before
    raising this error, so there ``results`` is empty.

    Attributes:
        reply: The server's quota reply.
        resume_after: Seconds after which the provider says (or documents) that
            sending may resume; None when it does not say.
    """

    def __init__(
        self,
        message: str,
        *,
        results: list[SendResult],
        reply: SMTPReply | None = None,
        resume_after: float | None = None,
    ) -> None:
        super().__init__(message, results=results)
        self.reply = reply
        self.resume_after = resume_after

    @property
    def unsent(self) -> list[SendResult]:
        """The results of the messages read but never sent (``NotSentError``).

        Each has ``attempts == 0``; sending it again cannot make a duplicate.
        """
        return [r for r in self.results if isinstance(r.error, NotSentError)]


Halt = Callable[[SendResult], "QuotaExceededError | None"]
"""``halt(result)``: the error that ends the run after *result*, or None."""


class _Halted:
    """A run's "stop everything" switch, thrown by the first result that asks.

    *name* is the public method (``send_many``, ``send_iter``), for the error
    of the messages the stop leaves unsent.  Throwing it sets *interrupted*, the
    run's event that the batches under way obey: no retry, no wait for the rate
    limit and no new first attempt starts after it.
    """

    def __init__(
        self,
        halt: Halt | None,
        name: str = "send_many",
        interrupted: threading.Event | None = None,
    ) -> None:
        self._halt = halt
        self._name = name
        self._interrupted = interrupted
        self.error: QuotaExceededError | None = None
        self._lock = threading.Lock()

    def check(self, result: SendResult) -> None:
        if self._halt is None or self.error is not None:
            return
        error = self._halt(result)
        if error is not None:
            with self._lock:
                if self.error is None:
                    self.error = error
            if self._interrupted is not None:
                self._interrupted.set()

    def not_sent(self) -> SendResult:
        error = NotSentError(f"not sent: {self._name} stopped ({self.error})")
        return SendResult(envelope=None, error=error, attempts=0)


class Batch(Generic[T]):
    """One batch's messages and their results, filled in by the worker thread.

    A batch either starts (:meth:`start`, in the worker) or is cancelled
    (:meth:`cancel`, by a run that stops), never both: a stop knows, without
    asking the thread pool, whether a batch may have reached the server.
    """

    def __init__(self, items: list[T], halted: _Halted | None = None) -> None:
        self.halted = halted or _Halted(None)
        self.items = items  # emptied once sent: a run keeps only the results
        self.size = len(items)
        self.results: list[SendResult | None] = [None] * len(items)
        self.handed_over = 0  # results the caller has been given, from the first
        self.started = False
        self.cancelled = False
        self._filled = threading.Condition()

    def start(self) -> bool:
        """Claim the batch for sending; False once it was cancelled."""
        with self._filled:
            self.started = not self.cancelled
            return self.started

    def cancel(self) -> bool:
        """Keep the batch from ever starting; False once it has started."""
        with self._filled:
            self.cancelled = not self.started
            return self.cancelled

    def wait_all(self) -> None:
        """Block until every message of a started batch has its result."""
        with self._filled:
            self._filled.wait_for(lambda: None not in self.results)

    def report(self, index: int, result: SendResult) -> None:
        """Record the final result of message *index*; the first report wins.

        A recorded result is then shown to the run's halt switch, which may
        stop the whole run (a spent quota).
        """
        with self._filled:
            if not (0 <= index < len(self.results) and self.results[index] is None):
                return
            self.results[index] = result
            self._filled.notify_all()
        self.halted.check(result)

    def wait(self, index: int) -> SendResult:
        """Block until message *index* has its result, and return it."""
        with self._filled:
            self._filled.wait_for(lambda: self.results[index] is not None)
            result = self.results[index]
        assert result is not None  # noqa: S101 - waited for above
        return result


class BatchReader(Generic[T]):
    """Cuts the input into batches, reading at most ``workers * batch_size`` ahead.

    Small inputs are spread over every worker instead of filling one batch.  When
    the input itself raises, the batches read before it still come out first,
    then the error is raised; and a run that stops early takes back whatever was
    read but not handed out (:meth:`drain`): nothing taken from the caller is
    dropped unreported.
    """

    def __init__(self, messages: Iterator[T], *, workers: int, batch_size: int) -> None:
        self._messages = messages
        self._workers = workers
        self._batch_size = batch_size
        self._pending: collections.deque[list[T]] = collections.deque()
        self._failure: Exception | None = None
        self._exhausted = False

    def next_batch(self) -> list[T] | None:
        """The next batch, or None once the input is exhausted.

        Raises:
            Exception: What the input raised, after every batch read before it.
        """
        if not self._pending and not self._exhausted:
            self._read()
        if self._pending:
            return self._pending.popleft()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return None

    def unread(self, items: list[T]) -> None:
        """Put back a batch taken but not started; it comes out first again."""
        self._pending.appendleft(items)

    def drain(self) -> list[list[T]]:
        """Take back the batches read but not handed out, and read no more."""
        self._exhausted = True
        self._failure = None
        pending = list(self._pending)
        self._pending.clear()
        return pending

    def _read(self) -> None:
        chunk: list[T] = []
        batches: list[list[T]] = []
        try:
            try:
                chunk.extend(
                    itertools.islice(self._messages, self._workers * self._batch_size)
                )
            except Exception as exc:  # the caller's iterator, raised by next_batch
                self._failure = exc
                self._exhausted = True
            batches = _split(chunk, self._workers, self._batch_size)
            self._pending.extend(batches)  # stored in one step, once split
        except BaseException:  # Ctrl-C while reading, splitting or storing
            stored = bool(batches) and bool(self._pending)
            if chunk and not (stored and self._pending[-1] is batches[-1]):
                self._pending.append(chunk)  # from the caller: drain() reports it
            raise
        if not chunk:
            self._exhausted = True


def _split(chunk: list[T], workers: int, batch_size: int) -> list[list[T]]:
    """*chunk* in batches spread over *workers*, at most *batch_size* each.

    A function of its own, so that ``_read`` has no loop between reading and
    storing: Python 3.12+ inlines a comprehension into its caller, and on 3.13
    a ``KeyboardInterrupt`` injected (by a trace function, as the tests do) in
    that inlined loop skipped ``_read``'s handler and lost the chunk.
    """
    size = max(1, min(batch_size, -(-len(chunk) // workers)))
    return [chunk[i : i + size] for i in range(0, len(chunk), size)]


def run_batch(send_batch: Callable[[list[T], Report], None], batch: Batch[T]) -> None:
    """Run one batch; every message gets a result even when *send_batch* breaks.

    A batch cancelled by a stop before its worker reached it is not run: the
    stop reports its messages as not sent.
    """
    if not batch.start():
        return
    failure: Exception = RuntimeError("the batch ended without a result")
    try:
        if batch.halted.error is not None:  # stopped before this batch began
            for index in range(batch.size):
                batch.report(index, batch.halted.not_sent())
        else:
            send_batch(batch.items, batch.report)
    except Exception as exc:  # a bug: still one result per message read
        failure = exc
    finally:
        for index in range(batch.size):
            batch.report(
                index,
                SendResult(envelope=None, error=contract_breach(failure), attempts=0),
            )
        batch.items = []
