"""Send hooks' harder rules: one outcome per message, header values that cannot
be encoded, once-only MIME fields, interrupts from hooks, coroutine hooks."""

from __future__ import annotations

import asyncio
import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from smtpkit import (
    AsyncMailer,
    Envelope,
    Hooks,
    InvalidMessageError,
    Mailer,
    Message,
    SendEvent,
    SendResult,
    SMTPKitError,
    TransportError,
)
from smtpkit._hooks import HookRunner
from smtpkit.testing import FakeTransport

MSG = Message(sender="a@example.com", to=["b@example.com"], subject="Hi", text="Hi")

ENV = Envelope(sender="a@example.com", recipients=("b@example.com",))


class Calls:
    def __init__(self):
        self.calls = []

    def hooks(self, **more):
        return Hooks(
            after_send=[lambda e, r: self.calls.append(("after", e))],
            on_failure=[lambda e, x: self.calls.append(("failure", e))],
            **more,
        )


def test_only_the_first_outcome_of_a_message_reaches_the_hooks():
    calls = Calls()
    runner = HookRunner(calls.hooks())
    event = SendEvent(ENV, None, 10)
    runner.failed(event, TransportError("lost"))
    runner.finished(event, SendResult.delivered(ENV))
    runner.in_workers().failed(event, KeyboardInterrupt())
    assert calls.calls == [("failure", event)]
    other = SendEvent(ENV, None, 10)
    runner.finished(other, SendResult.delivered(ENV))
    runner.failed(other, TransportError("late"))
    assert calls.calls == [("failure", event), ("after", other)]


class _ItemsRaise(dict):
    def items(self):
        raise RuntimeError("broken mapping")


def _send_every_way(hooks):
    """The error each face gives one message, and what was sent."""
    fake = FakeTransport()
    errors = []
    with Mailer(transport=fake, hooks=hooks) as mailer:
        with pytest.raises(SMTPKitError) as raised:
            mailer.send(MSG)
        errors.append(raised.value)
        errors.append(mailer.send_many([MSG])[0].error)

    async def send_async():
        async with AsyncMailer(transport=fake, hooks=hooks) as mailer:
            with pytest.raises(SMTPKitError) as raised:
                await mailer.send(MSG)
            return raised.value

    errors.append(asyncio.run(send_async()))
    return errors, fake.attempts


@pytest.mark.parametrize(
    "headers",
    [{"X-Tag": "caf\udce9"}, {"X-Tag": "\ud800"}, _ItemsRaise({"X-Tag": "a"})],
    ids=["surrogateescape", "lone-high", "items-raises"],
)
def test_headers_that_cannot_be_added_are_the_messages_failure(headers):
    calls = Calls()
    hooks = calls.hooks(before_send=[lambda event: headers])
    errors, attempts = _send_every_way(hooks)
    assert all(type(error) is InvalidMessageError for error in errors)
    assert [kind for kind, _ in calls.calls] == ["failure"] * 3
    assert attempts == []  # nothing sent


async def _async_after(event, result):
    return None


class _AsyncCallable:
    async def __call__(self, event, error):
        return None


@pytest.mark.parametrize(
    ("field", "hook", "name"),
    [
        ("after_send", _async_after, "_async_after"),
        ("after_send", functools.partial(_async_after), "partial"),
        ("on_failure", _AsyncCallable(), "_AsyncCallable"),
        ("before_send", Calls().hooks, None),  # plain: accepted
    ],
)
def test_async_def_hooks_are_refused_when_hooks_are_built(field, hook, name):
    if name is None:
        assert Hooks(**{field: [hook]})
        return
    with pytest.raises(ValidationError, match=f"{field} hook {name}.* is an async"):
        Hooks(**{field: [hook]})
    with pytest.raises(ValidationError, match="never awaited"):
        Hooks() + Hooks.model_construct(**{field: (hook,)})


@given(st.text(st.characters(blacklist_categories=()), max_size=40))
def test_any_value_is_added_or_refused_and_reported_once(value):
    calls = Calls()
    fake = FakeTransport()
    hooks = calls.hooks(before_send=[lambda event: {"X-Value": value}])
    with Mailer(transport=fake, hooks=hooks) as mailer:
        try:
            mailer.send(MSG)
        except InvalidMessageError:
            outcome = "failure"
        else:
            outcome = "after"
    assert [kind for kind, _ in calls.calls] == [outcome]
    unencodable = any("\ud800" <= char <= "\udfff" for char in value)
    assert len(fake.outbox) == (outcome == "after")
    if unencodable:
        assert outcome == "failure"
