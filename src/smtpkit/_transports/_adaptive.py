"""Adapting a pool to what the provider's replies say, instead of hammering.

Two replies change how ``SMTPTransport`` uses its pool (each switchable off in
``SMTPConfig.adapt``), recognised by :func:`smtpkit._provider_replies.explain_reply`:

* "too many messages on this connection" (NetEase ``450 MI:DMC``): the refused
  messages never counted as attempts; they go to a new connection, and the
  pool's messages per connection drop to what this one carried.  Every
  ``grow_after`` delivered messages the limit doubles again (up to the
  configured one): a refusal of a try costs one refused MAIL and teaches the
  limit exactly again, so a spurious refusal is not kept forever;
* "too many connections" (NetEase ``421 HL:ICC``, Postfix anvil): the pool
  shrinks to the connections the server accepted (multiplicative decrease:
  one refusal can halve it or more), the waiting messages wait for an open one,
  and the size grows back by one every ``grow_after`` delivered messages
  (additive increase, multiplicative decrease, as TCP does with its window).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from .._adaptation import ProviderAdaptation
from .._exceptions import RecipientsRefusedError, SMTPKitError, SMTPReplyError
from .._provider_replies import ReplyExplanation, ReplyReason, explain_reply
from ._pool import ConnectionPool, Pooled
from ._session import Item
from .base import SendResult

__all__ = ["PoolAdapter", "Refusals", "explained"]

logger = logging.getLogger("smtpkit")

C = TypeVar("C")

# Refused connections in a row (with no message delivered between them) that a
# send_batch call absorbs before the refusal is the messages' error (the server
# may refuse for other clients' connections).
MAX_ABSORBED_REFUSALS: Final = 8
_MAX_GROW_AFTER: Final = 1_000_000  # messages: growing back never stops entirely


def explained(outcome: object) -> ReplyExplanation | None:
    """What a provider meant by the reply behind *outcome*, if it is known."""
    if isinstance(outcome, RecipientsRefusedError):
        for reply in outcome.refused.values():
            explanation = explain_reply(reply)
            if explanation is not None:
                return explanation
        return None
    if isinstance(outcome, SMTPReplyError):
        return explain_reply(outcome.reply)
    return None


def _is_message_limit(outcome: object) -> bool:
    if not isinstance(outcome, SMTPReplyError):
        return False  # a delivered message, the common case: nothing to look up
    explanation = explained(outcome)
    return (
        explanation is not None
        and explanation.reason is ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION
    )


def _forget(item: Item) -> None:
    """Clear *item*'s transaction: it starts afresh on another connection."""
    item.mail = None
    item.rcpt = {}
    item.data_reply = None
    item.data_sent = False
    item.outcome = None


@dataclass
class Refusals:
    """The "too many connections" refusals one ``send_batch`` call absorbed.

    Counted in a row: a message of the call delivered starts the count again,
    so a long call that probes a larger pool now and then never runs out.
    """

    in_a_row: int = 0

    def progressed(self) -> None:
        """A message was delivered: the refusals so far were passing."""
        self.in_a_row = 0


