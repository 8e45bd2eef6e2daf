"""`AsyncMailer`: the asyncio face of the one sending engine.

It drives the same transports as ``Mailer`` (``SMTPTransport``'s pool,
pipelining and CHUNKING included) from worker threads of an executor it owns,
through a ``Dispatcher``; the retry accounting (``Attempt``), the message
preparation and the result assembly are the ones ``Mailer`` uses.  What is its
own: waiting with ``asyncio.sleep`` and defined cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from typing_extensions import Self

from ._async_bulk import BulkSend, Stop
from ._async_detach import Detached
from ._async_waits import RenderTurns, interruptible_sleep, take_token
from ._attempt import Attempt, Interrupted, Prepared
from ._bulk import MAX_BATCH, BulkProgress, NotSentError
from ._config import SMTPConfig
from ._delivery import concluded, ended_with
from ._dispatch import Dispatcher, Job
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
    acquire_timeout_of,
    adaptation_of,
    invalid,
    not_sent,
    takes_on_result,
)
from ._prepare import BulkItem, Sendable, prepare, sign_prepared
from ._ratelimit import RateLimit, TokenBucket
from ._retry import (
    DEFAULT_RETRY_POLICY,
    RetryHook,
    RetryPolicy,
    run_with_retries_async,
)
from ._signing import MessageSigner, check_signer
from ._transports.base import SendResult, Transport

__all__ = ["AsyncMailer"]

logger = logging.getLogger("smtpkit")

RENDERS_PER_TURN = 8  # messages rendered per iteration of the loop (about 2 ms)


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSING = 3
    CLOSED = 4


class AsyncMailer:
    """Send messages from asyncio code through a transport, with retries.

    The asyncio twin of ``Mailer``: the same arguments, results and exceptions,
    the same transports.  Transport calls (connecting, TLS, the SMTP dialogue,
    QUIT) run in worker threads the mailer owns, at most the transport's
    ``max_concurrency`` at a time (``SMTPTransport``: its pool size), so the event
    loop is never blocked by I/O and the pool never sees more callers than it has
    connections, however many coroutines wait.  Concurrent ``send()`` calls are
    batched: up to 32 waiting messages go out on one connection in one
    ``send_batch`` call, pipelined when the server offers PIPELINING.  Waits
    between attempts and for the rate limit are ``await sleep(...)``.  Rendering a
    ``Message`` runs on the loop (a fraction of a millisecond each).

    The mailer belongs to the event loop it first runs on; use it from that loop
    only (one per loop, e.g. one per application lifespan).

    **Cancellation** (``task.cancel()``, ``asyncio.timeout()``,
    ``asyncio.wait_for``) of a ``send()``:

    * Waiting in the queue for a worker (all connections busy), or handed to a
      worker whose batch has not started: the message is withdrawn; nothing is
      sent.  ``CancelledError`` propagates.
    * Waiting for the rate limit: nothing is sent, and the reserved turn is
      given back (the sends after it do not wait for it).
    * Waiting for the mailer to open (a first ``send()``): only that caller is
      cancelled; the opening goes on for the others.
    * Its batch started (connecting, MAIL, RCPT, DATA, the upload, waiting for
      the reply to the final dot): ``CancelledError`` propagates at once, but the
      worker finishes the attempt so the connection stays coherent (returned to
      the pool after a complete transaction, or discarded when broken; never
      half-spoken).  No retry starts and nothing is ever resent.  The outcome
      (delivered, refused, or delivery unknown) is logged at WARNING, without
      addresses, and passed to ``on_detached(result)``.
    * Waiting between two attempts: no further attempt starts; when an earlier
      attempt reached the server, its outcome goes to ``on_detached`` as above.
    * ``send_many`` cancelled: no message not yet started is sent; every started
      one finishes its current attempt as above; the result of every message the
      run finished or started reaches ``on_detached`` (those delivered before the
      cancel too: the caller never gets the list).

    Args:
        config: Server settings; builds an ``SMTPTransport``.
        transport: Any transport instead of *config* (``FakeTransport`` in tests).
        retry: When to retry; ``RetryPolicy.never()`` disables retries.
        rate_limit: Messages per second across the mailer, or None.
        on_retry: Called on the loop before each wait between attempts.
        hooks: Callables run on the loop around each message (see ``Hooks``).
            A send cancelled after its transaction started reports its outcome
            to after_send or on_failure when it is known, before *on_detached*
            (maybe from a worker thread, as *on_detached*); one cancelled before
            reports to neither.
        on_detached: Called on the loop with the result of a message whose
            caller was cancelled after its transaction started (see above);
            if it raises, the error is logged and ignored.  When the event
            loop has stopped or closed meanwhile (``asyncio.run`` ended by
            Ctrl-C), it is called from the worker thread that finished the
            attempt.
        sleep: Awaited for waits between attempts and for the rate limit.
        clock: Monotonic clock in seconds (injectable).
        rng: Source of jitter (inject ``random.Random(seed)`` in tests).
        message_id_domain: The domain of generated Message-IDs (as for ``Mailer``).
        signer: Signs each message's final bytes (as for ``Mailer``), in a
            worker thread: the event loop is not blocked while it signs.

    Raises:
        TypeError: *config* is not an ``SMTPConfig``, *transport* is not a
            ``Transport``, or *signer* has no ``sign`` method.
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
        on_detached: Callable[[SendResult], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
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
        self._transport = transport_for(config, transport)
        self._reports_results = takes_on_result(self._transport)
        self._adapt = adaptation_of(self._transport)
        self._acquire_timeout = acquire_timeout_of(self._transport)
        self.retry = retry
        self._bucket = TokenBucket(rate_limit, clock=clock) if rate_limit else None
        self._on_retry = on_retry
        self._hooks = HookRunner(hooks) if hooks else None
        # No caller waits for a detached send: its hooks cannot stop one.
        self._detached = Detached(
            on_detached, clock, self._hooks.in_workers() if self._hooks else None
        )
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._state = _State.UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._dispatcher: Dispatcher | None = None
        # Every dispatcher made (send_many with a lower concurrency makes its
        # own): aclose() waits for and fails the jobs of each.
        self._dispatchers: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
        self._opening: asyncio.Task[None] | None = None
        self._active = 0  # send() and send_many() calls running
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._stop = Stop()  # set at aclose()'s deadline: no attempt starts
        self._stopping = asyncio.Event()  # the same, for waits to wake up on
        self._render_turns = RenderTurns(RENDERS_PER_TURN)

    @property
    def transport(self) -> Transport:
        """The transport this mailer sends through."""
        return self._transport

    def __repr__(self) -> str:
        return f"<AsyncMailer {self._transport!r} {self._state.name.lower()}>"

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        """Open the transport now (in a worker thread) instead of at the first send.

        Concurrent calls share one opening.

        Raises:
            ClosedError: The mailer was closed, or is closing.
            RuntimeError: The mailer is used from a second event loop.
        """
        if self._state is _State.OPENED:
            self._check_loop()
            return
        if self._state is not _State.UNOPENED:
            msg = "this AsyncMailer is closed; create a new one"
            raise ClosedError(msg)
        loop = self._check_loop()
        if self._opening is None:
            # A task of its own: a cancelled caller stops waiting for it, but
            # the opening goes on for the others (and fails for all alike).
            self._opening = loop.create_task(self._open_now(loop))
            self._opening.add_done_callback(_consume)
        await asyncio.shield(self._opening)

    async def _open_now(self, loop: asyncio.AbstractEventLoop) -> None:
        executor = None
        try:
            workers = max_concurrency(self._transport)
            executor = self._executor = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="smtpkit-async"
            )
            self._dispatcher = self._new_dispatcher(workers)
            await loop.run_in_executor(executor, self._transport.open)
        except BaseException:
            self._opening = None  # the next send() tries again
            if executor is not None:
                executor.shutdown(wait=False)
            raise
        if self._state is _State.UNOPENED:
            self._state = _State.OPENED

    async def aclose(self, timeout: float | None = 30.0) -> None:
        """Stop accepting sends, let the running ones finish, close the transport.

        New ``send()``/``send_many()`` calls raise ``ClosedError`` at once.  Sends
        already running (retries included) get up to *timeout* seconds; at the
        deadline the messages still waiting for a worker fail with
        ``NotSentError`` (never dropped silently), a send waiting for a retry
        or the rate limit wakes and fails with its last attempt's error
        (``NotSentError`` if none), and the attempts already on the wire finish
        in their worker.  Then the transport is closed in a worker thread
        (``SMTPTransport`` QUITs its idle sessions) and the executor shut down
        without blocking the loop.  Idempotent: a second call returns at once.

        Cancelled itself (Ctrl-C while ``async with`` exits, a timeout around
        it), it acts as if the deadline had come: no send is left waiting, and
        the transport's closing is started but not waited for.

        Args:
            timeout: Seconds to wait for running sends; None waits for them all.
        """
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        opened = self._state is _State.OPENED
        self._state = _State.CLOSING
        loop = asyncio.get_running_loop()
        why = "the timeout came first"
        cancelled = False
        try:
            if opened:
                await self._drain(loop, timeout)
            elif self._opening is not None:  # let it end, then close what it opened
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._opening)
        except asyncio.CancelledError:
            why, cancelled = "aclose() was cancelled", True
            raise
        finally:
            self._halt()
            # However aclose ends (its timeout, its own cancellation), nothing
            # may stay queued: the executor takes no new batch after this.
            failed = sum(
                d.fail_unstarted(_not_sent_closing) for d in list(self._dispatchers)
            )
            if failed:
                logger.warning("aclose: %d message(s) not sent: %s", failed, why)
            closing = loop.run_in_executor(None, self._transport.close)
            closing.add_done_callback(_consume)  # awaited unless cancelled
            executor = self._executor
            if executor is not None:
                # Workers still finishing an attempt end on their own.
                executor.shutdown(wait=False, cancel_futures=False)
            if not cancelled:  # a cancelled caller does not wait for the QUITs
                await closing

    async def _drain(
        self, loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> None:
        """Wait up to *timeout* seconds for every running send to end."""
        if self._is_idle():
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._idle_waiters.append(waiter)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout)

    def _halt(self) -> None:
        """No attempt starts from now on; waits for a retry or a token end."""
        self._state = _State.CLOSED
        self._stop.is_set = True
        with contextlib.suppress(RuntimeError):  # _close_after_loop: loop closed
            self._stopping.set()

    def _close_after_loop(self) -> None:
        """Close the mailer from synchronous code once its event loop has ended.

        For teardown code that cannot await (the pytest fixture): closes the
        transport and the executor in the calling thread.  Sends still running
        are not waited for; prefer ``await aclose()`` inside the loop.
        """
        if self._state is _State.CLOSED:
            return
        self._halt()
        self._transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sending ----------------------------------------------------------------

    async def send(
        self, message: Sendable, *, envelope: Envelope | None = None
    ) -> SendResult:
        """Send one message, retrying transient failures per the policy.

        Concurrent calls share connections: while all are busy, waiting messages
        are queued and go out up to 32 per connection per round trip.  As with
        ``Mailer.send``, the call returns once its connection is back in the
        pool (after the RSET of a refused transaction, say), so a following
        ``send()`` reuses it; and a message that waits longer than the pool's
        ``acquire_timeout`` for a free connection fails with
        ``PoolTimeoutError`` (not retried, nothing sent).

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
                tell what was tried.  ``NotSentError`` when ``aclose()``'s
                timeout came before the message was started;
                ``PoolTimeoutError`` when every connection stayed busy for
                ``PoolLimits.acquire_timeout`` seconds.
            ClosedError: The mailer was closed (or is closing).
            asyncio.CancelledError: The caller was cancelled; see the class
                docstring for what was sent and where the outcome goes.
        """
        dispatcher = await self._enter()
        try:
            await self._render_turns.wait()
            try:
                prepared = self._prepared(message, envelope)
            except SMTPKitError:
                raise
            except Exception as exc:
                raise invalid(exc) from exc
            return await self.deliver(await self._sign(prepared), dispatcher, None)
        finally:
            self._leave()

    async def send_many(
        self,
        messages: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        concurrency: int | None = None,
        on_progress: Callable[[BulkProgress], None] | None = None,
    ) -> list[SendResult]:
        """Send many messages concurrently; never raises for one bad message.

        Messages go through the same queue as ``send()``: up to 32 per worker
        batch, pipelined on one pooled connection.  The input, a plain or an
        async iterable, is read lazily, at most ``2 * 32 * concurrency``
        messages ahead of the ones finished.  Retries happen per message, as
        with :meth:`send`.  Like ``Mailer.send_many``'s, its messages queue
        for a worker without a time bound (``acquire_timeout`` applies only
        to a worker's wait for a pooled connection, which the transport
        enforces); ``on_progress`` hears of each message as soon as it is
        finished, and the call returns once every connection it used is back
        in the pool.

        Args:
            messages: Messages, or ``(message, envelope)`` pairs.
            concurrency: Connections used at once; defaults to the transport's
                ``max_concurrency`` (and never exceeds it).
            on_progress: Called on the loop, in input order, once per message as
                soon as it and every message before it are finished.

        Returns:
            One result per message, in input order; failed ones have ``error``
            set.  An ``aclose()`` meanwhile fails only the messages not started.

        Raises:
            ClosedError: The mailer was closed.
            ConfigurationError: *concurrency* (or the transport's
                ``max_concurrency``) is not a positive integer.
            SendManyAbortedError: *messages* or *on_progress* raised.  Nothing
                more was read; what had been read was still sent, and the error's
                ``results`` reports it.
            QuotaExceededError: The server said the sending quota is spent
                (``SMTPConfig.adapt.stop_on_quota``); nothing more was started,
                and ``results`` reports every message read, the unsent ones
                marked with ``NotSentError``.
            asyncio.CancelledError: The caller was cancelled: messages not yet
                started are not sent; started ones finish their attempt and
                their results go to ``on_detached`` (all of them, when the
                cancel came while the last connections were being given back).
        """
        if concurrency is not None and not positive_int(concurrency):
            msg = f"send_many(concurrency=...) must be a positive int, not {concurrency!r}"
            raise ConfigurationError(msg)
        dispatcher = await self._enter()
        try:
            limit = max_concurrency(self._transport)
            workers = limit if concurrency is None else min(concurrency, limit)
            if workers < limit:
                dispatcher = self._new_dispatcher(workers)
            run = BulkSend(
                self._prepare_item,
                self.deliver,
                dispatcher,
                workers=workers,
                on_progress=on_progress,
                stop_on_quota=self._adapt.stop_on_quota,
                on_orphaned=self._detached.report,
            )
            return await run.send(messages)
        finally:
            self._leave()

    # -- the engine -------------------------------------------------------------

    async def deliver(
        self, prepared: Prepared, dispatcher: Dispatcher, stop: Stop | None
    ) -> SendResult:
        """Deliver one prepared message with retries; raise when nobody got it.

        Used by ``send`` and by ``send_many``'s messages (which pass their run's
        *stop*).  Raises ``NotSentError`` when stopped before its first attempt.
        """
        hooks, event = self._hooks, prepared.event
        if hooks is None or event is None:
            return await self._deliver(prepared, dispatcher, stop, self._on_retry)
        try:
            result = await self._deliver(
                prepared, dispatcher, stop, hooks.retry_hook(event, self._on_retry)
            )
        except asyncio.CancelledError:
            raise  # _deliver reported it, or the late outcome will be
        except BaseException as exc:
            hooks.failed(event, exc)
            raise
        hooks.finished(event, result)
        return result

    async def _deliver(
        self,
        prepared: Prepared,
        dispatcher: Dispatcher,
        stop: Stop | None,
        on_retry: RetryHook | None,
    ) -> SendResult:
        attempt = Attempt(
            prepared, None, transport=self._transport, retry=self.retry, bucket=None
        )
        start = self._clock()
        in_flight: list[Job] = []

        def stopped() -> bool:
            return self._stop.is_set or (stop is not None and stop.is_set)

        async def one(number: int) -> None:
            await take_token(self._bucket, self._wait, stopped)
            # send(): the outcome comes once the connection is back in the pool,
            # and a wait for a worker is bounded as Mailer.send's for a
            # connection.  send_many: at once (on_progress), queued unbounded,
            # as Mailer.send_many's batches; the run waits for the batches.
            job = dispatcher.submit(
                attempt.pending,
                prepared.data,
                early=stop is not None,
                acquire_timeout=self._acquire_timeout if stop is None else None,
            )
            in_flight.append(job)
            if stop is not None:
                stop.jobs.add((dispatcher, job))
            outcome = await job.future
            in_flight.clear()
            if stop is not None:
                stop.jobs.discard((dispatcher, job))
                stop.hold(job)
            if isinstance(outcome, NotSentError) and stopped():
                if self._bucket is not None:
                    self._bucket.refund()  # its token sent nothing
                raise Interrupted  # withdrawn by aclose() or the run: not an attempt
            attempt.record(number, outcome)

        error: SMTPKitError | None = None
        try:
            await run_with_retries_async(
                one,
                self.retry,
                sleep=self._wait,
                clock=self._clock,
                rng=self._rng,
                on_retry=on_retry,
            )
        except asyncio.CancelledError as exc:
            job = in_flight[0] if in_flight else None
            reported = self._detached.detach(attempt, dispatcher, job, start)
            event = prepared.event
            if not reported and self._hooks is not None and event is not None:
                self._hooks.failed(event, exc, sent=False)  # withdrawn or never begun
            raise
        except Interrupted:
            if attempt.number == 0:
                unsent = _not_sent_closing() if self._stop.is_set else not_sent()
                unsent.attempts = 0
                raise unsent from None
            last = attempt.history[-1] if attempt.history else None
            return self._detached.final(attempt, last, start, raising=True)
        except Exception as exc:  # re-raised when no recipient has it
            error = ended_with(attempt, exc)
        return concluded(attempt, elapsed=self._clock() - start, error=error)

    async def _wait(self, seconds: float) -> None:
        """Sleep (retry backoff, rate limit) until *seconds* pass or aclose() stops."""
        await interruptible_sleep(self._sleep, seconds, self._stopping)

    # -- plumbing ---------------------------------------------------------------

    async def _prepare_item(self, item: BulkItem) -> Prepared:
        await self._render_turns.wait()
        message, envelope = item if isinstance(item, tuple) else (item, None)
        return await self._sign(self._prepared(message, envelope))

    def _prepared(
        self, message: Sendable | InvalidMessageError, envelope: Envelope | None
    ) -> Prepared:
        prepared = prepare(message, envelope, id_domain=self._id_domain)
        return prepared if self._hooks is None else self._hooks.before(prepared)

    async def _sign(self, prepared: Prepared) -> Prepared:
        """*prepared* signed by the signer, in the loop's default executor.

        Not in the mailer's own executor: its threads carry the batches, and a
        signature waiting behind them would stall the pipeline.  A signer that
        fails is the message's failure for its hooks too.
        """
        if self._signer is None:
            return prepared
        loop = asyncio.get_running_loop()
        signing = loop.run_in_executor(None, sign_prepared, prepared, self._signer)
        if self._hooks is None or prepared.event is None:
            return await signing
        try:
            return await signing
        except BaseException as exc:
            self._hooks.failed(prepared.event, exc, sent=False)
            raise

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            msg = "an AsyncMailer is used from the event loop it first ran on only"
            raise RuntimeError(msg)
        return loop

    def _new_dispatcher(self, workers: int) -> Dispatcher:
        assert self._loop is not None  # noqa: S101 - set by open()
        assert self._executor is not None  # noqa: S101 - set by open()
        dispatcher = Dispatcher(
            self._transport,
            self._executor,
            self._loop,
            max_batches=workers,
            # A rate limit spaces messages out, so batching would only add bursts.
            batch_size=1 if self._bucket is not None else MAX_BATCH,
            reports_results=self._reports_results,
            on_idle=self._wake_if_idle,
        )
        self._dispatchers.add(dispatcher)
        return dispatcher

    async def _enter(self) -> Dispatcher:
        if self._state is not _State.OPENED:
            await self.open()
        else:
            self._check_loop()
        if self._state is not _State.OPENED:
            msg = "this AsyncMailer is closed; create a new one"
            raise ClosedError(msg)
        assert self._dispatcher is not None  # noqa: S101 - set by open()
        self._active += 1
        return self._dispatcher

    def _leave(self) -> None:
        self._active -= 1
        self._wake_if_idle()

    def _is_idle(self) -> bool:
        return self._active == 0 and not any(d.busy for d in list(self._dispatchers))

    def _wake_if_idle(self) -> None:
        if self._idle_waiters and self._is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


def _not_sent_closing() -> NotSentError:
    error = NotSentError("not sent: the mailer was closed before its turn")
    error.attempts = 0
    return error


def _consume(future: asyncio.Future[None]) -> None:
    """Mark an error as seen: whoever awaits the future re-raises it itself."""
    if not future.cancelled():
        future.exception()
