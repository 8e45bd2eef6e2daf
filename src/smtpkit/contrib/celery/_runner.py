"""The body of the send task: claim each key, send what is pending, record outcomes.

Runs in a worker process against the worker's own ``Mailer`` (no in-process
retries: ``RetryPolicy.never()``) and Redis.  Nothing here talks to Celery, so the
tests call it directly against real Redis and a real SMTP server.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from smtpkit import (
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    NotSentError,
    QuotaExceededError,
    ReplyReason,
    RetryPolicy,
    SendResult,
    SMTPKitError,
    SMTPReplyError,
    TransportError,
    explain_reply,
)

from ._limiter import Limiter
from ._payload import Item, load_item
from ._state import Claim, DeliveryState, Outcome, StateStore

__all__ = ["ChunkOutcome", "Settings", "send_chunk"]


_REQUEUED: Final = frozenset({DeliveryState.QUEUED.value, DeliveryState.RETRYING.value})


@dataclass(frozen=True, slots=True)
class Settings:
    """How the task treats each message (from ``MailQueue``'s arguments)."""

    retry: RetryPolicy
    at_least_once: bool
    lease: float


@dataclass(slots=True)
class ChunkOutcome:
    """What one run of the task did: final states and the items to send later.

    Attributes:
        states: Each key's state after this run (``"busy"`` when another worker
            holds it).
        later: ``(countdown seconds, items)`` to put back on the queue.
    """

    states: dict[str, str] = field(default_factory=dict)
    later: list[tuple[float, list[Item]]] = field(default_factory=list)

    def postpone(self, keys: set[str], countdown: float) -> None:
        """Send the items of *keys* again no sooner than *countdown* seconds."""
        moved: list[tuple[float, Item]] = []
        for n, (when, items) in enumerate(self.later):
            keep = [i for i in items if i["key"] not in keys or when >= countdown]
            moved += [(max(when, countdown), i) for i in items if i not in keep]
            self.later[n] = (when, keep)
        self.later = [(when, items) for when, items in self.later if items]
        for when, item in moved:
            self.requeue(when, item)

    def requeue(self, countdown: float, item: Item) -> None:
        """Send *item* again after *countdown* seconds (grouped by whole second)."""
        seconds = float(max(0, math.ceil(countdown)))
        for when, items in self.later:
            if when == seconds:
                items.append(item)
                return
        self.later.append((seconds, [item]))


@dataclass(frozen=True, slots=True)
class _Run:
    token: str
    mailer: Mailer
    store: StateStore
    settings: Settings
    outcome: ChunkOutcome
    rng: random.Random
    items: dict[str, Item]


@dataclass(frozen=True, slots=True)
class _Pending:
    item: Item
    claim: Claim
    message: Message | bytes
    envelope: Envelope


def send_chunk(
    items: Sequence[Item],
    *,
    mailer: Mailer,
    store: StateStore,
    settings: Settings,
    limiter: Limiter | None = None,
    rng: random.Random | None = None,
) -> ChunkOutcome:
    """Send *items* once each, at most, and record every outcome in *store*.

    A key given twice (the same message enqueued twice in one call, colliding
    ``keys=``) is sent once: only its first item is kept.
    """
    first: dict[str, Item] = {}
    for item in items:
        first.setdefault(item["key"], item)
    items = list(first.values())
    outcome = ChunkOutcome()
    run = _Run(
        _token(),
        mailer,
        store,
        settings,
        outcome,
        rng or random.Random(),
        {item["key"]: item for item in items},
    )
    if limiter is None:
        _send(_claim_all(items, run), run)
        return outcome
    for item in items:
        # Claim first: a slot (and a unit of the day's quota) only for a message
        # that will really be sent.
        batch = _claim_all([item], run)
        if not batch:
            continue
        slot = limiter.acquire()
        if not slot.reserved:
            reason = "daily quota spent" if slot.quota_spent else "rate limited"
            _release(batch, run, reason, slot.wait)
            if outcome.states[item["key"]] in _REQUEUED:
                outcome.states[item["key"]] = "rate_limited"
            continue
        _send(batch, run)
    return outcome


def _token() -> str:
    # Unique per run; the host and pid tell an operator who holds a key.
    return f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def _claim_all(items: Sequence[Item], run: _Run) -> list[_Pending]:
    settings, outcome = run.settings, run.outcome
    claims = run.store.claim(
        [item["key"] for item in items],
        run.token,
        lease=settings.lease,
        at_least_once=settings.at_least_once,
        attempts=settings.retry.attempts,
    )
    claimed: list[_Pending] = []
    settled: list[Outcome] = []
    for item, claim in zip(items, claims, strict=True):
        key = item["key"]
        outcome.states[key] = claim.verdict
        if claim.verdict == "busy":  # another worker holds it: look again later
            outcome.requeue(claim.wait + 1.0, item)
            continue
        if claim.verdict != "go":
            continue
        try:
            message, envelope = load_item(item)
        except InvalidMessageError as exc:  # a poisoned message fails alone
            settled.append(Outcome(key, DeliveryState.FAILED, reason=str(exc)))
            continue
        pending = tuple(r for r in envelope.recipients if r not in claim.accepted)
        if not pending:  # every recipient was done by earlier attempts
            settled.append(Outcome(key, DeliveryState.DELIVERED))
            continue
        claimed.append(
            _Pending(item, claim, message, envelope.with_recipients(pending))
        )
    _store(settled, run)
    return claimed


def _store(
    outcomes: list[Outcome],
    run: _Run,
    later: list[float] | None = None,
    renew: Sequence[str] = (),
) -> None:
    if not outcomes:
        return
    if later is not None:
        outcomes = [
            dataclasses.replace(done, retry_in=math.ceil(max(0.0, wait)))
            for done, wait in zip(outcomes, later, strict=True)
        ]
    stored = run.store.finish(
        outcomes, run.token, renew=renew, lease=run.settings.lease
    )
    for n, (done, state) in enumerate(zip(outcomes, stored, strict=True)):
        run.outcome.states[done.key] = state
        if later is not None and state == DeliveryState.RETRYING.value:
            run.outcome.requeue(later[n], run.items[done.key])


def _release(batch: Sequence[_Pending], run: _Run, reason: str, wait: float) -> None:
    """Give back claims on messages never sent, and send them again after *wait*."""
    if not batch:
        return
    keys = [p.item["key"] for p in batch]
    for key, state in zip(
        keys, run.store.release(keys, run.token, reason), strict=True
    ):
        run.outcome.states[key] = state
        if state in _REQUEUED:  # else another worker took it meanwhile
            run.outcome.requeue(wait, run.items[key])


def _send(batch: list[_Pending], run: _Run) -> None:
    """Send *batch* on one connection, recording each outcome as it comes.

    After each message its outcome is stored and the leases of the messages still
    to send are renewed, so a lease only has to outlast one message, never the
    chunk, and a duplicate task never takes over keys a live worker is sending.
    """
    if not batch:
        return
    # One connection per task, pipelined: connections = worker slots, fleet-wide.
    items = [(p.message, p.envelope) for p in batch]
    done = 0
    retrying: list[str] = []
    try:
        for result in run.mailer.send_iter(items, concurrency=1):
            pending = batch[done]
            done += 1
            rest = [p.item["key"] for p in batch[done:]]
            if isinstance(result.error, NotSentError) or _quota_refused(result):
                # Not sent (stopped before it), or refused for the account's
                # quota, not for itself: the attempt is given back, not counted.
                wait = run.settings.retry.backoff(1, run.rng)
                _release([pending], run, f"not sent: {result.error}", wait)
                retrying.append(pending.item["key"])
                continue
            decided, wait = _decide(pending, result, run)
            if decided.state is DeliveryState.RETRYING:
                retrying.append(pending.item["key"])
            _store([decided], run, [wait], renew=rest)
    except QuotaExceededError as exc:
        # The server said the quota is spent: what it accepted stays delivered;
        # the messages not sent wait for the quota (resume_after when given).
        resume = exc.resume_after
        if resume is None:
            resume = run.settings.retry.backoff(1, run.rng)
        _release(batch[done:], run, f"not sent: {exc}", resume)
        unsent = {p.item["key"] for p in batch[done:]}
        run.outcome.postpone({*retrying, *unsent}, resume)
    except SMTPKitError as exc:  # the mailer was closed: the rest was not sent
        wait = run.settings.retry.backoff(1, run.rng)
        _release(batch[done:], run, str(exc), wait)


def _decide(pending: _Pending, result: SendResult, run: _Run) -> tuple[Outcome, float]:
    """The outcome of one send, and the countdown should it be retried."""
    settings = run.settings
    policy = settings.retry
    attempts = pending.claim.attempts
    can_retry = attempts < policy.attempts
    replies = {r: str(rr.reply) for r, rr in result.recipients.items()}
    accepted = [r for r, rr in result.recipients.items() if rr.accepted]
    error = result.error
    if isinstance(error, TransportError):
        replies.update({r: str(reply) for r, reply in _refused(error).items()})
    state: DeliveryState
    reason: str | None = None
    duplicating = False
    wait = policy.backoff(attempts, run.rng)
    if error is not None and getattr(error, "delivery_unknown", False):
        reason = f"delivery unknown: {error}"
        if settings.at_least_once and can_retry:
            state, duplicating = DeliveryState.RETRYING, True
        else:
            state = DeliveryState.UNKNOWN
    elif error is not None and not accepted:
        reason = str(error)
        if policy.should_retry(error) and can_retry:
            state = DeliveryState.RETRYING
            wait = max(wait, policy.documented_wait(error))
        elif pending.claim.accepted:  # earlier attempts reached the others
            state = DeliveryState.DELIVERED
        else:
            state = DeliveryState.FAILED
    else:  # no error: the server accepted some recipient
        transient = [
            r
            for r, rr in result.recipients.items()
            if not rr.accepted and policy.should_retry_reply(rr.reply)
        ]
        if transient and can_retry:
            state = DeliveryState.RETRYING
            reason = f"{len(transient)} recipient(s) deferred"
        else:
            state = DeliveryState.DELIVERED
    key = pending.item["key"]
    done = Outcome(key, state, accepted, replies, reason, duplicating)
    return done, wait


def _quota_refused(result: SendResult) -> bool:
    """True when the server refused the whole message because the quota is spent."""
    error = result.error
    if not isinstance(error, SMTPReplyError) or any(
        r.accepted for r in result.recipients.values()
    ):
        return False
    explanation = explain_reply(error.reply)
    return explanation is not None and explanation.reason is ReplyReason.QUOTA_EXCEEDED


def _refused(error: TransportError) -> dict[str, Any]:
    refused = getattr(error, "refused", None)
    return dict(refused) if refused else {}
