"""Retry policy as a value, and the loop that applies it (tenacity underneath).

In-process retries are for short blips: a busy server, a dropped connection, a
rate-limit reply.  Greylisting and long deferrals (minutes to hours) belong in the
caller's job queue, not in a thread that sleeps.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, TypeVar

import tenacity as _t
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ._exceptions import (
    NetworkError,
    RecipientsRefusedError,
    SMTPReplyError,
    SMTPTimeoutError,
    TransportError,
)
from ._provider_replies import ReplyReason, explain_reply
from ._reply import SMTPReply
from ._strict import json_array_as_frozenset

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "RetryDetails",
    "RetryHook",
    "RetryPolicy",
    "SleepFn",
    "run_with_retries",
    "run_with_retries_async",
]

logger = logging.getLogger("smtpkit")
T = TypeVar("T")

# Replies that say retrying cannot help soon, whatever their code: a login that
# failed or is locked (retrying would lock the account longer), SMTP switched
# off, a spent quota (hours away, or tomorrow).
_NEVER_RETRIED: Final = frozenset(
    {
        ReplyReason.AUTH_FAILED,
        ReplyReason.AUTH_LOCKED,
        ReplyReason.AUTH_NEEDS_APP_PASSWORD,
        ReplyReason.SMTP_DISABLED,
        ReplyReason.QUOTA_EXCEEDED,
    }
)

# What the constructor's signature takes for code sets: any set (``{421, 451}``,
# ``d.keys()``), list, tuple or range.  Not ``Iterable[int]``: bytes and a
# ``{421: "busy"}`` dict are iterables of ints too, and validation refuses them.
ReplyCodes: TypeAlias = AbstractSet[int] | list[int] | tuple[int, ...] | range
# Sequence[str] takes lists and tuples but neither bytes nor a mapping.
EnhancedCodes: TypeAlias = AbstractSet[str] | Sequence[str]


def _no_bytes_or_mapping(value: Any, info: ValidationInfo) -> Any:
    """Refuse bytes and mappings for a set of codes, saying what to pass instead.

    Both iterate (bytes as small ints, a mapping as its keys), so a wrong guess
    would be silent; pydantic's own message ("Input should be a valid frozenset")
    does not say what was wrong.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        msg = f"{info.field_name} takes a set of codes such as {{421, 451}}, not bytes"
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports only ValueError
    if isinstance(value, Mapping):
        msg = (
            f"{info.field_name} takes a set of codes, not a mapping such as "
            f"{{421: 'busy'}}: pass its keys (set(mapping))"
        )
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports only ValueError
    return value


