"""What Postfix stores is what smtpkit meant to send: unicode, MIME parts, SMTPUTF8."""

from __future__ import annotations

import email.policy
import os
import socket
from email.message import EmailMessage

import pytest

from smtpkit import (
    Address,
    Attachment,
    Envelope,
    Message,
    NotSupportedError,
    RetryPolicy,
)

from .mta import queue_id

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

NEVER = RetryPolicy.never()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n.\r\n\x00\xff" * 40
PDF = b"%PDF-1.4\n" + os.urandom(3000) + b"\n%%EOF\n"


def test_unicode_message_with_attachments_and_inline_image(
    make_mailer, postfix, address
):
    to, cc, bcc = address("to"), address("cc"), address("bcc")
    message = Message(
        sender=Address(name="张三 (Zhang San)", email="zhangsan@example.com"),
        to=Address(name="Zoë Ölund", email=to),
        cc=Address(name="Ærøskøbing, Søren", email=cc),
        bcc=bcc,
        subject="Grüße — 季度报告 🎉 " + "long subject " * 8,
        text="Hallo Zoë,\nanbei der Bericht. 你好！\n.\n",
        html='<p>Hallo <b>Zoë</b> 你好</p><img src="cid:logo@smtpkit.test">',
        attachments=[
            Attachment(filename="报告 2024 — Q1.pdf", content=PDF),
            Attachment(filename="notes.txt", content="naïve café\n".encode()),
            Attachment(
                filename="logo.png",
                content=PNG,
                content_type="image/png",
                content_id="logo@smtpkit.test",
            ),
        ],
        headers={"X-Campaign": "Frühling"},
    )
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        result = mailer.send(message)
    assert result.accepted == (to, cc, bcc)

    deliveries = postfix.wait_for_deliveries(3, recipients=[to, cc, bcc])
    assert sorted(d.recipient for d in deliveries) == sorted([to, cc, bcc])
    # Every recipient got the same bytes, without a Bcc header.
    assert len({d.original for d in deliveries}) == 1
    stored = deliveries[0].message()
    assert stored["Bcc"] is None
    assert stored["Message-ID"] == result.message_id
    assert stored["Subject"] == message.subject
    assert stored["X-Campaign"] == "Frühling"
    [sender] = stored["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "张三 (Zhang San)",
        "zhangsan@example.com",
    )
    assert [(a.display_name, a.addr_spec) for a in stored["To"].addresses] == [
        ("Zoë Ölund", to)
    ]
    assert [(a.display_name, a.addr_spec) for a in stored["Cc"].addresses] == [
        ("Ærøskøbing, Søren", cc)
    ]

    text = stored.get_body(("plain",))
    html = stored.get_body(("html",))
    assert text.get_content() == message.text
    assert html.get_content().rstrip("\n") == message.html
    files = {part.get_filename(): part for part in stored.iter_attachments()}
    assert set(files) == {"报告 2024 — Q1.pdf", "notes.txt"}
    assert files["报告 2024 — Q1.pdf"].get_content() == PDF
    assert files["报告 2024 — Q1.pdf"].get_content_type() == "application/pdf"
    # Bytes given for a text/* file are sent as-is (base64, no charset).
    assert files["notes.txt"].get_payload(decode=True) == "naïve café\n".encode()

    # The inline image sits next to the HTML in multipart/related.
    related = next(
        p for p in stored.walk() if p.get_content_type() == "multipart/related"
    )
    [image] = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo@smtpkit.test>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG


def test_email_message_is_stored_byte_for_byte(make_mailer, postfix, address):
    to = address()
    msg = EmailMessage()
    msg["From"] = "Jürgen <juergen@example.com>"
    msg["To"] = to
    msg["Subject"] = "8-bit body"
    msg.set_content("Grüße aus Köln\n.\n..two dots\n", cte="8bit")
    # What Mailer sends for an EmailMessage without SMTPUTF8.
    expected = msg.as_bytes(policy=email.policy.SMTP)
    assert not expected.isascii()
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        mailer.send(msg)
    [delivery] = postfix.wait_for_deliveries(1, recipients=[to])
    assert delivery.original == expected.replace(b"\r\n", b"\n")
    assert delivery.sender == "juergen@example.com"


