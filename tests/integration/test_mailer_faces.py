"""The ``make_mailer`` fixture itself: the async facade adds nothing and hides nothing.

The acceptance tests run for both faces through it (tests/mailers.py), so it must
pass results and exceptions through unchanged, adapt the tests' recording sleeps,
and close what it built.
"""

from __future__ import annotations

import random
import threading

import pytest

from smtpkit import (
    AsyncMailer,
    ClosedError,
    DataRefusedError,
    Mailer,
    Message,
    RetryPolicy,
)
from smtpkit.testing import FakeTransport

from ..mailers import AsyncMailerFacade

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")


def test_make_mailer_builds_each_face(make_mailer, mailer_kind):
    mailer = make_mailer(transport=FakeTransport())
    if mailer_kind == "sync":
        assert type(mailer) is Mailer
    else:
        assert isinstance(mailer, AsyncMailerFacade)
        assert isinstance(mailer.mailer, AsyncMailer)


def test_results_errors_and_waits_pass_through(make_mailer):
    transport = FakeTransport.scripted("451 4.3.0 busy", "550 5.1.1 unknown")
    waits: list[float] = []
    policy = RetryPolicy(attempts=2, wait_jitter=0)
    with make_mailer(transport=transport, retry=policy, sleep=waits.append) as mailer:
        assert mailer.transport is transport
        with pytest.raises(DataRefusedError) as info:
            mailer.send(MESSAGE)
        assert info.value.attempts == 2
        assert info.value.reply.code == 550
        assert [e.reply.code for e in info.value.history] == [451]
        result = mailer.send(MESSAGE, envelope=None)
        [bulk] = mailer.send_many([MESSAGE], concurrency=1)
    assert waits == [policy.backoff(1, random.Random())]  # no jitter: exact
    assert result.ok
    assert bulk.ok
    assert len(transport.outbox) == 2
    with pytest.raises(ClosedError):
        mailer.send(MESSAGE)


def test_the_facade_closes_and_stops_its_loop_at_teardown():
    facade = AsyncMailerFacade(transport=FakeTransport())
    facade.send(MESSAGE)
    loop_thread = facade._thread
    assert loop_thread.is_alive()
    facade.shutdown()
    facade.shutdown()  # idempotent
    assert not loop_thread.is_alive()
    assert "async-mailer-facade" not in {t.name for t in threading.enumerate()}
