"""`Mailer`: turns messages into envelopes and bytes and sends them with retries."""

from __future__ import annotations

import collections
import copy
import enum
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from types import TracebackType
from typing import Final

from typing_extensions import Self

from ._config import SMTPConfig
from ._email_message import envelope_of, render_email
from ._exceptions import (
    ClosedError,
    ConfigurationError,
    InvalidMessageError,
    RecipientsRefusedError,
    SendManyAbortedError,
    SMTPKitError,
    TransportError,
)
from ._message import Envelope, Message
from ._mime import render_with_id
from ._ratelimit import RateLimit, TokenBucket
from ._reply import SMTPReply
from ._retry import (
    DEFAULT_RETRY_POLICY,
    RetryHook,
    RetryPolicy,
    SleepFn,
    run_with_retries,
)
from ._transports.base import (
    RecipientResult,
    SendResult,
    Transport,
    contract_breach,
)

__all__ = ["BulkItem", "BulkProgress", "Mailer", "Sendable"]

logger = logging.getLogger("smtpkit")

Sendable = Message | EmailMessage | bytes
"""What ``Mailer.send`` takes: a ``Message``, a pre-built ``EmailMessage``
(forwarding), or raw bytes with an explicit envelope."""

BulkItem = Sendable | tuple[Sendable, Envelope]
"""What ``Mailer.send_many`` takes: a message, or a message with its envelope."""

_PARSE_HEADERS: Final = BytesHeaderParser()
_MAX_BATCH: Final = 32  # messages a worker pipelines on one connection per call


def _batches(
    messages: Iterator[BulkItem], workers: int, batch_size: int
) -> Iterator[list[BulkItem]]:
    """Cut the input into batches, reading at most ``workers * batch_size`` ahead.

    Small inputs are spread over every worker instead of filling one batch.  When
    the input itself raises, the messages read before it are still yielded, then
    the error is raised: nothing taken from the caller is dropped unreported.
    """
    while True:
        chunk: list[BulkItem] = []
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


def _checked(outcome: object) -> SendResult | SMTPKitError:
    """*outcome* if it is one a transport may return, else a contract breach."""
    if isinstance(outcome, SendResult | SMTPKitError):
        return outcome
    return contract_breach(TypeError(f"send_batch returned {type(outcome).__name__}"))


def _callback_error(exc: Exception) -> TransportError:
    """The error of a message whose sending stopped because a caller's hook raised.

    The hook (``on_retry``, ``sleep``, ``clock``) ran between attempts, so what
    the server got is known: the message failed, and it was not retried.
    """
    error = TransportError(
        f"sending stopped: a hook raised {type(exc).__name__}: {exc}",
    )
    error.__cause__ = exc
    return error


