"""``smtpkit.render`` and ``Message.as_bytes``: the bytes a send transmits.

The same bytes on every call once Message-ID and Date are set (MIME
boundaries included), the bytes the Mailer hands every transport, never a Bcc,
and the file and console transports write exactly them.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from pydantic import ValidationError

import smtpkit
from smtpkit import (
    Address,
    Attachment,
    ConfigurationError,
    InvalidMessageError,
    Mailer,
    Message,
    render,
)
from smtpkit import _render as render_module
from smtpkit.testing import ConsoleTransport, FakeTransport, FileTransport

DATE = datetime(2024, 2, 29, 12, 30, tzinfo=timezone(timedelta(hours=2)))

BODY = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
    | st.sampled_from(["\r\n", "\n", ".", "--", "From "]),
    max_size=12,
).map("".join)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Messages of every shape: text, html, attachments, inline, Bcc, UTF-8."""
    utf8 = draw(st.booleans())
    text = draw(st.none() | BODY)
    html = draw(st.none() | BODY.map(lambda body: f"<p>{body}</p>"))
    files = [
        Attachment(filename=f"f{i}.bin", content=content)
        for i, content in enumerate(draw(st.lists(st.binary(max_size=64), max_size=2)))
    ]
    if draw(st.booleans()):
        files.append(
            Attachment(
                filename="logo.png",
                content=b"\x89PNG",
                content_type="image/png",
                content_id="logo@example.com",
            )
        )
    try:
        return Message(
            sender="用户@例子.测试" if utf8 else "sender@example.com",
            to=["to@example.com"],
            bcc=draw(st.lists(st.sampled_from(["hidden@example.org"]), max_size=1)),
            subject=draw(st.text(max_size=40).map(lambda s: " ".join(s.split()))),
            text=text if text is not None or html is not None else "",
            html=html,
            attachments=files,
            message_id="<fixed.1@example.com>",
            date=DATE,
        )
    except ValidationError:
        reject()


def wire_lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


@given(messages())
def test_render_is_deterministic_and_is_as_bytes(message: Message) -> None:
    first = render(message)
    assert render(message) == first
    assert message.as_bytes() == first
    assert render(message.model_copy()) == first


@given(messages())
def test_render_is_what_the_mailer_hands_the_transport(message: Message) -> None:
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        mailer.send(message)
    [sent] = fake.outbox
    assert sent.data == render(message)


@given(messages())
def test_render_never_holds_the_bcc_and_ends_lines_in_crlf(message: Message) -> None:
    data = render(message)
    header = data.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in b"\n" + header
    assert b"hidden@example.org" not in data
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in wire_lines(data))


def test_missing_id_and_date_are_added_as_a_send_adds_them() -> None:
    message = Message(sender="a@example.com", to="b@example.com", text="x")
    data = render(message, message_id_domain="mail.example.net")
    assert b"\r\nDate: " in data
    [line] = [x for x in wire_lines(data) if x.startswith(b"Message-ID:")]
    assert line.endswith(b"@mail.example.net>")
    assert b"@example.com>" in next(
        x for x in wire_lines(message.as_bytes()) if x.startswith(b"Message-ID:")
    )


def test_message_id_domain_is_checked_as_the_mailer_checks_it() -> None:
    message = Message(sender="a@example.com", to="b@example.com", text="x")
    with pytest.raises(ConfigurationError, match="message_id_domain"):
        render(message, message_id_domain="not a domain")
    data = render(message, message_id_domain="bücher.example")
    assert b"@xn--bcher-kva.example>" in data


def test_render_refuses_what_it_does_not_render() -> None:
    with pytest.raises(TypeError, match=r"EmailMessage renders with its own"):
        render(EmailMessage())  # type: ignore[arg-type]


def test_render_reports_an_unrenderable_message_typed() -> None:
    message = Message(
        sender="a@example.com",
        to="b@example.com",
        text="x",
        list_unsubscribe=["https://example.com/" + "u" * 1100],
    )
    with pytest.raises(InvalidMessageError, match="998"):
        render(message)
    with pytest.raises(InvalidMessageError, match="998"):
        message.as_bytes()


def test_render_wraps_an_unexpected_renderer_error(monkeypatch) -> None:
    def broken(message: Message, *, id_domain: str | None = None) -> tuple[bytes, str]:
        raise LookupError("unknown encoding: x-broken")

    monkeypatch.setattr(render_module, "render_with_id", broken)
    message = Message(sender="a@example.com", to="b@example.com", text="x")
    with pytest.raises(InvalidMessageError, match="x-broken") as info:
        render(message)
    assert isinstance(info.value.__cause__, LookupError)


def test_render_is_exported_with_its_module_name() -> None:
    assert "render" in smtpkit.__all__
    assert smtpkit.render is render


# -- boundaries ---------------------------------------------------------------------


def test_boundary_is_stable_and_differs_per_level() -> None:
    message = Message(
        sender="a@example.com",
        to="b@example.com",
        text="t",
        html="<p>h</p>",
        attachments=[Attachment(filename="a.txt", content=b"a")],
        message_id="<x@example.com>",
        date=DATE,
    )
    data = render(message)
    boundaries = {
        line.split(b'boundary="', 1)[1].rstrip(b'"')
        for line in data.split(b"\r\n")
        if b'boundary="' in line
    }
    assert len(boundaries) == 2  # mixed around alternative: two distinct ones
    other = render(message.model_copy(update={"text": "u"}))
    assert data != other
    assert render(message) == data


# -- the file and console transports write exactly these bytes ----------------------


def fixed_messages() -> list[Message]:
    return [
        Message(
            sender=Address(name="Zoë", email="zoe@example.com"),
            to="b@example.com",
            bcc="hidden@example.org",
            subject="Grüße",
            text="Hallo\n.\nline two",
            html="<p>Hallo</p>",
            attachments=[Attachment(filename="r.pdf", content=b"%PDF-1.4\x00\xff")],
            message_id="<file.1@example.com>",
            date=DATE,
        ),
        Message(
            sender="a@example.com",
            to="b@example.com",
            text="plain",
            message_id="<file.2@example.com>",
            date=DATE,
        ),
    ]


@pytest.mark.parametrize("message", fixed_messages(), ids=["multipart", "plain"])
def test_file_transport_writes_exactly_render(tmp_path, message: Message) -> None:
    with Mailer(transport=FileTransport(tmp_path)) as mailer:
        mailer.send(message)
    [written] = tmp_path.glob("*.eml")
    assert written.read_bytes() == render(message)
    assert b"hidden@example.org" not in written.read_bytes()


@pytest.mark.parametrize("message", fixed_messages(), ids=["multipart", "plain"])
def test_console_transport_prints_exactly_render(message: Message) -> None:
    stream = io.StringIO()
    with Mailer(transport=ConsoleTransport(stream)) as mailer:
        mailer.send(message)
    envelope_line, rest = stream.getvalue().split("\n", 1)
    assert envelope_line.startswith("MAIL FROM:<")
    printed, separator = rest.rsplit("-" * 72 + "\n", 1)
    assert separator == ""
    # A text stream: the same bytes, with the platform's text line ends.
    assert printed == render(message).decode("utf-8").replace("\r\n", "\n")
