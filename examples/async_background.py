"""Fire and forget, without forgetting: a bounded queue, sender tasks, every outcome reported.

Run it with no configuration:

    pip install -e ".[examples]"
    python examples/async_background.py

A request handler should not wait for the mail server, but a message must never
vanish either.  ``BackgroundSender`` keeps both promises:

- ``await submit(message)`` returns as soon as the message is queued.  The queue is
  bounded: when it is full, ``submit`` waits (back-pressure) and ``submit_nowait``
  raises ``asyncio.QueueFull``; nothing is ever dropped.
- A few sender tasks take messages from the queue and ``await mailer.send(...)``;
  the ``AsyncMailer`` coalesces their sends into pipelined batches on its pool.
- Every message ``submit`` accepted gets exactly one call of
  ``on_outcome(message, outcome)``: a ``SendResult`` when the server took it, or
  the exception when it did not (retries exhausted, refused, or
  ``smtpkit.NotSentError`` when shutdown came before it was sent: sending it
  again cannot make a duplicate).
- ``aclose()`` stops new submissions, waits (bounded) until the queue is drained,
  and reports whatever could not be sent in time as ``NotSentError``, including
  the messages of ``submit()`` calls still waiting for room.  Sends in flight are
  never cancelled by it: each reports its real outcome when it ends.  Only a send
  cancelled from outside (the event loop shutting down under it) is reported as
  ``DeliveryUnknownError``: it may have reached the server, and when it had
  started, ``AsyncMailer(on_detached=...)`` gets its real outcome.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from types import TracebackType

from aiosmtpd.controller import Controller
from typing_extensions import Self

import smtpkit

log = logging.getLogger("background_sender")

Outcome = smtpkit.SendResult | BaseException
OnOutcome = Callable[[smtpkit.Message, Outcome], None]


class DeliveryUnknownError(Exception):
    """A send was cancelled from outside (e.g. the event loop shut down mid-send).

    The message may or may not have reached the server: do not resend it blindly.
    When its transaction had started, ``AsyncMailer(on_detached=...)`` receives
    its real outcome (match it by ``result.message_id``).
    """


class BackgroundSender:
    """Send queued messages in the background and report every outcome.

    Args:
        mailer: The application's mailer (opened and closed by its owner).
        on_outcome: Called exactly once per queued message with a ``SendResult``
            or the exception that stopped it.  It runs on the event loop: keep
            it quick.
        maxsize: How many messages may wait in the queue.
        senders: How many messages are in flight at once (the mailer's pool
            bounds the connections, whatever this number is).
    """

    def __init__(
        self,
        mailer: smtpkit.AsyncMailer,
        *,
        on_outcome: OnOutcome,
        maxsize: int = 1000,
        senders: int = 8,
    ) -> None:
        self._mailer = mailer
        self._on_outcome = on_outcome
        self._queue: asyncio.Queue[smtpkit.Message] = asyncio.Queue(maxsize)
        self._senders = senders
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[smtpkit.SendResult]] = set()
        self._closing = False  # no new submissions
        self._stopped = False  # no sender takes messages from the queue any more

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the sender tasks (on the running event loop)."""
        self._tasks = [
            asyncio.create_task(self._send_forever()) for _ in range(self._senders)
        ]

    async def submit(self, message: smtpkit.Message) -> None:
        """Queue *message*; wait while the queue is full."""
        self._check_open()
        await self._queue.put(message)
        if self._stopped:  # let in by aclose()'s final drain: nobody will send it
            self._fail_queued()

    def submit_nowait(self, message: smtpkit.Message) -> None:
        """Queue *message*, or raise ``asyncio.QueueFull`` at once (never drop it)."""
        self._check_open()
        self._queue.put_nowait(message)

    async def aclose(self, timeout: float = 30.0) -> None:
        """Refuse new messages, send what is queued (up to *timeout* seconds), stop.

        At the timeout, queued messages are reported as ``smtpkit.NotSentError``
        (never started: safe to send again), and so are those of ``submit()``
        calls still waiting for room.  Sends in flight are not cancelled: each
        reports its real outcome when it ends (the owner's ``mailer.aclose()``
        bounds them: it fails those not yet started with ``NotSentError``).
        """
        self._closing = True
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("shutdown: %d messages still queued", self._queue.qsize())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._stopped = True
        self._fail_queued()

    def _check_open(self) -> None:
        if self._closing:
            msg = "BackgroundSender is closing: the message was not queued"
            raise RuntimeError(msg)

    def _fail_queued(self) -> None:
        # Each get_nowait() lets one waiting submit() in; it drains after itself.
        while not self._queue.empty():
            message = self._queue.get_nowait()
            self._queue.task_done()
            error = smtpkit.NotSentError("not sent: still queued at shutdown")
            self._report(message, error)

    async def _send_forever(self) -> None:
        while True:
            message = await self._queue.get()
            # The send runs in its own task: cancelling this sender at shutdown
            # never cancels a send, so each message gets its real outcome.
            send = asyncio.create_task(self._mailer.send(message))
            self._sends.add(send)  # a strong reference until it is done
            send.add_done_callback(functools.partial(self._settle, message))
            try:
                await asyncio.wait([send])
            finally:
                self._queue.task_done()  # after the outcome was reported

    def _settle(
        self, message: smtpkit.Message, send: asyncio.Task[smtpkit.SendResult]
    ) -> None:
        self._sends.discard(send)
        outcome: Outcome
        if send.cancelled():  # by someone else: it may have reached the server
            error = "delivery unknown: the send was cancelled once it may have started"
            outcome = DeliveryUnknownError(error)
        else:
            outcome = send.exception() or send.result()
        self._report(message, outcome)

    def _report(self, message: smtpkit.Message, outcome: Outcome) -> None:
        try:
            self._on_outcome(message, outcome)
        except Exception:  # a broken callback must not stop the senders
            log.exception("on_outcome failed for %s", message.subject)


