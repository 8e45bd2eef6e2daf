"""The outcomes of one message's sending that the mailer builds itself: a
transport's answer checked, a caller's hook that raised, an interrupted run."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ._adaptation import DEFAULT_PROVIDER_ADAPTATION, ProviderAdaptation
from ._attempt import Interrupted, Prepared
from ._bulk import NotSentError, QuotaExceededError
from ._config import SMTPConfig
from ._exceptions import (
    InvalidMessageError,
    RecipientsRefusedError,
    SMTPKitError,
    SMTPReplyError,
    TransportError,
)
from ._provider_replies import ReplyReason, explain_reply
from ._transports.base import (
    RecipientResult,
    SendResult,
    Transport,
    contract_breach,
    takes_on_result,
)
from ._transports.failover import FailoverTransport

__all__ = [
    "Interrupted",
    "acquire_timeout_of",
    "adaptation_of",
    "callback_error",
    "checked",
    "delivered_at_once",
    "invalid",
    "log_sent",
    "not_sent",
    "quota_spent",
    "takes_on_result",
    "unretried",
]


logger = logging.getLogger("smtpkit")


def delivered_at_once(
    item: Prepared, first: SendResult | SMTPKitError, clock: Callable[[], float]
) -> SendResult | None:
    """The final result of a message whose first attempt every recipient accepted.

    None otherwise: then the mailer's ``Attempt`` and retry runner decide.  For
    the common case (``send_many``, all delivered at once) the result is the one
    they would build, without building them: the first attempt's recipient
    results in envelope order, its reply, the Message-ID, one attempt.
    """
    if type(first) is not SendResult or first.error is not None or first.reply is None:
        return None
    start = clock()
    given = first.recipients
    recipients: dict[str, RecipientResult] = {}
    for rcpt in item.envelope.recipients:
        result = given.get(rcpt)
        if result is None or result.attempts != 1 or not 200 <= result.reply.code < 300:
            return None
        recipients[rcpt] = result
    sent = SendResult(
        envelope=item.envelope,
        recipients=recipients,
        reply=first.reply,
        message_id=item.message_id,
        elapsed=clock() - start,
        server=first.server,
    )
    log_sent(sent)
    return sent


def log_sent(result: SendResult) -> None:
    """Log a delivered message at INFO (once per message, with its queue id)."""
    if logger.isEnabledFor(logging.INFO):  # its arguments cost more than the call
        logger.info(
            "sent %s to %d recipient(s): %s",
            result.message_id,
            len(result.accepted),
            result.reply.text if result.reply else "",
        )


def checked(outcome: object) -> SendResult | SMTPKitError:
    """*outcome* if it is one a transport may return, else a contract breach."""
    if isinstance(outcome, SendResult | SMTPKitError):
        return outcome
    return contract_breach(TypeError(f"send_batch returned {type(outcome).__name__}"))


def callback_error(exc: Exception) -> TransportError:
    """The error of a message whose sending stopped because a caller's hook raised.

    The hook (``on_retry``, ``sleep``, ``clock``) ran between attempts, so what
    the server got is known: the message failed, and it was not retried.
    """
    error = TransportError(
        f"sending stopped: a hook raised {type(exc).__name__}: {exc}",
    )
    error.__cause__ = exc
    return error


def invalid(exc: Exception) -> SMTPKitError:
    """The error for a message that could not be prepared (rendered, addressed)."""
    if isinstance(exc, SMTPKitError):
        return exc
    error = InvalidMessageError(f"cannot send this message: {exc}")
    error.__cause__ = exc
    return error


def not_sent() -> NotSentError:
    """The error of a message its stopped bulk send never handed to the server."""
    return NotSentError("not sent: the bulk send stopped before its turn")


def unretried(item: Prepared, first: SendResult | SMTPKitError) -> SendResult:
    """The result of a message left at its first attempt (the run was interrupted)."""
    if isinstance(first, SendResult):
        return dataclasses.replace(first, message_id=item.message_id)
    return SendResult(
        envelope=item.envelope,
        message_id=item.message_id,
        error=first,
        attempts=0 if isinstance(first, NotSentError) else 1,
    )


def _config_of(transport: Transport) -> SMTPConfig | None:
    """*transport*'s ``SMTPConfig``; a ``FailoverTransport``'s first server's."""
    while isinstance(transport, FailoverTransport):
        transport = transport.transports[0]
    config = getattr(transport, "config", None)
    return config if isinstance(config, SMTPConfig) else None


def adaptation_of(transport: Transport) -> ProviderAdaptation:
    """The ``SMTPConfig.adapt`` of *transport*'s configuration; the default if none.

    For a ``FailoverTransport`` or ``RoundRobinTransport``, its first server's.
    """
    config = _config_of(transport)
    return DEFAULT_PROVIDER_ADAPTATION if config is None else config.adapt


def acquire_timeout_of(transport: Transport) -> float | None:
    """``PoolLimits.acquire_timeout`` of *transport*'s configuration, if it has one.

    None for a transport without an ``SMTPConfig`` (``FakeTransport``): its
    ``send`` never times out waiting for a connection, so nor does a send
    waiting for a worker to call it.  For a ``FailoverTransport`` or
    ``RoundRobinTransport``, its first server's.
    """
    config = _config_of(transport)
    return None if config is None else config.pool.acquire_timeout


def quota_spent(result: SendResult, name: str) -> QuotaExceededError | None:
    """The error that stops bulk method *name* when *result* says the quota is spent."""
    error = result.error
    if not isinstance(error, SMTPReplyError):
        return None
    replies = (
        list(error.refused.values())
        if isinstance(error, RecipientsRefusedError)
        else [error.reply]
    )
    for reply in replies:
        explanation = explain_reply(reply)
        if explanation is None or explanation.reason is not ReplyReason.QUOTA_EXCEEDED:
            continue
        wait = explanation.retry_after
        when = (
            f"sending may resume in about {wait:.0f} s"
            if wait is not None
            else "the provider does not say when sending may resume"
        )
        msg = (
            f"{name} stopped: {explanation.provider} says the sending quota is "
            f"spent ({reply}); {when}"
        )
        return QuotaExceededError(msg, results=[], reply=reply, resume_after=wait)
    return None