class RetryPolicy(BaseModel):
    """When and how long to wait before trying a failed send again.

    Retried: 4xx replies at any step (421 included), and connection errors and
    timeouts.  Never retried: 5xx replies, TLS, protocol and "not supported"
    errors, and pool timeouts (local back-pressure).

    Attributes:
        attempts: Total attempts, the first one included (1 disables retries).
        timeout: Seconds for all attempts and waits together; None for no limit.
        wait_initial: Seconds before the first retry (before jitter).
        wait_max: Upper bound of any single wait, in seconds.
        wait_jitter: Up to this many random seconds are added to each wait.
        wait_exp_base: Growth factor of the wait from one retry to the next.
        retry_codes: Basic reply codes to retry; None means every 4xx.
        no_retry_enhanced: RFC 3463 codes, or prefixes such as ``"4.7"``, whose
            4xx replies are not retried (for example greylisting, ``"4.7.1"`` at
            some providers, better left to a job queue).
        retry_network_errors: Retry connection errors and timeouts.
        retry_ambiguous: Also retry when the connection failed after the message
            data was sent (RFC 1047).  The server may already have the message,
            so this trades possible duplicates for fewer losses; results of such
            retries are flagged ``possibly_duplicated``.
        heed_provider_replies: Read well-known provider replies
            (:func:`smtpkit.explain_reply`): never retry a failed or locked login,
            SMTP switched off or a spent quota, even when the code is 4xx; wait
            at least as long as the provider documents before a retry, and do
            not retry when that wait is longer than ``timeout``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=3, ge=1)
    timeout: float | None = Field(default=60.0, gt=0)
    wait_initial: float = Field(default=0.5, ge=0)
    wait_max: float = Field(default=10.0, ge=0)
    wait_jitter: float = Field(default=0.5, ge=0)
    wait_exp_base: float = Field(default=2.0, ge=1)
    retry_codes: frozenset[int] | None = None
    no_retry_enhanced: frozenset[str] = frozenset()
    retry_network_errors: bool = True
    retry_ambiguous: bool = False
    heed_provider_replies: bool = True

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            attempts: int = 3,
            timeout: float | None = 60.0,
            wait_initial: float = 0.5,
            wait_max: float = 10.0,
            wait_jitter: float = 0.5,
            wait_exp_base: float = 2.0,
            retry_codes: ReplyCodes | None = None,
            no_retry_enhanced: str | EnhancedCodes = frozenset(),
            retry_network_errors: bool = True,
            retry_ambiguous: bool = False,
            heed_provider_replies: bool = True,
        ) -> None:
            """Build a policy; see the class docstring for each field."""

    @field_validator("retry_codes", mode="before")
    @classmethod
    def _codes_not_bytes_or_mapping(cls, value: Any, info: ValidationInfo) -> Any:
        return json_array_as_frozenset(_no_bytes_or_mapping(value, info), info)

    @field_validator("no_retry_enhanced", mode="before")
    @classmethod
    def _one_code_is_many(cls, value: Any, info: ValidationInfo) -> Any:
        # The static type says str | EnhancedCodes; "4.7.1" is one code, not four.
        if isinstance(value, str):
            return frozenset((value,))
        return json_array_as_frozenset(_no_bytes_or_mapping(value, info), info)

    @classmethod
    def never(cls) -> RetryPolicy:
        """Return a policy that makes exactly one attempt."""
        return cls(attempts=1)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return the seconds to wait after failed attempt number *attempt* (from 1).

        ``min(wait_max, wait_initial * wait_exp_base ** (attempt - 1) + uniform(0, wait_jitter))``
        """
        jitter = rng.uniform(0, self.wait_jitter) if self.wait_jitter else 0.0
        try:
            grown = self.wait_initial * self.wait_exp_base ** (attempt - 1)
        except OverflowError:
            return self.wait_max
        return min(self.wait_max, grown + jitter)

    def should_retry_reply(self, reply: SMTPReply) -> bool:
        """True when a refusal with *reply* is worth another attempt."""
        if not reply.is_transient:
            return False
        if self.retry_codes is not None and reply.code not in self.retry_codes:
            return False
        if self.heed_provider_replies:
            explanation = explain_reply(reply)
            if explanation is not None and (
                explanation.reason in _NEVER_RETRIED
                or (
                    explanation.retry_after is not None
                    and self.timeout is not None
                    and explanation.retry_after > self.timeout
                )
            ):
                return False
        enhanced = str(reply.enhanced) if reply.enhanced is not None else ""
        return not any(
            enhanced == code or enhanced.startswith(code + ".")
            for code in self.no_retry_enhanced
        )

    def should_retry(self, exc: BaseException) -> bool:
        """True when the attempt that raised *exc* is worth repeating."""
        if not isinstance(exc, TransportError) or not exc.is_transient:
            return False
        if exc.delivery_unknown and not self.retry_ambiguous:
            return False
        if isinstance(exc, SMTPReplyError):
            replies = (
                exc.refused.values()
                if isinstance(exc, RecipientsRefusedError)
                else [exc.reply]
            )
            return any(self.should_retry_reply(r) for r in replies)
        if isinstance(exc, NetworkError | SMTPTimeoutError):
            return self.retry_network_errors
        return True  # pragma: no cover - every transient class is handled above

    def documented_wait(self, exc: BaseException) -> float:
        """Seconds the provider documents before a retry after *exc*; 0 if none."""
        if not self.heed_provider_replies or not isinstance(exc, SMTPReplyError):
            return 0.0
        replies = (
            exc.refused.values()
            if isinstance(exc, RecipientsRefusedError)
            else [exc.reply]
        )
        waits = [
            explanation.retry_after
            for explanation in map(explain_reply, replies)
            if explanation is not None and explanation.retry_after is not None
        ]
        return max(waits, default=0.0)


DEFAULT_RETRY_POLICY: Final = RetryPolicy()


@dataclass(frozen=True, slots=True)
class RetryDetails:
    """What a retry hook is told before each wait.

    Attributes:
        attempt: The number of the attempt that just failed (from 1).
        wait: Seconds until the next attempt.
        error: Why the attempt failed; only a ``TransportError`` is ever retried.
            Narrow it to read a reply: ``isinstance(d.error, SMTPReplyError)``.
        elapsed: Seconds since the first attempt started.
    """

    attempt: int
    wait: float
    error: TransportError
    elapsed: float


class RetryHook(Protocol):
    """Called before every wait, e.g. to count retries in metrics."""

    def __call__(self, details: RetryDetails, /) -> None:
        """Observe one scheduled retry."""


