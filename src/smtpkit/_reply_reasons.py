"""The vocabulary of explained replies: reasons, explanations, and table rows.

Kept apart from the table itself (``_provider_table``) so that the rows, the
lookup (``_provider_replies``) and the code acting on a reason share one
definition.  Pure and free of I/O.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ._reply import SMTPReply

__all__ = ["ReplyExplanation", "ReplyReason", "Rule"]


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
    """The connection carried as many messages (or recipients) as the server allows."""
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    """One message has more recipients than the server takes: split the envelope."""
    RATE_LIMITED = "rate_limited"
    """Sending too fast: slow down and retry later."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """The sending quota (per period or per day) is spent."""
    CONTENT_REJECTED = "content_rejected"
    """The content was judged as spam or otherwise refused."""
    SENDER_NOT_ALLOWED = "sender_not_allowed"
    """The envelope sender or From: is not one the account may use."""
    IP_REPUTATION = "ip_reputation"
    """The sending IP is blocked, listed or has a poor reputation."""

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
            documents a wait (``451 DT:SPM``: two minutes); None when it does not.
    """

    reason: ReplyReason
    hint: str
    hint_zh: str | None
    provider: str
    doc_url: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: which replies it matches and what they mean.

    ``example`` is the reply as the provider documents it and ``step`` the
    command it answers (``"connect"``, ``"AUTH"``, ``"MAIL"``, ``"RCPT"``,
    ``"DATA"``, ``"end of data"``): the table test replays each from a server.
    """

    provider: str
    codes: frozenset[int]
    pattern: re.Pattern[str]  # searched in the reply text (enhanced code removed)
    reason: ReplyReason
    hint: str
    doc_url: str
    example: str
    step: str
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
