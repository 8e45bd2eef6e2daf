"""SMTP replies: parsing, enhanced status codes, decoding and classification."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import EnhancedStatus, ReplyCode, SMTPReply, parse_reply
from smtpkit._reply import decode_reply_text


def test_parse_reply_splits_enhanced_status():
    reply = parse_reply(451, b"4.3.0 Try again later")
    assert reply == SMTPReply(451, "Try again later", EnhancedStatus(4, 3, 0))
    assert str(reply.enhanced) == "4.3.0"


def test_parse_reply_without_enhanced_status():
    reply = parse_reply(250, "smtp.example.com Hello")
    assert reply.enhanced is None
    assert reply.text == "smtp.example.com Hello"


def test_parse_reply_multiline_strips_status_from_every_line():
    reply = parse_reply(550, b"5.1.1 first line\n5.1.1 second line\n5.1.1 third")
    assert reply.enhanced == EnhancedStatus(5, 1, 1)
    assert reply.text == "first line\nsecond line\nthird"


def test_parse_reply_multiline_without_status_keeps_lines():
    reply = parse_reply(250, b"mx.example.com\nPIPELINING\n8BITMIME")
    assert reply.text == "mx.example.com\nPIPELINING\n8BITMIME"
    assert reply.enhanced is None


def test_parse_reply_status_alone():
    reply = parse_reply(250, "2.0.0")
    assert reply.enhanced == EnhancedStatus(2, 0, 0)
    assert reply.text == ""


@pytest.mark.parametrize(
    "text",
    [
        "3.0.0 bad class",
        "4.3 too short",
        "4.1234.0 subject too long",
        "4.3.0x glued to text",
        "x 4.3.0 not first",
    ],
)
def test_not_an_enhanced_status(text):
    assert parse_reply(451, text).enhanced is None
    assert parse_reply(451, text).text == text


def test_enhanced_status_transient():
    assert EnhancedStatus(4, 7, 1).is_transient
    assert not EnhancedStatus(5, 7, 1).is_transient
    assert not EnhancedStatus(2, 0, 0).is_transient


def test_gbk_reply_decodes_to_chinese():
    raw = "535 登录失败".encode("gbk")
    reply = parse_reply(535, raw[4:])
    assert reply.text == "登录失败"
    assert decode_reply_text(raw) == "535 登录失败"


def test_gb18030_reply_decodes():
    raw = "5.7.8 授权码错误\uff0c请使用授权码登录".encode("gb18030")
    reply = parse_reply(535, raw)
    assert reply.text == "授权码错误\uff0c请使用授权码登录"
    assert reply.enhanced == EnhancedStatus(5, 7, 8)


def test_utf8_reply_is_preferred():
    assert parse_reply(550, "用户不存在".encode()).text == "用户不存在"


def test_undecodable_bytes_fall_back_to_latin1():
    assert decode_reply_text(b"\xff\xfe ok") == "\xff\xfe ok"


@given(st.binary(max_size=200))
def test_decoding_never_raises(raw):
    text = decode_reply_text(raw)
    assert isinstance(text, str)
    assert isinstance(parse_reply(250, raw), SMTPReply)


@given(
    st.sampled_from([250, 354, 421, 451, 550, 554]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
        max_size=40,
    ),
)
def test_reply_text_round_trips(code, text):
    reply = parse_reply(code, text.encode())
    assert reply.code == code
    if reply.enhanced is None:
        assert reply.text == text.strip()
    assert parse_reply(code, str(reply).partition(" ")[2]) == reply


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("451 4.3.0 try later", SMTPReply(451, "try later", EnhancedStatus(4, 3, 0))),
        ("250 OK", SMTPReply(250, "OK")),
        ("221", SMTPReply(221, "")),
        (
            "  550 5.1.1 no such user \r\n",
            SMTPReply(550, "no such user", EnhancedStatus(5, 1, 1)),
        ),
    ],
)
def test_from_string(line, expected):
    assert SMTPReply.from_string(line) == expected


@pytest.mark.parametrize("line", ["", "OK", "25 OK", "2500 OK", "abc def"])
def test_from_string_needs_three_digit_code(line):
    with pytest.raises(ValueError, match="three-digit code"):
        SMTPReply.from_string(line)


@pytest.mark.parametrize(
    ("code", "success", "transient", "permanent"),
    [
        (220, True, False, False),
        (250, True, False, False),
        (354, True, False, False),
        (421, False, True, False),
        (451, False, True, False),
        (499, False, True, False),
        (500, False, False, True),
        (550, False, False, True),
        (-1, False, False, True),
        (199, False, False, True),
        (600, False, False, True),
    ],
)
def test_classification(code, success, transient, permanent):
    reply = SMTPReply(code, "x")
    assert reply.is_success is success
    assert reply.is_transient is transient
    assert reply.is_permanent is permanent


def test_basic_code_wins_over_enhanced():
    assert SMTPReply.from_string("451 5.7.1 odd").is_transient
    assert SMTPReply.from_string("550 4.2.2 odd").is_permanent


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        (SMTPReply(451, "busy", EnhancedStatus(4, 3, 0)), "451 4.3.0 busy"),
        (SMTPReply(250, "OK"), "250 OK"),
        (SMTPReply(250), "250"),
        (SMTPReply(250, "", EnhancedStatus(2, 0, 0)), "250 2.0.0"),
    ],
)
def test_str(reply, text):
    assert str(reply) == text


def test_reply_codes():
    assert ReplyCode.AUTH_FAILED == 535
    assert SMTPReply(ReplyCode.OK).is_success


def test_reply_is_frozen():
    reply = SMTPReply(250, "OK")
    with pytest.raises(AttributeError):
        reply.code = 550  # type: ignore[misc]
