"""What the server receives from Django's mail API through smtpkit's backend."""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib
from email.message import EmailMessage as StdMessage
from email.message import MIMEPart
from email.mime.image import MIMEImage
from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.utils.translation import gettext_lazy

import smtpkit
from smtpkit._email_message import _renders_itself, _takes_policy
from smtpkit.contrib.django import SMTPKIT_RESULT, EmailBackend

from ..integration.smtpd import free_port
from . import modes

pytestmark = modes.LEGACY

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def parsed(data: bytes, *, utf8_headers: bool = False) -> StdMessage:
    if utf8_headers:  # the bytes parser leaves raw UTF-8 headers (RFC 6532) escaped
        message = email.message_from_string(data.decode(), policy=email.policy.default)
    else:
        message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, StdMessage)
    return message


def test_send_mail_goes_out(server):
    assert (
        mail.send_mail("Hi", "Body text", "from@example.com", ["to@example.com"]) == 1
    )
    [received] = server.messages
    assert received.mail_from == "from@example.com"
    assert received.rcpt_tos == ["to@example.com"]
    stored = parsed(received.data)
    assert stored["Subject"] == "Hi"
    assert stored.get_content().strip() == "Body text"
    assert b"\r\n" in received.data
    assert b"\n" not in received.data.replace(b"\r\n", b"")


def inline_logo() -> Any:
    """The inline PNG, Content-ID <logo@x>, as the running Django takes it.

    Django 6 deprecates ``MIMEBase`` attachments for the stdlib's ``MIMEPart``;
    Django 5.2 takes only ``MIMEBase``.
    """
    if modes.MODERN_MESSAGES:
        part = MIMEPart()
        part.set_content(
            PNG,
            maintype="image",
            subtype="png",
            disposition="inline",
            filename="logo.png",
            cid="<logo@x>",
        )
        return part
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo@x>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    return image


def test_alternatives_attachments_and_inline_image(server):
    message = EmailMultiAlternatives(
        "Report", "plain text", "from@example.com", ["to@example.com"]
    )
    message.attach_alternative('<p>html <img src="cid:logo@x"></p>', "text/html")
    message.attach("notes.txt", "naïve café\n", "text/plain")
    message.attach("data.bin", b"\x00\x01\xff" * 100, "application/octet-stream")
    message.attach(inline_logo())
    assert message.send() == 1
    stored = parsed(server.messages[0].data)
    # Django 6's set_content() ends a text body with a line break, as MIME text.
    plain = "plain text\r\n" if modes.MODERN_MESSAGES else "plain text"
    assert stored.get_body(("plain",)).get_content() == plain
    assert "cid:logo@x" in stored.get_body(("html",)).get_content()
    parts = {p.get_filename(): p for p in stored.walk() if p.get_filename()}
    assert parts["notes.txt"].get_content() == "naïve café\r\n"  # text: CRLF
    assert parts["data.bin"].get_content() == b"\x00\x01\xff" * 100
    assert parts["logo.png"]["Content-ID"] == "<logo@x>"
    assert parts["logo.png"].get_content_disposition() == "inline"
    assert parts["logo.png"].get_content_type() == "image/png"
    assert parts["logo.png"].get_content() == PNG


def test_bcc_only_in_the_envelope(server):
    message = EmailMessage(
        "S", "B", "from@example.com", ["to@example.com"], bcc=["hidden@example.com"]
    )
    assert message.send() == 1
    [received] = server.messages
    assert received.rcpt_tos == ["to@example.com", "hidden@example.com"]
    assert b"hidden" not in received.data
    assert parsed(received.data)["Bcc"] is None


def test_unicode_local_part_goes_with_smtputf8_and_utf8_headers(server):
    message = EmailMessage(
        "Grüße",
        "Hallo",
        "Absender <用户@例子.cn>",
        ["José <josé@example.com>"],
        cc=["plain@example.com"],
    )
    assert message.send() == 1
    [received] = server.messages
    assert "SMTPUTF8" in received.mail_options
    assert received.mail_from == "用户@例子.cn"
    assert received.rcpt_tos == ["josé@example.com", "plain@example.com"]
    # Raw UTF-8 addresses (RFC 6532), not encoded words inside them.
    assert "=?" not in received.data.split(b"\r\n\r\n")[0].decode().split("Subject")[0]
    stored = parsed(received.data, utf8_headers=True)
    [sender] = stored["From"].addresses
    # Django 6 writes the domain as its A-label; both are the same address, the
    # local part raw UTF-8 either way (the envelope above keeps the U-label).
    domain = "xn--fsqu00a.cn" if modes.MODERN_MESSAGES else "例子.cn"
    assert (sender.display_name, sender.addr_spec) == ("Absender", f"用户@{domain}")
    [to] = stored["To"].addresses
    assert (to.display_name, to.addr_spec) == ("José", "josé@example.com")
    assert stored["Subject"] == "Grüße"


