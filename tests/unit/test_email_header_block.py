"""Pre-built messages whose header block the parser cut short, and SMTPUTF8 from
what is transmitted.

A line that is no field ends the stdlib parser's header block: the fields after it,
a Bcc among them, become body text.  Such a message is refused, whatever the part;
and only fields that are sent decide whether the envelope needs SMTPUTF8.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.message import Message as LegacyMessage
from email.mime.text import MIMEText
from email.utils import formataddr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import (
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    RetryPolicy,
    _email_message,
)
from smtpkit.testing import FakeTransport

PARSERS = {
    "legacy": email.message_from_bytes,
    "modern": lambda raw: email.message_from_bytes(raw, policy=email.policy.default),
}


def send(
    msg: LegacyMessage | Message, envelope: Envelope | None = None
) -> FakeTransport:
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        mailer.send(msg, envelope=envelope)
    return fake


def refusal(msg: LegacyMessage, envelope: Envelope | None = None) -> str:
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        with pytest.raises(InvalidMessageError) as caught:
            mailer.send(msg, envelope=envelope)
    assert fake.attempts == []
    return str(caught.value)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    "bad_line",
    [
        b"X-Mailer line without a colon",
        b"Subject : obsolete syntax (RFC 5322 4.5)",
        b"X\tTab: in the name",
        b"X Space: in the name",
    ],
)
def test_a_line_that_is_no_field_is_named_instead_of_leaking_the_bcc(
    kind: str, bad_line: bytes
) -> None:
    raw = (
        b"From: a@x.org\r\nTo: b@x.org\r\n" + bad_line + b"\r\n"
        b"Bcc: secret@x.org\r\nSubject: quarterly\r\n\r\nHello\r\n"
    )
    msg = PARSERS[kind](raw)
    text = refusal(msg)
    assert f"its header block ends early at the line {bad_line.decode()!r}" in text
    assert "correct that line or remove it" in text
    # An explicit envelope does not make it sendable: the Bcc would still be shown.
    assert "ends early" in refusal(msg, Envelope("a@x.org", "b@x.org"))


def test_a_bare_cr_inside_a_field_cuts_the_block_too() -> None:
    msg = email.message_from_bytes(b"From: a@x.org\rjunk\r\nBcc: s@x.org\r\n\r\nHi\r\n")
    assert "at the line 'junk'" in refusal(msg)


@pytest.mark.parametrize("kind", PARSERS)
def test_a_cut_short_part_is_named(kind: str) -> None:
    raw = (
        b"From: a@x.org\r\nTo: b@x.org\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n"
        b"--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--BB\r\nContent-Type: application/pdf\r\nnot a field\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--BB--\r\n"
    )
    text = refusal(PARSERS[kind](raw))
    assert "header block of part 2 (application/pdf) ends early" in text
    assert "'not a field'" in text


@pytest.mark.parametrize("kind", PARSERS)
def test_a_cut_short_multipart_block_and_attached_message_are_refused(
    kind: str,
) -> None:
    multipart = (
        b"From: a@x.org\r\nTo: b@x.org\r\nContent-Type: multipart/mixed; boundary=B\r\n"
        b"junk\r\nBcc: s@x.org\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B--\r\n"
    )
    assert "at the line 'junk'" in refusal(PARSERS[kind](multipart))
    attached = (
        b"From: a@x.org\r\nTo: b@x.org\r\nContent-Type: multipart/mixed; boundary=B\r\n"
        b"\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: c@x.org\r\nno colon here\r\nSubject: s\r\n\r\nbody\r\n--B--\r\n"
    )
    assert "'no colon here'" in refusal(PARSERS[kind](attached))


FIELDS = st.sampled_from(
    [b"Subject: hello", b"X-Tag: a b c", b"Cc: c@x.org", b"Reply-To: r@x.org"]
)
JUNK = st.sampled_from(
    [b"junk", b"Subject : x", b"X Y: z", b"=?utf-8?q?x?=", b"a\tb", b"Bcc s@x.org"]
)


@given(
    st.lists(st.tuples(st.booleans(), FIELDS, JUNK), max_size=5),
    st.integers(0, 5),
    st.sampled_from(sorted(PARSERS)),
)
def test_a_bcc_is_never_transmitted_whatever_junk_the_header_block_holds(
    lines: list[tuple[bool, bytes, bytes]], bcc_at: int, kind: str
) -> None:
    block = [junk if is_junk else field for is_junk, field, junk in lines]
    block.insert(min(bcc_at, len(block)), b"Bcc: Secret <secret@x.org>")
    raw = b"From: a@x.org\r\nTo: b@x.org\r\n" + b"\r\n".join(block) + b"\r\n\r\nHi\r\n"
    msg = PARSERS[kind](raw)
    if any(is_junk for is_junk, _, _ in lines):
        assert "ends early" in refusal(msg)
        return
    [sent] = send(msg).outbox
    assert b"secret" not in bytes(sent.data)
    assert "secret@x.org" in sent.envelope.recipients


# --- SMTPUTF8 is asked for by what is transmitted ------------------------------


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("field", ["Bcc", "Resent-Bcc"])
def test_raw_utf8_only_in_a_bcc_does_not_ask_for_smtputf8(
    kind: str, field: str
) -> None:
    resent = "Resent-Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nResent-From: r@x.org\r\n"
    raw = (
        "From: a@x.org\r\nTo: b@x.org\r\n"
        + (resent if field.startswith("Resent") else "")
        + f"{field}: Jörg <j@x.org>\r\nSubject: plain ascii\r\n\r\nHello\r\n"
    ).encode()
    [sent] = send(PARSERS[kind](raw)).outbox
    assert "j@x.org" in sent.envelope.recipients
    assert not sent.envelope.needs_smtputf8
    assert bytes(sent.data).isascii()


@pytest.mark.parametrize("kind", PARSERS)
def test_raw_utf8_in_a_sent_field_still_asks_for_smtputf8(kind: str) -> None:
    raw = "From: a@x.org\r\nTo: Jörg <j@x.org>\r\nBcc: c@x.org\r\n\r\nHi\r\n".encode()
    [sent] = send(PARSERS[kind](raw)).outbox
    assert sent.envelope.needs_smtputf8


@pytest.mark.parametrize("kind", PARSERS)
def test_an_attached_message_with_utf8_headers_needs_only_8bitmime(kind: str) -> None:
    inner = "From: Jörg <j@x.org>\r\nTo: b@x.org\r\nSubject: Grüße\r\n\r\nHallo\r\n"
    raw = (
        b"From: a@x.org\r\nTo: b@x.org\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n"
        b"--BB\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--BB\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + inner.encode()
        + b"\r\n--BB--\r\n"
    )
    [sent] = send(PARSERS[kind](raw)).outbox
    # Python 3.13's modern policy would write the inner headers as unknown-8bit
    # encoded words: there, SMTPUTF8 (the utf8 policy) keeps the bytes instead.
    reencodes = kind == "modern" and not _email_message._modern_keeps_8bit_headers()
    assert sent.envelope.needs_smtputf8 == reencodes
    assert bytes(sent.data) == raw  # the 8-bit bytes travel as they are


def test_an_attached_message_built_with_unicode_text_still_renders() -> None:
    # Built, not parsed: the SMTP policy cannot write a str value of a compat32
    # message (UnicodeEncodeError), so the utf8 policy and SMTPUTF8 are needed.
    outer = EmailMessage()
    outer["From"] = "a@x.org"
    outer["To"] = "b@x.org"
    outer.set_content("see attached")
    inner = LegacyMessage()
    inner["Subject"] = "Grüße"
    inner.set_payload("Hallo")
    outer.add_attachment(inner)
    [sent] = send(outer).outbox
    assert sent.envelope.needs_smtputf8  # the SMTP policy cannot write it otherwise


# --- Unicode in a legacy address field: refused with what to do, and it works -


def legacy_mail(to: str) -> LegacyMessage:
    msg = MIMEText("hello", "plain", "utf-8")
    msg["From"] = "a@x.org"
    msg["To"] = to
    return msg


@pytest.mark.parametrize("to", ["Jörg <j@x.org>", "b@例子.cn", "用户@例子.cn"])
def test_unicode_in_a_legacy_address_field_says_what_to_do(to: str) -> None:
    text = refusal(legacy_mail(to))
    assert "would change the addresses of its To header" in text
    assert "email.utils.formataddr((name, address))" in text
    assert "A-labels (xn--...)" in text
    assert "EmailMessage (policy=email.policy.default) or an smtpkit.Message" in text


def test_each_remedy_the_hint_names_sends_the_same_addresses() -> None:
    [named] = send(legacy_mail(formataddr(("Jörg", "j@x.org")))).outbox
    assert named.envelope.recipients == ("j@x.org",)
    assert named.message["To"].addresses[0].display_name == "Jörg"
    [a_label] = send(legacy_mail("b@xn--fsqu00a.cn")).outbox
    assert a_label.envelope.recipients == ("b@xn--fsqu00a.cn",)
    modern = EmailMessage()
    modern["From"] = "a@x.org"
    modern["To"] = "Jörg <j@例子.cn>, 用户@例子.cn"
    modern.set_content("hello")
    [sent] = send(modern).outbox
    assert set(sent.envelope.recipients) == {"j@xn--fsqu00a.cn", "用户@例子.cn"}
    assert sent.envelope.needs_smtputf8  # the non-ASCII local part
    built = Message(sender="a@x.org", to=[("Jörg", "j@例子.cn")], text="hello")
    assert send(built).outbox[0].envelope.recipients == ("j@xn--fsqu00a.cn",)
