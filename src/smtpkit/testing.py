"""Helpers for testing code that sends mail with smtpkit.

``FakeTransport`` records messages instead of sending them; the pytest plugin (loaded
automatically once smtpkit is installed) provides ``smtpkit_mailer`` and
``smtpkit_outbox`` fixtures built on it.
"""

from __future__ import annotations

from ._reply import SMTPReply
from ._retry import RetryPolicy
from ._transports.fake import (
    ConsoleTransport,
    FakeTransport,
    FileTransport,
    SentMessage,
)

__all__ = [
    "ConsoleTransport",
    "FakeTransport",
    "FileTransport",
    "SentMessage",
    "no_wait",
    "reply",
]


def reply(text: str) -> SMTPReply:
    """Build a reply from text: ``reply("451 4.3.0 try later")``."""
    return SMTPReply.from_string(text)


def no_wait(policy: RetryPolicy | None = None) -> RetryPolicy:
    """Return *policy* (default: the default policy) with every wait set to zero."""
    base = policy or RetryPolicy()
    return base.model_copy(
        update={"wait_initial": 0.0, "wait_max": 0.0, "wait_jitter": 0.0}
    )