def test_idn_domain_is_an_a_label_without_smtputf8(server):
    message = EmailMessage(
        "S", "B", "lists@discussão.example.org", ["To <to@漢字.example.com>"]
    )
    assert message.send() == 1
    [received] = server.messages
    assert "SMTPUTF8" not in received.mail_options
    assert received.mail_from == "lists@xn--discusso-xza.example.org"
    assert received.rcpt_tos == ["to@xn--p8s937b.example.com"]


def test_lazy_and_tuple_addresses(server):
    message = EmailMessage(
        "S",
        "B",
        gettext_lazy("from@example.com"),
        [("Ann", "ann@example.com")],
        cc=[gettext_lazy("cc@example.com")],
    )
    assert message.send() == 1
    assert server.messages[0].rcpt_tos == ["ann@example.com", "cc@example.com"]


def test_invalid_address_raises_before_anything_is_sent(server):
    good = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    bad = EmailMessage("S", "B", "from@example.com", bcc=["to@other.com@example.com"])
    backend = EmailBackend(fail_silently=True)
    with pytest.raises(ValueError, match="Invalid address"):
        backend.send_messages([good, bad])
    assert server.messages == []


def test_messages_without_recipients_are_not_sent(server):
    message = EmailMessage("S", "B", "from@example.com", [])
    assert EmailBackend().send_messages([message]) == 0
    assert EmailBackend().send_messages([]) == 0
    assert getattr(message, SMTPKIT_RESULT) is None
    assert server.messages == []


def test_many_messages_share_one_pipelined_session(server):
    messages = [
        EmailMessage(f"m{i}", "B", "from@example.com", [f"r{i}@example.com"])
        for i in range(6)
    ]
    assert get_connection().send_messages(messages) == 6
    assert sorted(parsed(m.data)["Subject"] for m in server.messages) == [
        f"m{i}" for i in range(6)
    ]
    for i, message in enumerate(messages):
        result = getattr(message, SMTPKIT_RESULT)
        assert result.ok
        assert result.accepted == (f"r{i}@example.com",)


def test_partial_refusal_is_reported_not_swallowed(server, caplog):
    server.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 no such user"
    message = EmailMessage(
        "S", "B", "from@example.com", ["good@example.com", "bad@example.com"]
    )
    with caplog.at_level(logging.WARNING, logger="smtpkit"):
        assert message.send() == 1
    result = getattr(message, SMTPKIT_RESULT)
    assert result.accepted == ("good@example.com",)
    assert result.refused["bad@example.com"].code == 550
    [record] = [r for r in caplog.records if r.name == "smtpkit.contrib.django"]
    assert record.levelno == logging.WARNING
    assert "1 of 2 recipients refused" in record.getMessage()
    assert "bad@" not in record.getMessage()
    assert "good@" not in record.getMessage()


def test_partial_refusal_among_many(server):
    server.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 no such user"
    messages = [
        EmailMessage(
            "a", "B", "from@example.com", ["bad@example.com", "ok@example.com"]
        ),
        EmailMessage("b", "B", "from@example.com", ["ok@example.com"]),
    ]
    assert EmailBackend().send_messages(messages) == 2
    assert getattr(messages[0], SMTPKIT_RESULT).refused.keys() == {"bad@example.com"}


def test_nothing_delivered_raises_a_typed_smtplib_compatible_error(server):
    server.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 no such user"
    message = EmailMessage("S", "B", "from@example.com", ["bad@example.com"])
    with pytest.raises(smtpkit.RecipientsRefusedError) as caught:
        message.send()
    assert isinstance(caught.value, smtplib.SMTPException)
    assert caught.value.refused["bad@example.com"].code == 550
    assert getattr(message, SMTPKIT_RESULT).error is not None
    # fail_silently: the same failure is counted, not raised.  (The message keeps
    # the connection of its first send(), so a new one.)
    again = EmailMessage("S", "B", "from@example.com", ["bad@example.com"])
    assert again.send(fail_silently=True) == 0
    assert isinstance(
        getattr(again, SMTPKIT_RESULT).error, smtpkit.RecipientsRefusedError
    )


