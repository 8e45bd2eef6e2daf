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
import re
from email.message import EmailMessage
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


REFUSED_CUTS = [
    b"\r\r\n",
    b"\r\r\r\n",  # converted thrice: the body starts with an empty line
    b"\r\r\r\r\n",
    b"\r\n\r\n",
    b"\r\r",
    b"\n\r\n",
    b"\r\r\n folded\r\n\tagain\r\n",
    b"\r\r\n   \r\r\n",  # a line of white space after the cut
    b"\r\r\n\t\r\n\r\n",
    b"\r\r\nX-Y hi: z\r\r\n",  # a line that is no field before the Bcc
    b"\r\r\nX-Mailer line without a colon\r\n",
    b"\r\r\nDear all,\r\n",
]


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("envelope", [None, ENVELOPE], ids=["derived", "explicit"])
@pytest.mark.parametrize("cut", REFUSED_CUTS)
def test_a_bcc_after_a_bare_cr_or_an_empty_line_is_refused(
    kind: str, envelope: Envelope | None, cut: bytes
) -> None:
    raw = TOP + b"Subject: hi" + cut + b"Bcc: boss@x.org\r\n\r\nbody\r\n"
    text = refusal(parsed(kind, raw), envelope)
    assert "its header block probably ends early" in text
    assert "the first paragraph of its body holds header fields (Bcc)" in text
    assert "a Bcc would be shown to every recipient and not sent to" in text
    assert "bare CR (CR CR LF, as in a file converted to CRLF twice)" in text
    assert r"re.sub(rb'\r+\n', b'\r\n', raw)" in text
    assert "must start with a paragraph without them" in text
    assert "empty line (" not in text  # the old remedy no longer helps


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("crs", [b"\r\r", b"\r\r\r", b"\r\r\r\r"])
def test_the_remedy_the_refusal_names_sends_the_bcc_blind(
    kind: str, crs: bytes
) -> None:
    raw = TOP + b"Subject: hi" + crs + b"\nBcc: boss@x.org" + crs + b"\n\r\nbody\r\n"
    [sent] = send(parsed(kind, re.sub(rb"\r+\n", b"\r\n", raw))).outbox
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
    # The header block has no field of that name: a cut before it is the story.
    top = b"From: a@x.org\r\n" + (b"Cc" if field == b"To" else b"To") + b": b@x.org\r\n"
    raw = top + b"Subject: hi\r\r\n" + field + b": Carol\r\n <c@x.org>\r\n\r\nhi\r\n"
    text = refusal(parsed(kind, raw))
    assert f"first paragraph of its body holds header fields ({field.decode()})" in text
    assert "their addresses would not be sent to" in text
    # With an explicit envelope nobody is lost: the line is body text as written.
    [sent] = send(parsed(kind, raw), ENVELOPE).outbox
    assert sent.envelope.recipients == ("b@x.org",)
    assert field + b": Carol\r\n <c@x.org>\r\n" in bytes(sent.data)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("field", [b"To", b"CC", b"Resent-To", b"resent-cc"])
def test_a_body_recipient_field_the_header_block_has_too_is_sent(
    kind: str, field: bytes
) -> None:
    name = field.decode().title().encode()
    block = b"Resent-Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nResent-From: r@x.org\r\n"
    top = TOP + (block if name.startswith(b"Resent-") else b"")
    raw = top + name + b": d@x.org\r\n\r\n" + field + b": c@x.org (noted)\r\nhi\r\n"
    [sent] = send(parsed(kind, raw)).outbox
    resent = name.startswith(b"Resent-")
    assert sent.envelope.recipients == (
        ("d@x.org",) if resent else ("b@x.org", "d@x.org")
    )
    assert bytes(sent.data).endswith(field + b": c@x.org (noted)\r\nhi\r\n")


