"""send_many and send never lose a result: whatever one message, the caller's own
iterator, the progress callback or a misbehaving transport raises (issue 8, 11-12)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from email.errors import HeaderParseError
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import (
    ClosedError,
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    RetryPolicy,
    SendManyAbortedError,
    SendResult,
    Transport,
    TransportError,
)
from smtpkit.testing import FakeTransport

NEVER = RetryPolicy.never()


def good(n: int) -> Message:
    return Message(
        sender="a@example.com",
        to=f"u{n}@example.com",
        text=f"body {n}",
        subject=f"m{n}",
    )


class Exploding(EmailMessage):
    """A pre-built message whose rendering raises *error* (any exception type)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self["From"] = "a@example.com"
        self["To"] = "b@example.com"
        self.error = error

    def as_bytes(self, *args: object, **kwargs: object) -> bytes:
        raise self.error


def email_to(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["To"] = to
    msg.set_content("hi")
    return msg


ERRORS = [
    ValueError("bad value"),
    TypeError("bad type"),
    KeyError("missing"),
    RuntimeError("boom"),
    RecursionError("deep"),
    UnicodeEncodeError("ascii", "é", 0, 1, "no"),
    HeaderParseError("bad header"),
]


# -- item 11: anything one message causes is that message's result ----------------


def test_email_message_with_a_bare_local_recipient_is_its_own_failure():
    transport = FakeTransport()
    with Mailer(transport=transport, retry=NEVER) as mailer:
        results = mailer.send_many([good(0), email_to("root"), good(2)])
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, InvalidMessageError)
    assert len(transport.outbox) == 2


def test_send_raises_a_typed_error_for_a_message_that_cannot_be_prepared():
    with Mailer(transport=FakeTransport()) as mailer:
        with pytest.raises(InvalidMessageError) as info:
            mailer.send(email_to("root"))
        with pytest.raises(InvalidMessageError) as raised:
            mailer.send(Exploding(RuntimeError("boom")))
    assert "root" in str(info.value) or "To" in str(info.value)
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_an_envelope_that_is_not_an_envelope_is_a_message_error():
    with Mailer(transport=FakeTransport()) as mailer:
        with pytest.raises(InvalidMessageError, match="must be an Envelope"):
            mailer.send(good(0), envelope="b@example.com")
        [result] = mailer.send_many([(good(1), "b@example.com")])
    assert isinstance(result.error, InvalidMessageError)


@settings(max_examples=40)
@given(
    layout=st.lists(
        st.one_of(st.none(), st.sampled_from(range(len(ERRORS)))),
        min_size=1,
        max_size=70,
    ),
    concurrency=st.integers(1, 4),
)
def test_any_exception_from_one_message_is_reported_for_that_message(
    layout, concurrency
):
    """None is a good message; an int picks the exception a bad one raises."""
    items = [
        good(n) if e is None else Exploding(ERRORS[e]) for n, e in enumerate(layout)
    ]
    transport = FakeTransport()
    with Mailer(transport=transport, retry=NEVER) as mailer:
        results = mailer.send_many(items, concurrency=concurrency)
    assert len(results) == len(layout)
    for kind, result in zip(layout, results, strict=True):
        if kind is None:
            assert result.ok
        else:
            assert isinstance(result.error, InvalidMessageError)
            assert type(result.error.__cause__) is type(ERRORS[kind])
    assert len(transport.outbox) == layout.count(None)


def rows(count: int, fail_at: int) -> Iterator[Message]:
    for n in range(count):
        if n == fail_at:
            raise ValueError(f"bad row {n}")
        yield good(n)


def test_generator_failing_midway_reports_every_message_it_yielded():
    transport = FakeTransport()
    with Mailer(transport=transport, retry=NEVER) as mailer:
        with pytest.raises(SendManyAbortedError) as info:
            mailer.send_many(rows(1001, fail_at=501))
    error = info.value
    assert isinstance(error.__cause__, ValueError)
    assert "bad row 501" in str(error)
    assert len(error.results) == 501
    assert all(r.ok for r in error.results)
    sent = [m.subject for m in transport.outbox]
    assert sorted(sent) == sorted(f"m{n}" for n in range(501))
    # The error crosses process boundaries with its results.
    assert len(pickle.loads(pickle.dumps(error)).results) == 501  # noqa: S301 - our own bytes


@settings(max_examples=40)
@given(
    count=st.integers(0, 150),
    fail_at=st.integers(0, 150),
    concurrency=st.integers(1, 5),
)
def test_iterator_failure_at_any_position_loses_nothing(count, fail_at, concurrency):
    transport = FakeTransport()
    with Mailer(transport=transport, retry=NEVER) as mailer:
        if fail_at < count:
            with pytest.raises(SendManyAbortedError) as info:
                mailer.send_many(rows(count, fail_at), concurrency=concurrency)
            results = info.value.results
        else:
            results = mailer.send_many(rows(count, fail_at), concurrency=concurrency)
    expected = min(count, fail_at)
    assert len(results) == expected == len(transport.outbox)
    # In input order, and exactly the messages the server got.
    assert [r.envelope.recipients[0] for r in results] == [
        f"u{n}@example.com" for n in range(expected)
    ]
    assert sorted(r.message_id for r in results) == sorted(
        m.message["Message-ID"] for m in transport.outbox
    )


