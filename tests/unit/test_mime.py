"""Rendering messages to DATA bytes, parsed back with the stdlib email package."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Attachment, Envelope, InvalidMessageError, Message
from smtpkit._email_message import envelope_of, render_email
from smtpkit._mime import normalize_line_endings, render
from smtpkit._transports.smtp import dot_stuff


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def content(part: object) -> str:
    """The decoded text of a part, with the wire's CRLF turned back into LF.

    A final line break is dropped: the renderer may or may not add one.
    """
    text = part.get_content()  # type: ignore[attr-defined]
    return text.replace("\r\n", "\n").removesuffix("\n")


def msg(**fields: object) -> Message:
    return Message(**{"sender": "me@example.com", "to": "you@example.com", **fields})


def assert_crlf_only(data: bytes) -> None:
    assert data.endswith(b"\r\n")
    assert re.search(rb"(?<!\r)\n", data) is None
    assert re.search(rb"\r(?!\n)", data) is None


def test_address_headers():
    data = render(
        msg(
            sender="Me <me@example.com>",
            to=["a@example.com", ("B", "b@example.com")],
            cc="c@example.com",
            bcc="secret@example.com",
            reply_to="replies@example.com",
            subject="Hello",
            text="hi",
        )
    )
    parsed = parse(data)
    assert parsed["From"] == "Me <me@example.com>"
    assert parsed["To"] == "a@example.com, B <b@example.com>"
    assert parsed["Cc"] == "c@example.com"
    assert parsed["Reply-To"] == "replies@example.com"
    assert parsed["Subject"] == "Hello"
    assert parsed["Bcc"] is None
    assert b"secret@example.com" not in data
    assert b"Bcc" not in data


def test_unicode_subject_and_names_encoded():
    data = render(
        msg(
            sender="张三 <zs@example.com>",
            to=("李四", "ls@example.com"),
            subject="你好\uff0c世界 — ünïcödé",
            text="正文 ünïcödé",
        )
    )
    assert data.isascii()
    assert b"=?utf-8?" in data
    parsed = parse(data)
    assert parsed["Subject"] == "你好\uff0c世界 — ünïcödé"
    assert parsed["From"].addresses[0].display_name == "张三"
    assert parsed["To"].addresses[0].display_name == "李四"
    assert content(parsed) == "正文 ünïcödé"
    assert parsed["Content-Transfer-Encoding"] in ("base64", "quoted-printable")


def test_idn_domains_are_a_labels_in_headers():
    data = render(msg(sender="me@例子.cn", to="you@例子.cn"))
    assert data.isascii()
    assert parse(data)["To"] == "you@xn--fsqu00a.cn"


def test_smtputf8_message_keeps_utf8_headers():
    data = render(msg(sender="用户@例子.cn", to="b@example.com", subject="主题"))
    parsed = parse(data)
    assert "用户@例子.cn".encode() in data
    assert str(parsed["From"]) == "用户@例子.cn"
    assert parsed["Subject"] == "主题"


def test_smtputf8_display_names_quoted_when_needed():
    data = render(
        msg(
            sender=("Doe, 约翰", "用户@example.com"),
            to=[("李四", "ls@example.com"), ('Say "hi"', "q@example.com")],
        )
    )
    parsed = parse(data)
    assert str(parsed["From"]) == '"Doe, 约翰" <用户@example.com>'
    assert parsed["To"].addresses[1].display_name == 'Say "hi"'
    assert str(parsed["To"]).startswith("李四 <ls@example.com>")


def test_text_only():
    parsed = parse(render(msg(text="just text\n")))
    assert parsed.get_content_type() == "text/plain"
    assert content(parsed) == "just text"
    assert not parsed.is_multipart()


def test_no_body_is_empty_text():
    parsed = parse(render(msg()))
    assert parsed.get_content_type() == "text/plain"
    assert content(parsed).strip() == ""


def test_html_only():
    parsed = parse(render(msg(html="<p>hi</p>")))
    assert parsed.get_content_type() == "text/html"
    assert content(parsed) == "<p>hi</p>"


def test_text_and_html_alternative():
    parsed = parse(render(msg(text="plain", html="<b>rich</b>")))
    assert parsed.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in parsed.iter_parts()]
    assert types == ["text/plain", "text/html"]
    assert content(parsed.get_body(("plain",))) == "plain"
    assert content(parsed.get_body(("html",))) == "<b>rich</b>"


def test_inline_image_in_related():
    logo = Attachment(filename="logo.png", content=b"\x89PNG..", content_id="logo@ex")
    parsed = parse(
        render(msg(text="t", html='<img src="cid:logo@ex">', attachments=[logo]))
    )
    assert parsed.get_content_type() == "multipart/alternative"
    related = list(parsed.iter_parts())[1]
    assert related.get_content_type() == "multipart/related"
    html, image = related.iter_parts()
    assert 'src="cid:logo@ex"' in html.get_content()
    assert image["Content-ID"] == "<logo@ex>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == b"\x89PNG.."


def test_inline_image_with_html_only():
    logo = Attachment(filename="logo.png", content=b"img", content_id="c1")
    parsed = parse(render(msg(html='<img src="cid:c1">', attachments=[logo])))
    assert parsed.get_content_type() == "multipart/related"
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/html",
        "image/png",
    ]


def test_inline_without_html_becomes_attachment():
    logo = Attachment(filename="logo.png", content=b"img", content_id="c1")
    parsed = parse(render(msg(text="t", attachments=[logo])))
    assert parsed.get_content_type() == "multipart/mixed"
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["logo.png"]


def test_attachments_with_non_ascii_filename():
    files = [
        Attachment(filename="报告 2024.pdf", content=b"%PDF-1.4"),
        Attachment(filename="data.csv", content=b"a,b\n1,2\n"),
    ]
    data = render(msg(text="see attached", html="<p>see</p>", attachments=files))
    assert data.isascii()
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["报告 2024.pdf", "data.csv"]
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_content() == b"%PDF-1.4"
    assert attachments[0].get_content_disposition() == "attachment"
    assert attachments[0].get_param("name", header="Content-Type") == "报告 2024.pdf"
    assert content(parsed.get_body(("plain",))) == "see attached"


def test_message_id_and_date_generated():
    parsed = parse(render(msg(sender="me@例子.cn")))
    assert re.fullmatch(r"<[^<>@]+@xn--fsqu00a\.cn>", parsed["Message-ID"])
    assert parsed["Date"].datetime.tzinfo is not None
    second = parse(render(msg()))
    assert second["Message-ID"] != parsed["Message-ID"]


def test_message_id_and_date_kept():
    date = datetime(2024, 2, 29, 12, 30, tzinfo=timezone(timedelta(hours=8)))
    parsed = parse(render(msg(message_id="<abc.123@example.com>", date=date)))
    assert parsed["Message-ID"] == "<abc.123@example.com>"
    assert parsed["Date"].datetime == date
    assert parsed["Date"] == "Thu, 29 Feb 2024 12:30:00 +0800"


def test_custom_headers():
    parsed = parse(render(msg(headers={"X-Campaign": "spring", "X-Tag": "标签"})))
    assert parsed["X-Campaign"] == "spring"
    assert parsed["X-Tag"] == "标签"


def test_list_unsubscribe_headers():
    parsed = parse(
        render(
            msg(
                list_unsubscribe=("mailto:u@example.com", "https://example.com/u?id=1"),
                list_unsubscribe_one_click=True,
            )
        )
    )
    assert parsed["List-Unsubscribe"] == (
        "<mailto:u@example.com>, <https://example.com/u?id=1>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = parse(render(msg(list_unsubscribe="mailto:u@example.com")))
    assert plain["List-Unsubscribe-Post"] is None


def test_crlf_everywhere():
    data = render(
        msg(
            subject="s " * 60,
            text="line 1\nline 2\r\nline 3\rline4",
            html="<p>\n x\n</p>",
            attachments=[Attachment(filename="a.txt", content=b"a\nb")],
        )
    )
    assert_crlf_only(data)


def test_non_ascii_body_is_7bit_clean():
    data = render(msg(text="ü" * 100 + "\n" + "中文" * 50, html="<p>ü</p>"))
    assert data.isascii()
    for part in parse(data).walk():
        if not part.is_multipart():
            assert part["Content-Transfer-Encoding"] in (
                "7bit",
                "base64",
                "quoted-printable",
            )


def test_long_ascii_lines_are_wrapped():
    data = render(msg(text="x" * 2000))
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert content(parse(data)).replace("\n", "") == "x" * 2000


# -- helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a\nb", b"a\r\nb\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n"),
        (b"a\n\nb", b"a\r\n\r\nb\r\n"),
        (b"", b"\r\n"),
    ],
)
def test_normalize_line_endings(raw, expected):
    assert normalize_line_endings(raw) == expected


def _built(**headers: str) -> EmailMessage:
    message = EmailMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("body")
    return message


def test_envelope_of():
    envelope = envelope_of(
        _built(
            From="A <a@x.com>", To="b@x.com, C <c@x.com>", Cc="d@x.com", Bcc="e@x.com"
        )
    )
    assert envelope.sender == "a@x.com"
    assert envelope.recipients == ("b@x.com", "c@x.com", "d@x.com", "e@x.com")


def test_envelope_of_prefers_sender_header():
    envelope = envelope_of(_built(From="a@x.com", Sender="list@x.com", To="b@x.com"))
    assert envelope.sender == "list@x.com"


@pytest.mark.parametrize(
    "headers",
    [
        {"To": "b@x.com"},
        {"From": "a@x.com, c@x.com", "To": "b@x.com"},
        {"From": "a@x.com"},
    ],
)
def test_envelope_of_needs_sender_and_recipient(headers):
    with pytest.raises(InvalidMessageError, match="pass an envelope"):
        envelope_of(_built(**headers))


ASCII_ENVELOPE = Envelope(sender="a@x.com", recipients=["b@x.com"])


def test_render_email_strips_bcc_without_mutating():
    message = _built(
        From="a@x.com", To="b@x.com", Bcc="hidden@x.com", Resent_Bcc="also@x.com"
    )
    # render_email now takes the envelope (it may add SMTPUTF8) and returns both.
    _, data = render_email(message, ASCII_ENVELOPE)
    assert b"hidden@x.com" not in data
    assert b"also@x.com" not in data
    assert parse(data)["To"] == "b@x.com"
    assert_crlf_only(data)
    assert message["Bcc"] == "hidden@x.com"
    assert message["Resent-Bcc"] == "also@x.com"


def test_render_email_without_bcc():
    message = _built(From="a@x.com", To="b@x.com", Subject="主题")
    _, data = render_email(message, ASCII_ENVELOPE)
    assert data.isascii()
    assert parse(data)["Subject"] == "主题"
    _, utf8 = render_email(
        message, ASCII_ENVELOPE.model_copy(update={"smtputf8": True})
    )
    assert "主题".encode() in utf8


# -- dot-stuffing -------------------------------------------------------------


def test_dot_stuff():
    assert dot_stuff(b"a\r\n.\r\nb") == b"a\r\n..\r\nb\r\n.\r\n"
    assert dot_stuff(b".start\n..two\nmid.dle") == (
        b"..start\r\n...two\r\nmid.dle\r\n.\r\n"
    )
    assert dot_stuff(b"no newline").endswith(b"no newline\r\n.\r\n")


@given(st.binary(max_size=300) | st.text(alphabet=".\r\nab").map(str.encode))
def test_dot_stuffed_payload_ends_only_at_the_end(body):
    payload = dot_stuff(body)
    assert payload.endswith(b"\r\n.\r\n")
    assert b"\r\n.\r\n" not in payload[:-3]
    assert not payload.startswith(b".\r\n")


@pytest.mark.parametrize("text", ["a\nb\n", "a\r\nb", ".\n..\n", "trailing  \n\n"])
def test_body_round_trips(text):
    got = parse(render(msg(text=text))).get_content().replace("\r\n", "\n")
    assert got.rstrip("\n") == text.replace("\r\n", "\n").rstrip("\n")


def test_text_attachments_carry_a_charset_when_their_bytes_are_utf8():
    notes = Attachment(filename="notes.txt", content="naïve café\n".encode())
    legacy = Attachment(filename="old.txt", content="café".encode("latin-1"))
    parsed = parse(render(msg(text="see attached", attachments=[notes, legacy])))
    first, second = list(parsed.iter_attachments())
    assert first.get_content_charset() == "utf-8"
    assert first.get_content() == "naïve café\n"
    assert second.get_content_charset() is None  # unknown encoding: not guessed