def built(body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@corp.example"
    msg["To"] = "bob@corp.example"
    msg["Subject"] = "s"
    msg.set_content(body)
    return msg


@pytest.mark.parametrize(
    "body",
    [
        # An Outlook-style inline forward.
        "From: Alice <alice@partner.example>\nSent: Monday\n"
        "To: Bob <bob@corp.example>\nSubject: Q3\n\nNumbers attached.\n",
        # A contact form's notification.
        "To: sales@corp.example\nFrom: visitor@gmail.com\nMessage: please call me\n",
        "To: x@y.org\nhello \u00e9\n" * 3,  # 8bit
        "To: all staff\nRe: parking\n\nThe lot is closed.\n",
    ],
    ids=["inline-forward", "form-notification", "8bit", "memo"],
)
def test_a_built_message_with_its_own_to_and_a_to_in_its_body_is_sent(
    body: str,
) -> None:
    [sent] = send(built(body)).outbox
    assert sent.envelope.recipients == ("bob@corp.example",)
    assert b"Subject: s\r\n" in bytes(sent.data)


def test_a_cc_note_is_sent_when_the_message_has_its_own_cc() -> None:
    msg = built("CC: hr@corp.example (for the record)\n\nHi Bob\n")
    without_cc = refusal(msg)
    assert "first paragraph of its body holds header fields (CC)" in without_cc
    msg["Cc"] = "boss@corp.example"
    [sent] = send(msg).outbox
    assert sent.envelope.recipients == ("bob@corp.example", "boss@corp.example")
    assert b"\r\n\r\nCC: hr@corp.example (for the record)\r\n" in bytes(sent.data)
    # With an explicit envelope, even without a Cc header.
    del msg["Cc"]
    [sent] = send(msg, Envelope("app@corp.example", "bob@corp.example")).outbox
    assert b"CC: hr@corp.example" in bytes(sent.data)


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
        b"Dear all,\r\n\r\nBcc: boss@x.org\r\nTo: c@x.org\r\n",  # the remedy
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
# At the cut: 1 to 4 CRs before the LF (one is no cut), or other bare-CR line ends.
CUTS = [b"\r" * crs + b"\n" for crs in range(1, 5)] + [b"\r\r", b"\n\r\n", b"\r\n\r\n"]
FILLERS = [b"", b"   ", b"\t", b" \t ", b"X-Y hi: z", b"a line without a colon"]


@st.composite
def cut_messages(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """A header block cut somewhere (or not), and the fields and addresses it names.

    After the cut come, maybe, empty lines, lines of white space and lines that are
    no field, each ending in 1 to 4 CRs and a LF.
    """
    names = draw(st.lists(st.sampled_from(ADDRESS_FIELDS), min_size=1, max_size=4))
    others = draw(st.lists(st.sampled_from(OTHER_FIELDS), max_size=4, unique=True))
    lines = [f"{name}: R{i}\r\n <{name.lower()}{i}@x.org>".encode() for i, name in
             enumerate(names)]  # fmt: skip
    block = draw(st.permutations(lines + others))
    named = [(name, f"{name.lower()}{i}@x.org") for i, name in enumerate(names)]
    body = b"--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B--\r\n"
    if draw(st.booleans()):  # converted twice (or more) all along
        crs = draw(st.sampled_from([b"\r\r\n", b"\r\r\r\n", b"\r\r\r\r\n"]))
        raw = b"From: a@x.org\r\n" + b"\r\n".join(block) + b"\r\n\r\n" + body
        return raw.replace(b"\r\n", crs), named
    at = draw(st.integers(0, len(block)))
    cut = draw(st.sampled_from(CUTS))
    # Empty lines come first: an empty line after a line of other text is the
    # documented way to start a body with fields (check_body_start), not a cut.
    fillers = sorted(draw(st.lists(st.sampled_from(FILLERS), max_size=3)), key=bool)
    ends = st.integers(1, 4).map(lambda crs: b"\r" * crs + b"\n")
    filler = b"".join(line + draw(ends) for line in fillers)
    head = b"\r\n".join([b"From: a@x.org", *block[:at]])
    tail = b"".join(line + b"\r\n" for line in block[at:])
    return head + cut + filler + tail + b"\r\n" + body, named


@given(cut_messages(), st.sampled_from(sorted(PARSERS)), st.booleans())
def test_a_lost_bcc_is_never_sent_and_no_recipient_is_silently_lost(
    case: tuple[bytes, list[tuple[str, str]]], kind: str, explicit: bool
) -> None:
    raw, named = case
    msg = parsed(kind, raw)
    addresses = [address for _, address in named]
    try:
        [sent] = send(msg, Envelope("a@x.org", addresses) if explicit else None).outbox
    except InvalidMessageError:
        return  # refused: nothing was sent
    assert b"bcc" not in bytes(sent.data).lower()  # neither a Bcc field nor address
    if not explicit:
        # Only a recipient whose field name the header block kept may be lost.
        resent = "Resent-Date" in msg
        lost = [
            name
            for name, address in named
            if name.startswith("Resent-") == resent
            and address not in sent.envelope.recipients
        ]
        assert all(name in msg for name in lost)


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