class CountingHandler:
    """Count the messages the local server receives."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
        self.received += 1
        return "250 2.0.0 Ok"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def send_newsletter(config: smtpkit.SMTPConfig, count: int) -> dict[str, int]:
    """Queue *count* messages from a 'request handler' and tally the outcomes."""
    tally = {"sent": 0, "failed": 0, "unknown": 0}

    def on_outcome(message: smtpkit.Message, outcome: Outcome) -> None:
        if isinstance(outcome, smtpkit.SendResult):
            tally["sent"] += 1
        elif isinstance(outcome, DeliveryUnknownError) or getattr(
            outcome, "delivery_unknown", False
        ):
            tally["unknown"] += 1  # may have been delivered: do not resend blindly
            log.warning("delivery unknown: %s: %r", message.subject, outcome)
        else:
            tally["failed"] += 1
            log.error("not delivered: %s: %r", message.subject, outcome)

    def on_detached(result: smtpkit.SendResult) -> None:
        log.warning("outcome of a cancelled send: %s", result)

    async with (
        smtpkit.AsyncMailer(config, on_detached=on_detached) as mailer,
        BackgroundSender(mailer, on_outcome=on_outcome, maxsize=50) as sender,
    ):
        for i in range(count):
            message = smtpkit.Message(
                sender="news@example.com",
                to=[f"reader{i}@example.com"],
                subject=f"Newsletter #{i}",
                text="Hello!\n",
            )
            await sender.submit(message)  # waits while 50 are queued
    return tally


def main() -> None:
    handler = CountingHandler()
    server = Controller(handler, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        config = smtpkit.SMTPConfig(host="127.0.0.1", port=server.port, tls="none")
        tally = asyncio.run(send_newsletter(config, 200))
    finally:
        server.stop()
    print(f"outcomes: {tally}; the server received {handler.received} messages")


if __name__ == "__main__":
    main()