class SleepFn(Protocol):
    """``time.sleep``-compatible; inject a recorder to make tests instant."""

    def __call__(self, seconds: float, /) -> None:
        """Wait *seconds*."""


def _retry_arguments(
    policy: RetryPolicy,
    *,
    start: float,
    clock: Callable[[], float],
    rng: random.Random | None,
    on_retry: RetryHook | None,
) -> dict[str, Any]:
    """The stop, wait, retry and before_sleep of tenacity's loop, for either face.

    Built once per message and given to ``tenacity.Retrying`` (``Mailer``) or
    ``tenacity.AsyncRetrying`` (``AsyncMailer``), so both stop, wait, log and
    call *on_retry* identically.
    """
    randomness = rng or random.Random()
    deadline = None if policy.timeout is None else start + policy.timeout

    def documented(state: _t.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return 0.0 if error is None else policy.documented_wait(error)

    def stop(state: _t.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        # A wait the provider documents that outlasts the budget: the caller's
        # queue is the place for it, not a sleeping thread.
        return deadline is not None and clock() + documented(state) >= deadline

    def wait(state: _t.RetryCallState) -> float:
        seconds = max(
            policy.backoff(state.attempt_number, randomness), documented(state)
        )
        return (
            seconds if deadline is None else max(0.0, min(seconds, deadline - clock()))
        )

    def before_sleep(state: _t.RetryCallState) -> None:
        assert state.outcome is not None  # noqa: S101 - tenacity sets it before sleeping
        error = state.outcome.exception()
        seconds = state.next_action.sleep if state.next_action else 0.0
        # Only the error's class and reply code: addresses stay at DEBUG.
        reply = getattr(error, "reply", None)
        reason = type(error).__name__ + (f" {reply.code}" if reply is not None else "")
        logger.warning(
            "attempt %d failed (%s); retrying in %.2f s",
            state.attempt_number,
            reason,
            seconds,
        )
        # should_retry() retries only TransportError: the isinstance never fails.
        if on_retry is not None and isinstance(error, TransportError):
            on_retry(
                RetryDetails(state.attempt_number, seconds, error, clock() - start)
            )

    return {
        "stop": stop,
        "wait": wait,
        "retry": _t.retry_if_exception(policy.should_retry),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def run_with_retries(
    attempt: Callable[[int], T],
    policy: RetryPolicy,
    *,
    sleep: SleepFn = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: RetryHook | None = None,
) -> T:
    """Call ``attempt(n)`` for n = 1, 2, ... until it returns or the policy gives up.

    The last error is re-raised unchanged once no retry is left.
    """
    start = clock()
    # Fast path: most first attempts succeed, and tenacity's machinery (and a
    # fresh Random, seeded from os.urandom) would cost more than the attempt's
    # own bookkeeping.  A failure is replayed as tenacity's attempt 1 below, so
    # it is classified, logged and waited for exactly as before.
    try:
        return attempt(1)
    except BaseException as exc:  # replayed to tenacity below, unchanged
        first_error = exc
    retrying = _t.Retrying(
        sleep=sleep,
        **_retry_arguments(
            policy, start=start, clock=clock, rng=rng, on_retry=on_retry
        ),
    )
    for try_ in retrying:
        with try_:
            number = try_.retry_state.attempt_number
            if number == 1:
                raise first_error
            result = attempt(number)
        if not try_.retry_state.outcome or not try_.retry_state.outcome.failed:
            return result
    msg = "unreachable: tenacity re-raises the last error"
    raise AssertionError(msg)  # pragma: no cover


async def run_with_retries_async(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: RetryHook | None = None,
) -> T:
    """``run_with_retries`` for coroutines: the waits are awaited with *sleep*.

    ``asyncio.CancelledError`` (and any other ``BaseException`` that is not an
    ``Exception``) is never retried: it leaves at once, unchanged.
    """
    start = clock()
    try:  # the same fast path as run_with_retries
        return await attempt(1)
    except Exception as exc:  # replayed to tenacity below, unchanged
        first_error = exc
    retrying = _t.AsyncRetrying(
        sleep=sleep,
        **_retry_arguments(
            policy, start=start, clock=clock, rng=rng, on_retry=on_retry
        ),
    )
    async for try_ in retrying:
        with try_:
            number = try_.retry_state.attempt_number
            if number == 1:
                raise first_error
            result = await attempt(number)
        if not try_.retry_state.outcome or not try_.retry_state.outcome.failed:
            return result
    msg = "unreachable: tenacity re-raises the last error"
    raise AssertionError(msg)  # pragma: no cover
