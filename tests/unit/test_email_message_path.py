"""Pre-built ``EmailMessage`` objects (forwarding, resending) keep the same promises.

Sent through ``Mailer`` and ``FakeTransport``, as users send them: a header that
would write a line of its own is refused before anything is sent; a resent message
goes to its Resent- recipients (smtplib's rule); non-ASCII header addresses ask for
SMTPUTF8 instead of being mangled into encoded words.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smtpkit import Envelope, InvalidMessageError, Mailer, RetryPolicy
from smtpkit._email_message import envelope_of
from smtpkit._message import FORBIDDEN_CHARS
from smtpkit.testing import FakeTransport

from .test_mime_edges import REPRO, header_blocks


def send(message: EmailMessage, envelope: Envelope | None = None) -> FakeTransport:
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        mailer.send(message, envelope=envelope)
    return fake


def refused(message: EmailMessage, match: str) -> None:
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        with pytest.raises(InvalidMessageError, match=match):
            mailer.send(message)
    assert fake.attempts == []  # refused before connecting


def from_bytes(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def legacy(**headers: str) -> EmailMessage:
    """An EmailMessage under compat32, which stores header values unchecked."""
    message = EmailMessage(policy=email.policy.compat32)
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_payload("body\r\n")
    return message


# -- 1. header injection -------------------------------------------------------------


def test_the_repro_subject_is_refused():
    message = legacy(From="a@example.com", To="b@example.com", Subject=REPRO)
    refused(message, r"Subject.*\\x0b")


def test_a_parsed_unicode_line_separator_is_refused():
    # message_from_bytes keeps the raw value; the SMTP policy re-folds it with
    # str.splitlines, which would turn U+2028 into CRLF.
    data = (
        "From: a@example.com\r\nTo: b@example.com\r\n"
        "Subject: hi\u2028Reply-To: x@evil.example\r\n\r\nbody\r\n"
    )
    refused(
        email.message_from_string(data, policy=email.policy.default), "U+2028|u2028"
    )  # type: ignore[arg-type]
    refused(from_bytes(data.encode()), r"Subject.*\\u2028")


def test_an_attachment_filename_with_a_line_break_is_refused():
    data = (
        b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="a\x0cBcc : x@evil.example"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
    )
    refused(from_bytes(data), r"Content-Disposition.*\\x0c")


@pytest.mark.parametrize("field", ["From", "To", "Cc", "Bcc", "Sender"])
def test_an_address_field_with_a_line_break_is_refused_naming_it(field):
    # The envelope is derived from these fields, before the message is rendered.
    message = legacy(From="a@example.com", To="b@example.com")
    message[field] = "c@example.com\x0bBcc: evil@example.com"
    refused(message, rf"header {field} must not contain.*\\x0b")


def test_a_header_name_with_a_space_is_refused():
    message = legacy(From="a@example.com", To="b@example.com")
    message["Reply-To "] = "attacker@evil.example"
    refused(message, "header name")


def test_a_lone_surrogate_is_refused():
    refused(
        legacy(From="a@example.com", To="b@example.com", Subject="\ud800"), "Unicode"
    )


def test_valid_folding_in_a_parsed_header_is_kept():
    data = (
        b"From: a@example.com\r\nTo: b@example.com\r\n"
        b"Subject: folded\r\n\tsubject\r\n\r\nbody\r\n"
    )
    fake = send(from_bytes(data))
    assert fake.outbox[0].message["Subject"] == "folded\tsubject"


VALUE_CHARS = st.sampled_from(
    ["a", " ", "\t", ":", "é", "中", "Bcc : x@evil.example", *sorted(FORBIDDEN_CHARS)]
)


@given(
    subject=st.lists(VALUE_CHARS, max_size=12).map("".join),
    custom=st.lists(VALUE_CHARS, max_size=12).map("".join),
    pad=st.integers(0, 80),
)
@example(subject="", custom="\n ", pad=0)  # a folded line of white space alone
def test_control_characters_are_refused_never_sent_as_header_lines(
    subject, custom, pad
):
    subject = "s" * pad + subject
    message = legacy(From="a@example.com", To="b@example.com", Subject=subject)
    message["X-Test"] = custom
    if not FORBIDDEN_CHARS.isdisjoint(subject + custom):
        # A break followed by white space alone reads as a folded empty line,
        # which has its own, more precise message.
        refused(message, "control characters or line breaks|holds only white space")
        return
    fake = send(message)
    [block] = header_blocks(fake.outbox[0].data)
    assert sorted(name for name, _ in block) == ["From", "Subject", "To", "X-Test"]
    # Raw non-ASCII text (unencoded under compat32) can only travel as UTF-8.
    assert fake.attempts[0].smtputf8 is not (subject + custom).isascii()
    assert dict(block)["X-Test"] == custom


@given(
    filename=st.lists(VALUE_CHARS.filter(lambda c: c not in "\r\n"), max_size=12).map(
        "".join
    ),
    pad=st.integers(0, 80),
)
def test_control_characters_in_a_parsed_attachment_are_refused(filename, pad):
    filename = "f" * pad + filename
    data = (
        "From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        f'--b\r\nContent-Type: application/pdf; name="{filename}"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
    ).encode()
    message = from_bytes(data)
    if not FORBIDDEN_CHARS.isdisjoint(filename):
        refused(message, "Content-Type|Content-Disposition")
        return
    top, *parts = header_blocks(send(message).outbox[0].data)
    assert sorted(name for name, _ in top) == [
        "Content-Type", "From", "MIME-Version", "To"
    ]  # fmt: skip
    assert [sorted(name for name, _ in block) for block in parts] == [
        ["Content-Type"],
        ["Content-Disposition", "Content-Transfer-Encoding", "Content-Type"],
    ]


# -- 2. no line over 998 octets ------------------------------------------------------


def test_an_unfoldable_header_is_refused():
    message = legacy(From="a@example.com", To="b@example.com")
    message["Message-ID"] = "<" + "a" * 1200 + "@example.com>"
    refused(message, "1226 octets.*Message-ID")


# -- 6. resent messages ----------------------------------------------------------------


def resent(**extra: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.com>"
    message["To"] = "bob@example.com"
    message["Cc"] = "dave@example.com"
    message["Subject"] = "minutes"
    message["Resent-Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    message["Resent-From"] = "Bob <bob@example.com>"
    message["Resent-To"] = "carol@example.com"
    message["Resent-Bcc"] = "erin@example.com"
    for name, value in extra.items():
        message[name.replace("_", "-")] = value
    message.set_content("notes")
    return message


def test_a_resent_message_goes_to_its_resent_recipients():
    fake = send(resent())
    [attempt] = fake.attempts
    assert attempt.sender == "bob@example.com"
    assert attempt.recipients == ("carol@example.com", "erin@example.com")
    data = fake.outbox[0].data
    assert b"erin@example.com" not in data
    assert b"Resent-Bcc" not in data
    assert fake.outbox[0].message["To"] == "bob@example.com"  # the original, intact


def test_resent_sender_wins_over_resent_from():
    fake = send(
        resent(Resent_Sender="secretary@example.com", Resent_Cc="f@example.com")
    )
    [attempt] = fake.attempts
    assert attempt.sender == "secretary@example.com"
    assert attempt.recipients == (
        "carol@example.com",
        "f@example.com",
        "erin@example.com",
    )


def test_more_than_one_resent_block_is_refused():
    message = resent(Resent_Date="Tue, 02 Jan 2024 10:00:00 +0000")
    refused(message, "more than one Resent- block")
    # An explicit envelope says who gets it, so the message can still go.
    envelope = Envelope(sender="bob@example.com", recipients=["carol@example.com"])
    assert send(message, envelope).attempts == [envelope]


def test_a_resent_block_without_resent_from_is_refused():
    message = resent()
    del message["Resent-From"]
    refused(message, "Resent-From")


# -- 7. non-ASCII addresses in the headers -------------------------------------------

ADDR_SPEC_RE = re.compile(rb"<[^<>]*>")


@pytest.mark.parametrize("address", ["用户@example.com", "bob@bücher.example"])
def test_non_ascii_header_addresses_ask_for_smtputf8(address):
    message = EmailMessage()
    message["From"] = "Me <me@example.com>"
    message["To"] = f"Bob <{address}>"
    message["Subject"] = "主题"
    message.set_content("body")
    envelope = Envelope(sender="me@example.com", recipients=["bob@example.com"])
    fake = send(message, envelope)
    [attempt] = fake.attempts
    assert (
        attempt.smtputf8
    )  # the transport asks for SMTPUTF8, or raises NotSupportedError
    data = fake.outbox[0].data
    to_line = next(line for line in data.split(b"\r\n") if line.startswith(b"To:"))
    assert to_line == f"To: Bob <{address}>".encode()
    assert all(b"=?" not in spec for spec in ADDR_SPEC_RE.findall(data))


GRUSS = "From: a@example.com\r\nTo: b@example.com\r\nSubject: Grüße\r\n\r\nx\r\n"


@pytest.mark.parametrize(
    ("message", "smtputf8"),
    [
        (from_bytes(GRUSS.encode()), True),  # an RFC 6532 message, parsed
        (legacy(From="a@example.com", To="b@example.com", Subject="é " * 50), True),
        (legacy(From="a@example.com", To="b@example.com", Subject="é"), True),
        (from_bytes(GRUSS.encode("latin-1")), False),  # unknown 8-bit: as before
    ],
)
def test_raw_utf8_header_text_asks_for_smtputf8(message, smtputf8):
    fake = send(message)
    assert fake.attempts[0].smtputf8 is smtputf8
    subject = next(
        line for line in fake.outbox[0].data.split(b"\r\n") if b"Subject" in line
    )
    if smtputf8:
        assert b"=?" not in subject  # sent as it is, never re-encoded
    else:
        # Bytes of an unknown charset: Python 3.13's SMTP policy writes them as an
        # unknown-8bit encoded word, older ones as they are; both keep the bytes.
        assert subject in (
            b"Subject: " + "Grüße".encode("latin-1"),
            b"Subject: =?unknown-8bit?q?Gr=FC=DFe?=",
        )


def test_a_body_the_policy_cannot_encode_is_refused():
    message = legacy(From="a@example.com", To="b@example.com")
    message.set_payload("Grüße")  # compat32: a str body without a charset
    refused(message, "cannot encode")


def test_ascii_addresses_with_unicode_names_stay_7bit():
    message = EmailMessage()
    message["From"] = "Jürgen <juergen@example.com>"
    message["To"] = "张三 <zs@example.com>"
    message.set_content("body")
    fake = send(message)
    assert not fake.attempts[0].smtputf8
    assert fake.outbox[0].data.isascii()
    assert fake.outbox[0].message["To"].addresses[0].display_name == "张三"


# -- addresses in the headers are never repaired into other addresses -----------------

REPAIRED = [
    b"ada@example.com extra",
    b"Ada <ada@example.com> trailing",
    b"@relay.example:user@good.example",
    b"a@evil.example@good.example",
]


@pytest.mark.parametrize(
    "policy", [email.policy.default, email.policy.compat32], ids=["default", "compat32"]
)
@pytest.mark.parametrize("to", REPAIRED, ids=lambda raw: raw.decode())
def test_an_address_header_the_parser_would_repair_is_refused(policy, to):
    parsed = email.message_from_bytes(
        b"From: me@example.com\r\nTo: " + to + b"\r\nSubject: x\r\n\r\nbody\r\n",
        _class=EmailMessage,
        policy=policy,
    )
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        with pytest.raises(InvalidMessageError):
            mailer.send(parsed)
    assert fake.attempts == []


def test_groups_and_quoted_commas_are_still_read():
    parsed = email.message_from_bytes(
        b"From: me@example.com\r\n"
        b'To: undisclosed-recipients:;, "Doe, John" <jd@example.com>, bob@example.com\r\n'
        b"\r\nbody\r\n",
        _class=EmailMessage,
        policy=email.policy.default,
    )
    fake = send(parsed)
    assert fake.outbox[0].envelope.recipients == ("jd@example.com", "bob@example.com")


# -- what re-folding decodes cannot add a header line or an address -------------------

ENCODED_BREAK = "=?utf-8?q?=0D=0ABcc:_evil@y.example?="
LONG = "word " * 20


@pytest.mark.parametrize(
    "raw",
    [
        f"Subject: {LONG}{ENCODED_BREAK}",
        f"X-Thing: {LONG}{ENCODED_BREAK}",
        f"References: <a@x.org> {LONG}{ENCODED_BREAK}",
    ],
    ids=["subject", "custom", "references"],
)
def test_an_encoded_line_break_in_a_parsed_header_is_refused(raw):
    message = from_bytes(
        f"From: a@x.org\r\nTo: b@x.org\r\n{raw}\r\n\r\nhi\r\n".encode()
    )
    refused_or_intact(message)


def test_an_encoded_line_break_set_under_compat32_is_refused():
    refused_or_intact(
        legacy(From="a@x.org", To="b@x.org", Subject=LONG + ENCODED_BREAK)
    )


def refused_or_intact(message: EmailMessage) -> None:
    """Python 3.11 decodes the break while re-folding (refused); 3.13 keeps it encoded."""
    names = [name.lower() for name in message]
    fake = FakeTransport()
    error: InvalidMessageError | None = None
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        try:
            mailer.send(message)
        except InvalidMessageError as exc:
            error = exc
    if error is not None:
        assert "header" in str(error)
        assert fake.attempts == []
        return
    sent = email.message_from_bytes(fake.outbox[0].data, policy=email.policy.compat32)
    assert [name.lower() for name in sent] == names  # no line of its own


@pytest.mark.parametrize(
    "disposition",
    [
        b"attachment; filename*=utf-8''a%0D%0AX-Evil:%201%0D%0A; x=" + b"y" * 70,
        b'attachment; filename="=?utf-8?q?a=0D=0AX-Evil:_1?="; x=' + b"y" * 70,
    ],
    ids=["rfc2231", "encoded-word"],
)
def test_a_line_break_decoded_from_an_attachment_name_is_refused(disposition):
    raw = (
        b"From: a@x.org\r\nTo: b@x.org\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: " + disposition + b"\r\n\r\nAAAA\r\n--b--\r\n"
    )
    refused(from_bytes(raw), "header")


def test_an_encoded_word_inside_an_address_is_refused():
    message = from_bytes(
        b"From: a@x.org\r\nTo: bob@=?utf-8?q?evil.example?=\r\n\r\nhi\r\n"
    )
    refused(message, "encoded word")


def test_a_display_name_that_would_render_as_more_addresses_is_refused():
    message = EmailMessage()
    message["From"] = "a@x.org"
    message["To"] = (
        "=?utf-8?q?boss=40corp=2Eexample_=3Cboss=40corp=2Eexample=3E=2C?= <b@x.org>"
    )
    message.set_content("hi")
    refused(message, "addresses of its To header")


def test_resent_fields_without_resent_date_are_refused():
    message = from_bytes(
        b"From: a@x.org\r\nTo: orig@x.org\r\nResent-From: me@x.org\r\n"
        b"Resent-To: new@y.org\r\n\r\nhi\r\n"
    )
    refused(message, "no Resent-Date")


def test_a_long_address_list_is_read_whole():
    # Parsed one address at a time (the stdlib's parser is quadratic in a list).
    cc = ", ".join(f'"User, {n}" <u{n}@x.org>' for n in range(3_000))
    envelope = envelope_of(legacy(From="a@x.org", Cc=cc))
    assert envelope.recipients == tuple(f"u{n}@x.org" for n in range(3_000))
