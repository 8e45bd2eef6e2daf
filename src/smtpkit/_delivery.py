"""What ``Mailer`` and ``AsyncMailer`` share around one message's attempts.

A batch's first attempts come from one ``send_batch`` call (``batch_outcomes``);
``is_settled`` says whether an outcome is final; ``ended_with``, ``concluded``
and ``failed_result`` turn the end of a message's retry loop into its
``SendResult`` or its error.  Only *how* attempts are made and waited for differs
between the two faces (threads and ``time.sleep``, or worker threads fed from the
event loop and ``asyncio.sleep``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from ._attempt import Attempt, Interrupted, Prepared
from ._exceptions import RecipientsRefusedError, SMTPKitError, TransportError
from ._message import Envelope
from ._outcomes import callback_error, checked, log_sent
from ._retry import RetryPolicy
from ._transports.base import OnResult, SendResult, Transport, contract_breach

__all__ = [
    "batch_outcomes",
    "concluded",
    "ended_with",
    "failed_result",
    "is_settled",
]


def is_settled(retry: RetryPolicy, outcome: SendResult | SMTPKitError) -> bool:
    """Whether a first attempt's *outcome* is final: no retry would follow it."""
    if retry.attempts <= 1:
        return True
    if isinstance(outcome, SendResult):
        replies = [r.reply for r in outcome.recipients.values()]
    elif isinstance(outcome, RecipientsRefusedError):
        replies = list(outcome.refused.values())
    else:
        return not retry.should_retry(outcome)
    return not any(
        not 200 <= reply.code < 300 and retry.should_retry_reply(reply)
        for reply in replies
    )


def batch_outcomes(
    transport: Transport,
    items: Sequence[tuple[Envelope, bytes]],
    on_result: OnResult | None,
) -> list[SendResult | SMTPKitError]:
    """One outcome per item from one ``send_batch`` call, whatever it does.

    *on_result* is passed only when not None (transports written before it
    existed do not take it).  A raised ``SMTPKitError`` becomes every item's
    outcome, each a copy for its own retry bookkeeping; anything else, or a wrong
    number of outcomes, is a contract breach.
    """
    try:
        if on_result is not None:
            outcomes = list(transport.send_batch(items, on_result=on_result))
        else:
            outcomes = list(transport.send_batch(items))
    except SMTPKitError as exc:  # e.g. ClosedError before anything was sent
        return [copy.copy(exc) for _ in items]  # one per message's bookkeeping
    except Exception as exc:  # a transport breaking its contract
        return [contract_breach(exc) for _ in items]
    if len(outcomes) != len(items):
        wrong = ValueError(
            f"send_batch returned {len(outcomes)} outcomes for {len(items)} messages"
        )
        return [contract_breach(wrong) for _ in items]
    return [checked(outcome) for outcome in outcomes]


def ended_with(attempt: Attempt, exc: Exception) -> SMTPKitError | None:
    """The error of a result whose retry loop raised *exc*, or None.

    A refusal of the recipients still pending is in the recipients' replies (no
    error); anything else is the result's error once some recipient has the
    message.  When none has it yet, *exc* is re-raised: the caller decides.
    """
    if isinstance(exc, RecipientsRefusedError):
        return None  # the recipients' last replies are in attempt.last
    if not attempt.final:
        raise exc
    if isinstance(exc, SMTPKitError):  # ClosedError included: close() during a retry
        return exc  # some recipients were delivered before this failure
    if isinstance(exc, Interrupted):
        return None  # some recipients have it: a result, like retries run out
    return callback_error(exc)  # on_retry, sleep or a clock of the caller's raised


def concluded(
    attempt: Attempt, *, elapsed: float, error: SMTPKitError | None
) -> SendResult:
    """The result of a message some recipient accepted; else raise its error.

    Raises:
        TransportError: No recipient has the message (the last error, with
            ``attempts`` and ``history``).
    """
    result = attempt.result(elapsed=elapsed, error=error)
    if not result.accepted:
        raise attempt.refused_error()
    log_sent(result)
    return result


def failed_result(item: Prepared, exc: Exception) -> SendResult:
    """The result of a message of a bulk send whose delivery raised *exc*."""
    if isinstance(exc, SMTPKitError):
        # Resent after an attempt whose outcome was unknown: the server may hold
        # it once or more even though the last attempt failed.
        history = exc.history if isinstance(exc, TransportError) else ()
        return SendResult(
            envelope=item.envelope,
            message_id=item.message_id,
            error=exc,
            attempts=getattr(exc, "attempts", 0),
            possibly_duplicated=any(e.delivery_unknown for e in history),
        )
    return SendResult(  # on_retry, sleep or a clock of the caller's
        envelope=item.envelope,
        message_id=item.message_id,
        error=callback_error(exc),
        attempts=0,
    )
