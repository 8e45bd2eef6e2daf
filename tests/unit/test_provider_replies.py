"""The provider reply table: every row explains its own documented example, and
nothing else is ever guessed."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import smtpkit
from smtpkit import (
    AuthenticationError,
    RecipientResult,
    RecipientsRefusedError,
    ReplyExplanation,
    ReplyReason,
    SenderRefusedError,
    SendResult,
    SMTPReply,
    SMTPReplyError,
    explain_reply,
    parse_reply,
)
from smtpkit._outcomes import quota_spent
from smtpkit._provider_replies import _RULES
from smtpkit._reply_reasons import Rule as _Rule
from smtpkit._transports._adaptive import explained

CHINESE_PROVIDERS = {"NetEase", "QQ Mail", "Aliyun DirectMail"}
STEPS = {"connect", "AUTH", "MAIL", "RCPT", "DATA", "end of data"}


def wire(example: str) -> SMTPReply:
    """Parse a documented reply as smtplib hands it over (code prefixes removed)."""
    lines = example.split("\n")
    return parse_reply(int(lines[0][:3]), "\n".join(line[4:] for line in lines))


def rule_id(rule: _Rule) -> str:
    return f"{rule.provider}:{rule.example[:24]}"


@pytest.mark.parametrize("rule", _RULES, ids=rule_id)
def test_every_row_explains_its_documented_example(rule: _Rule) -> None:
    explanation = explain_reply(wire(rule.example))
    assert explanation == rule.explanation()


@pytest.mark.parametrize("rule", _RULES, ids=rule_id)
def test_every_row_is_complete(rule: _Rule) -> None:
    assert rule.doc_url.startswith("https://")
    assert rule.step in STEPS
    assert min(rule.codes) >= 400
    assert int(rule.example[:3]) in rule.codes
    # One sentence, no trailing period, nothing from the reply itself.
    assert rule.hint
    assert not rule.hint.endswith(".")
    assert (rule.hint_zh is not None) == (rule.provider in CHINESE_PROVIDERS)
    # smtpkit advises on 530 itself (AUTH or STARTTLS first): no competing hint.
    assert 530 not in rule.codes


def test_no_two_rows_claim_the_same_example() -> None:
    for rule in _RULES:
        matching = [other for other in _RULES if other.matches(wire(rule.example))]
        assert matching[0] is rule


def test_the_issue_examples() -> None:
    assert explain_reply(wire("450 MI:DMC 163 smtp3,x 1")) is not None
    cases = {
        "450 MI:DMC 163 smtp3,x 1": ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION,
        "451 MI:DMC 163 smtp3,x 1": ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION,
        "421 HL:ICC 163 smtp3,x 1": ReplyReason.TOO_MANY_CONNECTIONS,
        "554 DT:SPM 126 smtp2,x 1": ReplyReason.CONTENT_REJECTED,
        "451 MI:SFQ 163 smtp7,x 1": ReplyReason.QUOTA_EXCEEDED,
        "454 Throttling failure: Daily message quota exceeded": (
            ReplyReason.QUOTA_EXCEEDED
        ),
    }
    for text, reason in cases.items():
        explanation = explain_reply(wire(text))
        assert explanation is not None
        assert explanation.reason is reason


def test_451_mi_sfq_waits_out_netease_s_15_minute_window() -> None:
    explanation = explain_reply(wire("451 MI:SFQ 163 smtp7,C8CowAAnpFyamC9fa52cAg"))
    assert explanation is not None
    assert explanation.reason is ReplyReason.QUOTA_EXCEEDED
    assert explanation.retry_after == 900.0
    error = SenderRefusedError(wire("451 MI:SFQ 163 smtp7,x 1"), sender="me@163.com")
    stop = quota_spent(SendResult(envelope=None, error=error), "send_many")
    assert stop is not None
    assert stop.resume_after == 900.0
    assert "sending may resume in about 900 s" in str(stop)


def test_gmail_s_likely_unsolicited_needs_google_s_own_marker() -> None:
    text = (
        "550-5.7.1 [192.0.2.1 12] Our system has detected that this message is\n"
        "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
        "550-5.7.1 this message has been blocked. Please visit\n"
        "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError {}"
    )
    for tail in ("d2e1a72fcca58-7 - gsmtp", "d2e1a72fcca58-7"):  # link alone too
        explanation = explain_reply(wire(text.format(tail)))
        assert explanation is not None
        assert explanation.provider == "Gmail"
        assert explanation.reason is ReplyReason.CONTENT_REJECTED


def test_535_5_7_3_is_exchange_s_and_says_only_what_its_page_says() -> None:
    explanation = explain_reply(wire("535 5.7.3 Authentication unsuccessful"))
    assert explanation is not None
    assert explanation.provider == "Microsoft Exchange / Microsoft 365"
    assert explanation.reason is ReplyReason.AUTH_FAILED
    assert explanation.hint == (
        "the server refused the user name and password (or the OAuth2 token): "
        "check them"
    )
    assert "ms-smtpntlm" in explanation.doc_url


def test_451_dt_spm_waits_two_minutes_and_554_is_final() -> None:
    soft = explain_reply(wire("451 DT:SPM 163 smtp1,x 1,please try again"))
    hard = explain_reply(wire("554 DT:SPM 163 smtp1,x 1"))
    assert soft is not None
    assert soft.retry_after == 120.0
    assert hard is not None
    assert hard.retry_after is None


@pytest.mark.parametrize(
    "text",
    [
        "250 2.0.0 MI:DMC queued",  # success mentioning a tag
        "354 HL:ICC go ahead",
        "421 4.7.0 too busy",  # a 421 no provider documents
        "450 XMI:DMC",  # a tag inside another word
        "450 MI:DMCX",
        "535 5.7.8 Authentication failed",  # Gmail's code, another server's text
        "535 5.7.139 Authentication unsuccessful, something else",
        "554 DT:SPAM",
        # Gmail's words from another server: no "gsmtp", no Google link.
        "550 5.7.1 Message rejected: likely unsolicited mail according to local policy",
        "550 5.7.1 likely unsolicited mail, see https://example.com/?p=gsmtpx",
    ],
)
def test_unknown_replies_get_no_explanation(text: str) -> None:
    assert explain_reply(SMTPReply.from_string(text)) is None


@given(code=st.integers(min_value=-1, max_value=399), text=st.text())
def test_no_explanation_below_400(code: int, text: str) -> None:
    assert explain_reply(parse_reply(code, text)) is None


_ANY_TAG = re.compile(
    r"MI:|HL:|RP:|DT:|WM:|unsolicited|password|authentication|throttling|quota|"
    r"rejected|spam|rcpt|account|error|recipients",
    re.IGNORECASE,
)


@given(code=st.integers(min_value=400, max_value=599), text=st.text())
def test_text_that_matches_no_rule_is_never_explained(code: int, text: str) -> None:
    reply = parse_reply(code, text)
    explanation = explain_reply(reply)  # never raises
    if _ANY_TAG.search(text) is None:
        assert explanation is None


@given(
    rule=st.sampled_from(_RULES),
    secret=st.text(min_size=6, alphabet="abcdefghijklmnopqrstuvwxyz0123456789"),
)
def test_hints_are_constants_that_never_carry_reply_text(
    rule: _Rule, secret: str
) -> None:
    # A word the hint holds anyway ("before") proves nothing: leave it out.
    assume(secret not in rule.hint and secret not in (rule.hint_zh or ""))
    reply = wire(f"{rule.example} {secret}")
    explanation = explain_reply(reply)
    if explanation is not None:
        assert explanation.hint == rule.hint
        assert secret not in explanation.hint
        assert explanation.hint_zh is None or secret not in explanation.hint_zh


def test_error_carries_reason_and_hint_and_ends_with_it() -> None:
    reply = wire("421 HL:ICC 163 smtp3,x 1")
    error = SMTPReplyError(reply, command="connect")
    assert error.reason is ReplyReason.TOO_MANY_CONNECTIONS
    assert error.hint is not None
    assert str(error) == f"connect refused: {reply}; hint: {error.hint}"
    assert isinstance(error.explanation, ReplyExplanation)


def test_unknown_reply_error_is_unchanged() -> None:
    error = AuthenticationError(SMTPReply.from_string("535 5.7.8 nope"), command="AUTH")
    assert error.reason is None
    assert error.hint is None
    assert error.explanation is None
    assert str(error) == "AUTH refused: 535 5.7.8 nope"


def test_hint_is_added_once_and_survives_pickling() -> None:
    reply = wire("554 DT:SPM 126 smtp2,x 1")
    error = SMTPReplyError(reply, command="DATA")
    again = SMTPReplyError(reply, command="DATA", message=str(error))
    assert str(again) == str(error)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert copy.reason is ReplyReason.CONTENT_REJECTED
    assert str(copy) == str(error)


def test_recipients_refused_explains_the_first_documented_refusal() -> None:
    # Before, only the first refusal was explained: an undocumented one first
    # left reason and hint None while smtpkit itself acted on the second.
    for first, second in [("gone@163.com", "b@163.com"), ("b@163.com", "gone@163.com")]:
        replies = {
            "gone@163.com": SMTPReply.from_string("550 User not found: gone@163.com"),
            "b@163.com": wire("451 RP:QRC 163 smtp7,C8Cow 1596954778"),
        }
        error = RecipientsRefusedError({first: replies[first], second: replies[second]})
        assert error.reason is ReplyReason.QUOTA_EXCEEDED
        assert error.explanation == explain_reply(replies["b@163.com"])
        assert error.explanation == explained(error)  # what smtpkit acts on
        assert error.reply == replies[first]  # still the first recipient's reply
        assert str(error).endswith(f"; hint (for <b@163.com>): {error.hint}")
        assert str(error).count("hint") == 1
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
        assert (str(copy), copy.explanation) == (str(error), error.explanation)


def test_recipients_refused_alone_or_undocumented() -> None:
    alone = RecipientsRefusedError({"a@example.com": wire("450 RP:DRC 163 smtp3,x 1")})
    assert alone.reason is ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION
    assert str(alone).endswith(f">: 450 RP:DRC 163 smtp3,x 1; hint: {alone.hint}")
    unknown = RecipientsRefusedError(
        {
            "a@example.com": SMTPReply.from_string("550 5.1.1 no such user"),
            "b@example.com": SMTPReply.from_string("450 4.2.0 busy"),
        }
    )
    assert (unknown.reason, unknown.hint, unknown.explanation) == (None, None, None)
    assert "hint" not in str(unknown)


def test_recipient_result_reason_and_hint() -> None:
    refused = RecipientResult(
        "a@example.com", wire("556 The number of RCPTs is over size")
    )
    assert refused.reason is ReplyReason.TOO_MANY_RECIPIENTS
    assert refused.hint is not None
    assert refused.explanation == explain_reply(refused.reply)
    assert refused.explanation is not None
    assert refused.explanation.provider == "Aliyun DirectMail"
    accepted = RecipientResult("b@example.com", SMTPReply(250, "OK"))
    assert accepted.reason is None
    assert accepted.hint is None
    assert accepted.explanation is None
    unknown = RecipientResult("c@example.com", SMTPReply.from_string("550 5.1.1 no"))
    assert unknown.reason is None
    assert unknown.hint is None
    assert unknown.explanation is None


def test_reason_is_a_str_enum_that_prints_its_value() -> None:
    assert str(ReplyReason.QUOTA_EXCEEDED) == "quota_exceeded"
    assert ReplyReason("rate_limited") is ReplyReason.RATE_LIMITED
    assert smtpkit.ReplyReason.__module__ == "smtpkit"


def test_providers_guide_lists_every_row() -> None:
    """docs/guide/providers.md shows each row's reply, reason and source."""
    root = Path(__file__).resolve().parents[2]
    guide = (root / "docs" / "guide" / "providers.md").read_text(encoding="utf-8")
    for rule in _RULES:
        first_line = rule.example.split("\n")[0].replace("|", "\\|")
        assert f"`{first_line}` | `{rule.reason.value}` | {rule.hint}" in guide
        assert rule.doc_url in guide