def test_a_failed_message_among_many_raises_after_the_others_are_sent(server):
    server.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 no such user"
    messages = [
        EmailMessage("a", "B", "from@example.com", ["bad@example.com"]),
        EmailMessage("b", "B", "from@example.com", ["ok@example.com"]),
    ]
    with pytest.raises(smtplib.SMTPException):
        EmailBackend().send_messages(messages)
    assert [parsed(m.data)["Subject"] for m in server.messages] == ["b"]
    assert getattr(messages[1], SMTPKIT_RESULT).ok
    assert EmailBackend(fail_silently=True).send_messages(messages) == 1


def test_unreachable_server_and_fail_silently():
    port = free_port()
    retry = {"attempts": 1}
    message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    backend = EmailBackend(host="127.0.0.1", port=port, retry=retry)
    with pytest.raises(smtpkit.ConnectError) as caught:
        backend.send_messages([message])
    assert isinstance(caught.value, smtplib.SMTPException)
    assert isinstance(caught.value, ConnectionError)
    silent = EmailBackend(host="127.0.0.1", port=port, retry=retry, fail_silently=True)
    assert silent.send_messages([message]) == 0


def test_transient_failure_is_retried(server):
    server.handler.queue("RCPT", "451 4.3.0 try again")
    backend = EmailBackend(retry={"wait_initial": 0.01, "wait_jitter": 0})
    message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    assert backend.send_messages([message]) == 1
    assert getattr(message, SMTPKIT_RESULT).attempts == 2
    assert len(server.messages) == 1


def test_per_message_connection(server):
    # The settings point nowhere useful; the message's own connection is used.
    backend = EmailBackend(host=server.host, port=server.port)
    with mail.get_connection(host="127.0.0.1", port=9) as unused:
        assert unused.port == 9
        message = EmailMessage(
            "S", "B", "from@example.com", ["to@example.com"], connection=backend
        )
        assert message.send() == 1
    assert len(server.messages) == 1


def test_message_header_injection_is_refused_by_django_first(server):
    # Django 6 says "linefeed or carriage return characters", 5.2 "newlines".
    with pytest.raises(ValueError, match=r"newline|linefeed"):
        EmailMessage("S\r\nBcc: x@y", "B", "f@example.com", ["t@example.com"]).send()
    assert server.messages == []


@pytest.mark.parametrize(
    "to_header",
    [
        "undisclosed-recipients:;",
        "Customers: ;",
        "list@example.com (Our list)",
        "Friends: ann@example.com;",
    ],
)
def test_ascii_address_headers_are_sent_as_django_wrote_them(server, to_header):
    message = EmailMessage(
        "Newsletter",
        "body",
        "news@example.com",
        bcc=["a@example.com", "b@example.com"],
        headers={"To": to_header},
    )
    assert message.send() == 1
    [received] = server.messages
    assert received.rcpt_tos == ["a@example.com", "b@example.com"]
    assert f"\r\nTo: {to_header}\r\n".encode() in received.data
    assert b"Bcc" not in received.data


def test_an_empty_address_is_refused_as_a_message_not_an_invalid_address(server):
    # '"Sales" <>' is no RFC 5322 address: smtpkit's check of the rendered
    # headers refuses the message (typed, fail_silently honoured), and the other
    # messages still go out.  The backend's own conversion no longer trips on it.
    bad = EmailMessage(
        "S", "B", "f@example.com", bcc=["a@example.com"], headers={"To": '"Sales" <>'}
    )
    good = EmailMessage("S", "B", "f@example.com", ["b@example.com"])
    with pytest.raises(smtpkit.InvalidMessageError, match="null addr-spec") as caught:
        EmailBackend().send_messages([bad, good])
    assert isinstance(caught.value, smtplib.SMTPException)
    assert [m.rcpt_tos for m in server.messages] == [["b@example.com"]]
    assert EmailBackend(fail_silently=True).send_messages([bad]) == 0