def _invalid(exc: Exception) -> SMTPKitError:
    """The error for a message that could not be prepared (rendered, addressed)."""
    if isinstance(exc, SMTPKitError):
        return exc
    error = InvalidMessageError(f"cannot send this message: {exc}")
    error.__cause__ = exc
    return error


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """Counters passed to ``send_many``'s ``on_progress`` after each message.

    Attributes:
        done: Messages finished so far, sent or failed.
        failed: Messages among ``done`` that failed (``result.error`` is set).
    """

    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class _Prepared:
    envelope: Envelope
    data: bytes
    message_id: str | None


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
        sleep: Waits between attempts and for the rate limit (injectable).
        clock: Monotonic clock in seconds (injectable).
        rng: Source of jitter (inject ``random.Random(seed)`` in tests).

    Raises:
        ConfigurationError: Neither or both of *config* and *transport* are given.
    """

    def __init__(
        self,
        config: SMTPConfig | None = None,
        *,
        transport: Transport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_limit: RateLimit | None = None,
        on_retry: RetryHook | None = None,
        sleep: SleepFn = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if (config is None) == (transport is None):
            msg = "pass exactly one of config= or transport="
            raise ConfigurationError(msg)
        if transport is None:
            from ._transports.smtp import SMTPTransport  # noqa: PLC0415 - only the default needs smtplib

            assert config is not None  # noqa: S101 - checked above
            transport = SMTPTransport(config)
        self._transport = transport
        self._concurrency = config.pool.max_connections if config is not None else 4
        self.retry = retry
        self._bucket = (
            TokenBucket(rate_limit, sleep=sleep, clock=clock) if rate_limit else None
        )
        self._on_retry = on_retry
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
            raise _invalid(exc) from exc
        return self._deliver(prepared)

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
        ``2 * concurrency`` batches ahead, so a generator of 100,000 messages needs
        little memory beyond the returned list.  Retries happen per message, as
        with :meth:`send`.

        Args:
            messages: Messages, or ``(message, envelope)`` pairs; a bare message
                gets its envelope from its headers (raw bytes need a pair).
            concurrency: Threads sending at once; defaults to the pool size (4
                for a transport given directly).
            on_progress: Called in input order after each message finishes.

        Returns:
            One result per message, in input order; failed ones have ``error`` set.
            A ``close()`` meanwhile fails only the messages not yet sent.

        Raises:
            ClosedError: The mailer was closed.
            SendManyAbortedError: *messages* or *on_progress* raised.  Nothing more
                was read; what had been read was still sent, and the error's
                ``results`` reports it, so nothing delivered goes unreported.
        """
        if self._state is not _State.OPENED:
            self.open()
        workers = concurrency or self._concurrency
        # A rate limit spaces messages out, so batching would only add bursts.
        batch_size = 1 if self._bucket is not None else _MAX_BATCH
        results: list[SendResult] = []
        failed = 0
        stop: tuple[str, Exception] | None = None  # why input stopped being read
        window: collections.deque[tuple[Future[list[SendResult]], int]] = (
            collections.deque()
        )

        def collect(future: Future[list[SendResult]], count: int) -> None:
            nonlocal failed, stop
            try:
                batch = future.result()
            except Exception as exc:  # a bug: still one result per message read
                batch = [
                    SendResult(envelope=None, error=contract_breach(exc), attempts=0)
                    for _ in range(count)
                ]
            for result in batch:
                failed += result.error is not None
                results.append(result)
                if on_progress is not None and stop is None:
                    try:
                        on_progress(BulkProgress(done=len(results), failed=failed))
                    except Exception as exc:  # reported below
                        stop = ("on_progress", exc)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smtpkit")
        try:
            batches = _batches(iter(messages), workers, batch_size)
            while stop is None:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception as exc:  # reported below
                    stop = ("the input", exc)
                    break
                window.append((pool.submit(self._send_batch, batch), len(batch)))
                if len(window) >= 2 * workers:
                    collect(*window.popleft())
            # Whatever was read is sent and reported, even after a failure.
            while window:
                collect(*window.popleft())
        except BaseException:
            # KeyboardInterrupt and the like: start nothing new, let the sends
            # under way finish, then give up.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if stop is not None:
            where, cause = stop
            msg = (
                f"send_many stopped after {len(results)} message(s): {where} raised "
                f"{type(cause).__name__}: {cause}"
            )
            raise SendManyAbortedError(msg, results=results) from cause
        return results

    def _send_batch(self, messages: list[BulkItem]) -> list[SendResult]:
        """First attempts of a batch in one transport call, then per-message retries."""
        prepared: list[_Prepared | SendResult] = []
        for bulk_item in messages:
            try:
                message, envelope = (
                    bulk_item if isinstance(bulk_item, tuple) else (bulk_item, None)
                )
                prepared.append(self._prepare(message, envelope))
            except Exception as exc:  # anything one message causes is its own result
                prepared.append(
                    SendResult(envelope=None, error=_invalid(exc), attempts=0)
                )
        ready = [p for p in prepared if isinstance(p, _Prepared)]
        first = dict(zip(map(id, ready), self._first_attempts(ready), strict=True))
        results = []
        for item in prepared:
            if isinstance(item, SendResult):
                results.append(item)
                continue
            try:
                results.append(self._deliver(item, first=first[id(item)]))
            except SMTPKitError as exc:
                # Resent after an attempt whose outcome was unknown: the server
                # may hold it once or more even though the last attempt failed.
                history = exc.history if isinstance(exc, TransportError) else ()
                results.append(
                    SendResult(
                        envelope=item.envelope,
                        message_id=item.message_id,
                        error=exc,
                        attempts=getattr(exc, "attempts", 0),
                        possibly_duplicated=any(e.delivery_unknown for e in history),
                    )
                )
            except Exception as exc:  # on_retry, sleep or a clock of the caller's
                results.append(
                    SendResult(
                        envelope=item.envelope,
                        message_id=item.message_id,
                        error=_callback_error(exc),
                        attempts=0,
                    )
                )
        return results

    def _first_attempts(
        self, ready: list[_Prepared]
    ) -> list[SendResult | SMTPKitError]:
        """One outcome per message from one ``send_batch`` call, whatever it does."""
        try:
            if self._bucket is not None:
                for _ in ready:
                    self._bucket.acquire()
        except Exception as exc:  # the caller's clock or sleep: nothing was sent
            return [_callback_error(exc) for _ in ready]
        try:
            outcomes = list(
                self._transport.send_batch([(p.envelope, p.data) for p in ready])
            )
        except SMTPKitError as exc:  # e.g. ClosedError before anything was sent
            return [copy.copy(exc) for _ in ready]  # one per message's bookkeeping
        except Exception as exc:  # a transport breaking its contract
            return [contract_breach(exc) for _ in ready]
        if len(outcomes) != len(ready):
            wrong = ValueError(
                f"send_batch returned {len(outcomes)} outcomes for {len(ready)} messages"
            )
            return [contract_breach(wrong) for _ in ready]
        return [_checked(outcome) for outcome in outcomes]

    def _prepare(self, message: Sendable, envelope: Envelope | None) -> _Prepared:
        if envelope is not None and not isinstance(envelope, Envelope):
            # Reachable from untyped callers.
            msg = f"envelope must be an Envelope, not {type(envelope).__name__}"  # type: ignore[unreachable]
            raise InvalidMessageError(msg)
        if isinstance(message, Message):
            data, message_id = render_with_id(message)
            envelope = envelope or message.to_envelope()
            if message.needs_smtputf8 and not envelope.smtputf8:
                envelope = envelope.model_copy(update={"smtputf8": True})
            return _Prepared(envelope, data, message_id)
        if isinstance(message, EmailMessage):
            envelope, data = render_email(message, envelope or envelope_of(message))
            return _Prepared(envelope, data, message.get("Message-ID"))
        if isinstance(message, bytes | bytearray | memoryview):
            if envelope is None:
                msg = "raw bytes need an explicit envelope=Envelope(sender=..., recipients=...)"
                raise InvalidMessageError(msg)
            data = bytes(message)
            headers = _PARSE_HEADERS.parsebytes(data, headersonly=True)
            return _Prepared(envelope, data, headers.get("Message-ID"))
        # Reachable from untyped callers.
        msg = f"cannot send {type(message).__name__}; pass a Message, EmailMessage or bytes"  # type: ignore[unreachable]
        raise InvalidMessageError(msg)

    def _deliver(
        self, prepared: _Prepared, *, first: SendResult | SMTPKitError | None = None
    ) -> SendResult:
        attempt = _Attempt(self, prepared, first)
        start = self._clock()
        error: SMTPKitError | None = None
        try:
            run_with_retries(
                attempt,
                self.retry,
                sleep=self._sleep,
                clock=self._clock,
                rng=self._rng,
                on_retry=self._on_retry,
            )
        except RecipientsRefusedError:
            pass  # the recipients' last replies are in attempt.last
        except SMTPKitError as exc:  # ClosedError included: close() during a retry
            if not attempt.final:
                raise
            error = exc  # some recipients were delivered before this failure
        except Exception as exc:  # on_retry, sleep or a clock of the caller's raised
            if not attempt.final:
                raise
            error = _callback_error(exc)
        result = attempt.result(elapsed=self._clock() - start, error=error)
        if not result.accepted:
            raise attempt.refused_error()
        logger.info(
            "sent %s to %d recipient(s): %s",
            result.message_id,
            len(result.accepted),
            result.reply.text if result.reply else "",
        )
        return result


