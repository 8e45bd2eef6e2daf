"""`Mailer`: turns messages into envelopes and bytes and sends them with retries."""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from types import TracebackType

from typing_extensions import Self

from ._attempt import Attempt, Prepared
from ._bulk import MAX_BATCH, BulkProgress, Report, SendManyAbortedError
from ._config import SMTPConfig
from ._delivery import (
    batch_outcomes,
    concluded,
    ended_with,
    failed_result,
    is_settled,
)
from ._exceptions import (
    ClosedError,
    ConfigurationError,
    InvalidMessageError,
    SMTPKitError,
)
from ._hooks import HookRunner, Hooks
from ._mailer_args import (
    check_arguments,
    id_domain,
    max_concurrency,
    positive_int,
    transport_for,
)
from ._message import Envelope
from ._outcomes import (
    Interrupted,
    adaptation_of,
    callback_error,
    checked,
    delivered_at_once,
    invalid,
    not_sent,
    quota_spent,
    takes_on_result,
    unretried,
)
from ._prepare import BulkItem, Sendable, prepare, sign_prepared
from ._ratelimit import RateLimit, TokenBucket
from ._retry import (
    DEFAULT_RETRY_POLICY,
    RetryHook,
    RetryPolicy,
    SleepFn,
    run_with_retries,
)
from ._signing import MessageSigner, check_signer, interrupted_in_worker
from ._stream import BulkRun, SendStream
from ._transports.base import SendResult, Transport
from ._verify_report import VerifyReport

__all__ = ["BulkItem", "BulkProgress", "Mailer", "Sendable"]

