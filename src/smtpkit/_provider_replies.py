"""What well-known providers mean by their error replies, as data.

Providers answer with replies whose meaning is precise but undocumented by
SMTP itself: NetEase's ``450 MI:DMC`` (too many messages on this connection),
``421 HL:ICC`` (too many connections from this IP), Microsoft's ``535 5.7.139
... SmtpClientAuthentication is disabled for the Tenant`` (SMTP AUTH is off:
turn it on or use OAuth2).  This module is the one place that knows them: a
table of rows (``_provider_table``), each matched on the reply code, the enhanced
status and a text pattern, each giving a :class:`ReplyReason`, a hint of what
to do and the provider's own documentation.  Unknown replies get no
explanation: never a guess.

Pure and free of I/O, so exceptions and the transport can both depend on it.
"""

from __future__ import annotations

from ._provider_table import RULES as _RULES
from ._reply import SMTPReply
from ._reply_reasons import ReplyExplanation, ReplyReason

__all__ = ["ReplyExplanation", "ReplyReason", "explain_reply"]


def explain_reply(reply: SMTPReply) -> ReplyExplanation | None:
    """Explain *reply* if it is a known provider reply; None otherwise.

    Only replies that refuse (code 400 and above) are explained, and only those a
    row of the table matches: an unknown reply gets None, never a guess.

    Args:
        reply: A server reply, e.g. ``SMTPReply.from_string("421 HL:ICC ...")``
            or the ``reply`` of an ``SMTPReplyError``.

    Returns:
        Why the provider refused, what to do, and where the provider says so.
    """
    if reply.code < 400:
        return None
    for rule in _RULES:
        if rule.matches(reply):
            return rule.explanation()
    return None
