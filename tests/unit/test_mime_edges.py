"""The renderer's promises at the edges (issue 8), for every Message the models accept.

No header line but the expected ones, whatever the values; every value decodes back
exactly; no line over 998 octets (RFC 5322 §2.1.1); encoded words of at most 75
characters (RFC 2047 §2); message/rfc822 attachments unencoded (RFC 2046 §5.2.1).
"""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.message import Message as Compat32Message
from email.utils import getaddresses
from urllib.parse import unquote

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from pydantic import ValidationError

from smtpkit import Address, Attachment, InvalidMessageError, Message
from smtpkit._message import FORBIDDEN_CHARS
from smtpkit._mime import render

REPRO = (
    "Your invoice for order 12345 is ready, please find the attached documents"
    "\x0bReply-To : attacker@evil.example"
)
HEADERS = email.policy.default.header_factory
ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")

# -- reading the wire back by hand ------------------------------------------------


def unfold(head: bytes) -> list[tuple[str, str]]:
    """Header fields of one block: a line starting with SP/TAB continues the last."""
    fields: list[list[str]] = []
    for line in head.decode("utf-8").split("\r\n"):
        if line[:1] in (" ", "\t"):
            fields[-1][1] += line  # unfolding removes the CRLF only (RFC 5322 §2.2.3)
        else:
            name, sep, value = line.partition(":")
            assert sep, f"not a header line: {line!r}"
            fields.append([name.rstrip(" \t"), value.removeprefix(" ")])
    return [(name, value) for name, value in fields]


