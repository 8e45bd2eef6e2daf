"""DKIM-signed messages reach a real server and what it received verifies (dkimpy)."""

from __future__ import annotations

import email.message

import pytest

from smtpkit import Envelope, Message, RetryPolicy
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
