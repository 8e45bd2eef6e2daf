"""Pre-built messages whose header block ended early without a parser defect.

The stdlib reads a bare CR as a line end, so ``Subject: hi\\r\\r\\n`` (a file
converted to CRLF twice) is a line and an empty line: the header block ends there
and every field after it is body text.  A Bcc there would be shown to every
recipient, a To or Cc there would not be sent to.  Such a body is refused; one
that merely starts like a field ("Note: ...") is not.  MIME parts without any
header lose nothing and are sent; a folded line of white space is named.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message as LegacyMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Envelope, InvalidMessageError

from .test_email_header_block import PARSERS, refusal, send

TOP = b"From: a@x.org\r\nTo: b@x.org\r\n"
ENVELOPE = Envelope("a@x.org", "b@x.org")


def parsed(kind: str, raw: bytes) -> LegacyMessage:
    return PARSERS[kind](raw)


# --- 1. a Bcc (or a recipient) the header block lost --------------------------


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("envelope", [None, ENVELOPE], ids=["derived", "explicit"])
@pytest.mark.parametrize(
    "cut",
    [b"\r\r\n", b"\r\n\r\n", b"\r\r", b"\n\r\n", b"\r\r\n folded\r\n\tagain\r\n"],
)
def test_a_bcc_after_a_bare_cr_or_an_empty_line_is_refused(
    kind: str, envelope: Envelope | None, cut: bytes
) -> None:
    raw = TOP + b"Subject: hi" + cut + b"Bcc: boss@x.org\r\n\r\nbody\r\n"
    text = refusal(parsed(kind, raw), envelope)
    assert "its header block probably ends early" in text
    assert "body starts with header fields (Bcc)" in text
    assert "a Bcc would be shown to every recipient and not sent to" in text
    assert "bare CR (CR CR LF, as in a file converted to CRLF twice)" in text
    assert r"raw.replace(b'\r\r\n', b'\r\n')" in text
    assert "must start with an empty line" in text


@pytest.mark.parametrize("kind", PARSERS)
def test_the_remedy_the_refusal_names_sends_the_bcc_blind(kind: str) -> None:
    raw = TOP + b"Subject: hi\r\r\nBcc: boss@x.org\r\n\r\nbody\r\n"
    [sent] = send(parsed(kind, raw.replace(b"\r\r\n", b"\r\n"))).outbox
    assert sent.envelope.recipients == ("b@x.org", "boss@x.org")
    assert b"boss" not in bytes(sent.data)


@pytest.mark.parametrize("kind", PARSERS)
def test_a_message_converted_twice_all_along_is_refused(kind: str) -> None:
    # Every line ends in CR CR LF: the block ends after From, and CR CR LF is read
    # as one line end below it, so the whole rest of the block is seen.
    raw = b"From: a@x.org\r\nSubject: s\r\nTo: b@x.org\r\nResent-Bcc: r@x.org\r\n\r\nhi"
    twice = raw.replace(b"\r\n", b"\r\r\n")
    assert "header fields (Resent-Bcc)" in refusal(parsed(kind, twice), ENVELOPE)
    assert "header fields (Resent-Bcc)" in refusal(parsed(kind, twice))
    # Without the Bcc, the To is what the derived envelope would lose.
    twice = twice.replace(b"Resent-Bcc: r@x.org\r\r\n", b"")
    assert "header fields (To)" in refusal(parsed(kind, twice))


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("field", [b"To", b"Cc", b"Resent-To", b"Resent-Cc"])
def test_a_lost_recipient_is_refused_when_the_headers_make_the_envelope(
    kind: str, field: bytes
) -> None:
    raw = TOP + b"Subject: hi\r\r\n" + field + b": Carol\r\n <c@x.org>\r\n\r\nhi\r\n"
    text = refusal(parsed(kind, raw))
    assert f"body starts with header fields ({field.decode()})" in text
    assert "their addresses would not be sent to" in text
    # With an explicit envelope nobody is lost: the line is body text as written.
    [sent] = send(parsed(kind, raw), ENVELOPE).outbox
    assert sent.envelope.recipients == ("b@x.org",)
    assert field + b": Carol\r\n <c@x.org>\r\n" in bytes(sent.data)


@pytest.mark.parametrize("kind", PARSERS)
def test_a_multipart_preamble_that_starts_with_a_bcc_is_refused(kind: str) -> None:
    raw = (
        TOP + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n"
        b"Subject: hi\r\r\nBcc: boss@x.org\r\n\r\n--B\r\n\r\nhi\r\n--B--\r\n"
    )
    msg = parsed(kind, raw)
    assert msg.is_multipart()
    assert "header fields (Bcc)" in refusal(msg)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    "body",
    [
        b"Note: the meeting moved.\r\n",
        b"To: all staff\r\nFrom: HR\r\nRe: holidays\r\n\r\nDear all,\r\n",
        b"From: visitor@x.org\r\nName: Vic\r\nMessage: hello\r\n",  # a contact form
        b"Subject: hi\r\nX-Note: a field, and no address field\r\n",
        b"\r\nBcc: boss@x.org\r\nTo: c@x.org\r\n",  # the remedy: an empty line first
        b"Dear all,\r\nBcc: boss@x.org\r\n",  # not at the start
        b"Bcc me next time\r\n",  # no colon
        b"  indented text\r\nNote: x\r\n",
        b"Note: and no line end",
        b"",
    ],
)
def test_a_body_that_merely_starts_like_a_field_is_sent(kind: str, body: bytes) -> None:
    [sent] = send(parsed(kind, TOP + b"Subject: s\r\n\r\n" + body)).outbox
    assert sent.envelope.recipients == ("b@x.org",)
    assert bytes(sent.data).rstrip(b"\r\n").endswith(body.rstrip(b"\r\n"))


ADDRESS_FIELDS = ["To", "Cc", "Bcc", "Resent-Bcc"]
OTHER_FIELDS = [
    b"Subject: hello",
    b"X-Tag: a b c",
    b"Reply-To: r@x.org",
    b"Content-Type: multipart/mixed; boundary=B",
    b"MIME-Version: 1.0",
    b"Resent-Date: Mon, 1 Jan 2024 10:00:00 +0000",
    b"Resent-From: rf@x.org",
]
CUTS = [b"\r\r\n", b"\r\n\r\n", b"\r\r", b"\n\r\n"]


@st.composite
def cut_messages(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A header block cut somewhere (or not), and the addresses it names."""
    names = draw(st.lists(st.sampled_from(ADDRESS_FIELDS), min_size=1, max_size=4))
    others = draw(st.lists(st.sampled_from(OTHER_FIELDS), max_size=4, unique=True))
    lines = [f"{name}: R{i}\r\n <{name.lower()}{i}@x.org>".encode() for i, name in
             enumerate(names)]  # fmt: skip
    block = draw(st.permutations(lines + others))
    addresses = [f"{name.lower()}{i}@x.org" for i, name in enumerate(names)]
    body = b"--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B--\r\n"
    if draw(st.booleans()):  # converted twice all along
        raw = b"From: a@x.org\r\n" + b"\r\n".join(block) + b"\r\n\r\n" + body
        return raw.replace(b"\r\n", b"\r\r\n"), addresses
    at = draw(st.integers(0, len(block)))
    cut = draw(st.sampled_from(CUTS))
    head = b"\r\n".join([b"From: a@x.org", *block[:at]])
    tail = b"".join(line + b"\r\n" for line in block[at:])
    return head + cut + tail + b"\r\n" + body, addresses


