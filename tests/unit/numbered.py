"""Numbered messages for the AsyncMailer tests: message *n* goes to u<n>@example.com."""

from __future__ import annotations

from smtpkit import Message

__all__ = ["message"]


def message(n: int = 0) -> Message:
    """Message number *n*: subject ``m<n>``, to ``u<n>@example.com``."""
    return Message(
        sender="alice@example.com", to=[f"u{n}@example.com"], subject=f"m{n}", text="x"
    )
