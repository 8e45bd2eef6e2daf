"""``SendEvent``: one message as the send hooks see it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._message import Envelope

__all__ = ["SendEvent"]


@dataclass(frozen=True, slots=True, eq=False)
class SendEvent:
    """One message, as every hook of its sending sees it.

    The same object is passed to each hook of one message, so a hook may keep
    per-message state in ``state`` (the OpenTelemetry hooks keep their span
    there).  Telemetry should use ``recipient_count`` and ``size``, never the
    addresses.

    Attributes:
        envelope: MAIL FROM and RCPT TO.
        message_id: The Message-ID header, if the message has one.
        size: The message's size in bytes, as first rendered (before the
            header lines ``before_send`` hooks add).
        state: Free for hooks, per message.
    """

    envelope: Envelope
    message_id: str | None
    size: int
    state: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def recipient_count(self) -> int:
        """How many recipients the envelope has."""
        return len(self.envelope.recipients)
