"""RetryPolicy decisions and backoff, and the retry runner with injected time."""

from __future__ import annotations

import logging
import random

import pydantic
import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import (
    DEFAULT_RETRY_POLICY,
    AuthenticationError,
    ClosedError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    DataRefusedError,
    GreetingRefusedError,
    NotSupportedError,
    PoolTimeoutError,
    ProtocolError,
    ReadTimeoutError,
    RecipientsRefusedError,
    RetryDetails,
    RetryPolicy,
    SenderRefusedError,
    ServerDisconnectedError,
    SMTPReply,
    SMTPReplyError,
    TLSError,
)
from smtpkit._retry import run_with_retries

R451 = SMTPReply.from_string("451 4.3.0 busy")
R421 = SMTPReply.from_string("421 4.4.2 closing")
R450_GREY = SMTPReply.from_string("450 4.7.1 greylisted")
R550 = SMTPReply.from_string("550 5.1.1 unknown")
NO_JITTER = RetryPolicy(wait_jitter=0, timeout=None)


class FakeTime:
    """A clock that only moves when the code under test sleeps (or is told to)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """An attempt function that raises the given errors, then returns "done"."""

    def __init__(
        self, *errors: BaseException, cost: float = 0.0, time: FakeTime | None = None
    ):
        self.errors = list(errors)
        self.calls: list[int] = []
        self.cost = cost
        self.time = time

    def __call__(self, number: int) -> str:
        self.calls.append(number)
        if self.time is not None:
            self.time.now += self.cost
        if self.errors:
            raise self.errors.pop(0)
        return "done"


# -- backoff --------------------------------------------------------------------


def test_defaults():
    policy = DEFAULT_RETRY_POLICY
    assert policy.attempts == 3
    assert policy.timeout == 60.0
    assert (policy.wait_initial, policy.wait_max) == (0.5, 10.0)
    assert (policy.wait_jitter, policy.wait_exp_base) == (0.5, 2.0)
    assert policy.retry_codes is None
    assert policy.retry_network_errors
    assert not policy.retry_ambiguous


def test_backoff_without_jitter_exact():
    rng = random.Random(0)
    waits = [NO_JITTER.backoff(n, rng) for n in range(1, 8)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    policy = RetryPolicy(wait_initial=1, wait_exp_base=3, wait_max=100, wait_jitter=0)
    assert [policy.backoff(n, rng) for n in range(1, 6)] == [1, 3, 9, 27, 81]


def test_backoff_with_seeded_jitter_exact():
    waits = [DEFAULT_RETRY_POLICY.backoff(n, random.Random(0)) for n in (1, 2, 3)]
    assert waits == [0.9222109257625241, 1.4222109257625241, 2.422210925762524]
    rng, twin = random.Random(0), random.Random(0)
    for attempt in range(1, 8):
        expected = min(10.0, 0.5 * 2 ** (attempt - 1) + twin.uniform(0, 0.5))
        assert DEFAULT_RETRY_POLICY.backoff(attempt, rng) == expected


def test_backoff_overflow_caps_at_wait_max():
    policy = RetryPolicy(wait_exp_base=1e10, wait_jitter=0)
    assert policy.backoff(5000, random.Random(0)) == policy.wait_max


@given(
    st.integers(min_value=1, max_value=2000),
    st.builds(
        RetryPolicy,
        wait_initial=st.floats(min_value=0, max_value=100),
        wait_max=st.floats(min_value=0, max_value=100),
        wait_jitter=st.floats(min_value=0, max_value=10),
        wait_exp_base=st.floats(min_value=1, max_value=10),
    ),
    st.integers(min_value=0),
)
def test_backoff_bounds(attempt, policy, seed):
    assert 0 <= policy.backoff(attempt, random.Random(seed)) <= policy.wait_max


@given(
    st.floats(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=1, max_value=10),
)
def test_backoff_never_shrinks_without_jitter(initial, maximum, base):
    policy = RetryPolicy(
        wait_initial=initial, wait_max=maximum, wait_jitter=0, wait_exp_base=base
    )
    rng = random.Random(0)
    waits = [policy.backoff(n, rng) for n in range(1, 60)]
    assert waits == sorted(waits)


@pytest.mark.parametrize(
    "fields",
    [{"attempts": 0}, {"timeout": 0}, {"wait_initial": -1}, {"wait_exp_base": 0.5}],
)
def test_policy_validation(fields):
    with pytest.raises(pydantic.ValidationError, match=next(iter(fields))):
        RetryPolicy(**fields)


def test_never():
    assert RetryPolicy.never().attempts == 1
    flaky = Flaky(ConnectError("down"))
    with pytest.raises(ConnectError):
        run_with_retries(flaky, RetryPolicy.never(), sleep=FakeTime().sleep)
    assert flaky.calls == [1]


# -- should_retry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (SMTPReplyError(R451), True),
        (SMTPReplyError(R421), True),
        (SMTPReplyError(R550), False),
        (GreetingRefusedError(R421), True),
        (GreetingRefusedError(SMTPReply(554, "no")), False),
        (AuthenticationError(SMTPReply(454, "later")), True),
        (AuthenticationError(SMTPReply(535, "bad")), False),
        (SenderRefusedError(R451, sender="a@b.c"), True),
        (DataRefusedError(R550), False),
        (RecipientsRefusedError({"a@b.c": R550, "d@b.c": R451}), True),
        (RecipientsRefusedError({"a@b.c": R550}), False),
        (ConnectError("refused"), True),
        (ServerDisconnectedError("lost"), True),
        (ConnectTimeoutError("slow"), True),
        (ReadTimeoutError("slow"), True),
        (PoolTimeoutError("busy"), False),
        (TLSError("bad cert"), False),
        (ProtocolError("garbage"), False),
        (NotSupportedError("no STARTTLS"), False),
        (ClosedError("closed"), False),
        (ConfigurationError("bad"), False),
        (ValueError("not ours"), False),
        (ConnectionResetError("builtin"), False),
    ],
)
def test_should_retry(exc, retried):
    assert DEFAULT_RETRY_POLICY.should_retry(exc) is retried


def test_retry_codes_filter():
    policy = RetryPolicy(retry_codes=frozenset({421}))
    assert policy.should_retry(SMTPReplyError(R421))
    assert not policy.should_retry(SMTPReplyError(R451))
    assert not policy.should_retry(SMTPReplyError(R550))
    assert policy.should_retry(ConnectError("x"))  # codes only filter replies


@pytest.mark.parametrize(
    ("codes", "retried"),
    [
        ({"4.7"}, False),
        ({"4.7.1"}, False),
        ({"4"}, False),
        ({"4.7.2"}, True),
        ({"4.3"}, True),
        ({"4.71"}, True),
        (set(), True),
    ],
)
def test_no_retry_enhanced(codes, retried):
    policy = RetryPolicy(no_retry_enhanced=frozenset(codes))
    assert policy.should_retry(SMTPReplyError(R450_GREY)) is retried
    assert policy.should_retry_reply(R450_GREY) is retried


def test_no_retry_enhanced_needs_enhanced_code():
    policy = RetryPolicy(no_retry_enhanced=frozenset({"4.7"}))
    assert policy.should_retry_reply(SMTPReply(451, "no enhanced code"))


def test_should_retry_reply_never_for_success_or_5xx():
    assert not DEFAULT_RETRY_POLICY.should_retry_reply(SMTPReply(250, "OK"))
    assert not DEFAULT_RETRY_POLICY.should_retry_reply(R550)


def test_network_errors_can_be_excluded():
    policy = RetryPolicy(retry_network_errors=False)
    assert not policy.should_retry(ConnectError("x"))
    assert not policy.should_retry(ReadTimeoutError("x"))
    assert policy.should_retry(SMTPReplyError(R451))


def test_delivery_unknown_only_with_retry_ambiguous():
    lost = ServerDisconnectedError("after DATA", delivery_unknown=True)
    timeout = ReadTimeoutError("after DATA", delivery_unknown=True)
    assert not DEFAULT_RETRY_POLICY.should_retry(lost)
    assert not DEFAULT_RETRY_POLICY.should_retry(timeout)
    ambiguous = RetryPolicy(retry_ambiguous=True)
    assert ambiguous.should_retry(lost)
    assert ambiguous.should_retry(timeout)
    assert not RetryPolicy(
        retry_ambiguous=True, retry_network_errors=False
    ).should_retry(lost)


# -- run_with_retries ---------------------------------------------------------


def test_run_exact_waits_and_attempts():
    time = FakeTime()
    flaky = Flaky(SMTPReplyError(R451), ConnectError("x"))
    result = run_with_retries(
        flaky, RetryPolicy(attempts=5), sleep=time.sleep, clock=time.clock,
        rng=random.Random(0),
    )  # fmt: skip
    assert result == "done"
    assert flaky.calls == [1, 2, 3]
    assert time.sleeps == [0.9222109257625241, 1.3789772014701511]


def test_run_first_try_success_never_sleeps():
    time = FakeTime()
    assert run_with_retries(Flaky(), DEFAULT_RETRY_POLICY, sleep=time.sleep) == "done"
    assert time.sleeps == []


def test_run_gives_up_and_reraises_last_error_unchanged():
    time = FakeTime()
    errors = [SMTPReplyError(R451), SMTPReplyError(R421), SMTPReplyError(R451)]
    flaky = Flaky(*errors)
    with pytest.raises(SMTPReplyError) as info:
        run_with_retries(flaky, NO_JITTER, sleep=time.sleep, clock=time.clock)
    assert info.value is errors[2]
    assert not isinstance(info.value, tenacity.RetryError)
    assert flaky.calls == [1, 2, 3]
    assert time.sleeps == [0.5, 1.0]


def test_run_does_not_retry_permanent():
    time = FakeTime()
    error = SMTPReplyError(R550)
    flaky = Flaky(error)
    with pytest.raises(SMTPReplyError) as info:
        run_with_retries(flaky, NO_JITTER, sleep=time.sleep)
    assert info.value is error
    assert flaky.calls == [1]
    assert time.sleeps == []


def test_run_does_not_retry_foreign_errors():
    flaky = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        run_with_retries(flaky, NO_JITTER, sleep=FakeTime().sleep)
    assert flaky.calls == [1]


def test_run_total_timeout_stops_and_clips_waits():
    time = FakeTime()
    policy = RetryPolicy(attempts=10, timeout=5.0, wait_initial=2, wait_jitter=0)
    flaky = Flaky(*[ConnectError(str(n)) for n in range(10)], cost=0.5, time=time)
    with pytest.raises(ConnectError, match="2"):
        run_with_retries(flaky, policy, sleep=time.sleep, clock=time.clock)
    # t=0.5 fail, wait 2; t=3.0 fail, wait min(4, 2.0 left)=2; t=5.5 fail: past deadline.
    assert time.sleeps == [2.0, 2.0]
    assert flaky.calls == [1, 2, 3]


def test_run_without_timeout_uses_full_waits():
    time = FakeTime()
    policy = RetryPolicy(
        attempts=4, timeout=None, wait_initial=100, wait_max=1000, wait_jitter=0
    )
    flaky = Flaky(ConnectError("a"), ConnectError("b"), ConnectError("c"))
    assert run_with_retries(flaky, policy, sleep=time.sleep, clock=time.clock) == "done"
    assert time.sleeps == [100, 200, 400]


def test_on_retry_hook_receives_details():
    time = FakeTime()
    details: list[RetryDetails] = []
    errors = [SMTPReplyError(R451), ServerDisconnectedError("lost")]
    flaky = Flaky(*errors, cost=0.25, time=time)
    run_with_retries(
        flaky, NO_JITTER, sleep=time.sleep, clock=time.clock, on_retry=details.append
    )
    assert details == [
        RetryDetails(attempt=1, wait=0.5, error=errors[0], elapsed=0.25),
        RetryDetails(attempt=2, wait=1.0, error=errors[1], elapsed=1.0),
    ]


def test_retry_logged_as_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    time = FakeTime()
    run_with_retries(Flaky(SMTPReplyError(R451)), NO_JITTER, sleep=time.sleep)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "attempt 1 failed" in warnings[0].getMessage()
    assert "0.50" in warnings[0].getMessage()


def test_runner_uses_default_rng_and_clock():
    time = FakeTime()
    flaky = Flaky(ConnectError("x"))
    assert (
        run_with_retries(flaky, RetryPolicy(timeout=None), sleep=time.sleep) == "done"
    )
    assert 0.5 <= time.sleeps[0] <= 1.0


def test_run_first_attempt_interrupt_propagates_unchanged():
    # The first attempt runs outside tenacity (the fast path) and its failure
    # is replayed into it: a KeyboardInterrupt must still come out as itself.
    interrupt = KeyboardInterrupt()
    flaky = Flaky(interrupt)
    with pytest.raises(KeyboardInterrupt) as info:
        run_with_retries(flaky, NO_JITTER, sleep=FakeTime().sleep)
    assert info.value is interrupt
    assert flaky.calls == [1]