logger = logging.getLogger("smtpkit")


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class Mailer:
    """Send messages through a transport, applying the retry policy to each one.

    Safe to share between threads: the SMTP transport lends each thread its own
    pooled connection.  The first send opens the mailer; a closed mailer stays
    closed.  The mailer owns its transport and closes it.

    Args:
        config: Server settings; builds an ``SMTPTransport``.
        transport: Any transport instead of *config* (``FakeTransport`` in tests).
        retry: When to retry; ``RetryPolicy.never()`` disables retries.
        rate_limit: Messages per second across all threads, or None.
        on_retry: Called before each wait between attempts.
        hooks: Callables run around each message (before, after, on retry,
            on failure); see ``Hooks``.
        sleep: Waits between attempts and for the rate limit (injectable).
        clock: Monotonic clock in seconds (injectable).
        rng: Source of jitter (inject ``random.Random(seed)`` in tests).
        message_id_domain: The domain of the Message-IDs generated for
            ``Message`` objects without one (``<...@mail.example.com>``); by
            default the sender's domain, which for a ``@gmail.com`` sender tells
            the world the id did not come from Gmail.  Unicode is IDNA-encoded.
        signer: Signs each message's final bytes, the ones sent after DATA
            (``smtpkit.contrib.dkim.DKIMSigner``); its header fields go first.

    Raises:
        TypeError: *config* is not an ``SMTPConfig`` (a transport or a URL passed
            positionally), *transport* is not a ``Transport``, or *signer* has
            no ``sign`` method; the message says what to pass instead.
        ConfigurationError: Neither or both of *config* and *transport* are
            given, or *message_id_domain* is not a domain name.
    """

    def __init__(
        self,
        config: SMTPConfig | None = None,
        *,
        transport: Transport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_limit: RateLimit | None = None,
        on_retry: RetryHook | None = None,
        hooks: Hooks | None = None,
        sleep: SleepFn = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        message_id_domain: str | None = None,
        signer: MessageSigner | None = None,
    ) -> None:
        check_arguments(config, transport)
        self._signer = check_signer(signer)
        self._id_domain = (
            None if message_id_domain is None else id_domain(message_id_domain)
        )
        transport = transport_for(config, transport)
        self._transport = transport
        self._reports_results = takes_on_result(transport)
        self._adapt = adaptation_of(transport)
        self.retry = retry
        self._bucket = (
            TokenBucket(rate_limit, sleep=sleep, clock=clock) if rate_limit else None
        )
        self._on_retry = on_retry
        self._hooks = HookRunner(hooks) if hooks else None
        self._worker_hooks = self._hooks.in_workers() if self._hooks else None
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._state = _State.UNOPENED
        self._state_lock = threading.Lock()

    @property
    def transport(self) -> Transport:
        """The transport this mailer sends through."""
        return self._transport

    def __repr__(self) -> str:
        return f"<Mailer {self._transport!r} {self._state.name.lower()}>"

    # -- lifecycle --------------------------------------------------------------

    def open(self) -> None:
        """Open the transport now instead of at the first send.

        Raises:
            ClosedError: The mailer was closed.
        """
        with self._state_lock:
            if self._state is _State.CLOSED:
                msg = "this Mailer is closed; create a new one"
                raise ClosedError(msg)
            if self._state is _State.UNOPENED:
                self._transport.open()
                self._state = _State.OPENED

    def close(self) -> None:
        """Close the transport (QUIT pooled connections); idempotent."""
        with self._state_lock:
            if self._state is _State.CLOSED:
                return
            self._state = _State.CLOSED
        self._transport.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def verify(self) -> VerifyReport:
        """Check the settings: open one session as a send would, then QUIT it.

        On a connection of its own (not the pool's), unopened mailers included;
        no mail is sent and nothing is retried.

        Raises:
            ClosedError: The mailer was closed.
            TransportError: What a send's connection set-up would have met
                (``ConnectError``, ``TLSError``, ``AuthenticationError``...).
        """
        if self._state is _State.CLOSED:
            msg = "this Mailer is closed; create a new one"
            raise ClosedError(msg)
        return self._transport.verify()

    # -- sending ----------------------------------------------------------------

    def send(
        self, message: Sendable, *, envelope: Envelope | None = None
    ) -> SendResult:
        """Send one message, retrying transient failures per the policy.

        Args:
            message: A ``Message``, a pre-built ``EmailMessage``, or raw bytes.
            envelope: MAIL FROM / RCPT TO; derived from the headers when omitted
                (required for raw bytes).  The Bcc header is never transmitted.

        Returns:
            The result.  When some recipients were refused it lists them in
            ``refused``; it is only an exception when nothing was delivered.

        Raises:
            InvalidMessageError: No recipient, or raw bytes without an envelope.
            SigningError: The mailer's signer failed; nothing was sent.
            TransportError: Nothing was delivered; ``attempts`` and ``history``
                tell what was tried.
            ClosedError: The mailer was closed.
        """
        if self._state is not _State.OPENED:
            self.open()
        try:
            prepared = self._prepare(message, envelope)
        except SMTPKitError:
            raise
        except Exception as exc:
            raise invalid(exc) from exc
        if self._hooks is None or prepared.event is None:
            return self._deliver(prepared)
        return self._hooks.around(prepared.event, partial(self._deliver, prepared))

    def send_many(
        self,
        messages: Iterable[BulkItem],
        *,
        concurrency: int | None = None,
        on_progress: Callable[[BulkProgress], None] | None = None,
    ) -> list[SendResult]:
        """Send many messages concurrently; never raises for one bad message.

        Each worker thread gets a batch of up to 32 messages and sends them on one
        pooled connection, pipelined when the server offers PIPELINING (about one
        round trip per message).  The iterable is consumed lazily, at most
        ``2 * concurrency`` batches ahead.  Retries happen per message, as with
        :meth:`send`.  The returned list grows with the input (about 1 KB per
        message); for a large campaign use :meth:`send_iter`, which keeps none.

        Args:
            messages: Messages, or ``(message, envelope)`` pairs; a bare message
                gets its envelope from its headers (raw bytes need a pair).
            concurrency: Threads sending at once; defaults to the transport's
                ``max_concurrency`` (for ``SMTPTransport``, its pool size).
            on_progress: Called in the caller's thread, in input order, once per
                message as soon as it and every message before it are finished
                (not once per batch); ``total`` is set when *messages* has a length.

        Returns:
            One result per message, in input order; failed ones have ``error`` set.
            A ``close()`` meanwhile fails only the messages not yet sent.

        Raises:
            ClosedError: The mailer was closed.
            ConfigurationError: The transport's ``max_concurrency`` is not a
                positive integer.
            SendManyAbortedError: *messages* or *on_progress* raised.  Nothing more
                was read; what had been read was still sent, and the error's
                ``results`` reports it, so nothing delivered goes unreported.
            QuotaExceededError: The server said the sending quota is spent
                (``SMTPConfig.adapt.stop_on_quota``); nothing more was sent, and
                ``results`` reports every message read, the unsent ones marked.
        """
        results: list[SendResult] = []
        stream = self._stream(messages, concurrency, on_progress, name="send_many")
        with stream:
            try:
                for result in stream:
                    results.append(result)
            except SendManyAbortedError as exc:
                exc.results = [*results, *exc.results]
                raise
        return results

    def send_iter(
        self,
        messages: Iterable[BulkItem],
        *,
        concurrency: int | None = None,
        on_progress: Callable[[BulkProgress], None] | None = None,
    ) -> SendStream:
        """Send many messages like :meth:`send_many`, yielding results as they come.

        The results come one per message, in input order, each as soon as it and
        every one before it are known, and none is kept: memory stays flat for a
        campaign of any size.  Everything :meth:`send_many` promises holds, and
        stopping early is defined: leaving the ``with`` block (``break``, an
        exception, Ctrl-C) or ``close()`` reads nothing more and starts nothing
        new, lets the sends already on the wire finish their current attempt,
        and puts the result of every message read but not yielded in the
        stream's ``leftover`` (``NotSentError`` for those never sent).
        ``close()`` is safe from ``on_progress``, a signal handler or another
        thread: while a ``next()`` runs, it asks the iterating thread to stop
        at its next step and returns at once (see ``SendStream.close``).

        The input is read only from the iterating thread, in chunks of
        ``workers * 32`` messages (``workers`` threads; with a rate limit,
        ``workers`` messages): a chunk is read whole, or to the end of the
        input, before any of it is sent, and the next one when fewer than
        ``2 * workers`` batches are in flight.  A live input (a blocking
        queue) thus holds a message until its chunk fills or the input ends;
        a producer waiting for the result of a message it already yielded
        waits forever.

        Args:
            messages: As for :meth:`send_many`; read lazily, at most
                ``2 * concurrency`` batches ahead of the results yielded.
            concurrency: As for :meth:`send_many`.
            on_progress: As for :meth:`send_many`.

        Returns:
            A ``SendStream``: an iterator of ``SendResult`` and a context manager.
            Nothing is read or sent until the first result is asked for.

        Raises:
            ClosedError: The mailer was closed.
            ConfigurationError: The transport's ``max_concurrency`` is not a
                positive integer.
            SendManyAbortedError: From the iteration, after the last result:
                *messages* or *on_progress* raised.  Every message read before
                was sent and its result yielded.
            QuotaExceededError: From the iteration, after the last result: as
                for :meth:`send_many`, but every message read was yielded (those
                never sent with a ``NotSentError``), so ``results`` is empty.
        """
        return self._stream(messages, concurrency, on_progress, name="send_iter")

    def _stream(
        self,
        messages: Iterable[BulkItem],
        concurrency: int | None,
        on_progress: Callable[[BulkProgress], None] | None,
        *,
        name: str,
    ) -> SendStream:
        if self._state is not _State.OPENED:
            self.open()
        if concurrency is not None and not positive_int(concurrency):
            msg = f"{name}(concurrency=...) must be a positive int, not {concurrency!r}"
            raise ConfigurationError(msg)
        limit = max_concurrency(self._transport)
        interrupted = threading.Event()
        send_batch = partial(self._send_batch, interrupted=interrupted)
        run = BulkRun(
            messages,
            send_batch,
            name=name,
            # More threads than the transport can serve would only queue for a
            # connection (and SMTPTransport's pool would time them out).
            workers=limit if concurrency is None else min(concurrency, limit),
            # A rate limit spaces messages out, so batching would only add bursts.
            batch_size=1 if self._bucket is not None else MAX_BATCH,
            on_progress=on_progress,
            interrupted=interrupted,
            halt=partial(quota_spent, name=name) if self._adapt.stop_on_quota else None,
        )
        return SendStream(run)

    def _send_batch(
        self, messages: list[BulkItem], report: Report, interrupted: threading.Event
    ) -> None:
        """First attempts of a batch in one transport call, then per-message retries.

        A message is reported as soon as its first attempt settles it (delivered,
        or failed for good), while the transport is still busy with the rest; the
        ones to retry are retried and reported after the batch, unless the run
        was *interrupted* meanwhile: then they keep their first attempt's outcome.
        """
        ready: list[tuple[int, Prepared]] = []
        for index, bulk_item in enumerate(messages):
            if isinstance(bulk_item, InvalidMessageError):
                # A stand-in for a message: reported as it is, never raised, so
                # its __traceback__ does not hold this frame (and the batch).
                report(index, SendResult(envelope=None, error=bulk_item, attempts=0))
                continue
            try:
                message, envelope = (
                    bulk_item if isinstance(bulk_item, tuple) else (bulk_item, None)
                )
                ready.append((index, self._prepare(message, envelope, worker=True)))
            except Exception as exc:  # anything one message causes is its own result
                report(index, SendResult(envelope=None, error=invalid(exc), attempts=0))
        settled: set[int] = set()
        lock = threading.Lock()
        if self._worker_hooks is not None:
            report = _reporting(self._worker_hooks, ready, report)

        def on_result(position: int, outcome: object) -> None:
            """Report a message whose first attempt needs no retry, right away."""
            known = checked(outcome)
            if not 0 <= position < len(ready):
                return
            index, item = ready[position]
            result = delivered_at_once(item, known, self._clock)
            if result is None and not is_settled(self.retry, known):
                return
            with lock:
                if position in settled:
                    return
                settled.add(position)
            if result is None:
                result = self._finish(item, known, interrupted)
            report(index, result)

        prepared = [item for _, item in ready]
        firsts = self._first_attempts(prepared, on_result, interrupted)
        for position, ((index, item), first) in enumerate(
            zip(ready, firsts, strict=True)
        ):
            with lock:
                if position in settled:
                    continue
                settled.add(position)
            if interrupted.is_set():
                report(index, unretried(item, first))
            else:
                report(index, self._finish(item, first, interrupted))

    def _finish(
        self,
        item: Prepared,
        first: SendResult | SMTPKitError,
        interrupted: threading.Event,
    ) -> SendResult:
        """The final result of one message of a batch, errors included.

        Its retries stop when the run is *interrupted*: no retry starts after
        that, and a backoff wait with the default sleep ends at once.
        """
        try:
            return self._deliver(
                item, first=first, sleep=self._bulk_sleep(interrupted), worker=True
            )
        except Interrupted:
            return unretried(item, first)
        except Exception as exc:  # SMTPKitError, or a hook of the caller's raised
            return failed_result(item, exc)

    def _first_attempts(
        self,
        ready: list[Prepared],
        on_result: Callable[[int, SendResult | SMTPKitError], None],
        interrupted: threading.Event,
    ) -> list[SendResult | SMTPKitError]:
        """One outcome per message from one ``send_batch`` call, whatever it does.

        *on_result* hears of each outcome as the transport learns it, when the
        transport's ``send_batch`` takes an ``on_result`` callback (third-party
        transports written before it existed do not).  Nothing is sent once the
        run is *interrupted*, also after waiting for the rate limit.
        """
        taken = 0  # rate-limit tokens taken for this batch
        try:
            if self._bucket is not None:
                wait = self._bulk_sleep(interrupted)
                for _ in ready:
                    self._bucket.acquire(sleep=wait)  # gives its token back if ended
                    taken += 1
            if interrupted.is_set():
                raise Interrupted  # noqa: TRY301 - one way out for both
        except BaseException as exc:
            if self._bucket is not None and taken:
                self._bucket.refund(taken)  # nothing was sent with them
            if isinstance(exc, Interrupted):
                return [not_sent() for _ in ready]
            if isinstance(exc, Exception):  # the caller's clock or sleep
                return [callback_error(exc) for _ in ready]
            raise
        items = [(p.envelope, p.data) for p in ready]
        return batch_outcomes(
            self._transport, items, on_result if self._reports_results else None
        )

    def _prepare(
        self,
        message: Sendable | InvalidMessageError,
        envelope: Envelope | None,
        *,
        worker: bool = False,
    ) -> Prepared:
        prepared = prepare(message, envelope, id_domain=self._id_domain)
        hooks = self._worker_hooks if worker else self._hooks
        if hooks is not None:  # before signing: the signature covers what they add
            prepared = hooks.before(prepared)
        if self._signer is None:
            return prepared
        try:
            return sign_prepared(prepared, self._signer)
        except BaseException as exc:  # a failing signer fails the message
            error = exc
            if worker and isinstance(exc, KeyboardInterrupt | SystemExit):
                # Not the caller's thread: that message fails, the others go on.
                error = interrupted_in_worker(self._signer, exc)
            if hooks is not None and prepared.event is not None:
                hooks.failed(prepared.event, error, sent=False)
            if error is exc:
                raise
            raise error from exc

    def _bulk_sleep(self, interrupted: threading.Event) -> SleepFn:
        """The sleep between a bulk message's attempts: it ends the retries (raising
        ``Interrupted``) once the run is interrupted, and with the default sleep
        it wakes up at once when that happens."""

        def sleep(seconds: float) -> None:
            if self._sleep is time.sleep:
                interrupted.wait(seconds)
            elif not interrupted.is_set():
                self._sleep(seconds)
            if interrupted.is_set():
                raise Interrupted

        return sleep

    def _deliver(
        self,
        prepared: Prepared,
        *,
        first: SendResult | SMTPKitError | None = None,
        sleep: SleepFn | None = None,
        worker: bool = False,
    ) -> SendResult:
        attempt = Attempt(
            prepared,
            first,
            transport=self._transport,
            retry=self.retry,
            bucket=self._bucket,
            bucket_sleep=sleep,  # send_many's: an interrupt ends the wait, sends nothing
        )
        on_retry = self._on_retry
        hooks = self._worker_hooks if worker else self._hooks
        if hooks is not None and prepared.event is not None:
            on_retry = hooks.retry_hook(prepared.event, on_retry)
        start = self._clock()
        error: SMTPKitError | None = None
        try:
            run_with_retries(
                attempt,
                self.retry,
                sleep=self._sleep if sleep is None else sleep,
                clock=self._clock,
                rng=self._rng,
                on_retry=on_retry,
            )
        except Exception as exc:  # re-raised when no recipient has it
            error = ended_with(attempt, exc)
        return concluded(attempt, elapsed=self._clock() - start, error=error)


def _reporting(
    hooks: HookRunner, ready: list[tuple[int, Prepared]], report: Report
) -> Report:
    """*report*, telling the hooks of each result of *ready*'s messages first."""
    events = {index: item.event for index, item in ready}

    def report_hooked(index: int, result: SendResult) -> None:
        event = events[index]  # a message prepared with hooks has its event
        assert event is not None  # noqa: S101 - see above
        hooks.finished(event, result)
        report(index, result)

    return report_hooked