def test_progress_callback_failure_stops_reading_and_reports_everything_sent():
    transport = FakeTransport()
    calls = []

    def progress(p):
        calls.append(p.done)
        if p.done == 10:
            raise RuntimeError("progress bar broke")

    def endless() -> Iterator[Message]:
        n = 0
        while True:
            yield good(n)
            n += 1

    with Mailer(transport=transport, retry=NEVER) as mailer:
        with pytest.raises(SendManyAbortedError) as info:
            mailer.send_many(endless(), concurrency=2, on_progress=progress)
    results = info.value.results
    assert isinstance(info.value.__cause__, RuntimeError)
    assert calls == list(range(1, 11))  # never called again after it raised
    assert len(results) == len(transport.outbox) >= 10
    assert all(r.ok for r in results)


class Broken(Transport):
    """A custom transport that breaks the contract by raising a plain exception."""

    def __init__(self, error: Exception, *, after: int = 0) -> None:
        self.error = error
        self.after = after
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        if len(self.sent) >= self.after:
            raise self.error
        self.sent.append(envelope)
        return SendResult.delivered(envelope)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_transport_raising_anything_becomes_a_transport_error(error):
    with Mailer(transport=Broken(error)) as mailer:
        with pytest.raises(TransportError) as info:
            mailer.send(good(0))
    # Whether the server got it is unknown, so it is reported, not retried.
    assert info.value.delivery_unknown
    assert info.value.attempts == 1
    assert info.value.__cause__ is error


def test_transport_raising_midway_in_send_many_keeps_earlier_results():
    transport = Broken(RuntimeError("bug"), after=3)
    with Mailer(transport=transport, retry=NEVER) as mailer:
        results = mailer.send_many([good(n) for n in range(6)], concurrency=1)
    assert [r.ok for r in results] == [True] * 3 + [False] * 3
    assert all(isinstance(r.error, TransportError) for r in results[3:])


# -- item 12: close() fails only what was not sent ----------------------------------


class ClosingTransport(FakeTransport):
    """Closes itself (as a concurrent Mailer.close() would) after *after* messages."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        result = super().send(envelope, data)
        if len(self.outbox) == self.after:
            self.close()
        return result


def test_close_during_a_batch_marks_only_unsent_messages_closed():
    transport = ClosingTransport(after=3)
    with Mailer(transport=transport, retry=NEVER) as mailer:
        results = mailer.send_many([good(n) for n in range(8)], concurrency=1)
    assert [r.ok for r in results] == [True] * 3 + [False] * 5
    assert all(isinstance(r.error, ClosedError) for r in results[3:])
    assert all(r.attempts == 0 for r in results[3:])


# -- whatever shape the input or a transport's answer takes, results come back ---------


def test_malformed_bulk_item_is_its_own_failure():
    transport = FakeTransport()
    items = [good(0), (good(1), None, None), good(2)]
    with Mailer(transport=transport, retry=NEVER) as mailer:
        results = mailer.send_many(items)
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, InvalidMessageError)


class Miscounting(Transport):
    """send_batch answers with the wrong number or kind of outcomes."""

    def __init__(self, mangle) -> None:
        self.mangle = mangle
        self.sent = 0

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        self.sent += 1
        return SendResult.delivered(envelope)

    def send_batch(self, items):
        return self.mangle([self.send(*item) for item in items])


@pytest.mark.parametrize(
    "mangle",
    [lambda o: o[1:], lambda o: [*o, o[0]], lambda o: [None] * len(o)],
    ids=["too-few", "too-many", "not-outcomes"],
)
def test_transport_answering_the_wrong_shape_is_reported_not_raised(mangle):
    transport = Miscounting(mangle)
    with Mailer(transport=transport, retry=NEVER) as mailer:
        results = mailer.send_many([good(n) for n in range(5)], concurrency=1)
    assert len(results) == 5
    for result in results:
        assert isinstance(result.error, TransportError)
        assert result.error.delivery_unknown  # they may be on the server: say so
    assert transport.sent == 5  # and nothing was sent a second time


class NoRecipients(Transport):
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        return SendResult(envelope=envelope)


def test_result_without_recipient_outcomes_is_a_transport_error():
    with Mailer(transport=NoRecipients(), retry=NEVER) as mailer:
        with pytest.raises(TransportError, match="no outcome"):
            mailer.send(good(0))
        [result] = mailer.send_many([good(1)])
    assert isinstance(result.error, TransportError)


def busy_for(address: str) -> FakeTransport:
    return FakeTransport(
        lambda envelope, data: (
            "451 4.3.0 busy" if address in envelope.recipients else None
        )
    )


def test_raising_retry_hook_fails_only_its_message_in_send_many():
    def hook(details):
        raise ZeroDivisionError("metrics backend down")

    transport = busy_for("u5@example.com")
    with Mailer(transport=transport, on_retry=hook, sleep=lambda s: None) as mailer:
        results = mailer.send_many([good(n) for n in range(10)], concurrency=2)
    assert [r.ok for r in results] == [n != 5 for n in range(10)]
    error = results[5].error
    assert isinstance(error, TransportError)
    assert not error.delivery_unknown
    assert isinstance(error.__cause__, ZeroDivisionError)


def test_raising_sleep_propagates_from_send():
    def sleep(seconds):
        raise RuntimeError("no sleeping here")

    with Mailer(transport=busy_for("u0@example.com"), sleep=sleep) as mailer:
        with pytest.raises(RuntimeError, match="no sleeping"):
            mailer.send(good(0))
