"""The core SMTP path against a real aiosmtpd server, lockstep and pipelined.

Every test that uses the ``server`` fixture (or ``start_server`` with the
``pipelining`` fixture) runs twice: against a server without PIPELINING and one
that offers it (RFC 2920).  Assertions are on what the server really received.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import pytest

from smtpkit import (
    Attachment,
    DataRefusedError,
    Envelope,
    Mailer,
    Message,
    NotSupportedError,
    RecipientsRefusedError,
    RetryPolicy,
    SenderRefusedError,
    SMTPReplyError,
)

from .scripted import wiretap

pytestmark = pytest.mark.integration

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(range(256))
BINARY = bytes(range(256)) * 8 + b"\r\n.\r\n\x00\xff"
BARE_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n")


@pytest.fixture
def connect(config_for):
    """Build Mailers (no retries) for test servers; all are closed at the end."""
    mailers: list[Mailer] = []

    def make(server, **fields) -> Mailer:
        mailer = Mailer(config_for(server, **fields), retry=RetryPolicy.never())
        mailers.append(mailer)
        return mailer

    yield make
    for mailer in mailers:
        mailer.close()


def simple(**fields) -> Message:
    fields.setdefault("sender", "a@example.com")
    fields.setdefault("to", "b@example.com")
    fields.setdefault("subject", "Hello")
    fields.setdefault("text", "Hi there.\n")
    return Message(**fields)


# -- what arrives -----------------------------------------------------------------


def test_to_cc_and_bcc_arrive_but_bcc_stays_hidden(server, connect):
    message = Message(
        sender="Sender <a@example.com>",
        to=["b@example.com", "Bee Two <b2@example.com>"],
        cc="c@example.com",
        bcc="hidden@example.com",
        subject="Hi",
        text="hello\n",
    )
    connect(server).send(message)
    [received] = server.messages
    assert received.mail_from == "a@example.com"
    assert received.rcpt_tos == [
        "b@example.com",
        "b2@example.com",
        "c@example.com",
        "hidden@example.com",
    ]
    parsed = parse(received.data)
    assert [a.addr_spec for a in parsed["To"].addresses] == [
        "b@example.com",
        "b2@example.com",
    ]
    assert parsed["To"].addresses[1].display_name == "Bee Two"
    assert parsed["Cc"].addresses[0].addr_spec == "c@example.com"
    assert parsed["Bcc"] is None
    assert b"hidden@example.com" not in received.data


def test_dot_lines_round_trip_in_a_message(server, connect):
    body = ".\n..x\n.end\nmiddle\n.\n"
    connect(server).send(simple(text=body))
    [received] = server.messages
    assert text_of(parse(received.data)) == body
    assert b"\r\n.\r\n..x\r\n.end\r\nmiddle\r\n.\r\n" in received.data


def test_dot_lines_round_trip_byte_for_byte(server, connect):
    raw = b"Subject: dots\r\n\r\n.\r\n..x\r\n.end\r\n...\r\n.\r\nlast line\r\n"
    envelope = Envelope(sender="a@example.com", recipients=["b@example.com"])
    connect(server).send(raw, envelope=envelope)
    [received] = server.messages
    assert received.data == raw


def test_bare_lf_and_bare_cr_become_crlf(server, connect):
    raw = (
        b"From: a@example.com\nTo: b@example.com\rSubject: eol\n\n"
        b"one\ntwo\rthree\r\n\nafter bare\n.\nalso\r.\rend"
    )
    envelope = Envelope(sender="a@example.com", recipients=["b@example.com"])
    connect(server).send(raw, envelope=envelope)
    [received] = server.messages
    # A "." line behind a bare LF or CR is still a "." line once normalised, so it
    # must be stuffed too: otherwise the server would stop reading there.
    assert received.data == (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: eol\r\n\r\n"
        b"one\r\ntwo\r\nthree\r\n\r\nafter bare\r\n.\r\nalso\r\n.\r\nend\r\n"
    )
    assert BARE_EOL.search(received.data) is None


def test_unicode_everywhere_parses_back_equal(server, connect):
    subject = "你好, 世界 — Grüße 🎉 " + "长" * 40  # long enough to be folded
    text = "正文 Größe ünïcode 🎉\nзвёзды\n"
    filename = "报告-résumé 2024.pdf"
    message = Message(
        sender=("张三", "zs@example.com"),
        to=("Ünïcödé Ñame, Jr.", "b@example.com"),
        subject=subject,
        text=text,
        attachments=[Attachment(filename=filename, content=b"%PDF-1.4 bytes")],
    )
    connect(server).send(message)
    [received] = server.messages
    assert received.data.isascii()  # encoded words and transfer encodings
    assert "BODY=8BITMIME" not in received.mail_options
    assert "SMTPUTF8" not in received.mail_options
    parsed = parse(received.data)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "张三"
    assert parsed["To"].addresses[0].display_name == "Ünïcödé Ñame, Jr."
    assert text_of(parsed.get_body(("plain",))) == text
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == filename
    assert attachment.get_content() == b"%PDF-1.4 bytes"


def test_attachments_and_inline_images_are_byte_equal(server, connect):
    html = '<p>Logo: <img src="cid:logo123"></p>'
    message = simple(
        text="plain version\n",
        html=html,
        attachments=[
            Attachment(filename="logo.png", content=PNG, content_id="logo123"),
            Attachment(filename="data.bin", content=BINARY),
            Attachment(filename="notes.txt", content=b"line\r\n.\r\nend\n"),
        ],
    )
    connect(server).send(message)
    [received] = server.messages
    parsed = parse(received.data)
    assert parsed.get_content_type() == "multipart/mixed"
    html_part = parsed.get_body(("html",))
    assert "cid:logo123" in html_part.get_content()
    [image] = [p for p in parsed.walk() if p["Content-ID"] == "<logo123>"]
    assert image.get_content_type() == "image/png"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    # The image lives next to the HTML that references it (multipart/related).
    related = next(
        p for p in parsed.walk() if p.get_content_type() == "multipart/related"
    )
    assert image in list(related.iter_parts())
    files = {p.get_filename(): p for p in parsed.iter_attachments()}
    assert files["data.bin"].get_content() == BINARY
    assert files["data.bin"].get_content_disposition() == "attachment"
    assert files["notes.txt"].get_content_type() == "text/plain"
    assert "logo.png" not in files  # inline, not a separate attachment


def test_send_result_fields(server, connect):
    result = connect(server).send(simple(to=["b@example.com", "c@example.com"]))
    [received] = server.messages
    assert result.message_id == parse(received.data)["Message-ID"]
    assert result.message_id.startswith("<")
    assert result.accepted == ("b@example.com", "c@example.com")
    assert result.refused == {}
    assert result.ok
    assert result.reply.code == 250
    assert "queued as Q1" in result.reply.text
    assert str(result.reply.enhanced) == "2.0.0"
    assert result.recipients["c@example.com"].reply == result.reply
    assert result.elapsed > 0
    assert result.attempts == 1
    assert result.envelope.recipients == ("b@example.com", "c@example.com")


# -- refusals -----------------------------------------------------------------------


def test_one_refused_recipient_does_not_stop_the_others(server, connect):
    server.handler.rcpt_replies = {"bad@example.com": "550 5.1.1 no such user"}
    result = connect(server).send(simple(to=["good@example.com", "bad@example.com"]))
    [received] = server.messages
    assert received.rcpt_tos == ["good@example.com"]
    assert result.accepted == ("good@example.com",)
    refused = result.refused["bad@example.com"]
    assert refused.code == 550
    assert str(refused.enhanced) == "5.1.1"
    assert refused.text == "no such user"
    assert not result.ok
    assert result.reply.code == 250


def test_all_recipients_refused(server, connect):
    server.handler.rcpt_replies = {
        "x@example.com": "550 5.1.1 no such user",
        "y@example.com": "452 4.2.2 mailbox full",
    }
    log = wiretap(server)
    with pytest.raises(RecipientsRefusedError) as info:
        connect(server).send(simple(to=["x@example.com", "y@example.com"]))
    assert server.messages == []
    assert "EOD" not in server.handler.commands  # no message data was accepted
    exc = info.value
    assert exc.refused["x@example.com"].code == 550
    assert exc.refused["y@example.com"].code == 452
    assert exc.is_transient  # one recipient could succeed later
    assert "RSET" in log


@pytest.mark.parametrize(
    ("step", "reply", "expected"),
    [
        ("MAIL", "451 4.3.0 try later", (SenderRefusedError, "MAIL")),
        ("MAIL", "553 5.7.1 sender not allowed", (SenderRefusedError, "MAIL")),
        ("RCPT", "450 4.2.1 mailbox busy", (RecipientsRefusedError, "RCPT")),
        ("RCPT", "550 5.1.1 no such user", (RecipientsRefusedError, "RCPT")),
        ("DATA", "451 4.3.2 not now", (DataRefusedError, "DATA")),
        ("DATA", "554 5.5.0 no valid recipients", (DataRefusedError, "DATA")),
        ("EOD", "452 4.3.1 insufficient storage", (DataRefusedError, "end of data")),
        ("EOD", "554 5.7.1 spam detected", (DataRefusedError, "end of data")),
    ],
)
def test_refusal_at_each_step(server, connect, step, reply, expected):
    error, command = expected
    log = wiretap(server)
    server.handler.queue(step, reply)
    mailer = connect(server)
    with pytest.raises(error) as info:
        mailer.send(simple())
    exc = info.value
    code, enhanced, text = reply.split(" ", 2)
    assert type(exc) is error
    assert exc.reply.code == int(code)
    assert str(exc.reply.enhanced) == enhanced
    assert exc.reply.text == text
    assert exc.command == command
    assert exc.is_transient is code.startswith("4")
    assert exc.attempts == 1
    assert server.messages == []
    if step != "EOD":
        # The half-done transaction is reset before the connection is reused.
        assert log[log.index(step) :].count("RSET") == 1
    # Same connection for the next message: no new session, no new EHLO.
    mailer.send(simple(subject="second"))
    [received] = server.messages
    assert parse(received.data)["Subject"] == "second"
    assert received.session_id == 1
    assert server.handler.sessions == 1
    assert log.count("EHLO") == 1


def test_connection_is_reused_after_a_refused_recipient_list(server, connect):
    server.handler.rcpt_replies = {"x@example.com": "550 5.1.1 no such user"}
    mailer = connect(server)
    mailer.send(simple(subject="first"))
    with pytest.raises(RecipientsRefusedError):
        mailer.send(simple(to="x@example.com"))
    mailer.send(simple(subject="third"))
    first, third = server.messages
    assert first.session_id == third.session_id == 1


def test_421_closes_the_connection(server, connect):
    log = wiretap(server)
    server.handler.queue("MAIL", "421 4.3.2 shutting down")
    mailer = connect(server)
    with pytest.raises(SMTPReplyError) as info:
        mailer.send(simple())
    assert info.value.reply.code == 421
    assert info.value.is_transient
    mailer.send(simple(subject="again"))
    [received] = server.messages
    assert received.session_id == 2  # a new session: the 421 one was dropped
    assert log.count("EHLO") == 2


# -- MAIL FROM parameters and extensions -----------------------------------------


def test_size_limit_refuses_before_data(start_server, pipelining, connect):
    server = start_server(pipelining=pipelining, data_size_limit=1000)
    log = wiretap(server)
    mailer = connect(server)
    with pytest.raises(NotSupportedError) as info:
        mailer.send(simple(text="x" * 5000))
    assert "1000" in str(info.value)
    assert not info.value.is_transient
    assert server.messages == []
    assert "MAIL" not in log
    assert "DATA" not in log
    # Nothing was sent, so the session is still good for a small message.
    mailer.send(simple(text="small"))
    [received] = server.messages
    assert received.session_id == 1
    assert f"SIZE={len(received.data)}" in received.mail_options


def test_ascii_message_declares_only_its_size(server, connect):
    connect(server).send(simple())
    [received] = server.messages
    assert received.mail_options == [f"SIZE={len(received.data)}"]


def test_8bit_raw_message_gets_body_8bitmime(server, connect):
    raw = (
        "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nPrüfung 测试\r\n"
    ).encode()
    envelope = Envelope(sender="a@example.com", recipients=["b@example.com"])
    connect(server).send(raw, envelope=envelope)
    [received] = server.messages
    assert "BODY=8BITMIME" in received.mail_options
    assert "SMTPUTF8" not in received.mail_options
    assert received.data == raw


def test_smtputf8_addresses(start_server, pipelining, connect):
    server = start_server(pipelining=pipelining, enable_SMTPUTF8=True)
    message = Message(
        sender="发件人@例子.中国",
        to=("用户", "用户@例子.中国"),
        subject="你好",
        text="内容\n",
    )
    result = connect(server).send(message)
    [received] = server.messages
    assert "SMTPUTF8" in received.mail_options
    assert "BODY=8BITMIME" in received.mail_options
    assert received.mail_from == "发件人@xn--fsqu00a.xn--fiqs8s"
    assert received.rcpt_tos == ["用户@xn--fsqu00a.xn--fiqs8s"]
    assert result.accepted == ("用户@xn--fsqu00a.xn--fiqs8s",)
    # Raw UTF-8 headers (RFC 6532): the stdlib reads them from str, not bytes.
    headers = email.message_from_string(
        received.data.decode("utf-8"), policy=email.policy.default
    )
    assert headers["To"].addresses[0].username == "用户"
    assert headers["To"].addresses[0].display_name == "用户"
    assert headers["From"].addresses[0].addr_spec == "发件人@例子.中国"
    assert headers["Subject"] == "你好"
    assert text_of(parse(received.data)) == "内容\n"


def test_smtputf8_address_without_server_support(start_server, pipelining, connect):
    server = start_server(pipelining=pipelining, enable_SMTPUTF8=False)
    log = wiretap(server)
    with pytest.raises(NotSupportedError, match="SMTPUTF8"):
        connect(server).send(simple(to="用户@例子.中国"))
    assert server.messages == []
    assert "MAIL" not in log
    assert "RCPT" not in log


def test_idn_domain_is_sent_as_punycode(server, connect):
    connect(server).send(simple(to="info@例子.中国", cc="x@bücher.example"))
    [received] = server.messages
    assert received.rcpt_tos == [
        "info@xn--fsqu00a.xn--fiqs8s",
        "x@xn--bcher-kva.example",
    ]
    assert "SMTPUTF8" not in received.mail_options
    parsed = parse(received.data)
    assert parsed["To"].addresses[0].addr_spec == "info@xn--fsqu00a.xn--fiqs8s"


# -- other kinds of input ---------------------------------------------------------


def test_prebuilt_email_message_is_forwarded(server, connect):
    original = EmailMessage()
    original["From"] = "Forwarder <fwd@example.com>"
    original["To"] = "b@example.com, c@example.com"
    original["Cc"] = "d@example.com"
    original["Bcc"] = "secret@example.com"
    original["Subject"] = "Fwd: report"
    original["Message-ID"] = "<fwd-1@example.com>"
    original.set_content("see below\n.\n")
    result = connect(server).send(original)
    [received] = server.messages
    assert received.mail_from == "fwd@example.com"
    assert received.rcpt_tos == [
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "secret@example.com",
    ]
    assert b"secret@example.com" not in received.data
    parsed = parse(received.data)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Fwd: report"
    assert text_of(parsed) == "see below\n.\n"
    assert result.message_id == "<fwd-1@example.com>"
    assert original["Bcc"] == "secret@example.com"  # the caller's object is untouched


def test_raw_bytes_with_explicit_envelope(server, connect):
    raw = (
        b"From: Newsletter <news@example.com>\r\nTo: list@example.com\r\n"
        b"Message-ID: <raw-1@example.com>\r\nSubject: raw\r\n\r\nbody\r\n"
    )
    envelope = Envelope(
        sender="bounces+123@example.com",
        recipients=["one@example.com", "two@example.com"],
    )
    result = connect(server).send(raw, envelope=envelope)
    [received] = server.messages
    assert received.mail_from == "bounces+123@example.com"
    assert received.rcpt_tos == ["one@example.com", "two@example.com"]
    assert received.data == raw
    assert result.message_id == "<raw-1@example.com>"
    assert result.accepted == ("one@example.com", "two@example.com")
