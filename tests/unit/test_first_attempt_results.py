"""send_many turns a first attempt that every recipient accepted into its result
directly; whatever a transport returns, that result is the one ``send`` builds."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from smtpkit import Envelope, Mailer, RecipientResult, RetryPolicy, SendResult
from smtpkit.testing import FakeTransport, reply

ENV = Envelope("s@example.com", ["a@example.com", "b@example.com"])
DATA = b"Subject: x\r\nMessage-ID: <x@first>\r\n\r\nbody\r\n"
OK = reply("250 2.0.0 Ok: queued as Q1")
FIELDS = ("envelope", "reply", "message_id", "attempts", "error", "accepted")


def result(**changes: object) -> SendResult:
    recipients = {r: RecipientResult(r, OK) for r in ENV.recipients}
    base = SendResult(envelope=ENV, recipients=recipients, reply=OK)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def rcpts(*entries: tuple[str, str, int]) -> dict[str, RecipientResult]:
    return {a: RecipientResult(a, reply(text), attempts=n) for a, text, n in entries}


CASES = {
    "all accepted": result(),
    "reversed order": result(
        recipients=rcpts(("b@example.com", "250 ok", 1), ("a@example.com", "250 ok", 1))
    ),
    "251 counts as accepted": result(
        recipients=rcpts(
            ("a@example.com", "251 fwd", 1), ("b@example.com", "250 ok", 1)
        )
    ),
    "an extra recipient": result(
        recipients=rcpts(
            ("a@example.com", "250 ok", 1),
            ("b@example.com", "250 ok", 1),
            ("x@example.com", "250 ok", 1),
        )
    ),
    "a recipient missing": result(recipients=rcpts(("a@example.com", "250 ok", 1))),
    "a recipient counted twice": result(
        recipients=rcpts(("a@example.com", "250 ok", 2), ("b@example.com", "250 ok", 1))
    ),
    "one refused for good": result(
        recipients=rcpts(("a@example.com", "250 ok", 1), ("b@example.com", "550 no", 1))
    ),
    "another envelope object": result(envelope=ENV.model_copy()),
    "a message id of its own": result(message_id="<transport@x>"),
    "no final reply": result(reply=None),
}


@pytest.mark.parametrize("first", CASES.values(), ids=CASES.keys())
def test_send_many_builds_what_send_builds(first):
    def mailer() -> Mailer:
        transport = FakeTransport(lambda envelope, data: first)
        return Mailer(transport=transport, retry=RetryPolicy.never())

    with mailer() as single_mailer:
        try:
            expected: SendResult | Exception = single_mailer.send(DATA, envelope=ENV)
        except Exception as exc:  # compared with send_many's error
            expected = exc
    with mailer() as bulk_mailer:
        [got] = bulk_mailer.send_many([(DATA, ENV)])
    if isinstance(expected, Exception):
        assert type(got.error) is type(expected)
        return
    for name in FIELDS:
        assert getattr(got, name) == getattr(expected, name), name
    assert got.envelope is ENV
    assert list(got.recipients.items()) == list(expected.recipients.items())
    assert got.possibly_duplicated is expected.possibly_duplicated


def test_a_delivered_message_is_logged_once_at_info(caplog):
    caplog.set_level(logging.INFO, logger="smtpkit")
    with Mailer(transport=FakeTransport()) as mailer:
        mailer.send_many([(DATA, ENV)])
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sent")]
    assert sent == ["sent <x@first> to 2 recipient(s): OK"]
