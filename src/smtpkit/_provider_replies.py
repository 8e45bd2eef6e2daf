"""What well-known providers mean by their error replies, as data.

Providers answer with replies whose meaning is precise but undocumented by
SMTP itself: NetEase's ``450 MI:DMC`` (too many messages on this connection),
``421 HL:ICC`` (too many connections from this IP), QQ Mail's ``535 Login
Fail. Please enter your authorization code`` (use the authorization code, not
the login password).  This module is the one place that knows them: a table of
:class:`_Rule` rows, each matched on the reply code, the enhanced status and a
text pattern, each giving a :class:`ReplyReason`, a hint of what to do and the
provider's own documentation.  Unknown replies get no explanation: never a
guess.

Pure and free of I/O, so exceptions and the transport can both depend on it.
"""

# Chinese hints use Chinese punctuation (full-width commas) on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from ._reply import SMTPReply

__all__ = ["ReplyExplanation", "ReplyReason", "explain"]


class ReplyReason(str, enum.Enum):
    """Why a provider refused, in terms a program can act on."""

    AUTH_NEEDS_APP_PASSWORD = "auth_needs_app_password"  # noqa: S105 - a name
    """Log in with the app password / authorization code (授权码), not the account password."""
    AUTH_FAILED = "auth_failed"
    """The credentials are wrong."""
    AUTH_LOCKED = "auth_locked"
    """Logins are blocked for a while after failures: never retry soon."""
    SMTP_DISABLED = "smtp_disabled"
    """SMTP (or SMTP AUTH) is switched off for the account or tenant."""
    TOO_MANY_CONNECTIONS = "too_many_connections"
    """Too many concurrent connections from this client or IP."""
    TOO_MANY_MESSAGES_PER_CONNECTION = "too_many_messages_per_connection"
    """The connection carried as many messages as the server allows."""
    RATE_LIMITED = "rate_limited"
    """Sending too fast: slow down and retry later."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """The sending quota (per period or per day) is spent."""
    CONTENT_REJECTED = "content_rejected"
    """The content was judged as spam or otherwise refused."""
    SENDER_NOT_ALLOWED = "sender_not_allowed"
    """The envelope sender or From: is not one the account may use."""
    IP_REPUTATION = "ip_reputation"
    """The sending IP is blocked or has a poor reputation."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ReplyExplanation:
    """What a provider's reply means and what to do about it.

    Attributes:
        reason: Why the provider refused.
        hint: One sentence, in English, of what to do.
        hint_zh: The same in Chinese, for the Chinese providers; else None.
        provider: The provider whose reply this is (``"NetEase"``, ``"Gmail"``...).
        doc_url: The provider's own documentation of the reply.
        retry_after: Seconds the provider documents before trying again, when it
            documents a wait (``451 DT:SPM``); None when it does not.
    """

    reason: ReplyReason
    hint: str
    hint_zh: str | None
    provider: str
    doc_url: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row of the table: which replies it matches and what they mean."""

    provider: str
    codes: frozenset[int]
    pattern: re.Pattern[str]  # searched in the reply text (enhanced code removed)
    reason: ReplyReason
    hint: str
    doc_url: str
    hint_zh: str | None = None
    enhanced: str | None = None  # "4.7.0": also required to match, when set
    retry_after: float | None = None

    def matches(self, reply: SMTPReply) -> bool:
        if reply.code not in self.codes:
            return False
        if self.enhanced is not None and str(reply.enhanced) != self.enhanced:
            return False
        return self.pattern.search(reply.text) is not None

    def explanation(self) -> ReplyExplanation:
        return ReplyExplanation(
            reason=self.reason,
            hint=self.hint,
            hint_zh=self.hint_zh,
            provider=self.provider,
            doc_url=self.doc_url,
            retry_after=self.retry_after,
        )


# Placeholder until each row cites the exact page of the provider's help centre.
_NETEASE_DOC: Final = "https://help.mail.163.com/"

# The table.  First match wins, so more specific rows come first.  Every row
# must cite the provider's documentation (docs/guide/providers.md lists them).
_RULES: Final[tuple[_Rule, ...]] = (
    _Rule(
        provider="NetEase",
        codes=frozenset({450, 451}),
        pattern=re.compile(r"\bMI:DMC\b"),
        reason=ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION,
        hint="too many messages on this connection: reconnect and carry on",
        hint_zh="当前连接发送的邮件数量超出限制，请重新连接后再发送",
        doc_url=_NETEASE_DOC,
    ),
    _Rule(
        provider="NetEase",
        codes=frozenset({421}),
        pattern=re.compile(r"\bHL:ICC\b"),
        reason=ReplyReason.TOO_MANY_CONNECTIONS,
        hint="too many concurrent connections from this IP: use fewer connections",
        hint_zh="该IP同时并发连接数过大，请减少并发连接数",
        doc_url=_NETEASE_DOC,
    ),
    _Rule(
        provider="NetEase",
        codes=frozenset({451}),
        pattern=re.compile(r"\bMI:SFQ\b"),
        reason=ReplyReason.QUOTA_EXCEEDED,
        hint="the sender's sending quota is used up: wait before sending again",
        hint_zh="发信人在15分钟内的发信数量超过限制，请稍后再试",
        doc_url=_NETEASE_DOC,
    ),
    _Rule(
        provider="NetEase",
        codes=frozenset({554}),
        pattern=re.compile(r"\bDT:SPM\b"),
        reason=ReplyReason.CONTENT_REJECTED,
        hint="the content was judged as spam: change the message before sending again",
        hint_zh="邮件内容被判定为垃圾邮件，请修改内容后再发送",
        doc_url=_NETEASE_DOC,
    ),
    # Postfix smtpd with anvil(8): smtpd_client_connection_count_limit.
    _Rule(
        provider="Postfix",
        codes=frozenset({421}),
        enhanced="4.7.0",
        pattern=re.compile(r"Error: too many connections from "),
        reason=ReplyReason.TOO_MANY_CONNECTIONS,
        hint="too many concurrent connections from this client: use fewer connections",
        doc_url="https://www.postfix.org/postconf.5.html#smtpd_client_connection_count_limit",
    ),
)


def explain(reply: SMTPReply) -> ReplyExplanation | None:
    """Explain *reply* if it is a known provider reply; None otherwise."""
    if reply.code < 400:
        return None
    for rule in _RULES:
        if rule.matches(reply):
            return rule.explanation()
    return None