def test_bare_line_feeds_are_sent_as_crlf(make_mailer, postfix, address):
    # The plain endpoint has smtpd_forbid_bare_newline=yes: a bare LF would be
    # refused with 550, so delivery proves smtpkit normalised the line endings.
    to = address()
    data = b"Subject: line endings\n\nunix\nmac\rwindows\r\n.dot\n"
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        mailer.send(data, envelope=Envelope(sender="a@example.com", recipients=[to]))
    [delivery] = postfix.wait_for_deliveries(1, recipients=[to])
    assert delivery.original == b"Subject: line endings\n\nunix\nmac\nwindows\n.dot\n"


def test_bare_line_feed_guard_is_active(postfix, address):
    # The control for the test above: Postfix really refuses a bare LF.
    with socket.create_connection((postfix.host, postfix.ports["plain"]), 10) as sock:
        stream = sock.makefile("rwb")
        stream.readline()
        rcpt = f"RCPT TO:<{address()}>".encode()
        for command in (b"HELO raw.test", b"MAIL FROM:<a@example.com>", rcpt, b"DATA"):
            stream.write(command + b"\r\n")
            stream.flush()
            stream.readline()
        stream.write(b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n")
        stream.flush()
        reply = stream.readline()
        assert reply.startswith(b"550 5.5.2 "), reply
        assert b"bare <LF> received" in reply
        stream.close()


def test_smtputf8_addresses(make_mailer, postfix, address):
    to = "用户-" + address("δοκιμή")
    sender = "发件人@example.com"
    idn = Address(name="Ünïcødé", email=address("señor", "bücher.example"))
    message = Message(
        sender=Address(name="发件人", email=sender),
        to=[to, idn],
        subject="SMTPUTF8 ✓",
        text="Привет\n",
    )
    assert message.needs_smtputf8
    mark = postfix.log_offset()
    with make_mailer(
        postfix.config(
            "submission", username="用户@example.com", password="пароль-密码-🔑"
        ),
        retry=NEVER,
    ) as mailer:
        result = mailer.send(message)
    # IDN domains go out as A-labels; the local part stays UTF-8 (RFC 6531).
    assert result.accepted == (to, idn.ascii_email)
    assert idn.ascii_email.endswith("@xn--bcher-kva.example")
    deliveries = postfix.wait_for_deliveries(2, recipients=result.accepted)
    by_rcpt = {d.recipient: d for d in deliveries}
    stored = by_rcpt[to]
    assert stored.sender == sender
    assert "with UTF8SMTPSA id" in stored.received
    parsed = stored.message()
    assert parsed["Subject"] == "SMTPUTF8 ✓"
    assert parsed["From"].addresses[0].addr_spec == sender
    assert [a.addr_spec for a in parsed["To"].addresses] == [to, idn.email]
    assert parsed.get_content() == "Привет\n"
    assert by_rcpt[idn.ascii_email].original == stored.original
    postfix.wait_for_log(f"from=<{sender}>", since=mark)


def test_smtputf8_refused_when_not_offered(make_mailer, postfix, address):
    # The "ascii" endpoint has smtputf8_enable=no: smtpkit stops before MAIL.
    message = Message(sender="a@example.com", to="用户@example.net", text="x")
    with make_mailer(postfix.config("ascii"), retry=NEVER) as mailer:
        with pytest.raises(NotSupportedError, match="SMTPUTF8"):
            mailer.send(message)
        # The session stays usable for mail that does not need SMTPUTF8.
        ok = address()
        result = mailer.send(
            Message(sender="a@example.com", to=ok, subject="Ünïcode", text="ü")
        )
    postfix.wait_for_deliveries(1, recipients=[ok])
    # Nothing of the refused message reached Postfix.
    summary = postfix.session_summary(queue_id(result))
    assert " mail=1 rcpt=1 bdat=1 " in summary
