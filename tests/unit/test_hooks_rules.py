"""Send hooks' harder rules: one outcome per message, header values that cannot
be encoded, once-only MIME fields, interrupts from hooks, coroutine hooks."""

from __future__ import annotations

from smtpkit import (
    Envelope,
    Hooks,
    SendEvent,
    SendResult,
    TransportError,
)
from smtpkit._hooks import HookRunner

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
