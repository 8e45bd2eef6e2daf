"""MIME parts whose first lines the stdlib parser would drop.

A part's first lines are read as its header block.  A line there that starts with
white space and follows no field, a ``From `` line (taken for the part's mbox
"unixfrom", which is never written, or dropped when it is not the first) or a line
starting with ``:`` is not kept: sending such a part would silently lose text.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message as LegacyMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Envelope, InvalidMessageError

from .test_email_header_block import PARSERS, refusal, send

TOP = (
    b"From: a@x.org\r\nTo: b@x.org\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
)


def multipart(part: bytes) -> bytes:
    return TOP + b"--B\r\n" + part + b"\r\n--B--\r\n"


def parsed(kind: str, raw: bytes) -> LegacyMessage:
    return PARSERS[kind](raw)


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("envelope", [None, Envelope("a@x.org", "b@x.org")])
@pytest.mark.parametrize(
    ("first", "shown"),
    [
        (b"  Total due: 100 EUR", "the line '  Total due: 100 EUR'"),
        (b"\tindented", "the line '\\tindented'"),
        (b"From the accounts team, hello", "the line 'From the accounts team, hello'"),
        (b"From nobody", "the line 'From nobody'"),
        (b": hello", "a line that starts with ':'"),
        (b"   \r\n  Total", "the line '  Total'"),  # white space alone is no loss
    ],
)
def test_a_headerless_part_whose_first_line_would_be_dropped_is_refused(
    kind: str, envelope: Envelope | None, first: bytes, shown: str
) -> None:
    text = refusal(parsed(kind, multipart(first + b"\r\nsecond line")), envelope)
    assert "part 1 (text/plain) has no header" in text
    assert f"would drop {shown}" in text
    assert "start the part with an empty line (an empty header block)" in text


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    "first", [b"  Total due: 100 EUR", b"From the accounts team, hello", b": hello"]
)
def test_the_remedy_keeps_the_first_line(kind: str, first: bytes) -> None:
    [sent] = send(parsed(kind, multipart(b"\r\n" + first + b"\r\nsecond"))).outbox
    assert bytes(sent.data).endswith(
        b"--B\r\n\r\n" + first + b"\r\nsecond\r\n--B--\r\n"
    )


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("first", [b"   ", b"\t", b"Dear Bob", b"Dear Bob: hello"])
def test_a_headerless_part_that_loses_nothing_is_sent(kind: str, first: bytes) -> None:
    [sent] = send(parsed(kind, multipart(first + b"\r\nsecond line"))).outbox
    # A line of white space alone goes: the empty header block's blank line is written.
    kept = first + b"\r\n" if first.strip() else b""
    assert bytes(sent.data).endswith(
        b"--B\r\n\r\n" + kept + b"second line\r\n--B--\r\n"
    )


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize(
    ("part", "shown"),
    [
        (b"  X-Junk: y\r\nContent-Type: text/plain\r\n", "the line '  X-Junk: y'"),
        (b"Content-Type: text/plain\r\nFrom nobody\r\nX-A: b\r\n", "'From nobody'"),
        (b"Content-Type: text/plain\r\n: no name\r\n", "a line that starts with ':'"),
    ],
    ids=["folded-first", "misplaced-from", "no-name"],
)
def test_a_part_with_fields_and_a_dropped_line_is_refused(
    kind: str, part: bytes, shown: str
) -> None:
    text = refusal(parsed(kind, multipart(part + b"\r\nhello")))
    assert "the header block of part 1 (text/plain) holds" in text
    assert shown in text
    assert "is not a 'Name: value' field and would be dropped" in text


@pytest.mark.parametrize("kind", PARSERS)
def test_an_attached_mbox_message_keeps_going_without_its_from_line(kind: str) -> None:
    # An attached message exported from an mbox: its "From " line is no text.
    raw = (
        b"From: a@x.org\r\nTo: b@x.org\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: message/rfc822\r\n\r\n"
        b"From c@x.org Mon Jan  1 10:00:00 2024\r\nFrom: c@x.org\r\nSubject: old\r\n"
        b"\r\nold text\r\n"
    )
    [sent] = send(parsed(kind, raw)).outbox
    assert bytes(sent.data).endswith(
        b"\r\n\r\nFrom: c@x.org\r\nSubject: old\r\n\r\nold text\r\n"
    )


def test_the_top_level_mbox_from_line_is_still_dropped() -> None:
    raw = b"From a@x.org Mon Jan  1 10:00:00 2024\r\nFrom: a@x.org\r\nTo: b@x.org\r\n\r\nhi\r\n"
    [sent] = send(email.message_from_bytes(raw, policy=email.policy.default)).outbox
    assert bytes(sent.data).startswith(b"From: a@x.org\r\n")


FIELD = re.compile(r"[!-9;-~]+[ \t]*:")
LINES = st.text(st.sampled_from(" \tFrom:xy"), max_size=9).filter(
    lambda line: not FIELD.match(line)  # a field makes a header, not lost text
)


@given(st.lists(LINES, min_size=1, max_size=4), st.sampled_from(sorted(PARSERS)))
def test_a_headerless_part_is_refused_or_sent_with_every_line(
    lines: list[str], kind: str
) -> None:
    text = "\r\n".join([*lines, "end"]).encode()
    msg = parsed(kind, multipart(text))
    try:
        [sent] = send(msg).outbox
    except InvalidMessageError:
        return  # refused: nothing was sent
    data = bytes(sent.data)
    for line in lines:
        assert line.strip().encode() in data