@pytest.mark.parametrize(
    ("values", "header"),
    [
        (  # a group keeps its name; the other group member stays
            {
                "to": ["用户@example.com"],
                "headers": {"To": "team: 用户@example.com, b@x.org;"},
            },
            "To: team: 用户@example.com, b@x.org;",
        ),
        (  # a comment stays a comment (not a display name)
            {
                "to": ["x@example.com"],
                "headers": {"Reply-To": "用户@example.com (desk)"},
            },
            "Reply-To: 用户@example.com (desk)",
        ),
        (  # quoted names with commas and parentheses stay quoted
            {
                "to": ["用户@example.com"],
                "headers": {"To": '"Doe, J" <用户@example.com>, "Ann (x)" <a@x.org>'},
            },
            'To: "Doe, J" <用户@example.com>, "Ann (x)" <a@x.org>',
        ),
        (  # a field with a non-ASCII name only is Django's: an encoded word
            # before 6.0; Django 6's message is written by smtpkit in UTF-8 (RFC
            # 6532), as the message goes with SMTPUTF8.
            {"to": ["用户@example.com"], "cc": ["Jöhn <j@example.com>"]},
            "Cc: Jöhn <j@example.com>"
            if modes.MODERN_MESSAGES
            else "Cc: =?utf-8?b?SsO2aG4=?= <j@example.com>",
        ),
        (  # list attributes: each value as written
            {"to": ['"Doe, J" <用户@example.com>', "Jöhn <o@example.com>"]},
            'To: "Doe, J" <用户@example.com>, Jöhn <o@example.com>',
        ),
    ],
)
def test_utf8_local_parts_rewrite_only_their_field_keeping_its_structure(
    server, values, header
):
    message = EmailMessage("S", "B", "from@example.com", **values)
    assert message.send() == 1
    [received] = server.messages
    assert "SMTPUTF8" in received.mail_options
    lines = received.data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert header in lines
    assert "From: from@example.com" in lines  # an ASCII field is left alone


@pytest.mark.parametrize(
    ("values", "invalid_address"),
    [
        # Django 5.2 refuses it itself; Django 6 writes "Reply-To: <>", which
        # smtpkit's check of the rendered headers refuses as a message.
        ({"reply_to": ["用户@"]}, not modes.MODERN_MESSAGES),
        # Django 5.2 writes "=?utf-8?b?55So5oi3?=@example.comextra"; smtpkit refuses.
        ({"headers": {"Reply-To": "用户@example.com extra"}}, True),
        # Django 6 repairs it to "Ann <用户@example.com>"; smtpkit refuses it still.
        ({"headers": {"Reply-To": "Ann <用户@example.com"}}, True),
    ],
)
def test_a_broken_utf8_address_field_is_an_invalid_address(
    server, values, invalid_address
):
    def broken() -> EmailMessage:  # a message keeps the connection of its send()
        return EmailMessage("S", "B", "from@example.com", ["x@example.com"], **values)

    if invalid_address:  # the caller's mistake: raised whatever fail_silently says
        with pytest.raises(ValueError, match="Invalid address") as caught:
            broken().send(fail_silently=True)
        assert not isinstance(caught.value, smtpkit.InvalidMessageError)
    else:
        with pytest.raises(smtpkit.InvalidMessageError, match="null addr-spec"):
            broken().send()
        assert broken().send(fail_silently=True) == 0
    assert server.messages == []


def test_djangos_mime_classes_render_themselves_and_are_checked(server):
    # Django's as_bytes before 6.0 takes no policy (only a line ending): like any
    # such class it renders itself, and smtpkit checks and normalises the bytes.
    # Django 6 builds the stdlib's EmailMessage, written by as_bytes(policy=...).
    built = EmailMultiAlternatives("S", "B", "f@example.com", ["t@example.com"])
    built.attach_alternative("<p>h</p>", "text/html")
    message = built.message()
    if modes.MODERN_MESSAGES:
        assert type(message) is StdMessage
        assert all(_takes_policy(type(part).as_bytes) for part in message.walk())
        assert not _renders_itself(message)
    else:
        assert type(message).as_bytes.__module__.startswith("django.core.mail")
        assert _renders_itself(message)
    assert built.send() == 1
    [received] = server.messages
    assert b"\n" not in received.data.replace(b"\r\n", b"")
    stored = parsed(received.data)
    assert stored.get_content_type() == "multipart/alternative"
    assert stored.get_body(("plain",)).get_content().strip() == "B"
    assert stored.get_body(("html",)).get_content().strip() == "<p>h</p>"
    assert stored["To"] == "t@example.com"

    class Own(StdMessage):
        def as_bytes(self, unixfrom: bool = False) -> bytes:  # type: ignore[override]
            return super().as_bytes(unixfrom)

    assert _renders_itself(Own())
    assert not _renders_itself(StdMessage())