class PoolAdapter(Generic[C]):
    """Learns a server's connection and message limits for one pool.

    Thread-safe: every send thread reports to the same adapter.
    """

    def __init__(self, pool: ConnectionPool[C], adapt: ProviderAdaptation) -> None:
        self._pool = pool
        self._adapt = adapt
        self._lock = threading.Lock()
        self._delivered = 0  # messages delivered since the last change of size
        self._grow_after = adapt.grow_after  # doubles whenever growing failed
        self._grown = False  # the size was last changed by growing
        # The same for the messages per connection.
        self._carried = 0  # messages delivered since the last change of the limit
        self._messages_grow_after = adapt.grow_after
        self._messages_grown = False

    def holds(self, item: Item) -> bool:
        """True when *item*'s refusal will be undone (sent again, not reported)."""
        return self._adapt.reconnect_on_message_limit and _is_message_limit(
            item.outcome
        )

    def reported(self, report: Callable[[Item], None]) -> Callable[[Item], None]:
        """*report*, minus the items whose refusal :meth:`requeue` will undo.

        Every settled item also counts as the pool's progress, which keeps the
        messages waiting for a connection of a shrunk pool waiting.
        """

        def filtered(item: Item) -> None:
            self._pool.progressed()
            if not isinstance(item.outcome, SMTPReplyError) or not self.holds(item):
                report(item)

        return filtered

    def requeue(self, pooled: Pooled[C], batch: list[Item]) -> int:
        """Undo the "too many messages" refusals of *batch* on *pooled*.

        The refused messages get no outcome (they go to another connection, free),
        and the pool's messages per connection drop to what *pooled* carried
        before the first refusal.  A connection that carried nothing before its
        refusal learnt nothing: its refusals stand, so sending always progresses.

        Returns:
            How many messages were put back.
        """
        if not self._adapt.reconnect_on_message_limit:
            return 0
        refused = [item for item in batch if _is_message_limit(item.outcome)]
        if not refused:
            return 0
        first = batch.index(refused[0])
        carried = pooled.messages + sum(
            1 for item in batch[:first] if item.outcome is not None
        )
        if carried == 0:
            return 0
        for item in refused:
            _forget(item)
        with self._lock:
            if carried < self._pool.max_messages:
                logger.warning(
                    "the server allows %d message(s) per connection; reconnecting "
                    "after every %d from now on",
                    carried,
                    carried,
                )
                if self._messages_grown:
                    # The raised limit was refused: try again twice as late.
                    self._messages_grow_after = min(
                        self._messages_grow_after * 2, _MAX_GROW_AFTER
                    )
                    self._messages_grown = False
                self._carried = 0
            self._pool.limit_messages(carried)
        return len(refused)

    def absorbs(self, exc: SMTPKitError, refusals: Refusals) -> bool:
        """Whether the messages waiting for a connection wait on, not fail.

        Called when opening a connection failed with *exc*, once its slot is
        given back: a "too many connections" refusal is judged by
        :meth:`connection_refused`, at most ``MAX_ABSORBED_REFUSALS`` in a row.
        """
        if refusals.in_a_row >= MAX_ABSORBED_REFUSALS or not self.connection_refused(
            exc
        ):
            return False
        refusals.in_a_row += 1
        return True

    def connection_refused(self, exc: SMTPKitError) -> bool:
        """Shrink the pool when *exc* says "too many connections".

        Judged by the connections of ours that are open or opening: with none,
        the refusal is the messages' error.

        Returns:
            True when the messages should wait for an open connection instead
            of failing: the server refused only this extra connection.
        """
        if not self._is_connection_limit(exc):
            return False
        pool = self._pool
        established, connecting = pool.established()
        if established + connecting == 0:
            return False  # nothing of ours to wait for: a real failure
        with self._lock:
            # The number the server did accept is a sharper signal than halving,
            # and concurrent refusals cannot shrink it below that together.  The
            # ones still connecting count only when none got through yet (they
            # may be refused too: each refusal shrinks again).
            size = max(1, min(established or connecting, pool.size))
            if size < pool.size:
                logger.warning(
                    "the server refused connection %d (too many connections); "
                    "using at most %d",
                    established + 1,
                    size,
                )
            if self._grown:
                # Growing back was refused: wait twice as long before the next
                # try, so a steady limit is probed ever more rarely.
                self._grow_after = min(self._grow_after * 2, _MAX_GROW_AFTER)
                self._grown = False
            pool.resize(size)
            self._delivered = 0
        return True

    def refused_midway(
        self, batch: list[Item], error: SMTPKitError, refusals: Refusals
    ) -> bool:
        """Undo a "too many connections" 421 that came after the greeting.

        Some servers greet first and refuse at EHLO, MAIL or RCPT.  The messages
        whose data had not gone out never started: they get no outcome and wait
        for an open connection (see :meth:`connection_refused`), free.  A message
        whose data went out keeps its error: the server may have it.

        Returns:
            True when the refusal was undone; the connection is already released.
        """
        if not self._is_connection_limit(error):
            return False
        undone = [
            item
            for item in batch
            if item.outcome is not None
            and not item.data_sent
            and self._is_connection_limit(item.outcome)
        ]
        if not undone or not self.absorbs(error, refusals):
            return False
        for item in undone:
            _forget(item)
        return True

    def _is_connection_limit(self, outcome: object) -> bool:
        explanation = explained(outcome)
        return (
            self._adapt.learn_connection_limit
            and explanation is not None
            and explanation.reason is ReplyReason.TOO_MANY_CONNECTIONS
        )

    def delivered_in(self, batch: list[Item], refusals: Refusals) -> None:
        """Count the messages of *batch* delivered (see :meth:`delivered`)."""
        count = sum(isinstance(item.outcome, SendResult) for item in batch)
        if count:
            refusals.progressed()
        self.delivered(count)

    def delivered(self, count: int) -> None:
        """Count *count* delivered messages; raise the learnt limits now and then."""
        if count == 0:
            return
        if self._adapt.reconnect_on_message_limit:
            self._grow_messages(count)
        if not self._adapt.learn_connection_limit:
            return
        pool = self._pool
        with self._lock:
            self._delivered += count
            if self._delivered >= self._grow_after and pool.size < pool.max_connections:
                if self._grown:
                    # The last step up held for a whole period: the limit moved,
                    # so probing is cheap again.
                    self._grow_after = self._adapt.grow_after
                self._delivered = 0
                self._grown = True
                pool.resize(pool.size + 1)
                logger.debug("trying %d connections again", pool.size)

    def _grow_messages(self, count: int) -> None:
        """Double a lowered messages-per-connection limit every ``grow_after``."""
        pool = self._pool
        with self._lock:
            if pool.max_messages >= pool.max_messages_configured:
                return
            self._carried += count
            if self._carried < self._messages_grow_after:
                return
            if self._messages_grown:
                # The last raise held for a whole period: probing is cheap again.
                self._messages_grow_after = self._adapt.grow_after
            self._carried = 0
            self._messages_grown = True
            pool.allow_messages(pool.max_messages * 2)
            logger.debug("trying %d messages per connection again", pool.max_messages)
