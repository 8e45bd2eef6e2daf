"""Retries read provider replies: no lock-out spiral, documented waits honoured."""

from __future__ import annotations

import re

import pytest

import smtpkit._provider_replies as table
from smtpkit import (
    AuthenticationError,
    Mailer,
    Message,
    RetryPolicy,
    SenderRefusedError,
)
from smtpkit._provider_replies import ReplyReason
from smtpkit._reply_reasons import Rule as _Rule
from smtpkit.testing import FakeTransport, reply

MESSAGE = Message(sender="a@example.com", to="b@example.net", subject="s", text="t")


def _rule(code: int, marker: str, reason: ReplyReason, retry_after=None) -> _Rule:
    return _Rule(
        provider="Test",
        codes=frozenset({code}),
        pattern=re.compile(re.escape(marker)),
        reason=reason,
        hint="a test row",
        doc_url="https://example.invalid/",
        example=f"{code} {marker}",
        step="MAIL",
        retry_after=retry_after,
    )


@pytest.fixture
def rows(monkeypatch):
    """Rows a test adds in front of the table (451 DT:SPM waits, 4xx lock-outs)."""

    def add(*rules: _Rule) -> None:
        monkeypatch.setattr(table, "_RULES", (*rules, *table._RULES))

    return add


def _mailer(*outcomes, retry: RetryPolicy, waits: list[float]) -> Mailer:
    return Mailer(
        transport=FakeTransport.scripted(*outcomes), retry=retry, sleep=waits.append
    )


RETRY = RetryPolicy(attempts=3, wait_initial=0.5, wait_jitter=0, timeout=60)


@pytest.mark.parametrize(
    "reason",
    [
        ReplyReason.AUTH_FAILED,
        ReplyReason.AUTH_LOCKED,
        ReplyReason.AUTH_NEEDS_APP_PASSWORD,
        ReplyReason.SMTP_DISABLED,
        ReplyReason.QUOTA_EXCEEDED,
    ],
)
def test_login_and_quota_refusals_are_never_retried_even_as_4xx(rows, reason):
    rows(_rule(454, "LOCKTEST", reason))
    refusal = AuthenticationError(reply("454 4.7.0 LOCKTEST try later"), command="AUTH")
    waits: list[float] = []
    with _mailer(refusal, retry=RETRY, waits=waits) as mailer:
        with pytest.raises(AuthenticationError) as info:
            mailer.send(MESSAGE)
    assert info.value.attempts == 1
    assert waits == []
    assert not RETRY.should_retry(refusal)


def test_the_same_reply_is_retried_when_provider_replies_are_ignored(rows):
    rows(_rule(454, "LOCKTEST", ReplyReason.AUTH_LOCKED))
    refusal = AuthenticationError(reply("454 4.7.0 LOCKTEST try later"), command="AUTH")
    policy = RETRY.model_copy(update={"heed_provider_replies": False})
    assert policy.should_retry(refusal)


def test_a_documented_wait_within_the_budget_is_waited_for(rows):
    rows(_rule(451, "DT:SPM", ReplyReason.CONTENT_REJECTED, retry_after=30.0))
    refusal = SenderRefusedError(reply("451 DT:SPM please try again"), sender="a@x")
    waits: list[float] = []
    with _mailer(refusal, "250 OK", retry=RETRY, waits=waits) as mailer:
        result = mailer.send(MESSAGE)
    assert result.attempts == 2
    assert waits == [30.0]  # not the 0.5 s backoff


def test_a_documented_wait_beyond_the_budget_is_left_to_the_callers_queue(rows):
    rows(_rule(451, "DT:SPM", ReplyReason.CONTENT_REJECTED, retry_after=600.0))
    refusal = SenderRefusedError(reply("451 DT:SPM please try again"), sender="a@x")
    waits: list[float] = []
    with _mailer(refusal, "250 OK", retry=RETRY, waits=waits) as mailer:
        with pytest.raises(SenderRefusedError) as info:
            mailer.send(MESSAGE)
    assert info.value.attempts == 1
    assert waits == []
    assert "DT:SPM" in str(info.value)


def test_a_documented_wait_with_no_time_budget_is_waited_for(rows):
    rows(_rule(451, "DT:SPM", ReplyReason.CONTENT_REJECTED, retry_after=600.0))
    refusal = SenderRefusedError(reply("451 DT:SPM please try again"), sender="a@x")
    policy = RETRY.model_copy(update={"timeout": None})
    waits: list[float] = []
    with _mailer(refusal, "250 OK", retry=policy, waits=waits) as mailer:
        assert mailer.send(MESSAGE).attempts == 2
    assert waits == [600.0]


def test_a_documented_wait_that_outlasts_the_remaining_budget_stops(rows):
    rows(_rule(451, "DT:SPM", ReplyReason.CONTENT_REJECTED, retry_after=40.0))
    first = SenderRefusedError(reply("451 4.3.0 busy"), sender="a@x")
    second = SenderRefusedError(reply("451 DT:SPM please try again"), sender="a@x")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = RetryPolicy(
        attempts=5, wait_initial=30, wait_max=30, wait_jitter=0, timeout=60
    )
    mailer = Mailer(
        transport=FakeTransport.scripted(first, second, "250 OK"),
        retry=policy,
        sleep=sleep,
        clock=lambda: now[0],
    )
    with mailer, pytest.raises(SenderRefusedError) as info:
        mailer.send(MESSAGE)
    assert info.value.attempts == 2  # 30 s gone, 40 s more would pass 60 s
    assert now[0] == 30.0


def test_documented_wait_reads_every_refused_recipient(rows):
    from smtpkit import RecipientsRefusedError  # noqa: PLC0415

    rows(_rule(450, "SLOW", ReplyReason.RATE_LIMITED, retry_after=5.0))
    refusal = RecipientsRefusedError(
        {"a@x": reply("450 4.2.1 busy"), "b@x": reply("450 SLOW down")}
    )
    assert RETRY.documented_wait(refusal) == 5.0
    assert RETRY.documented_wait(ValueError("no reply")) == 0.0
