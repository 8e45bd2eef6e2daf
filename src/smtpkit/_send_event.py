"""``SendEvent``: one message as the send hooks see it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Final

from ._message import Envelope

__all__ = ["SendEvent", "claim_outcome"]


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
        size: The message's size in bytes, as first rendered: before the
            header lines ``before_send`` hooks add and before a ``signer=``
            signs it (the bytes sent are larger by both).
        state: Free for hooks, per message.
    """

    envelope: Envelope
    message_id: str | None
    size: int
    state: dict[str, object] = field(default_factory=dict, repr=False)
    # Set by the first outcome reported (see claim_outcome): exactly one of
    # after_send and on_failure runs per message, whichever thread reports it.
    _claimed: bool = field(default=False, init=False, repr=False)

    @property
    def recipient_count(self) -> int:
        """How many recipients the envelope has."""
        return len(self.envelope.recipients)


_CLAIMS: Final = threading.Lock()  # held for a flag's test-and-set only


def claim_outcome(event: SendEvent) -> bool:
    """Whether this is the first outcome reported for *event* (then it is claimed)."""
    with _CLAIMS:
        if event._claimed:
            return False
        object.__setattr__(event, "_claimed", True)  # frozen to the hooks only
        return True
