"""The signer= seam of Mailer and AsyncMailer: what a signer returns is checked,
what it raises becomes a SigningError, and nothing unsigned is ever sent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import (
    AsyncMailer,
    Envelope,
    Mailer,
    Message,
    MessageSigner,
    SigningError,
    SMTPKitError,
)
from smtpkit.testing import FakeTransport

ENVELOPE = Envelope(sender="ann@example.com", recipients=["bob@example.org"])
RAW = b"From: ann@example.com\r\nTo: bob@example.org\r\n\r\nhi\r\n"


class Signer:
    """Returns *fields*, or calls *action* (which may raise)."""

    def __init__(
        self,
        fields: object = b"X-Signed: yes\r\n",
        action: Callable[[bytes], None] | None = None,
    ) -> None:
        self.fields = fields
        self.action = action
        self.seen: list[bytes] = []
        self.threads: list[int] = []

    def sign(self, message: bytes, /) -> bytes:
        self.seen.append(message)
        self.threads.append(threading.get_ident())
        if self.action is not None:
            self.action(message)
        return self.fields  # type: ignore[return-value]


def send(signer: object, message: object = RAW) -> tuple[FakeTransport, object]:
    fake = FakeTransport()
    with Mailer(transport=fake, signer=signer) as mailer:  # type: ignore[arg-type]
        try:
            outcome: object = mailer.send(message, envelope=ENVELOPE)  # type: ignore[arg-type]
        except SMTPKitError as exc:
            outcome = exc
    return fake, outcome


def test_the_signer_sees_the_final_bytes_and_its_fields_go_first():
    signer = Signer(b"X-One: 1\r\nX-Two: two\r\n\tfolded\r\n")
    fake, _ = send(signer, b"From: ann@example.com\n\n.dot\n")
    assert signer.seen == [b"From: ann@example.com\r\n\r\n.dot\r\n"]
    [sent] = fake.outbox
    assert (
        sent.data
        == b"X-One: 1\r\nX-Two: two\r\n\tfolded\r\nFrom: ann@example.com\r\n\r\n.dot\r\n"
    )
    assert isinstance(signer, MessageSigner)


def test_an_empty_answer_adds_nothing():
    fake, _ = send(Signer(b""))
    assert fake.outbox[0].data == RAW


def test_a_message_is_signed_with_its_generated_message_id():
    signer = Signer()
    fake, _ = send(
        signer, Message(sender="a@example.com", to="b@example.com", text="x")
    )
    assert b"\r\nMessage-ID: <" in signer.seen[0]
    assert fake.outbox[0].data == b"X-Signed: yes\r\n" + signer.seen[0]


def _raise(exc: BaseException) -> Callable[[bytes], None]:
    def action(message: bytes) -> None:
        raise exc

    return action


@pytest.mark.parametrize(
    ("signer", "text"),
    [
        (
            Signer(action=_raise(ValueError("no key"))),
            "Signer.sign\\(\\) raised ValueError: no key",
        ),
        (Signer(action=_raise(SigningError("mine"))), "^mine$"),
        (Signer("X-A: 1\r\n"), "must return bytes, not str"),
        (Signer(b"X-A: 1"), "whole header fields"),
        (Signer(b"X-A: 1\n"), "whole header fields"),
        (Signer(b"X-A: 1\r\n\r\n"), "whole header fields"),
        (Signer(b"no colon\r\n"), "whole header fields"),
        (Signer(b" X-A: 1\r\n"), "whole header fields"),
        (Signer(b"X-A: 1\x00\r\n"), "whole header fields"),
        (Signer(b"X-A: 1\r\nBcc: leak@example.net\r\n"), "returned a Bcc field"),
        (Signer(b"X-A: 1\r\n x\r\nfrom : eve@example.net\r\n"), "a from field"),
        (Signer(b"Content-Type: text/html\r\n"), "never the message's own"),
    ],
)
def test_a_failing_signer_sends_nothing(signer, text):
    fake, outcome = send(signer)
    assert isinstance(outcome, SigningError)
    with pytest.raises(SigningError, match=text):
        raise outcome
    assert fake.outbox == []
    assert fake.attempts == []


def test_refused_fields_are_not_quoted_and_a_raised_error_is_chained():
    _, outcome = send(Signer(b"secret-bytes\r\n"))
    assert isinstance(outcome, SigningError)
    assert "secret" not in str(outcome)
    _, outcome = send(Signer(action=_raise(ValueError("x"))))
    assert isinstance(outcome, SigningError)
    assert isinstance(outcome.__cause__, ValueError)


def test_keyboard_interrupt_from_a_signer_propagates():
    fake = FakeTransport()
    with Mailer(transport=fake, signer=Signer(action=_raise(KeyboardInterrupt()))) as m:
        with pytest.raises(KeyboardInterrupt):
            m.send(RAW, envelope=ENVELOPE)
    assert fake.attempts == []


def test_send_many_reports_a_signing_error_as_that_message_s_result():
    # Which message fails is decided by its bytes: batches are signed in worker
    # threads, so the order of the signer's calls is not the input order.
    messages = [RAW.replace(b"hi", f"message {n}".encode()) for n in range(3)]

    def action(message: bytes) -> None:
        if b"message 1" in message:
            raise ValueError("boom")

    fake = FakeTransport()
    with Mailer(transport=fake, signer=Signer(action=action)) as mailer:
        results = mailer.send_many([(m, ENVELOPE) for m in messages])
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, SigningError)
    assert len(fake.outbox) == 2


@pytest.mark.parametrize("kind", [Mailer, AsyncMailer])
def test_something_without_sign_is_refused(kind):
    with pytest.raises(TypeError, match="signer= takes an object with a sign"):
        kind(transport=FakeTransport(), signer=lambda data: data)  # type: ignore[arg-type]


@given(st.binary(max_size=60))
def test_any_answer_is_sent_as_fields_or_refused(fields):
    fake, outcome = send(Signer(fields))
    if isinstance(outcome, SigningError):
        assert fake.outbox == []
    else:
        [sent] = fake.outbox
        assert sent.data == fields + RAW
        assert all(line[:1] not in b"\r\n" for line in fields.split(b"\r\n")[:-1])


@pytest.mark.asyncio
async def test_async_mailer_signs_off_the_event_loop():
    signer = Signer()
    fake = FakeTransport()
    async with AsyncMailer(transport=fake, signer=signer) as mailer:
        await mailer.send(RAW, envelope=ENVELOPE)
        results = await mailer.send_many([(RAW, ENVELOPE)] * 3)
    assert all(r.ok for r in results)
    assert threading.get_ident() not in signer.threads
    assert len(signer.threads) == 4
    assert all(sent.data.startswith(b"X-Signed: yes\r\n") for sent in fake.outbox)


@pytest.mark.asyncio
async def test_async_mailer_signing_errors():
    signer = Signer(action=_raise(ValueError("bad")))
    fake = FakeTransport()
    async with AsyncMailer(transport=fake, signer=signer) as mailer:
        with pytest.raises(SigningError, match="raised ValueError: bad"):
            await mailer.send(RAW, envelope=ENVELOPE)
        [result] = await mailer.send_many([(RAW, ENVELOPE)])
    assert isinstance(result.error, SigningError)
    assert fake.attempts == []


@pytest.mark.asyncio
async def test_the_loop_runs_while_a_signer_works():
    started, release = threading.Event(), threading.Event()

    def slow(message: bytes) -> None:
        started.set()
        release.wait(5)

    fake = FakeTransport()
    async with AsyncMailer(transport=fake, signer=Signer(action=slow)) as mailer:
        sending = asyncio.ensure_future(mailer.send(RAW, envelope=ENVELOPE))
        while not started.is_set():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the loop still runs: the signer is in a thread
        assert not sending.done()
        release.set()
        assert (await sending).ok