class _Attempt:
    """One message's state across attempts: who is delivered, who is still pending."""

    def __init__(
        self,
        mailer: Mailer,
        prepared: _Prepared,
        first: SendResult | SMTPKitError | None,
    ) -> None:
        self.mailer = mailer
        self.prepared = prepared
        self.first = first  # the outcome of attempt 1 when a batch already made it
        self.pending = prepared.envelope
        self.counts: collections.Counter[str] = collections.Counter()
        self.final: dict[str, RecipientResult] = {}
        self.last: dict[str, SMTPReply] = {}
        self.history: list[TransportError] = []
        self.reply: SMTPReply | None = None
        self.number = 0
        self.possibly_duplicated = False

    def __call__(self, number: int) -> None:
        self.number = number
        mailer = self.mailer
        self.counts.update(self.pending.recipients)
        try:
            result = self._attempt(number)
        except RecipientsRefusedError as exc:
            replies = exc.refused
        except TransportError as exc:
            self._failed(exc)
            if exc.delivery_unknown and mailer.retry.should_retry(exc):
                self.possibly_duplicated = True
            raise
        else:
            self.reply = result.reply
            replies = {r: rr.reply for r, rr in result.recipients.items()}
        retry = mailer.retry
        pending = []
        for rcpt, reply in replies.items():
            self.last[rcpt] = reply
            if 200 <= reply.code < 300 or not retry.should_retry_reply(reply):
                self.final[rcpt] = RecipientResult(rcpt, reply, self.counts[rcpt])
            else:
                pending.append(rcpt)
        if pending:
            # Only the 4xx-refused recipients go round again; the accepted ones
            # must never receive the message twice.
            self.pending = self.pending.with_recipients(tuple(pending))
            refusal = RecipientsRefusedError({r: replies[r] for r in pending})
            self._failed(refusal)
            raise refusal

    def _attempt(self, number: int) -> SendResult:
        first, self.first = self.first, None
        if first is None:
            mailer = self.mailer
            if mailer._bucket is not None:
                mailer._bucket.acquire()
            try:
                return mailer.transport.send(self.pending, self.prepared.data)
            except SMTPKitError:
                raise
            except Exception as exc:
                raise contract_breach(exc) from exc
        if isinstance(first, SMTPKitError):
            raise first
        return first

    def _failed(self, exc: TransportError) -> None:
        exc.attempts = self.number
        exc.history = tuple(self.history)
        self.history.append(exc)

    def result(self, *, elapsed: float, error: SMTPKitError | None) -> SendResult:
        recipients = {}
        for rcpt in self.prepared.envelope.recipients:
            if rcpt in self.final:
                recipients[rcpt] = self.final[rcpt]
            elif rcpt in self.last:
                recipients[rcpt] = RecipientResult(
                    rcpt, self.last[rcpt], self.counts[rcpt]
                )
        return SendResult(
            envelope=self.prepared.envelope,
            recipients=recipients,
            reply=self.reply if any(r.accepted for r in recipients.values()) else None,
            message_id=self.prepared.message_id,
            elapsed=elapsed,
            attempts=self.number,
            error=error,
            possibly_duplicated=self.possibly_duplicated,
        )

    def refused_error(self) -> TransportError:
        """The error to raise when no recipient was delivered."""
        last_error = self.history[-1] if self.history else None
        if last_error is not None and not isinstance(
            last_error, RecipientsRefusedError
        ):
            return last_error
        replies = {
            r: self.last[r] for r in self.prepared.envelope.recipients if r in self.last
        }
        exc: TransportError = (
            RecipientsRefusedError(replies)
            if replies
            else contract_breach(
                ValueError("the transport's result has no outcome for any recipient")
            )
        )
        exc.attempts = self.number
        exc.history = tuple(self.history[:-1])
        return exc
