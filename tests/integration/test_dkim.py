"""DKIM-signed messages reach a real server and what it received verifies (dkimpy)."""

from __future__ import annotations

import asyncio
import email.message
import time

import pytest

from smtpkit import AsyncMailer, Envelope, Mailer, Message, RetryPolicy, SigningError
from smtpkit.contrib.dkim import DKIMSigner

from ..dkimkeys import (
    DOMAIN,
    SELECTOR,
    TestKey,
    ed25519_key,
    rsa_key,
    signed_fields,
    verify,
)

ENVELOPE = Envelope(sender="ann@example.com", recipients=["bob@example.org"])
KEYS = {"rsa": rsa_key, "ed25519": ed25519_key}


@pytest.fixture(params=sorted(KEYS))
def key(request: pytest.FixtureRequest) -> TestKey:
    return KEYS[request.param]()


def test_every_kind_of_message_verifies_as_received(
    make_mailer, server, config_for, key
):
    signer = DKIMSigner.from_pem(key.pem, domain=DOMAIN, selector=SELECTOR)
    stdlib = email.message.EmailMessage()
    stdlib["From"] = "ann@example.com"
    stdlib["To"] = "bob@example.org"
    stdlib["Subject"] = "stdlib"
    stdlib.set_content(".dot first\n..two dots\n")
    raw = b"From: ann@example.com\nTo: bob@example.org\n\n.\n.\r\n"
    envelope = Envelope(sender="ann@example.com", recipients=["bob@example.org"])
    messages = [
        Message(sender="ann@example.com", to="bob@example.org", text=".\n..x\n"),
        stdlib,
        (raw, envelope),
    ]
    with make_mailer(
        config_for(server), retry=RetryPolicy.never(), signer=signer
    ) as mailer:
        results = mailer.send_many(messages)
        results.append(mailer.send(raw, envelope=envelope))
    assert all(result.ok for result in results)
    assert len(server.messages) == 4
    for received in server.messages:
        assert received.data.startswith(b"DKIM-Signature: ")
        assert verify(received.data, key)


@pytest.mark.parametrize("headers", [None, ("From", "To", "Date")])
def test_an_oversigned_field_is_signed_even_when_headers_omits_it(
    make_mailer, server, config_for, headers
):
    key = ed25519_key()
    extra = {} if headers is None else {"headers": headers}
    signer = DKIMSigner.from_pem(
        key.pem,
        domain=DOMAIN,
        selector=SELECTOR,
        oversign=("From", "Subject"),
        **extra,
    )
    message = Message(
        sender="ann@example.com", to="bob@example.org", subject="Real", text="x"
    )
    with make_mailer(
        config_for(server), retry=RetryPolicy.never(), signer=signer
    ) as mailer:
        assert mailer.send(message).ok
    [received] = server.messages
    assert signed_fields(received.data).count(b"subject") == 2
    assert verify(received.data, key)
    forged_top = b"Subject: FORGED\r\n" + received.data
    forged_below = received.data.replace(
        b"\r\nFrom:", b"\r\nSubject: FORGED\r\nFrom:", 1
    )
    assert forged_below != received.data
    assert not verify(forged_top, key)
    assert not verify(forged_below, key)


@pytest.mark.parametrize("canonicalization", ["relaxed", "simple"])
def test_white_space_runs_verify_as_received(
    make_mailer, server, config_for, canonicalization
):
    key = rsa_key()
    signer = DKIMSigner.from_pem(
        key.pem,
        domain=DOMAIN,
        selector=SELECTOR,
        canonicalization=(canonicalization, canonicalization),
    )
    body = b" " * 300 + b"x \t y\r\n" + b"\t " * 200 + b"\r\nlast \t\r\n\r\n \r\n\r\n"
    raw = b"From: ann@example.com\r\nTo: bob@example.org\r\n\r\n" + body
    with make_mailer(
        config_for(server), retry=RetryPolicy.never(), signer=signer
    ) as mailer:
        assert mailer.send(raw, envelope=ENVELOPE).ok
    [received] = server.messages
    assert received.data.endswith(body)
    assert verify(received.data, key)


def test_signing_long_white_space_runs_does_not_stall_the_event_loop(
    server, config_for
):
    # dkimpy's own canonicalization held the GIL for about 8 s on this body.
    signer = DKIMSigner.from_pem(ed25519_key().pem, domain=DOMAIN, selector=SELECTOR)
    raw = b"From: ann@example.com\r\n\r\n" + (b" " * 990 + b"x\r\n") * 1000

    async def main() -> tuple[bool, float]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        async with AsyncMailer(config_for(server), signer=signer) as mailer:
            result = await mailer.send(raw, envelope=ENVELOPE)
        stop.set()
        await ticker
        return result.ok, max(gaps)

    ok, longest_gap = asyncio.run(main())
    assert ok
    assert longest_gap < 1.0
    [received] = server.messages
    assert received.data.endswith(raw)


class InterruptOn:
    """A DKIMSigner that raises *exc* for the message whose Subject is *subject*."""

    def __init__(self, signer: DKIMSigner, subject: bytes, exc: BaseException) -> None:
        self.signer, self.subject, self.exc = signer, subject, exc

    def sign(self, message: bytes, /) -> bytes:
        if b"\r\nSubject: " + self.subject + b"\r\n" in message:
            raise self.exc
        return self.signer.sign(message)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_an_interrupt_in_a_bulk_worker_fails_that_message_alone(
    server, config_for, exc
):
    key = ed25519_key()
    dkim_signer = DKIMSigner.from_pem(key.pem, domain=DOMAIN, selector=SELECTOR)
    messages = [
        Message(
            sender="ann@example.com", to="bob@example.org", subject=f"m{n}", text="x"
        )
        for n in range(6)
    ]
    signer = InterruptOn(dkim_signer, b"m2", exc)
    with Mailer(config_for(server), retry=RetryPolicy.never(), signer=signer) as mailer:
        results = mailer.send_many(messages, concurrency=2)
    assert [result.ok for result in results] == [True, True, False, True, True, True]
    error = results[2].error
    assert isinstance(error, SigningError)
    assert f"raised {type(exc).__name__} in a send_many worker thread" in str(error)
    assert error.__cause__ is exc
    assert len(server.messages) == 5
    assert all(verify(received.data, key) for received in server.messages)
    assert b"Subject: m2\r\n" not in b"".join(r.data for r in server.messages)
