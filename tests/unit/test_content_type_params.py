"""Content-Type parameters on attachments (issue 9, item 13).

``Attachment(content_type="text/calendar; method=REQUEST")``: parsed by the
stdlib, checked, kept canonical, and rendered on the part's Content-Type.  The
hypothesis tests try every kind of value and prove that none can add a header
line and that every accepted value comes back from the stdlib parser unchanged.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.utils import quote

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Attachment, InvalidMessageError, Message
from smtpkit._address import FORBIDDEN_CHARS
from smtpkit._mime import MAX_LINE, render

ICS = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
PART_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition"}


def attach(content_type: str, content: bytes = ICS) -> Attachment:
    return Attachment(filename="invite.ics", content=content, content_type=content_type)


def rendered_part(attachment: Attachment) -> tuple[bytes, EmailMessage]:
    message = Message(
        sender="a@example.com", to="b@example.com", text="x", attachments=[attachment]
    )
    data = render(message)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    [part] = [p for p in parsed.walk() if p.get_filename() == "invite.ics"]
    return data, part  # type: ignore[return-value]


# -- parsing and the canonical form ----------------------------------------------


@pytest.mark.parametrize(
    ("given_type", "canonical"),
    [
        ("text/calendar; method=REQUEST", "text/calendar; method=REQUEST"),
        ("Text/Calendar; METHOD=Request", "text/calendar; method=Request"),
        ('text/calendar;method="REQUEST"', "text/calendar; method=REQUEST"),
        (" text/calendar ; method = REQUEST ", "text/calendar; method=REQUEST"),
        ('application/x-a; title="two words"', 'application/x-a; title="two words"'),
        ('application/x-a; q="a\\"b\\\\c"', 'application/x-a; q="a\\"b\\\\c"'),
        ('application/x-a; t="Grüße"', 'application/x-a; t="Grüße"'),
        ("application/x-a; t*=utf-8''Gr%C3%BC%C3%9Fe", 'application/x-a; t="Grüße"'),
        ("application/x-a; t*0=ab; t*1=cd", "application/x-a; t=abcd"),
        ('application/x-a; e=""', 'application/x-a; e=""'),
        ("image/PNG", "image/png"),
        # "'" and "*" are token characters that parsers read as RFC 2231 syntax.
        ("application/x-a; t*=utf-8''it%27s", 'application/x-a; t="it\'s"'),
        ("application/x-a; t*=utf-8''a%2A", 'application/x-a; t="a*"'),
        # Readers decode encoded words even in quoted strings: RFC 2231 keeps it.
        (
            "application/x-a; t*=utf-8''%3D%3Futf-8%3Fq%3Fx%3F%3D",
            "application/x-a; t*=utf-8''%3D%3Futf-8%3Fq%3Fx%3F%3D",
        ),
        ('application/x-a; u="a=?b"', "application/x-a; u*=utf-8''a%3D%3Fb"),
    ],
)
def test_content_type_is_kept_canonical(given_type, canonical):
    attachment = attach(given_type)
    assert attachment.content_type == canonical
    assert attach(canonical).content_type == canonical  # a fixed point


def test_media_type_and_params_are_exposed():
    attachment = attach('Text/Calendar; METHOD=REQUEST; X-Note="a b"')
    assert attachment.media_type == "text/calendar"
    assert attachment.content_type_params == (("method", "REQUEST"), ("x-note", "a b"))
    plain = Attachment(filename="a.pdf", content=b"%PDF")
    assert (plain.media_type, plain.content_type_params) == ("application/pdf", ())


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("text", "type/subtype"),
        ("text/", "type/subtype"),
        ("te xt/plain", "type/subtype"),
        ("text/pl@in", "type/subtype"),
        ("text/plain/x", "type/subtype"),
        ("tëxt/plain", "type/subtype"),
        ("text/plain; method", "not a valid Content-Type"),
        ("text/plain; =x", "not a valid Content-Type"),
        ("text/plain; a=b c", "not a valid Content-Type"),
        ('text/plain; a="open', "not a valid Content-Type"),
        ("text/plain; a=1; a=2", "not a valid Content-Type"),  # duplicate names
        ("text/plain; a=1; A=2", "twice"),
        ("text/plain;;", "not a valid Content-Type"),
        ("text/plain; a*=utf-8''%FF", "not a valid Content-Type"),  # not UTF-8
        ("text/plain; name=x.ics", "filename"),
        ("text/plain; NAME*=utf-8''x", "filename"),
        ("text/plain; boundary=xyz", "multipart"),
        ('text/plain; a="x\ty"', "TAB"),
        ("text/plain; " + "n" * 65 + "=1", "at most 64"),
        ("text/plain; a*=utf-8''%0D%0ABcc:%20c@x.org", "not a valid|line breaks"),
        ("text/plain; a*=utf-8''x%0Ay", "line breaks"),
        ("text/plain; a*=utf-8''x%00y", "control characters"),
        ("text/plain; a*=utf-8''x%E2%80%A8y", "line breaks"),  # U+2028
    ],
)
def test_bad_content_types_are_refused_with_a_reason(bad, match):
    with pytest.raises(pydantic.ValidationError, match=match):
        attach(bad)


@pytest.mark.parametrize("char", sorted(FORBIDDEN_CHARS))
def test_control_characters_anywhere_are_refused(char):
    for text in (
        f"text/plain{char}",
        f'text/plain; a="x{char}y"',
        f"text/plain; a{char}=1",
    ):
        with pytest.raises(pydantic.ValidationError):
            attach(text)


# -- charset -------------------------------------------------------------------


def test_a_given_charset_replaces_the_guessed_label():
    latin = "Grüße".encode("latin-1")
    _, part = rendered_part(attach("text/plain; charset=ISO-8859-1", latin))
    assert dict(part["Content-Type"].params) == {
        "charset": "ISO-8859-1",
        "name": "invite.ics",
    }
    assert part.get_content() == "Grüße"


def test_a_charset_the_content_contradicts_is_refused():
    with pytest.raises(pydantic.ValidationError, match="not valid utf-8"):
        attach("text/plain; charset=utf-8", "Grüße".encode("latin-1"))
    with pytest.raises(pydantic.ValidationError, match="not valid us-ascii"):
        attach("text/plain; charset=us-ascii", "é".encode())


@pytest.mark.parametrize("charset", ["x-user-defined", "base64"])
def test_charsets_python_cannot_check_are_left_to_the_reader(charset):
    attachment = attach(f"text/plain; charset={charset}", b"\xff\xfe")
    assert attachment.content_type_params == (("charset", charset),)


# -- rendering -----------------------------------------------------------------


def test_params_follow_the_ones_smtpkit_writes():
    data, part = rendered_part(attach("text/calendar; method=REQUEST"))
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "REQUEST"
    assert part.get_param("charset") == "us-ascii"
    assert part.get_filename() == "invite.ics"
    assert b'text/calendar; charset="us-ascii"; name="invite.ics"; method=REQUEST' in (
        data.replace(b"\r\n ", b" ")
    )


@pytest.mark.parametrize("value", ["=?utf-8?q?x?=", "=?utf-8?b?eA==?=", "a=?b"])
def test_values_that_look_like_encoded_words_are_sent_as_rfc2231(value):
    encoded = "".join(f"%{byte:02X}" for byte in value.encode())
    data, part = rendered_part(attach(f"application/x-a; t*=utf-8''{encoded}"))
    assert b"t*=utf-8''" in data
    assert part["Content-Type"].params["t"] == value


def test_a_quoted_encoded_word_is_refused_as_the_stdlib_reads_it():
    with pytest.raises(pydantic.ValidationError, match="encoded word"):
        attach('application/x-a; t="=?utf-8?q?x?="')


def test_long_and_unicode_values_become_rfc2231_sections():
    value = "Planungsbesprechung für das Jahr — " * 20
    data, part = rendered_part(attach(f'application/x-a; title="{value}"'))
    assert max(map(len, data.split(b"\r\n"))) <= 78
    assert b"title*0*=utf-8''" in data
    assert part["Content-Type"].params["title"] == value


def test_multipart_and_message_rules_still_hold():
    with pytest.raises(InvalidMessageError, match="cannot be attached"):
        rendered_part(attach("multipart/mixed; x=1"))
    with pytest.raises(InvalidMessageError, match="cannot be attached"):
        rendered_part(attach("message/global; x=1"))
    inner = b"From: a@x.org\r\n\r\nbody\r\n"
    _, part = rendered_part(attach("Message/RFC822; x-a=1", inner))
    assert part.get_content_type() == "message/rfc822"
    assert part["Content-Transfer-Encoding"] == "7bit"
    assert part.get_param("x-a") == "1"


# -- hypothesis: no injection, exact round trip ------------------------------------

_PIECES = st.text(
    st.characters(blacklist_categories=["Cs"])
    | st.sampled_from(sorted(FORBIDDEN_CHARS))
) | st.sampled_from(
    ["=?utf-8?q?x?=", "=?", "?=", "'", "*", "\\", '"', " ", "\t", ";", "%0A"]
)
VALUES = st.lists(_PIECES, max_size=12).map("".join)


def pct(value: str) -> str:
    """RFC 2231 percent-encoding of every octet."""
    return "".join(f"%{byte:02X}" for byte in value.encode())


def _acceptable(value: str) -> bool:
    return FORBIDDEN_CHARS.isdisjoint(value) and "\t" not in value


@given(value=VALUES)
def test_any_param_value_is_refused_or_round_trips_without_injection(value):
    # The stdlib decodes "=?...?=" even inside a quoted string: RFC 2231 form then.
    written = f'"{quote(value)}"' if "=?" not in value else None
    param = f"x-value={written}" if written else f"x-value*=utf-8''{pct(value)}"
    content_type = f"application/x-test; {param}; method=REQUEST"
    if not _acceptable(value):
        with pytest.raises(pydantic.ValidationError):
            attach(content_type)
        return
    attachment = attach(content_type)
    assert attachment.content_type_params == (("x-value", value), ("method", "REQUEST"))
    data, part = rendered_part(attachment)
    assert max(map(len, data.split(b"\r\n"))) <= MAX_LINE
    assert {name.lower() for name in part} <= PART_HEADERS | {"mime-version"}
    params = part["Content-Type"].params
    assert params["x-value"] == value
    assert params["method"] == "REQUEST"
    assert part.get_content() == ICS


@given(value=VALUES.filter(bool))  # the stdlib reads an empty x*=utf-8'' as a defect
def test_rfc2231_encoded_values_cannot_smuggle_line_breaks(value):
    content_type = f"application/x-test; x-value*=utf-8''{pct(value)}"
    if not _acceptable(value):
        with pytest.raises(pydantic.ValidationError):
            attach(content_type)
        return
    _, part = rendered_part(attach(content_type))
    assert part["Content-Type"].params["x-value"] == value


@pytest.mark.parametrize("name", ["<>", "<a.pdf>", '"<q>"'])
def test_a_bracketed_file_name_is_written_as_given(name):
    # Found by hypothesis: the stdlib's get_filename() strips <...> (utils.unquote)
    # whatever the encoding; the header's parameters keep the name as written.
    message = Message(
        sender="a@example.com",
        to="b@example.com",
        text="x",
        attachments=[Attachment(name, b"data", content_type='text/plain; x-a="<v>"')],
    )
    parsed = email.message_from_bytes(render(message), policy=email.policy.default)
    [part] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
    assert part["Content-Disposition"].params["filename"] == name
    assert part["Content-Type"].params["x-a"] == "<v>"
