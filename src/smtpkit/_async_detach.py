"""The results of ``AsyncMailer`` sends whose callers stopped waiting.

A caller cancelled after its attempt started gets ``CancelledError`` at once;
the attempt runs to its end in its worker, and its outcome is recorded here like
any other (``Attempt.record``), logged at WARNING (no addresses) and handed to
the send hooks (``after_send`` or ``on_failure``) and ``on_detached``.  Nothing
is retried after the cancel, so nothing is resent.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from ._attempt import Attempt
from ._delivery import concluded, ended_with, failed_result
from ._dispatch import Dispatcher, Job
from ._exceptions import SMTPKitError
from ._hooks import HookRunner
from ._send_event import SendEvent
from ._transports.base import SendResult

__all__ = ["Detached"]

logger = logging.getLogger("smtpkit")


class Detached:
    """Settles cancelled sends: withdraws what has not started, reports the rest."""

    def __init__(
        self,
        on_detached: Callable[[SendResult], None] | None,
        clock: Callable[[], float],
        hooks: HookRunner | None = None,
    ) -> None:
        self._on_detached = on_detached
        self._clock = clock
        self._hooks = hooks

    def detach(
        self,
        attempt: Attempt,
        dispatcher: Dispatcher,
        job: Job | None,
        start: float,
    ) -> bool:
        """A cancelled caller: drop its unstarted attempt, or report it later.

        *job* is the attempt in flight, if any; when it started, its outcome is
        reported as soon as it is known.  Without one (cancelled while waiting
        to retry, or withdrawn before it started), the earlier attempts'
        outcome is reported now.

        Returns:
            Whether an outcome is reported (now or later); False when nothing
            reached the server, which the caller reports as not sent.
        """
        if job is not None and not dispatcher.withdraw(job):
            settle = functools.partial(self._settle, attempt, start=start)
            if job.outcome is not None:
                settle(job.outcome)
            else:
                job.on_late = settle
            return True
        if attempt.number >= 1:  # an earlier attempt reached the server
            last = attempt.history[-1] if attempt.history else None
            self.report(self.final(attempt, last, start), attempt.prepared.event)
            return True
        return False

    def final(
        self,
        attempt: Attempt,
        exc: Exception | None,
        start: float,
        *,
        raising: bool = False,
    ) -> SendResult:
        """The result of a message whose attempts ended (with *exc*, or not).

        With *raising*, the error of a message no recipient got is raised (as
        ``send`` does); otherwise it is the result's ``error``.
        """
        try:
            error = None if exc is None else ended_with(attempt, exc)
            return concluded(attempt, elapsed=self._clock() - start, error=error)
        except Exception as failure:
            if raising:
                raise
            return failed_result(attempt.prepared, failure)

    def _settle(
        self, attempt: Attempt, outcome: SendResult | SMTPKitError, *, start: float
    ) -> None:
        try:
            attempt.record(attempt.number + 1, outcome)
        except Exception as exc:  # a refusal or an error: part of the result
            self.report(self.final(attempt, exc, start), attempt.prepared.event)
        else:
            self.report(self.final(attempt, None, start), attempt.prepared.event)

    def report(self, result: SendResult, event: SendEvent | None = None) -> None:
        """Log the result of a send whose caller stopped waiting; pass it on (to
        the hooks too, with the message's *event*, when they have not seen it)."""
        if result.error is None:
            outcome = "delivered"
        elif getattr(result.error, "delivery_unknown", False):
            outcome = "delivery unknown"
        else:
            outcome = f"not delivered ({type(result.error).__name__})"
        logger.warning(
            "a cancelled send finished in the background: %s, message %s",
            outcome,
            result.message_id,
        )
        if event is not None and self._hooks is not None:
            self._hooks.finished(event, result)
        if self._on_detached is None:
            return
        try:
            self._on_detached(result)
        except Exception:
            logger.exception("on_detached raised; the result was logged above")
