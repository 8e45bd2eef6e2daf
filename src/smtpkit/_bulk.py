"""``send_many``'s machinery: batches on worker threads, results reported per message.

The mailer hands this module a function that sends one batch and reports each
message's final result the moment it is known (a pipelined batch learns them one
by one).  Here the input is read lazily into batches, the batches run on a thread
pool, and the caller's thread collects results in input order, calling
``on_progress`` once per message as soon as that message and all before it are
done: progress follows the deliveries instead of arriving in bursts per batch.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ._exceptions import SMTPKitError, TransportError
from ._reply import SMTPReply
from ._transports.base import SendResult, contract_breach

__all__ = [
    "MAX_BATCH",
    "BulkProgress",
    "Halt",
    "QuotaExceededError",
    "Report",
    "SendManyAbortedError",
    "send_in_batches",
]

logger = logging.getLogger("smtpkit")

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
    """``send_many`` stopped early because the caller's own code raised.

    The input iterable (a generator hitting a bad row, say) or the
    ``on_progress`` callback raised.  No further message was read; every message
    read before that was still sent, and ``results`` reports each of them, in
    input order, so nothing delivered goes unreported.  The caller's exception
    is the ``__cause__``.

    Attributes:
        results: One ``SendResult`` per message read before the failure.
    """

    def __init__(self, message: str, *, results: list[SendResult]) -> None:
        super().__init__(message)
        self.results = results


class QuotaExceededError(SendManyAbortedError):
    """``send_many`` stopped early: the server said the sending quota is spent.

    Nothing was sent after the refusal became known (no retry either: it would
    only spend the quota's next window).  ``results`` holds one result per
    message read, in input order: the ones refused for the quota carry the
    server's reply; the ones never sent have ``attempts == 0`` and an error
    saying so.  The messages after ``len(results)`` were not read.

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
        """The results of the messages read but never sent (``attempts == 0``)."""
        return [r for r in self.results if r.attempts == 0]


Halt = Callable[[SendResult], "QuotaExceededError | None"]
"""``halt(result)``: the error that ends the run after *result*, or None."""


class _Halted:
    """A run's "stop everything" switch, thrown by the first result that asks."""

    def __init__(self, halt: Halt | None) -> None:
        self._halt = halt
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

    def not_sent(self) -> SendResult:
        error = TransportError(f"not sent: send_many stopped ({self.error})")
        return SendResult(envelope=None, error=error, attempts=0)


class _Batch(Generic[T]):
    """One batch's messages and their results, filled in by the worker thread."""

    def __init__(self, items: list[T], halted: _Halted | None = None) -> None:
        self.halted = halted or _Halted(None)
        self.items = items  # emptied once sent: a run keeps only the results
        self.size = len(items)
        self.results: list[SendResult | None] = [None] * len(items)
        self._filled = threading.Condition()

    def report(self, index: int, result: SendResult) -> None:
        """Record the final result of message *index*; the first report wins."""
        with self._filled:
            if 0 <= index < len(self.results) and self.results[index] is None:
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


def _batches(messages: Iterator[T], workers: int, batch_size: int) -> Iterator[list[T]]:
    """Cut the input into batches, reading at most ``workers * batch_size`` ahead.

    Small inputs are spread over every worker instead of filling one batch.  When
    the input itself raises, the messages read before it are still yielded, then
    the error is raised: nothing taken from the caller is dropped unreported.
    """
    while True:
        chunk: list[T] = []
        failure: Exception | None = None
        try:
            chunk.extend(itertools.islice(messages, workers * batch_size))
        except Exception as exc:  # the caller's iterator, re-raised below
            failure = exc
        size = max(1, min(batch_size, -(-len(chunk) // workers)))
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]
        if failure is not None:
            raise failure
        if not chunk:
            return


def _run(send_batch: Callable[[list[T], Report], None], batch: _Batch[T]) -> None:
    """Run one batch; every message gets a result even when *send_batch* breaks."""
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


class _Collector(Generic[T]):
    """The caller's side of a run: results in input order, progress, and why the
    input stopped being read."""

    def __init__(
        self, on_progress: Callable[[BulkProgress], None] | None, total: int | None
    ) -> None:
        self.results: list[SendResult] = []
        self.failed = 0
        self.stop: tuple[str, Exception] | None = None
        self.window: collections.deque[tuple[Future[None], _Batch[T]]] = (
            collections.deque()
        )
        self.submitted: list[_Batch[T]] = []  # for the summary of an interrupted run
        self._on_progress = on_progress
        self._total = total

    def collect_oldest(self) -> None:
        """Collect the oldest batch's results; it leaves the window when done."""
        batch = self.window[0][1]
        for index in range(batch.size):
            result = batch.wait(index)
            self.failed += result.error is not None
            self.results.append(result)
            if self._on_progress is not None and self.stop is None:
                progress = BulkProgress(len(self.results), self.failed, self._total)
                try:
                    self._on_progress(progress)
                except Exception as exc:  # reported by send_in_batches
                    self.stop = ("on_progress", exc)
        self.window.popleft()


def send_in_batches(
    messages: Iterable[T],
    send_batch: Callable[[list[T], Report], None],
    *,
    workers: int,
    batch_size: int,
    on_progress: Callable[[BulkProgress], None] | None,
    interrupted: threading.Event | None = None,
    halt: Halt | None = None,
) -> list[SendResult]:
    """Send *messages* in batches on *workers* threads; results in input order.

    *send_batch* must call ``report(index, result)`` once per message of the
    batch, as early as it can.  The input is read at most ``2 * workers`` batches
    ahead of the results collected.  On ``KeyboardInterrupt`` (or any other
    ``BaseException``) *interrupted* is set, so that batches under way make no
    further retries; no new batch starts, and what was delivered is logged
    before the interrupt propagates.

    *halt* is asked about every result as soon as it is known; the first error
    it returns stops the run: no new batch starts, batches not started report
    their messages as not sent, and that error is raised with every result.

    Raises:
        SendManyAbortedError: *messages* or *on_progress* raised; what had been
            read was still sent, and the error's ``results`` reports it.
        QuotaExceededError: *halt* returned it.
    """
    run: _Collector[T] = _Collector(on_progress, _length(messages))
    halted = _Halted(halt)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smtpkit")
    try:
        batches = _batches(iter(messages), workers, batch_size)
        while run.stop is None and halted.error is None:
            try:
                items = next(batches)
            except StopIteration:
                break
            except Exception as exc:  # reported below
                run.stop = ("the input", exc)
                break
            batch = _Batch(items, halted)
            run.submitted.append(batch)
            run.window.append((pool.submit(_run, send_batch, batch), batch))
            if len(run.window) >= 2 * workers:
                run.collect_oldest()
        # Whatever was read is sent and reported, even after a failure.
        while run.window:
            run.collect_oldest()
    except BaseException as exc:
        # KeyboardInterrupt and the like: start nothing new, no more retries; let
        # the sends under way finish, then say what was delivered and give up.
        if interrupted is not None:
            interrupted.set()
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        finally:  # also when a second Ctrl-C cuts the wait short
            _log_interrupted(exc, run.submitted)
        raise
    pool.shutdown(wait=True)
    if run.stop is not None:
        raise _aborted(*run.stop, run.results)
    if halted.error is not None:
        halted.error.results = run.results
        raise halted.error
    return run.results


def _aborted(where: str, cause: Exception, results: list[SendResult]) -> Exception:
    msg = (
        f"send_many stopped after {len(results)} message(s): {where} raised "
        f"{type(cause).__name__}: {cause}"
    )
    error = SendManyAbortedError(msg, results=results)
    error.__cause__ = cause
    return error


def _length(messages: Iterable[object]) -> int | None:
    """``len(messages)`` for ``BulkProgress.total``; None when it has none."""
    if not isinstance(messages, Sized):
        return None
    try:
        length = len(messages)
    except Exception:  # a __len__ that raises is no reason to fail the run
        return None
    return length


def _log_interrupted(exc: BaseException, submitted: list[_Batch[T]]) -> None:
    """Count what an interrupted run delivered, so a rerun can avoid duplicates.

    Counted from every batch's result slots (not from what the caller's thread
    had collected), so the summary is right wherever the interrupt landed.  Every
    message delivered also has its own INFO line, with its Message-ID, in the
    ``smtpkit`` log.
    """
    results = [r for batch in submitted for r in batch.results if r is not None]
    delivered = sum(r.error is None for r in results)
    unsent = sum(batch.size for batch in submitted) - len(results)
    summary = (
        f"send_many interrupted by {type(exc).__name__}: {delivered} message(s) "
        f"delivered, {len(results) - delivered} failed, {unsent} not finished; the "
        "INFO lines of the smtpkit logger name each delivered Message-ID"
    )
    logger.warning("%s", summary)
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(summary)
