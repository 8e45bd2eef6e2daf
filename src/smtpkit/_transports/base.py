"""The transport contract: deliver one envelope and its bytes, return what happened."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Final

from typing_extensions import Self

from .._exceptions import NotSupportedError, SMTPKitError, TransportError
from .._message import Envelope
from .._provider_replies import ReplyExplanation, ReplyReason, explain_reply
from .._reply import SMTPReply
from .._verify_report import VerifyReport

__all__ = [
    "DEFAULT_CONCURRENCY",
    "OnResult",
    "RecipientResult",
    "SendResult",
    "Transport",
    "contract_breach",
    "takes_on_result",
]

_OK = SMTPReply(250, "OK")
DEFAULT_CONCURRENCY: Final = 4  # the default pool size, PoolLimits.max_connections


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The final outcome for one envelope recipient.

    Attributes:
        address: The recipient as sent in RCPT TO.
        reply: The last reply the server gave for it (to RCPT TO, or to the end of
            data when the whole message was refused after its RCPT was accepted).
        attempts: How many transactions included this recipient.
    """

    address: str
    reply: SMTPReply
    attempts: int = 1

    @property
    def accepted(self) -> bool:
        """True when the server took responsibility for delivering to it."""
        return 200 <= self.reply.code < 300

    @property
    def explanation(self) -> ReplyExplanation | None:
        """What a provider means by this recipient's refusal (see ``explain_reply``).

        None for an accepted recipient and for a reply no provider documents.
        """
        return explain_reply(self.reply)

    @property
    def reason(self) -> ReplyReason | None:
        """Why a provider refused this recipient, or None (see ``explanation``)."""
        explanation = self.explanation
        return None if explanation is None else explanation.reason

    @property
    def hint(self) -> str | None:
        """What to do about this recipient's refusal, or None (see ``explanation``)."""
        explanation = self.explanation
        return None if explanation is None else explanation.hint


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one message.

    ``Mailer.send`` raises on failure; ``Mailer.send_many`` never raises for one
    message and returns results with ``error`` set instead.

    Attributes:
        envelope: The envelope as first handed to the transport (None when the
            message was invalid before an envelope could be made).
        recipients: Each recipient's final outcome, in envelope order.
        reply: The server's reply to the end of data (it usually carries the
            queue id), or None when the message was not accepted.
        message_id: The ``Message-ID`` header, when known.
        elapsed: Seconds from the first attempt to the final outcome.
        attempts: Transactions made, the first one included.
        error: Why the message failed, for results of ``send_many``.
        possibly_duplicated: The message was resent after an attempt whose
            outcome was unknown (``RetryPolicy(retry_ambiguous=True)``).
        server: The server that accepted the message, as a ``FailoverTransport``
            or ``RoundRobinTransport`` names it (``"host:port"``); None from a
            transport with a single server, or when no server accepted it.  When
            a retry splits the recipients across servers, the last server that
            accepted any of them (each server's refusals are in ``recipients``).
    """

    envelope: Envelope | None
    recipients: Mapping[str, RecipientResult] = field(default_factory=dict)
    reply: SMTPReply | None = None
    message_id: str | None = None
    elapsed: float = 0.0
    attempts: int = 1
    error: SMTPKitError | None = None
    possibly_duplicated: bool = False
    server: str | None = None

    @classmethod
    def delivered(cls, envelope: Envelope, reply: SMTPReply = _OK) -> SendResult:
        """Return a result in which every recipient was accepted with *reply*."""
        recipients = {r: RecipientResult(r, reply) for r in envelope.recipients}
        return cls(envelope=envelope, recipients=recipients, reply=reply)

    @property
    def accepted(self) -> tuple[str, ...]:
        """Recipients the server accepted."""
        return tuple(r.address for r in self.recipients.values() if r.accepted)

    @property
    def refused(self) -> dict[str, SMTPReply]:
        """Recipients that were refused, each with the server's last reply.

        Each recipient's ``reason``, ``hint`` and ``explanation`` are on its
        ``RecipientResult``: ``result.recipients[address]``.
        """
        return {r.address: r.reply for r in self.recipients.values() if not r.accepted}

    @property
    def ok(self) -> bool:
        """True when the message was accepted for every recipient."""
        return self.error is None and self.reply is not None and not self.refused

    def raise_for_error(self) -> Self:
        """Raise ``error`` if the message failed; return the result otherwise."""
        if self.error is not None:
            raise self.error
        return self

    def with_updates(self, **changes: object) -> SendResult:
        """Return a copy with some fields replaced."""
        return replace(self, **changes)  # type: ignore[arg-type]  # dataclass fields


def contract_breach(exc: Exception) -> TransportError:
    """Turn an exception a transport should not raise into a reportable error.

    Whether anything reached the server is unknown, so the result says
    ``delivery_unknown`` and the default policy does not retry it.
    """
    error = TransportError(
        f"transport raised {type(exc).__name__}: {exc}", delivery_unknown=True
    )
    error.__cause__ = exc
    return error


OnResult = Callable[[int, "SendResult | SMTPKitError"], None]
"""``on_result(index, outcome)``: the outcome of ``send_batch``'s item *index*, as
soon as it is known."""


class Transport(abc.ABC):
    """Delivers one envelope per call; subclass it to send mail some other way.

    The contract:

    * ``send`` makes exactly **one** attempt: no retries and no sleeping.  The
      ``Mailer`` applies the retry policy around every transport alike.
    * It returns a :class:`SendResult` with one :class:`RecipientResult` per
      envelope recipient, or raises a ``TransportError`` subclass (and nothing
      else).  When every recipient is refused it raises ``RecipientsRefusedError``;
      when only some are, it returns and lists them as refused.
    * ``send`` may be called from several threads at once; a subclass says in its
      docstring how it stays safe.  After ``close()`` it raises ``ClosedError``.
    * ``open`` and ``close`` are optional; ``close`` is idempotent.
    * ``max_concurrency`` says how many sends at once suit it: ``send_many``
      runs that many threads unless told otherwise.
    """

    @property
    def max_concurrency(self) -> int:
        """How many concurrent sends this transport wants from ``send_many``.

        The default is 4; ``SMTPTransport`` returns its pool's
        ``max_connections``.  A wrapping transport should return the value of
        the transport it wraps.
        """
        return DEFAULT_CONCURRENCY

    def open(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Prepare for sending (connect early, warm a pool); optional."""

    @abc.abstractmethod
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        """Make one delivery attempt of *data* to the envelope's recipients.

        Args:
            envelope: MAIL FROM and RCPT TO addresses.
            data: The message: headers and body with CRLF line endings, not
                dot-stuffed (the transport does that if its protocol needs it).

        Returns:
            Per-recipient replies and the final reply.

        Raises:
            TransportError: The attempt failed (see the exception's ``is_transient``).
            ClosedError: The transport was closed.
        """

    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | SMTPKitError]:
        """Make one attempt for each message; failures are returned, not raised.

        ``Mailer.send_many`` hands each worker thread a batch.  The default sends
        them one by one; a transport that can do better (``SMTPTransport``
        pipelines them on one connection) overrides this.

        Args:
            items: Envelopes and their data.
            on_result: Called with ``(index, outcome)`` as soon as an item's
                outcome is known, so that ``send_many`` reports progress per
                message; optional for overrides (one without the parameter is
                still called, and its results count when it returns).  It must
                not raise.

        Returns:
            One outcome per item, in order: a result, or the ``SMTPKitError`` its
            attempt raised, unchanged, as ``Mailer.send`` would raise it
            (``ClosedError`` for items not started because ``close()`` came
            first; a custom transport's ``InvalidMessageError`` stays one).
            Any other exception a subclass raises becomes a ``TransportError``
            with ``delivery_unknown=True``.

        Raises:
            ClosedError: The transport was closed.
        """
        outcomes: list[SendResult | SMTPKitError] = []
        for index, (envelope, data) in enumerate(items):
            outcome: SendResult | SMTPKitError
            try:
                outcome = self.send(envelope, data)
            except SMTPKitError as exc:
                # The attempt's own error, as send() raised it: a close() between
                # two messages fails only those not yet sent, and a custom
                # transport's InvalidMessageError is not a delivery-unknown.
                outcome = exc
            except Exception as exc:  # a subclass breaking the contract
                outcome = contract_breach(exc)
            outcomes.append(outcome)
            if on_result is not None:
                on_result(index, outcome)
        return outcomes

    def verify(self) -> VerifyReport:
        """Check the settings by opening one session, without sending mail.

        ``SMTPTransport`` connects, logs in and QUITs; ``FakeTransport``
        returns a made-up report.  A transport that has no server to check
        keeps this default.

        Raises:
            NotSupportedError: Always, for a transport without a server.
        """
        msg = (
            f"{type(self).__name__} cannot verify a server connection: "
            "verify() needs SMTPTransport (a Mailer built from an SMTPConfig); "
            "FakeTransport returns a made-up report for tests"
        )
        raise NotSupportedError(msg, command="verify")

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release resources; idempotent."""

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


def takes_on_result(transport: Transport) -> bool:
    """Whether ``transport.send_batch`` accepts ``on_result=`` (older ones do not)."""
    try:
        parameters = inspect.signature(transport.send_batch).parameters.values()
    except (TypeError, ValueError):  # a builtin or otherwise opaque callable
        return False
    return any(
        p.name == "on_result" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )
