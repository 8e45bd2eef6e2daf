"""Retries against a real server: what is retried, how long it waits, what is reported.

``sleep`` is a recorder, so waits cost nothing and are asserted exactly against
``RetryPolicy.backoff`` with the same seeded ``random.Random``.
"""

from __future__ import annotations

import random

import pytest

from smtpkit import (
    DataRefusedError,
    Message,
    ReadTimeoutError,
    RetryDetails,
    RetryPolicy,
    SenderRefusedError,
    ServerDisconnectedError,
)

from .faults import FaultHandler, fault_servers

SENDER = "sender@example.com"
A, B, C = "a@example.com", "b@example.com", "c@example.com"


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


def message(*to: str, i: int = 1) -> Message:
    return Message(
        sender=SENDER,
        # A list: a 2-tuple of strings would be one (name, address) pair.
        to=list(to) or ["rcpt@example.com"],
        subject=f"m{i}",
        text="hi",
        message_id=f"<m{i}@test>",
    )


def expected_waits(policy: RetryPolicy, n: int) -> list[float]:
    rng = random.Random(0)
    return [policy.backoff(attempt, rng) for attempt in range(1, n + 1)]


@pytest.fixture
def mailer_for(make_mailer):
    """Build a Mailer (or AsyncMailer) that records its waits in *waits*."""

    def build(server, config_for, waits, *, retry=None, on_retry=None, **config):
        return make_mailer(
            config_for(server, **config),
            retry=retry or RetryPolicy(),
            on_retry=on_retry,
            sleep=waits.append,
            rng=random.Random(0),
        )

    return build


def test_451_twice_then_250_is_delivered_once(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    server.handler.queue("EOD", "451 4.3.0 try again", "451 4.3.0 try again")
    waits: list[float] = []
    details: list[RetryDetails] = []
    policy = RetryPolicy()
    with mailer_for(
        server, config_for, waits, retry=policy, on_retry=details.append
    ) as mailer:
        result = mailer.send(message())
    assert result.ok
    assert result.attempts == 3
    assert result.recipients["rcpt@example.com"].attempts == 3
    assert len(server.messages) == 1
    assert server.handler.commands.count("EOD") == 3
    assert waits == expected_waits(policy, 2)
    # The hook saw each failed attempt, its reply and the wait that followed.
    assert [(d.attempt, d.wait) for d in details] == [(1, waits[0]), (2, waits[1])]
    assert all(isinstance(d.error, DataRefusedError) for d in details)
    assert [d.error.reply.text for d in details] == ["try again"] * 2
    assert all(d.elapsed >= 0 for d in details)


def test_exhausted_retries_raise_the_last_error_with_history(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    server.handler.queue("EOD", "451 4.3.0 one", "452 4.3.1 two", "451 4.3.0 three")
    waits: list[float] = []
    with (
        mailer_for(server, config_for, waits) as mailer,
        pytest.raises(DataRefusedError) as info,
    ):
        mailer.send(message())
    exc = info.value
    assert exc.reply.text == "three"
    assert exc.attempts == 3
    assert [(e.reply.code, e.reply.text) for e in exc.history] == [
        (451, "one"),
        (452, "two"),
    ]
    assert [e.attempts for e in exc.history] == [1, 2]
    assert waits == expected_waits(RetryPolicy(), 2)
    assert server.messages == []


@pytest.mark.parametrize(
    ("command", "reply", "error"),
    [
        ("EOD", "554 5.7.1 message rejected", DataRefusedError),
        ("MAIL", "553 5.1.8 sender rejected", SenderRefusedError),
    ],
)
def test_5xx_is_never_retried(  # noqa: PLR0917 - pytest passes fixtures by position
    mailer_for, start_fault_server, config_for, command, reply, error
):
    server = start_fault_server()
    server.handler.queue(command, reply)
    waits: list[float] = []
    with mailer_for(server, config_for, waits) as mailer:
        with pytest.raises(error) as info:
            mailer.send(message())
        assert mailer.send(message(i=2)).ok  # the session survived the refusal
    assert info.value.attempts == 1
    assert info.value.history == ()
    assert waits == []
    assert server.handler.commands.count(command) == 2
    assert [m.session_id for m in server.messages] == [1]


def test_421_at_mail_on_a_fresh_connection_is_retried_on_a_new_one(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    handler = server.handler
    handler.queue("MAIL", "421 4.3.2 shutting down")
    waits: list[float] = []
    with mailer_for(server, config_for, waits) as mailer:
        result = mailer.send(message())
        stats = mailer.transport.stats()
    assert result.ok
    assert result.attempts == 2
    assert waits == expected_waits(RetryPolicy(), 1)
    assert handler.commands_of(1) == ["EHLO", "MAIL 421"]
    assert [m.session_id for m in server.messages] == [2]
    assert (stats.created, stats.discarded) == (2, 1)


def test_partial_failure_retries_only_the_4xx_recipient(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    server.handler.rcpt_replies.update(
        {B: ["450 4.2.1 mailbox busy"], C: "550 5.1.1 no such user"}
    )
    waits: list[float] = []
    with mailer_for(server, config_for, waits) as mailer:
        result = mailer.send(message(A, B, C))
    # First transaction: delivered to a (b busy, c unknown); second: b only.
    assert [m.rcpt_tos for m in server.messages] == [[A], [B]]
    assert {r: rr.attempts for r, rr in result.recipients.items()} == {
        A: 1,
        B: 2,
        C: 1,
    }
    assert result.accepted == (A, B)
    assert {r: (x.code, x.text) for r, x in result.refused.items()} == {
        C: (550, "no such user")
    }
    assert result.attempts == 2
    assert not result.ok
    assert result.error is None
    assert waits == expected_waits(RetryPolicy(), 1)


def test_4xx_recipient_out_of_retries_is_refused_with_its_last_reply(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server()
    server.handler.rcpt_replies[B] = [
        "450 4.2.1 busy once",
        "451 4.3.0 busy twice",
        "452 4.2.2 mailbox full",
    ]
    waits: list[float] = []
    with mailer_for(server, config_for, waits) as mailer:
        result = mailer.send(message(A, B))
    assert [m.rcpt_tos for m in server.messages] == [[A]]
    assert result.accepted == (A,)
    assert {r: (x.code, x.text) for r, x in result.refused.items()} == {
        B: (452, "mailbox full")
    }
    assert result.recipients[B].attempts == 3
    assert result.recipients[A].attempts == 1
    assert waits == expected_waits(RetryPolicy(), 2)


def test_disconnect_after_final_dot_is_ambiguous_and_not_retried(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(drop_next=1))
    waits: list[float] = []
    with mailer_for(server, config_for, waits) as mailer:
        with pytest.raises(ServerDisconnectedError) as info:
            mailer.send(message())
        stats = mailer.transport.stats()
    assert info.value.delivery_unknown
    assert info.value.is_transient
    assert info.value.attempts == 1
    assert waits == []
    assert "DROP" in server.handler.commands_of(1)
    assert len(server.messages) == 1  # the server did queue it: count 1
    assert stats.discarded == 1


def test_disconnect_after_final_dot_is_resent_with_retry_ambiguous(
    mailer_for, start_fault_server, config_for
):
    server = start_fault_server(handler=FaultHandler(drop_next=1))
    waits: list[float] = []
    policy = RetryPolicy(retry_ambiguous=True)
    with mailer_for(server, config_for, waits, retry=policy) as mailer:
        result = mailer.send(message())
    assert result.ok
    assert result.possibly_duplicated
    assert result.attempts == 2
    assert waits == expected_waits(policy, 1)
    # The duplicate the flag warns about really happened, on a new session.
    assert [m.session_id for m in server.messages] == [1, 2]
    assert server.messages[0].data == server.messages[1].data


def test_read_timeout_after_data_is_ambiguous(
    mailer_for, start_fault_server, config_for
):
    handler = FaultHandler(stall_next=1, stall_for=1.5)
    server = start_fault_server(handler=handler)
    waits: list[float] = []
    with mailer_for(server, config_for, waits, timeout=0.5) as mailer:
        with pytest.raises(ReadTimeoutError) as info:
            mailer.send(message())
        stats = mailer.transport.stats()
    assert info.value.delivery_unknown
    assert info.value.command == "end of data"
    assert info.value.attempts == 1
    assert waits == []
    assert handler.commands_of(1).count("EOD") == 1
    assert stats.discarded == 1


def test_total_timeout_caps_attempts_and_waits(
    make_mailer, start_fault_server, config_for
):
    server = start_fault_server()
    server.handler.queue("EOD", *["451 4.3.0 try again"] * 10)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    policy = RetryPolicy(attempts=10, timeout=1.0, wait_initial=0.4, wait_jitter=0)
    mailer = make_mailer(
        config_for(server),
        retry=policy,
        sleep=sleep,
        clock=lambda: now[0],
        rng=random.Random(0),
    )
    with mailer, pytest.raises(DataRefusedError) as info:
        mailer.send(message())
    # 0.4 s, then the 0.8 s backoff cut to the 0.6 s left; then the deadline.
    assert waits == pytest.approx([0.4, 0.6])
    assert info.value.attempts == 3
    assert server.handler.commands.count("EOD") == 3
