"""`ProviderAdaptation`: which provider replies ``SMTPTransport`` adapts to.

A value only (a frozen pydantic model on ``SMTPConfig.adapt``); the transport's
``_transports/_adaptive.py`` does the adapting.  Every adaptation is on by
default and each can be switched off on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_PROVIDER_ADAPTATION", "ProviderAdaptation"]


class ProviderAdaptation(BaseModel):
    """How the SMTP transport and ``send_many`` react to well-known provider replies.

    The replies are recognised by :func:`smtpkit.explain_reply` (a table of provider
    replies, never a guess); unknown replies change nothing.

    Attributes:
        reconnect_on_message_limit: On "too many messages on this connection"
            (NetEase ``450 MI:DMC``), QUIT, reconnect and send the refused
            message again on the new connection without counting an attempt,
            and lower the pool's ``max_messages_per_connection`` to what the
            server allowed (never below 1).
        learn_connection_limit: On "too many connections" (NetEase ``421
            HL:ICC``, Postfix anvil ``421 4.7.0 ... too many connections``),
            shrink the pool's effective size to the number of connections the
            server did accept (never below 1); the messages
            waiting for the refused connection wait for an open one instead.
            The size grows back by one after every ``grow_after`` delivered
            messages, up to ``PoolLimits.max_connections``; each time growing
            back is refused, the next try waits for twice as many.
        grow_after: Messages delivered at the smaller size before the pool
            tries one more connection, and before a lowered messages per
            connection doubles again (up to ``max_messages_per_connection``;
            a refused try relearns the limit and waits twice as long).
        stop_on_quota: When a reply says the sending quota is spent (NetEase
            ``451 MI:SFQ``...), ``send_many`` sends nothing more and raises
            ``QuotaExceededError`` with every result.
        hold_auth_refusal: When the server refuses the credentials for good (a
            5xx to AUTH, or a reply :func:`smtpkit.explain_reply` reads as bad,
            locked or app-password-only credentials or SMTP switched off, even
            as a 4xx), the transport logs in no more for ``auth_refusal_pause``
            seconds: every send meanwhile fails at once with a copy of that
            refusal, without contacting the server, so a bulk send cannot lock
            the account by logging in again and again.  Until a login has
            succeeded, connections log in one at a time, so a wrong password
            costs one AUTH, not one per connection.  A successful login clears
            it.
        auth_refusal_pause: Seconds after a refused login before the transport
            tries to log in again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reconnect_on_message_limit: bool = True
    learn_connection_limit: bool = True
    grow_after: int = Field(default=200, ge=1)
    stop_on_quota: bool = True
    hold_auth_refusal: bool = True
    auth_refusal_pause: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            reconnect_on_message_limit: bool = True,
            learn_connection_limit: bool = True,
            grow_after: int = 200,
            stop_on_quota: bool = True,
            hold_auth_refusal: bool = True,
            auth_refusal_pause: float = 60.0,
        ) -> None:
            """Choose the adaptations; see the class docstring for each one."""

    @classmethod
    def off(cls) -> ProviderAdaptation:
        """Return an adaptation that adapts to nothing (every switch off)."""
        return cls(
            reconnect_on_message_limit=False,
            learn_connection_limit=False,
            stop_on_quota=False,
            hold_auth_refusal=False,
        )


DEFAULT_PROVIDER_ADAPTATION: Final = ProviderAdaptation()