def header_blocks(data: bytes) -> list[list[tuple[str, str]]]:
    """The header block of the message and of every MIME part below it, in order."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep
    fields = unfold(head)
    blocks = [fields]
    ctype = Compat32Message()
    for name, value in fields:
        if name.lower() == "content-type":
            ctype["Content-Type"] = value
    boundary = ctype.get_boundary()
    if ctype.get_content_maintype() == "multipart" and boundary:
        pieces = (b"\r\n" + body).split(b"\r\n--" + boundary.encode())
        assert pieces[-1].startswith(b"--")  # the close delimiter
        for piece in pieces[1:-1]:
            blocks += header_blocks(piece.removeprefix(b"\r\n"))
    return blocks


def parse(data: bytes) -> EmailMessage:
    head = data.partition(b"\r\n\r\n")[0]
    if head.isascii():
        return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]
    # Raw UTF-8 headers (SMTPUTF8, RFC 6532) parse as text.
    return email.message_from_string(data.decode(), policy=email.policy.default)  # type: ignore[return-value]


def decoded(value: str) -> str:
    """RFC 2047 decoding as RFC 2047 §6.2 says (the space between words dropped).

    Python 3.11's modern parser keeps that space inside display names (CPython
    gh-128110), so names are decoded with ``email.header`` instead.
    """
    return str(make_header(decode_header(value)))


def lines(data: bytes) -> list[bytes]:
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None
    return data.split(b"\r\n")


# -- strategies: values the models accept ------------------------------------------

SAFE = st.characters(
    blacklist_categories=("Cs",), blacklist_characters=sorted(FORBIDDEN_CHARS)
)
PIECES = st.sampled_from(
    [" ", "\t", "  ", '"', "\\", ",", ";", ":", "=?", "?=", "=?utf-8?q?x?=", "<",
     ">", "@", "(", ")", ".", "é", "中文", "😀", "\u00a0", "\u200b", "x" * 80,
     "中" * 40, "word ", " word"]
)  # fmt: skip


@st.composite
def header_text(draw: st.DrawFn, min_size: int = 0) -> str:
    """Random text, padded so that folding falls at every position of a line."""
    pad = "w" * draw(st.integers(0, 90)) + draw(st.sampled_from(["", " ", "\t"]))
    pieces = draw(st.lists(PIECES | st.text(SAFE, max_size=8), max_size=10))
    text = pad + "".join(pieces)
    if len(text) < min_size:
        reject()
    return text


@st.composite
def messages(draw: st.DrawFn) -> Message:
    utf8 = draw(st.booleans())  # a non-ASCII local part turns SMTPUTF8 on

    def addresses(prefix: str, most: int) -> list[Address]:
        names = draw(st.lists(st.none() | header_text(), max_size=most))
        return [
            Address(name=name, email=f"{prefix}{i}@example.com")
            for i, name in enumerate(names)
        ]

    inline = draw(st.booleans())
    files = [
        Attachment(filename=name, content=b"data", content_type="application/pdf")
        for name in draw(st.lists(header_text(min_size=1), max_size=2))
    ]
    if inline:
        files.append(
            Attachment(
                filename=draw(header_text(min_size=1)),
                content=b"\x89PNG",
                content_type="image/png",
                content_id="logo@example.com",
            )
        )
    uri_text = st.text(SAFE.filter(lambda c: c not in "<> ?"), max_size=30)
    try:
        return Message(
            sender=Address(
                name=draw(st.none() | header_text()),
                email="用户@例子.测试" if utf8 else "sender@example.com",
            ),
            to=addresses("to", 3) or ["to@example.com"],
            cc=addresses("cc", 2),
            reply_to=addresses("reply", 2),
            subject=draw(header_text()),
            text="body",
            html='<img src="cid:logo@example.com">' if inline else None,
            attachments=files,
            headers=draw(
                st.dictionaries(
                    st.from_regex(r"X-[A-Za-z0-9]{1,12}", fullmatch=True),
                    header_text(),
                    max_size=2,
                )
            ),
            list_unsubscribe=[
                f"https://example.com/{path}"
                for path in draw(st.lists(uri_text, max_size=2))
            ],
        )
    except ValidationError:
        reject()


def expected_top_fields(message: Message, *, multipart: bool) -> list[str]:
    names = ["From", "Date", "Message-ID", "MIME-Version", "Content-Type"]
    names += [] if multipart else ["Content-Transfer-Encoding"]
    for name, present in (
        ("To", message.to),
        ("Cc", message.cc),
        ("Reply-To", message.reply_to),
        ("Subject", message.subject),
        ("List-Unsubscribe", message.list_unsubscribe),
    ):
        if present:
            names.append(name)
    return sorted(names + list(message.headers))


def expected_part_fields(block: list[tuple[str, str]]) -> list[str]:
    kind = dict(block)["Content-Type"].partition("/")[0]
    names = ["Content-Type", "MIME-Version"]
    if kind != "multipart":
        names.append("Content-Transfer-Encoding")
    if kind not in ("multipart", "text"):  # an attachment: application/ or image/
        names.append("Content-Disposition")
    if kind == "image":  # the inline one
        names.append("Content-ID")
    return sorted(names)


def check_addresses(value: str, addresses: tuple[Address, ...], utf8: bool) -> None:
    parsed = getaddresses([value])
    assert [addr for _, addr in parsed] == [
        a.email if utf8 else a.ascii_email for a in addresses
    ]
    assert [decoded(name) for name, _ in parsed] == [a.name or "" for a in addresses]


# -- 1. header injection -----------------------------------------------------------


def bypass(message: Message, **update: object) -> Message:
    """What a future model bug (or model_construct) could hand the renderer."""
    return message.model_copy(update=update)


BASE = Message(sender="me@example.com", to="you@example.com", text="hi")
BAD_FIELDS = {
    "Subject": lambda bad: bypass(BASE, subject=bad),
    "X-Custom": lambda bad: bypass(BASE, headers={"X-Custom": bad}),
    "display name": lambda bad: bypass(
        BASE, to=(Address(email="you@example.com").model_copy(update={"name": bad}),)
    ),
    "filename": lambda bad: bypass(
        BASE,
        attachments=(
            Attachment(filename="a.pdf", content=b"x").model_copy(
                update={"filename": bad}
            ),
        ),
    ),
    "List-Unsubscribe": lambda bad: bypass(
        BASE, list_unsubscribe=(f"https://example.com/{bad}",)
    ),
}


def test_injection_repro_is_refused_by_the_model_and_the_renderer():
    with pytest.raises(ValidationError):
        Message(sender="me@example.com", to="you@example.com", subject=REPRO)
    with pytest.raises(InvalidMessageError, match=r"Subject.*\\x0b"):
        render(bypass(BASE, subject=REPRO))


@pytest.mark.parametrize("char", sorted(FORBIDDEN_CHARS))
@pytest.mark.parametrize("field", sorted(BAD_FIELDS))
@pytest.mark.parametrize("utf8", [False, True])
def test_renderer_refuses_every_line_break_in_every_field(field, char, utf8):
    # Short and long values: compat32 splits at str.splitlines() when it folds.
    for bad in (f"a{char}Bcc : x@evil.example", "invoice " * 12 + char + "Bcc : x"):
        message = BAD_FIELDS[field](bad)
        if utf8:
            message = bypass(message, sender=Address("用户@example.com"))
        with pytest.raises(InvalidMessageError, match=re.escape(repr(char)[1:-1])):
            render(message)


@given(messages())
def test_header_fields_are_exactly_the_expected_ones_and_decode_back(message):
    data = render(message)
    utf8 = message.needs_smtputf8
    assert data.isascii() or utf8
    top, *parts = header_blocks(data)
    multipart = bool(parts)
    assert sorted(name for name, _ in top) == expected_top_fields(
        message, multipart=multipart
    )
    for block in parts:
        assert sorted(name for name, _ in block) == expected_part_fields(block)
    for name, value in (field for block in header_blocks(data) for field in block):
        if name != "List-Unsubscribe":
            assert all(len(w) <= 75 for w in ENCODED_WORD_RE.findall(value))

    fields = dict(top)
    for name, addresses in (
        ("From", (message.sender,)),
        ("To", message.to),
        ("Cc", message.cc),
        ("Reply-To", message.reply_to),
    ):
        if addresses:
            check_addresses(fields[name], addresses, utf8)
    parsed = parse(data)
    if message.subject:
        assert parsed["Subject"] == message.subject
    for name, value in message.headers.items():
        assert parsed[name] == value
    if message.list_unsubscribe:
        wire = fields["List-Unsubscribe"]
        assert unquote(wire) == ", ".join(
            f"<{unquote(u)}>" for u in message.list_unsubscribe
        )
    # Inline parts come first (in multipart/related, or first among the files).
    expected = sorted(message.attachments, key=lambda a: not a.is_inline)
    disposed = [dict(b) for b in parts if any(n == "Content-Disposition" for n, _ in b)]
    assert len(disposed) == len(expected)
    for block, attachment in zip(disposed, expected, strict=True):
        disposition = HEADERS("Content-Disposition", block["Content-Disposition"])
        assert disposition.params["filename"] == attachment.filename
        # RFC 2047 name= for clients that read only Content-Type (older Outlook).
        ctype = Compat32Message()
        ctype["Content-Type"] = block["Content-Type"]
        assert decoded(str(ctype.get_param("name"))) == attachment.filename


def test_renderer_refuses_a_lone_surrogate():
    # The model refuses it first; the renderer must not depend on that.
    valid = Message(sender="me@example.com", to="you@example.com", subject="x")
    unchecked = valid.model_copy(update={"subject": "\ud800"})
    with pytest.raises(InvalidMessageError, match="not valid Unicode"):
        render(unchecked)


# -- 2. no line over 998 octets ------------------------------------------------------

LONG_TEXT = st.builds(
    lambda chunk, times: chunk * times, st.text(SAFE, min_size=1, max_size=12),
    st.integers(1, 150),
)  # fmt: skip


@st.composite
def long_messages(draw: st.DrawFn) -> Message:
    utf8 = draw(st.booleans())
    names = draw(st.lists(st.none() | LONG_TEXT | header_text(), max_size=40))
    try:
        return Message(
            sender=Address(
                name=draw(st.none() | LONG_TEXT),
                email="用户@例子.测试" if utf8 else "sender@example.com",
            ),
            to=[
                Address(name=n, email=f"收件人{i}@例子.测试")
                for i, n in enumerate(names)
            ]
            or ["to@example.com"],
            subject=draw(LONG_TEXT),
            text="body",
            attachments=[
                Attachment(filename=name, content=b"x")
                for name in draw(st.lists(LONG_TEXT, max_size=2))
            ],
            headers={"X-Long": draw(LONG_TEXT)},
            list_unsubscribe=[
                "https://example.com/" + "u" * draw(st.integers(0, 1100)),
                "mailto:"
                + draw(st.text(SAFE.filter(lambda c: c not in "<> "), max_size=30)),
            ],
        )
    except ValidationError:
        reject()


@given(long_messages())
def test_no_line_over_998_octets(message):
    # Only the unbreakable URI can be too long: it can be neither folded nor encoded.
    first_line = len("List-Unsubscribe: <") + len(message.list_unsubscribe[0]) + 2
    if first_line > 998:
        with pytest.raises(InvalidMessageError, match="List-Unsubscribe"):
            render(message)
        return
    data = render(message)
    assert max(map(len, lines(data))) <= 998
    top = dict(header_blocks(data)[0])
    utf8 = message.needs_smtputf8
    check_addresses(top["From"], (message.sender,), utf8)
    check_addresses(top["To"], message.to, utf8)
    parsed = parse(data)
    assert parsed["Subject"] == message.subject
    # From the header's parameters: get_filename() also strips <...> (utils.unquote).
    assert [
        p["Content-Disposition"].params["filename"] for p in parsed.iter_attachments()
    ] == [a.filename for a in message.attachments]


def test_long_list_unsubscribe_url_is_refused_before_sending():
    url = "https://example.com/unsubscribe?token=" + "a" * 1062  # 1,100 characters
    message = Message(
        sender="me@example.com", to="you@example.com", list_unsubscribe=url
    )
    with pytest.raises(InvalidMessageError, match=r"List-Unsubscribe.*998"):
        render(message)


def test_long_cjk_filename_is_split_into_rfc2231_sections():
    filename = "季度报告" * 30  # 120 characters, 360 octets of UTF-8
    data = render(
        Message(
            sender="me@example.com",
            to="you@example.com",
            attachments=[Attachment(filename=filename, content=b"%PDF")],
        )
    )
    assert max(map(len, lines(data))) <= 78
    assert b"filename*0*=utf-8''%E5%AD%A3" in data
    assert b"filename*1*=" in data
    [part] = parse(data).iter_attachments()
    assert part.get_filename() == filename
    assert part["Content-Type"].params["name"] == filename


def test_smtputf8_headers_are_folded():
    to = [Address(name=f"收件人名字{i}", email=f"用户{i}@例子.测试") for i in range(30)]
    data = render(Message(sender="发件人@例子.测试", to=to, subject="主题 " * 100))
    assert max(map(len, lines(data))) <= 78
    parsed = parse(data)
    assert [a.display_name for a in parsed["To"].addresses] == [a.name for a in to]
    assert parsed["Subject"] == "主题 " * 100


def test_long_word_in_a_subject_becomes_encoded_words():
    subject = "x" * 2000
    data = render(
        Message(sender="me@example.com", to="you@example.com", subject=subject)
    )
    assert max(map(len, lines(data))) <= 78
    assert parse(data)["Subject"] == subject


# -- 3. 7bit body lines are measured at CR and LF only --------------------------------


def test_form_feeds_do_not_hide_a_long_line():
    text = ("x" * 499 + "\f") * 3  # one 1,500-octet line on the wire
    data = render(Message(sender="me@example.com", to="you@example.com", text=text))
    assert max(map(len, lines(data))) <= 998
    parsed = parse(data)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert parsed.get_content().rstrip("\r\n") == text


BODY_CHARS = st.sampled_from(["\r", "\n", "\r\n", "\f", "\v", "\x1c", "\x1d", "\x1e",
                              "\x00", "\t", " ", "\x7f", "."])  # fmt: skip


@given(
    st.lists(
        st.builds(lambda n, c: "x" * n + c, st.integers(0, 1200), BODY_CHARS),
        max_size=6,
    ).map("".join)
)
def test_body_lines_never_exceed_998_octets(text):
    data = render(Message(sender="me@example.com", to="you@example.com", text=text))
    assert max(map(len, lines(data))) <= 998
    body = parse(data).get_payload(decode=True).decode("ascii")
    assert body.replace("\r\n", "\n").rstrip("\n") == re.sub(
        r"\r\n|\r", "\n", text
    ).rstrip("\n")


# -- 4. attached messages travel unencoded -------------------------------------------

EML = (
    b"From: Alice <alice@example.com>\n"
    b"To: Bob <bob@example.com>\n"
    b"Subject: The original\n"
    b"Message-ID: <orig.1@example.com>\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
    b"Hello Bob,\n.\nthis is the original message.\n"
)


def forward(content: bytes, content_type: str = "") -> Message:
    return Message(
        sender="bob@example.com",
        to="carol@example.com",
        text="see the attached message",
        attachments=[
            Attachment(
                filename="original.eml", content=content, content_type=content_type
            )
        ],
    )


def test_attached_eml_is_message_rfc822_not_base64():
    data = render(forward(EML))
    [part] = parse(data).iter_attachments()
    assert part.get_content_type() == "message/rfc822"
    assert part["Content-Transfer-Encoding"] == "7bit"
    assert part.get_filename() == "original.eml"
    assert EML.replace(b"\n", b"\r\n") in data  # byte for byte, in CRLF
    inner = part.get_content()
    assert inner["Subject"] == "The original"
    assert inner["Message-ID"] == "<orig.1@example.com>"
    body = inner.get_content().replace("\r\n", "\n")
    assert body == "Hello Bob,\n.\nthis is the original message.\n"


def test_attached_8bit_eml_goes_8bit():
    eml = EML.replace(b"Hello Bob", "Grüße, Bob".encode())
    data = render(forward(eml))
    [part] = parse(data).iter_attachments()
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert eml.replace(b"\n", b"\r\n") in data


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (EML + b"x" * 999 + b"\n", "", "line over 998"),
        (EML + b"\x00", "", "NUL"),
        ("ü".encode(), "message/partial", "8-bit"),
        (b"--b\r\n\r\nx\r\n--b--\r\n", "multipart/mixed", "multipart/mixed"),
    ],
)
def test_attachment_without_a_legal_encoding_is_refused(content, content_type, reason):
    with pytest.raises(InvalidMessageError, match=reason):
        render(forward(content, content_type))


# -- 10. encoded words, multipart/related, RFC 2047 file names -----------------------


@given(header_text(min_size=1))
def test_display_name_encoded_words_fit_75_characters_and_decode_back(name):
    try:
        sender = Address(name=name, email="me@example.com")
    except ValidationError:
        reject()
    data = render(Message(sender=sender, to="you@example.com"))
    [(_, value)] = [f for f in header_blocks(data)[0] if f[0] == "From"]
    assert all(len(word) <= 75 for word in ENCODED_WORD_RE.findall(value))
    [(phrase, addr)] = getaddresses([value])
    assert addr == "me@example.com"
    assert decoded(phrase) == name


def test_long_display_name_is_split_into_short_encoded_words():
    name = "Ünïcödé Lönġ Nämé " * 8
    data = render(
        Message(sender=Address(name=name, email="me@example.com"), to="y@x.com")
    )
    words = ENCODED_WORD_RE.findall(data.decode())
    assert len(words) > 1
    assert max(map(len, words)) <= 75


@pytest.mark.parametrize("utf8", [False, True])
@pytest.mark.parametrize("name", ['"' + "x" * 1000, "Dr. " + "ü" * 600, "y" * 2000])
def test_display_name_too_long_to_fold_becomes_encoded_words(name, utf8):
    sender = Address(name=name, email="用户@example.com" if utf8 else "me@example.com")
    data = render(Message(sender=sender, to="you@example.com"))
    assert max(map(len, lines(data))) <= 78
    [(_, value)] = [f for f in header_blocks(data)[0] if f[0] == "From"]
    assert decoded(getaddresses([value])[0][0]) == name


def test_multipart_related_names_its_root_type():
    logo = Attachment(filename="logo.png", content=b"img", content_id="c1")
    parsed = parse(
        render(
            Message(
                sender="me@example.com",
                to="you@example.com",
                html='<img src="cid:c1">',
                attachments=[logo],
            )
        )
    )
    assert parsed.get_content_type() == "multipart/related"
    assert parsed["Content-Type"].params["type"] == "text/html"  # RFC 2387 §3.1


def test_non_ascii_filename_is_rfc2047_on_content_type_and_rfc2231_on_disposition():
    data = render(
        forward(b"%PDF", "application/pdf").model_copy(
            update={
                "attachments": (Attachment(filename="报告 2024.pdf", content=b"%PDF"),)
            }
        )
    )
    [block] = [
        dict(b) for b in header_blocks(data)[1:] if "Content-Disposition" in dict(b)
    ]
    assert (
        block["Content-Type"]
        == 'application/pdf; name="=?utf-8?b?5oql5ZGKIDIwMjQucGRm?="'
    )
    assert block["Content-Disposition"] == (
        "attachment; filename*=utf-8''%E6%8A%A5%E5%91%8A%202024.pdf"
    )
