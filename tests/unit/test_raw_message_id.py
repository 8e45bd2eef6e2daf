"""The Message-ID of raw bytes: read from the header block alone, as the stdlib reads it."""

from __future__ import annotations

from email.parser import BytesHeaderParser

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from smtpkit._email_message import raw_message_id
from smtpkit._mime import normalize_line_endings

_PARSER = BytesHeaderParser()


def stdlib_message_id(data: bytes) -> str | None:
    """What smtpkit used to do: parse the whole message with the stdlib."""
    value = _PARSER.parsebytes(data, headersonly=True).get("Message-ID")
    return None if value is None else str(value)


# Lines that stress every branch: fields, folds, the odd names and line breaks
# the stdlib treats specially ("From ", ":x", a leading space, VT/FF/FS), 8-bit.
_LINES = st.one_of(
    st.sampled_from(
        [
            b"Message-ID: <a@example.com>",
            b"message-id:<b@example.com>",
            b"MESSAGE-ID:\t <c@example.com> ",
            b"Message-ID:",
            b"Message-ID : <spaced@example.com>",
            b"Subject: hello",
            b" folded <d@example.com>",
            b"\tfolded",
            b"From sender@example.com Mon Jan  1",
            b":no name",
            b"not a field",
            b"X-Form: a\x0cb",
            b"X-Vt: a\x0bb",
            b"X-Fs: a\x1cb",
            b"X-8bit: caf\xc3\xa9",
            b"Message-ID: <\xc3\xa9@example.com>",
            b"",
        ]
    ),
    st.binary(max_size=20),
)


@given(lines=st.lists(_LINES, max_size=8), body=st.sampled_from([b"", b"\r\nbody\r\n"]))
@example(lines=[b"Subject: x", b"Message-ID: <a@b>", b" <folded@b>"], body=b"")
@example(lines=[b"", b"Message-ID: <after-blank@b>"], body=b"")
@example(lines=[b"not a field", b"Message-ID: <after-bad@b>"], body=b"")
def test_same_answer_as_the_stdlib_parser(lines, body):
    data = normalize_line_endings(b"\r\n".join(lines) + b"\r\n" + body)
    assert raw_message_id(data) == stdlib_message_id(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Message-ID: <a@b>\r\n\r\nMessage-ID: <body@b>\r\n", "<a@b>"),
        (b"Subject: x\r\n\r\nMessage-ID: <body@b>\r\n", None),
        (b"Message-Id: <first@b>\r\nMessage-ID: <second@b>\r\n\r\n", "<first@b>"),
        (b"Message-ID: <a@b>\r\n", "<a@b>"),  # no body at all
        (b"\r\nMessage-ID: <body@b>\r\n", None),  # empty header block
    ],
)
def test_only_the_header_block_counts(data, expected):
    assert raw_message_id(data) == expected


def test_a_large_body_is_not_read():
    body = b"Message-ID: <in-body@b>\r\n" * 100_000
    data = b"Message-ID: <head@b>\r\n\r\n" + body
    assert raw_message_id(data) == "<head@b>"
