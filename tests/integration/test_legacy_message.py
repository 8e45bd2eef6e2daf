"""Legacy ``email.message.Message`` objects (compat32; Django's message()) over SMTP."""

from __future__ import annotations

import email
import email.policy
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from smtpkit import InvalidMessageError, Mailer


def django_like() -> MIMEMultipart:
    """The shape Django's EmailMessage.message() returns: compat32 MIME classes."""
    msg = MIMEMultipart("mixed", boundary="==smtpkit-test==")
    msg["Subject"] = "Your invoice"
    msg["From"] = "Shop <shop@example.com>"
    msg["To"] = "ann@example.com, Bob <bob@example.com>"
    msg["Cc"] = "carol@example.com"
    msg["Bcc"] = "audit@example.com"
    msg["Message-ID"] = "<invoice-7@example.com>"
    msg.attach(MIMEText("Grüße,\nyour invoice is attached.", "plain", "utf-8"))
    msg.attach(MIMEApplication(b"%PDF-1.4 ...", "pdf", Name="invoice.pdf"))
    return msg


def test_a_legacy_message_arrives_as_smtplib_would_write_it(server, config_for):
    msg = django_like()
    with Mailer(config_for(server)) as mailer:
        result = mailer.send(msg)
    assert result.ok
    assert result.message_id == "<invoice-7@example.com>"
    [received] = server.messages
    assert received.mail_from == "shop@example.com"
    assert received.rcpt_tos == [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
        "audit@example.com",
    ]
    # The compat32 generator's bytes with CRLF, less the Bcc header.
    expected = msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    expected = expected.replace(b"Bcc: audit@example.com\r\n", b"")
    assert received.data.rstrip(b"\r\n") == expected.rstrip(b"\r\n")
    assert b"audit@example.com" not in received.data
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed.get_body(("plain",)).get_content().startswith("Grüße,")


def test_message_from_bytes_default_is_sent_as_parsed(server, config_for):
    raw = (
        b"From: a@example.com\nTo: b@example.com\nSubject: forwarded\n"
        b"Resent-Date: Mon, 01 Jan 2024 10:00:00 +0000\n"
        b"Resent-From: relay@example.com\nResent-To: c@example.com\n"
        b"Resent-Bcc: hidden@example.com\n\nno final newline"
    )
    msg = email.message_from_bytes(raw)  # compat32 email.message.Message
    assert type(msg) is email.message.Message
    with Mailer(config_for(server)) as mailer:
        mailer.send(msg)
    [received] = server.messages
    # The Resent- block decides the envelope, as smtplib's send_message does.
    assert received.mail_from == "relay@example.com"
    assert received.rcpt_tos == ["c@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in received.data
    assert received.data.endswith(b"no final newline\r\n")


def test_utf8_only_in_a_bcc_goes_to_a_server_without_smtputf8(start_server, config_for):
    server = start_server(enable_SMTPUTF8=False)
    raw = "From: a@example.com\r\nTo: b@example.com\r\nBcc: Jörg <j@example.com>\r\n"
    msg = email.message_from_bytes((raw + "Subject: hi\r\n\r\nHello\r\n").encode())
    with Mailer(config_for(server)) as mailer:
        mailer.send(msg)
    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com", "j@example.com"]
    assert "SMTPUTF8" not in received.mail_options
    assert b"j@example.com" not in received.data


def test_a_cut_short_header_block_never_reaches_the_server(server, config_for):
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nX-Mailer no colon\r\n"
        b"Bcc: secret@example.com\r\n\r\nHello\r\n"
    )
    with Mailer(config_for(server)) as mailer:
        with pytest.raises(InvalidMessageError, match="'X-Mailer no colon'"):
            mailer.send(email.message_from_bytes(raw))
    assert server.messages == []


@pytest.mark.parametrize("policy", [email.policy.compat32, email.policy.default])
def test_a_bcc_after_a_bare_cr_never_reaches_the_server(server, config_for, policy):
    # CR CR LF (a file converted to CRLF twice): the stdlib ends the block there.
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\r\n"
        b"Bcc: secret@example.com\r\n\r\nHello\r\n"
    )
    with Mailer(config_for(server)) as mailer:
        with pytest.raises(InvalidMessageError, match=r"header fields \(Bcc\)"):
            mailer.send(email.message_from_bytes(raw, policy=policy))
        fixed = email.message_from_bytes(raw.replace(b"\r\r\n", b"\r\n"), policy=policy)
        mailer.send(fixed)
    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com", "secret@example.com"]
    assert b"secret" not in received.data


def test_a_part_without_any_header_arrives_with_its_blank_line(server, config_for):
    raw = (
        b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nhello world\r\n--XX--\r\n"
    )
    with Mailer(config_for(server)) as mailer:
        mailer.send(email.message_from_bytes(raw))
    [received] = server.messages
    assert received.data.endswith(b"\r\n--XX\r\n\r\nhello world\r\n--XX--\r\n")
    [part] = email.message_from_bytes(received.data).get_payload()
    assert part.get_payload() == "hello world"


class SignedMessage(email.message.Message):
    """A user's class whose as_bytes (no policy parameter) adds a signature."""

    def as_bytes(self, unixfrom: bool = False) -> bytes:  # type: ignore[override]
        return b"DKIM-Signature: v=1; b=abc\n" + super().as_bytes(unixfrom)


class FooterMessage(email.message.Message):
    """A user's class whose as_bytes (no policy parameter) fills in the body."""

    def as_bytes(self, unixfrom: bool = False) -> bytes:  # type: ignore[override]
        return super().as_bytes(unixfrom).replace(b"{footer}", b"-- sent by us")


def own_rendering(cls: type[email.message.Message]) -> email.message.Message:
    msg = cls()
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    msg["Bcc"] = "hidden@example.com"
    msg["Subject"] = "hi"
    msg.set_payload("Hello\n{footer}\n")
    return msg


def test_an_own_as_bytes_that_adds_a_field_is_refused_not_bypassed(server, config_for):
    # Sending the generator's bytes would drop the signature without a word.
    with Mailer(config_for(server)) as mailer:
        with pytest.raises(InvalidMessageError, match=r"SignedMessage\.as_bytes\(\)"):
            mailer.send(own_rendering(SignedMessage))
    assert server.messages == []


def test_an_own_as_bytes_is_what_goes_out_checked_and_normalised(server, config_for):
    with Mailer(config_for(server)) as mailer:
        result = mailer.send(own_rendering(FooterMessage))
    assert result.ok
    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com", "hidden@example.com"]
    assert received.data.endswith(b"\r\n\r\nHello\r\n-- sent by us\r\n")
    assert b"\n" not in received.data.replace(b"\r\n", b"")  # CRLF throughout
    assert b"hidden" not in received.data  # Bcc left out, as for any message


def test_an_own_as_bytes_still_gets_the_line_length_check(server, config_for):
    msg = own_rendering(FooterMessage)
    msg.set_payload("{footer}" + "x" * 1000 + "\n")
    with Mailer(config_for(server)) as mailer:
        with pytest.raises(InvalidMessageError, match="998"):
            mailer.send(msg)
    assert server.messages == []
