"""One message's delivery across attempts: who is delivered, who is still pending.

The mailer runs an ``Attempt`` under the retry policy; each call is one transport
attempt for the recipients still pending, so accepted recipients never get the
message twice.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from ._exceptions import RecipientsRefusedError, SMTPKitError, TransportError
from ._message import Envelope
from ._ratelimit import TokenBucket
from ._reply import SMTPReply
from ._retry import RetryPolicy
from ._send_event import SendEvent
from ._transports.base import (
    RecipientResult,
    SendResult,
    Transport,
    contract_breach,
)

__all__ = ["Attempt", "Interrupted", "Prepared"]


class Interrupted(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a bulk message's waits: the run was interrupted, send no more."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message rendered for sending: its envelope, bytes and Message-ID, and
    the ``SendEvent`` its hooks share (None when the mailer has no hooks)."""

    envelope: Envelope
    data: bytes
    message_id: str | None
    event: SendEvent | None = None


class Attempt:
    """One message's state across attempts: who is delivered, who is still pending."""

    def __init__(
        self,
        prepared: Prepared,
        first: SendResult | SMTPKitError | None,
        *,
        transport: Transport,
        retry: RetryPolicy,
        bucket: TokenBucket | None,
        bucket_sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.bucket = bucket
        self.bucket_sleep = bucket_sleep  # None: the bucket's own sleep
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
        # The last server that accepted a recipient (an attempt may only refuse),
        # and the last one that refused them all (named by the error).
        self.server: str | None = None
        self.refused_by: str | None = None

    def __call__(self, number: int) -> None:
        """Make attempt *number* through the transport and record its outcome."""
        self._begin(number)
        outcome: SendResult | SMTPKitError
        try:
            outcome = self._attempt(number)
        except SMTPKitError as exc:
            outcome = exc
        self._record(outcome)

    def record(self, number: int, outcome: SendResult | SMTPKitError) -> None:
        """Record attempt *number*'s *outcome*, made elsewhere (``AsyncMailer``'s
        worker threads), exactly as ``__call__`` records the one it makes.

        Raises:
            RecipientsRefusedError: Some recipients are still pending (retry).
            SMTPKitError: *outcome* itself, when it is an error.
        """
        self._begin(number)
        self._record(outcome)

    def _begin(self, number: int) -> None:
        self.number = number
        counts = self.counts
        for rcpt in self.pending.recipients:  # cheaper than Counter.update for a few
            counts[rcpt] += 1

    def _record(self, outcome: SendResult | SMTPKitError) -> None:
        if isinstance(outcome, RecipientsRefusedError):
            replies = outcome.refused  # took nothing: not the result's server
            self.refused_by = outcome.server
        elif isinstance(outcome, TransportError):
            self._failed(outcome)
            if outcome.delivery_unknown and self.retry.should_retry(outcome):
                self.possibly_duplicated = True
            raise outcome
        elif isinstance(outcome, SMTPKitError):  # ClosedError: not an attempt's error
            raise outcome
        else:
            replies = {r: rr.reply for r, rr in outcome.recipients.items()}
            if any(200 <= reply.code < 300 for reply in replies.values()):
                self.reply = outcome.reply
                self.server = outcome.server
        retry = self.retry
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
            refusal.server = outcome.server  # the server that deferred them
            self._failed(refusal)
            raise refusal

    def _attempt(self, number: int) -> SendResult:
        first, self.first = self.first, None
        if first is None:
            if self.bucket is not None:
                self.bucket.acquire(sleep=self.bucket_sleep)
            try:
                return self.transport.send(self.pending, self.prepared.data)
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
        delivered = any(r.accepted for r in recipients.values())
        return SendResult(
            envelope=self.prepared.envelope,
            recipients=recipients,
            reply=self.reply if delivered else None,
            message_id=self.prepared.message_id,
            elapsed=elapsed,
            attempts=self.number,
            error=error,
            possibly_duplicated=self.possibly_duplicated,
            server=self.server if delivered else None,
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
        exc.server = self.refused_by if last_error is None else last_error.server
        return exc