@given(cut_messages(), st.sampled_from(sorted(PARSERS)), st.booleans())
def test_a_lost_bcc_is_never_sent_and_no_recipient_is_silently_lost(
    case: tuple[bytes, list[str]], kind: str, explicit: bool
) -> None:
    raw, addresses = case
    msg = parsed(kind, raw)
    try:
        [sent] = send(msg, Envelope("a@x.org", addresses) if explicit else None).outbox
    except InvalidMessageError:
        return  # refused: nothing was sent
    assert b"bcc" not in bytes(sent.data).lower()  # neither a Bcc field nor address
    if not explicit:
        resent = "Resent-Date" in msg
        wanted = [a for a in addresses if a.startswith("resent-") == resent]
        assert set(wanted) <= set(sent.envelope.recipients)


# --- 2. a MIME part without any header ----------------------------------------

MULTI = TOP + b"MIME-Version: 1.0\r\n"


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    ("raw", "written"),
    [
        (
            MULTI + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nhello world\r\n--B--\r\n",
            b"--B\r\n\r\nhello world\r\n--B--\r\n",
        ),
        (
            MULTI + b"Content-Type: message/rfc822\r\n\r\njust some text\r\n",
            b"message/rfc822\r\n\r\n\r\njust some text\r\n",
        ),
        (
            MULTI + b"Content-Type: multipart/digest; boundary=B\r\n\r\n"
            b"--B\r\n\r\nhello\r\n--B--\r\n",
            b"--B\r\n\r\n\r\nhello\r\n--B--\r\n",
        ),
    ],
    ids=["part", "attached-message", "digest"],
)
def test_a_part_without_any_header_is_sent_with_its_blank_line(
    kind: str, raw: bytes, written: bytes
) -> None:
    [sent] = send(parsed(kind, raw)).outbox
    assert sent.envelope.recipients == ("b@x.org",)
    assert bytes(sent.data).endswith(written)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    "part",
    [
        b"Content-Type: text/plain\r\nnot a field\r\nContent-Transfer-Encoding: 8bit\r\n",
        b"Content-Type : text/plain\r\nContent-Transfer-Encoding: base64\r\n",
    ],
    ids=["a-field-before", "obsolete-form-first"],
)
def test_a_part_whose_fields_would_be_lost_is_still_refused(
    kind: str, part: bytes
) -> None:
    raw = (
        MULTI + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\n" + part + b"\r\naGk=\r\n--B--\r\n"
    )
    assert "the header block of part 1 (text/plain) ends early" in refusal(
        parsed(kind, raw)
    )


@pytest.mark.parametrize("kind", PARSERS)
def test_a_message_without_any_header_is_still_refused(kind: str) -> None:
    # At the top a Bcc could hide below the line: an explicit envelope does not help.
    raw = b"hello world\r\nBcc: boss@x.org\r\n\r\nbody\r\n"
    assert "its header block ends early at the line 'hello world'" in refusal(
        parsed(kind, raw), ENVELOPE
    )


# --- 4. a folded line of white space --------------------------------------------


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    ("field", "name"),
    [
        (b"Subject: a\r\n \r\n folded", "Subject"),
        (b"Subject: a\r\n  folded\r\n\t", "Subject"),
        (b"Cc: c@x.org,\r\n \t \r\n d@x.org", "Cc"),
    ],
)
def test_a_folded_line_of_white_space_is_named(
    kind: str, field: bytes, name: str
) -> None:
    text = refusal(parsed(kind, TOP + field + b"\r\n\r\nbody\r\n"))
    assert f"a folded line of header {name} holds only white space" in text
    assert f"msg.replace_header({name!r}, value)" in text
    assert "control characters" not in text


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    "field",
    [b"Subject: a\r\n folded", b"X-Empty:   ", b"Subject:\r\n folded"],
)
def test_folding_with_text_and_empty_values_are_still_sent(
    kind: str, field: bytes
) -> None:
    [sent] = send(parsed(kind, TOP + field + b"\r\n\r\nbody\r\n")).outbox
    assert sent.envelope.recipients == ("b@x.org",)


def test_the_modern_policy_parses_the_same_way() -> None:
    raw = TOP + b"Subject: hi\r\r\nBcc: boss@x.org\r\n\r\nbody\r\n"
    modern = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Bcc" not in modern
    assert modern.get_payload().startswith("Bcc: boss@x.org")
