"""A text part built without ``set_payload``'s header parsing is the stdlib's part."""

from __future__ import annotations

from email.generator import BytesGenerator
from email.mime.nonmultipart import MIMENonMultipart
from io import BytesIO

from hypothesis import example, given
from hypothesis import strategies as st

from smtpkit import Message
from smtpkit._mime import (
    _ASCII_7BIT,
    _ASCII_QP,
    _UTF8_7BIT,
    _UTF8_BASE64,
    _UTF8_QP,
    _WIRE_POLICY,
    MAX_LINE,
    _text_part,
    render,
)
from smtpkit._wire_generator import WireGenerator as _WireGenerator

_TEXT = st.lists(
    st.sampled_from(["a", " ", "\n", "\r", "\r\n", ".", "\t", "\0", "é", "x" * 400]),
    max_size=12,
).map("".join)


def reference(text: str, subtype: str, *, utf8: bool) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    if not text.isascii():
        part.set_payload(text, _UTF8_BASE64)
        return part
    long_line = any(
        len(line) > MAX_LINE for line in text.replace("\r", "\n").split("\n")
    )
    needs_qp = "\0" in text or long_line
    qp, seven = (_UTF8_QP, _UTF8_7BIT) if utf8 else (_ASCII_QP, _ASCII_7BIT)
    part.set_payload(text, qp if needs_qp else seven)
    return part


def wire(part: MIMENonMultipart) -> bytes:
    out = BytesIO()
    _WireGenerator(out, mangle_from_=False, policy=_WIRE_POLICY).flatten(part)
    return out.getvalue()


@given(
    text=_TEXT,
    subtype=st.sampled_from(["plain", "html", "calendar"]),
    utf8=st.booleans(),
)
@example(text="", subtype="plain", utf8=False)
@example(text="line\nline\n", subtype="html", utf8=True)
def test_text_part_equals_set_payload(text, subtype, utf8):
    got, expected = (
        _text_part(text, subtype, utf8=utf8),
        reference(text, subtype, utf8=utf8),
    )
    assert got.items() == expected.items()
    assert got.get_payload() == expected.get_payload()
    assert got.get_charset() == expected.get_charset()
    assert got.get_content_charset() == expected.get_content_charset()
    assert wire(got) == wire(expected)


def test_a_rendered_text_message_keeps_its_header_order():
    data = render(Message(sender="a@example.com", to="b@example.com", text="hi\n"))
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[:3] == [
        b"MIME-Version: 1.0",
        b'Content-Type: text/plain; charset="us-ascii"',
        b"Content-Transfer-Encoding: 7bit",
    ]


@given(
    text=st.lists(st.sampled_from(["a", "\n", "\r", "\r\n", "é", "\udc80"])).map(
        "".join
    )
)
def test_text_is_written_as_the_stdlib_writes_it_line_by_line(text):
    outputs = []
    for write_lines in (BytesGenerator._write_lines, _WireGenerator._write_lines):
        out = BytesIO()
        generator = _WireGenerator(out, mangle_from_=False, policy=_WIRE_POLICY)
        generator._NL = "\r\n"  # what flatten() sets
        try:
            write_lines(generator, text)
            outputs.append(out.getvalue())
        except UnicodeEncodeError as exc:  # the same error, after the same lines
            outputs.append((out.getvalue(), exc.object, exc.start))
    assert outputs[0] == outputs[1]
