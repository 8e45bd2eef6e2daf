"""OpenDKIM, a real verifier, says dkim=pass for what smtpkit signs and sends.

Postfix runs OpenDKIM (verify mode) as its milter; the selectors' TXT records
come from dnsmasq on loopback; the test reads the ``Authentication-Results``
field OpenDKIM added to the delivered message.
"""

from __future__ import annotations

import email.message

import pytest

from smtpkit import Envelope, Mailer, Message, RetryPolicy
from smtpkit.contrib.dkim import DKIMSigner

from ..dkimkeys import TestKey
from ..postfix.mta import Delivery, PostfixInstance
from .conftest import DOMAIN
from .verifier import OpenDKIM

pytestmark = [pytest.mark.postfix, pytest.mark.timeout(60)]

NEVER = RetryPolicy.never()


def results(delivery: Delivery) -> str:
    """OpenDKIM's Authentication-Results field, unfolded."""
    fields = delivery.message().get_all("Authentication-Results") or []
    [mine] = [f for f in fields if str(f).startswith(OpenDKIM.AUTHSERV_ID)]
    return " ".join(str(mine).split())


def signer(key: tuple[str, TestKey]) -> DKIMSigner:
    selector, test_key = key
    return DKIMSigner.from_pem(test_key.pem, domain=DOMAIN, selector=selector)


def delivered(postfix: PostfixInstance, recipient: str) -> Delivery:
    [delivery] = postfix.wait_for_deliveries(1, recipients=[recipient])
    return delivery


def test_a_signed_message_passes(make_mailer, postfix, key, address):
    selector, test_key = key
    to = address()
    message = Message(
        sender=f"Ann <ann@{DOMAIN}>",
        to=to,
        subject="Grüße from smtpkit",
        text="Hello.\n.a line starting with a dot\n\n-- \nAnn\n",
        html="<p>Hello.</p>",
        list_unsubscribe=["https://example.com/u"],
        list_unsubscribe_one_click=True,
    )
    with make_mailer(
        postfix.config("plain"), retry=NEVER, signer=signer(key)
    ) as mailer:
        assert mailer.send(message).ok
    verdict = results(delivered(postfix, to))
    assert "dkim=pass" in verdict, verdict
    assert f"header.d={DOMAIN}" in verdict
    assert f"header.s={selector}" in verdict
    assert f"header.a={test_key.algorithm}" in verdict


def test_stdlib_and_raw_messages_pass(postfix, key, address):
    first, second = address(), address()
    msg = email.message.EmailMessage()
    msg["From"] = f"ann@{DOMAIN}"
    msg["To"] = first
    msg["Subject"] = "stdlib"
    msg.set_content("body\n.dot\n")
    raw = (
        f"From: ann@{DOMAIN}\nTo: {second}\nSubject: raw\n\nbare LF lines\n.dot\n"
    ).encode()
    envelope = Envelope(sender=f"ann@{DOMAIN}", recipients=[second])
    with Mailer(postfix.config("plain"), retry=NEVER, signer=signer(key)) as mailer:
        results_ = mailer.send_many([msg, (raw, envelope)])
    assert all(r.ok for r in results_)
    for recipient in (first, second):
        verdict = results(delivered(postfix, recipient))
        assert "dkim=pass" in verdict, verdict


def test_a_body_altered_after_signing_fails(postfix, key, address):
    to = address()
    data = (
        f"From: ann@{DOMAIN}\r\nTo: {to}\r\nSubject: altered\r\n\r\nPay 10 EUR.\r\n"
    ).encode()
    signed = signer(key).sign(data) + data.replace(b"10 EUR", b"99 EUR")
    envelope = Envelope(sender=f"ann@{DOMAIN}", recipients=[to])
    with Mailer(postfix.config("plain"), retry=NEVER) as mailer:
        assert mailer.send(signed, envelope=envelope).ok
    verdict = results(delivered(postfix, to))
    assert "dkim=fail" in verdict, verdict
