"""Calendar invites: the ``Message.calendar`` alternative part (issue 9, item 13).

Every rendering is parsed back with the stdlib parser and checked by structure,
parameters and decoded text, never by string matching alone.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import pydantic
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from smtpkit import Attachment, Message
from smtpkit._mime import MAX_LINE, render

INVITE = (
    "BEGIN:VCALENDAR\r\n"
    "VERSION:2.0\r\n"
    "PRODID:-//smtpkit//tests//EN\r\n"
    "METHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\n"
    "UID:standup-1@example.com\r\n"
    "DTSTAMP:20250101T090000Z\r\n"
    "DTSTART:20250102T090000Z\r\n"
    "SUMMARY:Stand-up\r\n"
    "ORGANIZER;CN=Ann:mailto:ann@example.com\r\n"
    "ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n"
    "END:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def invite(**fields: object) -> Message:
    return Message(
        **{"sender": "ann@example.com", "to": "bob@example.com", **fields}  # type: ignore[arg-type]
    )


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def calendar_part(parsed: EmailMessage) -> EmailMessage:
    [part] = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    return part  # type: ignore[return-value]


def decoded(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "ascii")


# -- structure -----------------------------------------------------------------


def test_calendar_is_the_last_alternative_after_text_and_html():
    parsed = parse(render(invite(text="hi", html="<p>hi</p>", calendar=INVITE)))
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    part = calendar_part(parsed)
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_charset() == "utf-8"
    assert part.get_content_disposition() is None  # an alternative, not a file
    assert decoded(part) == INVITE


def test_method_is_written_unquoted_as_outlook_and_google_do():
    data = render(invite(text="hi", calendar=INVITE))
    assert b'Content-Type: text/calendar; charset="utf-8"; method=REQUEST\r\n' in data


def test_with_only_text_the_calendar_is_still_an_alternative():
    parsed = parse(render(invite(text="hi", calendar=INVITE)))
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/plain",
        "text/calendar",
    ]


def test_with_only_html_the_calendar_follows_it():
    parsed = parse(render(invite(html="<p>hi</p>", calendar=INVITE)))
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/html",
        "text/calendar",
    ]


def test_a_calendar_alone_is_the_whole_body():
    parsed = parse(render(invite(calendar=INVITE)))
    assert parsed.get_content_type() == "text/calendar"
    assert parsed.get_param("method") == "REQUEST"
    assert decoded(parsed) == INVITE


def test_related_html_and_attachments_keep_the_calendar_in_the_first_child():
    # Outlook 2007 looks for iMIP only in the first child of multipart/mixed.
    logo = Attachment(filename="logo.png", content=b"\x89PNG", content_id="logo")
    agenda = Attachment(filename="agenda.pdf", content=b"%PDF")
    message = invite(
        text="hi",
        html='<img src="cid:logo">',
        calendar=INVITE,
        attachments=[logo, agenda],
    )
    parsed = parse(render(message))
    assert parsed.get_content_type() == "multipart/mixed"
    first, attached = parsed.iter_parts()
    assert [p.get_content_type() for p in first.iter_parts()] == [
        "text/plain",
        "multipart/related",
        "text/calendar",
    ]
    assert attached.get_filename() == "agenda.pdf"


def test_an_ics_copy_can_be_attached_beside_the_alternative():
    copy = Attachment(
        filename="invite.ics",
        content=INVITE.encode(),
        content_type="application/ics",
    )
    parsed = parse(render(invite(text="hi", calendar=INVITE, attachments=[copy])))
    [attached] = [p for p in parsed.walk() if p.get_filename() == "invite.ics"]
    assert attached.get_content_type() == "application/ics"
    assert attached.get_content() == INVITE.encode()
    assert calendar_part(parsed).get_param("method") == "REQUEST"


def test_messages_without_a_calendar_render_as_before():
    assert parse(render(invite())).get_content_type() == "text/plain"
    assert parse(render(invite(html="<p>x</p>"))).get_content_type() == "text/html"


# -- method, line endings, encodings ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "method"),
    [
        ("METHOD:CANCEL", "CANCEL"),
        ("method:publish", "PUBLISH"),  # RFC 5545 §3.2: names and values case-free
        ("METHOD;X-A=1:REPLY", "REPLY"),
        ('METHOD;X-A="a:b;c":REQUEST', "REQUEST"),  # ':' inside a quoted param
        ("METH\r\n OD:COUNTER", "COUNTER"),  # folded name (RFC 5545 §3.1)
        ("METHOD:RE\r\n\tQUEST", "REQUEST"),  # folded with a TAB
        ("METHOD:X-CUSTOM ", "X-CUSTOM"),
    ],
)
def test_method_is_read_from_the_unfolded_property(line, method):
    text = INVITE.replace("METHOD:REQUEST", line)
    part = calendar_part(parse(render(invite(text="x", calendar=text))))
    assert part.get_param("method") == method


def test_a_method_inside_another_property_value_is_not_the_method():
    text = INVITE.replace("SUMMARY:Stand-up", "SUMMARY:METHOD:CANCEL")
    part = calendar_part(parse(render(invite(text="x", calendar=text))))
    assert part.get_param("method") == "REQUEST"


@pytest.mark.parametrize(
    ("calendar", "match"),
    [
        (INVITE.replace("METHOD:REQUEST\r\n", ""), "no METHOD property"),
        (
            INVITE.replace("METHOD:REQUEST", "METHOD:REQUEST\r\nMETHOD:CANCEL"),
            "several",
        ),
        (INVITE.replace("METHOD:REQUEST", "METHOD:RE QUEST"), "token"),
        (INVITE.replace("METHOD:REQUEST", "METHOD:"), "token"),
        ("BEGIN:VEVENT\r\nMETHOD:REQUEST\r\nEND:VEVENT\r\n", "BEGIN:VCALENDAR"),
        ("", "BEGIN:VCALENDAR"),
        ("hello", "BEGIN:VCALENDAR"),
        (INVITE.removesuffix("END:VCALENDAR\r\n"), "END:VCALENDAR"),
        (INVITE.replace("Stand-up", "\ud800"), "surrogates"),
    ],
)
def test_calendars_an_invite_cannot_be_built_from_are_refused(calendar, match):
    with pytest.raises(pydantic.ValidationError, match=match):
        invite(text="x", calendar=calendar)


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"])
def test_line_endings_become_crlf(eol):
    text = INVITE.replace("\r\n", eol).removesuffix(eol)  # no final break either
    part = calendar_part(parse(render(invite(text="x", calendar=text))))
    assert decoded(part) == INVITE


def test_ascii_calendar_stays_readable_7bit():
    data = render(invite(text="x", calendar=INVITE))
    part = calendar_part(parse(data))
    assert part["Content-Transfer-Encoding"] == "7bit"
    assert b"SUMMARY:Stand-up\r\n" in data


def test_unicode_calendar_is_utf8_and_round_trips():
    text = INVITE.replace("Stand-up", "Réunion 会议 🗓")
    data = render(invite(text="x", calendar=text))
    assert data.isascii()  # base64: 7-bit clean for servers without 8BITMIME
    assert decoded(calendar_part(parse(data))) == text


def test_an_unfolded_long_line_is_encoded_below_998_octets():
    # Real-world calendars often leave DESCRIPTION unfolded.
    text = INVITE.replace("SUMMARY:Stand-up", "DESCRIPTION:" + "agenda " * 400)
    data = render(invite(text="x", calendar=text))
    assert max(map(len, data.split(b"\r\n"))) <= MAX_LINE
    part = calendar_part(parse(data))
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert decoded(part) == text


@given(
    summary=st.text(
        st.characters(blacklist_categories=["Cs"]), min_size=0, max_size=2000
    )
)
def test_any_summary_round_trips_without_long_lines(summary):
    squeezed = re.sub(r"\s", "", summary).upper()
    # No second METHOD, and no BEGIN:/END: line that would nest another component.
    assume(not any(word in squeezed for word in ("METHOD", "BEGIN:", "END:")))
    text = INVITE.replace("Stand-up", summary)
    data = render(invite(text="x", calendar=text))
    assert max(map(len, data.split(b"\r\n"))) <= MAX_LINE
    parsed = parse(data)
    part = calendar_part(parsed)
    assert part.get_param("method") == "REQUEST"
    # The renderer only turns line breaks into CRLF; everything else survives.
    normalized = re.sub(r"\r\r\n|\r\n|\r|\n", "\r\n", text)
    assert decoded(part) == normalized


def test_calendar_field_is_kept_as_given():
    text = INVITE.replace("\r\n", "\n")
    assert invite(calendar=text).calendar == text


# -- METHOD: an ASCII token on the VCALENDAR itself; one object; CR CR LF --------


@pytest.mark.parametrize("value", ["REQUEſT", "PUBLıSH", "CANCEＬ", "\u212aEY"])
def test_a_method_that_is_only_ascii_once_upper_cased_is_refused(value):
    # str.upper() maps U+017F to "S" and U+0131 to "I": the part would say REQUEST
    # while the calendar says otherwise.
    with pytest.raises(pydantic.ValidationError, match="ASCII letters, digits"):
        invite(text="x", calendar=INVITE.replace("METHOD:REQUEST", f"METHOD:{value}"))


@given(
    st.text(min_size=1, max_size=12).filter(lambda v: "\r" not in v and "\n" not in v)
)
def test_the_part_method_is_the_calendar_method_upper_cased(value):
    text = INVITE.replace("METHOD:REQUEST", f"METHOD:{value}")
    try:
        message = invite(text="x", calendar=text)
    except pydantic.ValidationError:
        assert not re.fullmatch(r"[A-Za-z0-9-]+", value.strip())
        return
    assert re.fullmatch(r"[A-Za-z0-9-]+", value.strip())
    part = calendar_part(parse(render(message)))
    assert part.get_param("method") == value.strip().upper()


def test_a_method_only_inside_a_component_is_not_the_calendars():
    inside = INVITE.replace("METHOD:REQUEST\r\n", "").replace(
        "UID:", "METHOD:REQUEST\r\nUID:"
    )
    with pytest.raises(pydantic.ValidationError, match="outside its VEVENT"):
        invite(text="x", calendar=inside)
    both = INVITE.replace("UID:", "METHOD:CANCEL\r\nUID:")  # VEVENT's is ignored
    part = calendar_part(parse(render(invite(text="x", calendar=both))))
    assert part.get_param("method") == "REQUEST"


@pytest.mark.parametrize(
    ("calendar", "match"),
    [
        (INVITE + INVITE, "one VCALENDAR object"),
        (INVITE.replace("VERSION:2.0", "VERSION:2.0\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR"),
         "one VCALENDAR object"),
        (INVITE.replace("END:VEVENT", "END:VTODO"), "END:VTODO where END:VEVENT"),
        (INVITE.replace("END:VEVENT\r\n", ""), "END:VCALENDAR where END:VEVENT"),
    ],
)  # fmt: skip
def test_a_calendar_that_is_not_one_well_nested_object_is_refused(calendar, match):
    with pytest.raises(pydantic.ValidationError, match=match):
        invite(text="x", calendar=calendar)


def test_cr_cr_lf_is_one_line_break_and_keeps_folds():
    folded = INVITE.replace("SUMMARY:Stand-up", "SUMMARY:Stand\r\n -up")
    doubled = folded.replace("\r\n", "\r\r\n")  # CRLF written again in text mode
    part = calendar_part(parse(render(invite(text="x", calendar=doubled))))
    assert decoded(part) == folded
