"""Address, Attachment, Message and Envelope values: parsing and validation."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Address, Attachment, Envelope, InvalidMessageError, Message

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)
# Any string with at least one CR, LF or NUL somewhere in it.
BAD = st.builds(
    lambda head, bad, tail: head + bad + tail,
    _TEXT,
    st.sampled_from(["\r", "\n", "\0", "\r\n"]),
    _TEXT,
)


def addr(value: object) -> Address:
    return Address.model_validate(value)


def msg(**fields: object) -> Message:
    return Message(**{"sender": "me@example.com", "to": "you@example.com", **fields})


# -- Address --------------------------------------------------------------------


def test_address_from_string_with_unicode_name():
    address = addr("张三 <zs@example.com>")
    assert address == Address(email="zs@example.com", name="张三")
    assert str(address) == "张三 <zs@example.com>"


def test_address_from_bare_string():
    address = addr("zs@example.com")
    assert address.name is None
    assert str(address) == "zs@example.com"


def test_address_from_quoted_name():
    assert addr('"Doe, John" <jd@example.com>').name == "Doe, John"


def test_address_from_tuple_and_address():
    assert addr(("张三", "zs@example.com")) == Address(
        email="zs@example.com", name="张三"
    )
    assert addr(("", "zs@example.com")).name is None
    original = Address(email="a@example.com", name="A")
    assert addr(original) == original


def test_address_parts():
    address = addr("first.last@Example.COM")
    assert address.local_part == "first.last"
    assert address.domain == "Example.COM"
    assert address.dedupe_key() == "first.last@example.com"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "nobody",
        "a@",
        "@example.com",
        "a b@example.com",
        "a@example.com, b@example.com",
        "<>",
        "x" * 65 + "@example.com",
        "a@" + "b" * 256,
        "a@例子..cn",
        ("A", "not-an-address"),
    ],
)
def test_invalid_addresses(value):
    with pytest.raises(pydantic.ValidationError):
        addr(value)


def test_idn_domain_becomes_punycode():
    address = addr("user@例子.广告")
    assert address.ascii_email == "user@xn--fsqu00a.xn--4rr70v"
    assert not address.needs_smtputf8
    assert addr("a@example.com").ascii_email == "a@example.com"


def test_non_ascii_local_part_needs_smtputf8():
    address = addr("用户@example.com")
    assert address.needs_smtputf8
    assert address.ascii_email == "用户@example.com"
    assert msg(to=address).needs_smtputf8
    assert msg(reply_to=address).needs_smtputf8
    assert not msg().needs_smtputf8
    assert msg(envelope_sender="退信@example.com").needs_smtputf8


# -- injection ------------------------------------------------------------------


@given(BAD)
def test_injection_in_address_string(bad):
    with pytest.raises(pydantic.ValidationError):
        addr(f"Name {bad} <a@example.com>")
    with pytest.raises(pydantic.ValidationError):
        addr(f"a{bad}@example.com")


@given(BAD)
def test_injection_in_address_fields(bad):
    with pytest.raises(pydantic.ValidationError):
        Address(email=f"a@example.com{bad}")
    with pytest.raises(pydantic.ValidationError):
        Address(email="a@example.com", name=bad)
    with pytest.raises(pydantic.ValidationError):
        addr((bad, "a@example.com"))


@given(BAD)
def test_injection_in_message_fields(bad):
    for fields in (
        {"subject": bad},
        {"sender": ("x", f"a{bad}@example.com")},
        {"to": f"b{bad}@example.com"},
        {"cc": [f"{bad} <c@example.com>"]},
        {"bcc": (bad, "d@example.com")},
        {"reply_to": f"r@example.com{bad}"},
        {"headers": {"X-Custom": bad}},
        {"headers": {f"X-{bad}": "value"}},
        {"list_unsubscribe": f"https://example.com/u?{bad}"},
        {"envelope_sender": f"bounce{bad}@example.com"},
        {"message_id": f"<id{bad}@example.com>"},
    ):
        with pytest.raises(pydantic.ValidationError):
            msg(**fields)


@given(BAD)
def test_injection_in_attachment_and_envelope(bad):
    with pytest.raises(pydantic.ValidationError):
        Attachment(filename=f"a{bad}.txt", content=b"x")
    with pytest.raises(pydantic.ValidationError):
        Attachment(filename="a.png", content=b"x", content_id=f"id{bad}")
    with pytest.raises(pydantic.ValidationError):
        Attachment(filename="a.png", content=b"x", content_type=f"image/png{bad}")
    with pytest.raises(pydantic.ValidationError):
        Envelope(sender=f"a{bad}@example.com", recipients=["b@example.com"])
    with pytest.raises(pydantic.ValidationError):
        Envelope(sender="a@example.com", recipients=[f"b@example.com{bad}"])


@pytest.mark.parametrize(
    "name",
    ["From", "to", "CC", "Bcc", "Reply-To", "Subject", "Date", "Message-ID",
     "MIME-Version", "content-type", "Content-Transfer-Encoding",
     "Content-Disposition", "List-Unsubscribe", "List-Unsubscribe-Post"],
)  # fmt: skip
def test_reserved_headers_refused(name):
    with pytest.raises(pydantic.ValidationError, match="Message field"):
        msg(headers={name: "x"})


@pytest.mark.parametrize("name", ["X Space", "X:Colon", "", "Ünicode"])
def test_bad_header_names(name):
    with pytest.raises(pydantic.ValidationError, match="header name"):
        msg(headers={name: "x"})


def test_custom_headers_kept():
    assert dict(msg(headers={"X-Campaign": "spring"}).headers) == {
        "X-Campaign": "spring"
    }


@pytest.mark.parametrize("value", ["id@example.com", "<a b@c>", "<>", "<ü@x>"])
def test_bad_message_id(value):
    with pytest.raises(pydantic.ValidationError, match="message_id"):
        msg(message_id=value)


# -- recipients and envelope -----------------------------------------------------


def test_one_address_or_many():
    message = msg(to="a@example.com", cc=("C", "c@example.com"), bcc=[addr("b@x.com")])
    assert message.to == (addr("a@example.com"),)
    assert message.cc == (Address(email="c@example.com", name="C"),)
    assert message.bcc == (addr("b@x.com"),)
    assert msg(to={"email": "d@example.com"}).to == (addr("d@example.com"),)


def test_recipients_dedupe_domain_case_only():
    message = msg(
        to=["X@Example.com", "x@example.COM"],
        cc=["x@EXAMPLE.com", "X@example.com"],
        bcc=["y@example.com"],
    )
    assert [a.email for a in message.recipients] == [
        "X@Example.com",
        "x@example.COM",
        "y@example.com",
    ]


def test_to_envelope_includes_bcc():
    message = msg(to="a@example.com", cc="b@example.com", bcc="c@example.com")
    envelope = message.to_envelope()
    assert envelope.sender == "me@example.com"
    assert envelope.recipients == ("a@example.com", "b@example.com", "c@example.com")
    assert not envelope.smtputf8


def test_to_envelope_uses_ascii_domains_and_smtputf8():
    envelope = msg(sender="用户@例子.cn", to="b@例子.cn").to_envelope()
    assert envelope.sender == "用户@xn--fsqu00a.cn"
    assert envelope.recipients == ("b@xn--fsqu00a.cn",)
    assert envelope.smtputf8
    assert envelope.needs_smtputf8


def test_envelope_sender_override():
    assert msg(envelope_sender="bounce@example.com").to_envelope().sender == (
        "bounce@example.com"
    )
    assert msg(envelope_sender="").to_envelope().sender == ""


def test_no_recipients():
    with pytest.raises(InvalidMessageError, match="no recipients"):
        msg(to=()).to_envelope()


def test_envelope_validation():
    envelope = Envelope(
        sender="", recipients=["a@example.com", "a@example.com", "b@x.y"]
    )
    assert envelope.recipients == ("a@example.com", "b@x.y")
    assert not envelope.needs_smtputf8
    assert Envelope(sender="", recipients=["a@x.y"], smtputf8=True).needs_smtputf8
    assert Envelope(sender="", recipients=["ü@x.y"]).needs_smtputf8
    with pytest.raises(pydantic.ValidationError):
        Envelope(sender="a@example.com", recipients=[])
    with pytest.raises(pydantic.ValidationError):
        Envelope(sender="not-an-address", recipients=["a@example.com"])


def test_envelope_with_recipients():
    envelope = Envelope(sender="s@x.y", recipients=["a@x.y", "b@x.y"], smtputf8=True)
    subset = envelope.with_recipients(("b@x.y",))
    assert subset.recipients == ("b@x.y",)
    assert subset.sender == "s@x.y"
    assert subset.smtputf8
    assert envelope.recipients == ("a@x.y", "b@x.y")


# -- List-Unsubscribe ------------------------------------------------------------


def test_list_unsubscribe():
    message = msg(
        list_unsubscribe=("mailto:unsub@example.com", "https://example.com/u/1"),
        list_unsubscribe_one_click=True,
    )
    assert message.list_unsubscribe == (
        "mailto:unsub@example.com",
        "https://example.com/u/1",
    )
    assert msg(list_unsubscribe="mailto:u@x.com").list_unsubscribe == (
        "mailto:u@x.com",
    )
    assert msg(list_unsubscribe=["https://x.com/u"]).list_unsubscribe == (
        "https://x.com/u",
    )


@pytest.mark.parametrize(
    "uris", [(), ("mailto:u@example.com",), ("http://example.com/u",)]
)
def test_one_click_needs_https(uris):
    with pytest.raises(pydantic.ValidationError, match="RFC 8058"):
        msg(list_unsubscribe=uris, list_unsubscribe_one_click=True)


@pytest.mark.parametrize(
    "uri", ["ftp://example.com", "javascript:x", "https://e.com/<x>", "https://a b"]
)
def test_bad_unsubscribe_uri(uri):
    with pytest.raises(pydantic.ValidationError, match="list_unsubscribe"):
        msg(list_unsubscribe=uri)


# -- Attachment ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("report.pdf", "application/pdf"),
        ("photo.PNG", "image/png"),
        ("notes.txt", "text/plain"),
        ("报告.csv", "text/csv"),
        ("noextension", "application/octet-stream"),
        ("weird.zzzunknown", "application/octet-stream"),
    ],
)
def test_content_type_guessed(filename, content_type):
    assert Attachment(filename=filename, content=b"x").content_type == content_type


def test_explicit_content_type_kept_and_checked():
    attachment = Attachment(filename="a.bin", content=b"x", content_type="text/x-log")
    assert attachment.content_type == "text/x-log"
    with pytest.raises(pydantic.ValidationError, match="type/subtype"):
        Attachment(filename="a.bin", content=b"x", content_type="text")


def test_inline_needs_valid_cid():
    assert Attachment(filename="a.png", content=b"x", content_id="logo@x").is_inline
    assert not Attachment(filename="a.png", content=b"x").is_inline
    with pytest.raises(pydantic.ValidationError, match="content_id"):
        Attachment(filename="a.png", content=b"x", content_id="<logo>")


def test_empty_filename_refused():
    with pytest.raises(pydantic.ValidationError):
        Attachment(filename="", content=b"x")


def test_from_path(tmp_path):
    path = tmp_path / "数据.json"
    path.write_bytes(b'{"a": 1}')
    attachment = Attachment.from_path(path)
    assert attachment.filename == "数据.json"
    assert attachment.content == b'{"a": 1}'
    assert attachment.content_type == "application/json"
    renamed = Attachment.from_path(
        str(path), filename="d.txt", content_type="text/plain", content_id="d1"
    )
    assert (renamed.filename, renamed.content_type, renamed.content_id) == (
        "d.txt",
        "text/plain",
        "d1",
    )


def test_message_is_frozen():
    message = msg()
    with pytest.raises(pydantic.ValidationError):
        message.subject = "changed"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        msg(unknown_field=1)


def test_address_from_one_positional_string():
    address = Address("张三 <zs@example.com>")
    assert (address.name, address.email) == ("张三", "zs@example.com")
    with pytest.raises(pydantic.ValidationError):
        Address("zs@example.com\r\nBcc: x@evil.test")
    with pytest.raises(TypeError):
        Address("zs@example.com", name="x")


def test_envelope_sends_idn_domains_as_a_labels_unless_the_local_part_is_not_ascii():
    envelope = Envelope(sender="a@例子.cn", recipients=["b@例子.cn", "用户@例子.cn"])
    assert envelope.sender == "a@xn--fsqu00a.cn"
    assert envelope.recipients == ("b@xn--fsqu00a.cn", "用户@例子.cn")
    assert envelope.needs_smtputf8
    assert not Envelope(sender="a@例子.cn", recipients=["b@例子.cn"]).needs_smtputf8
