"""An aiosmtpd server that enforces provider limits with the providers' replies.

``Limits`` counts connections and messages across sessions: beyond
``max_connections`` a new connection is greeted with ``421 HL:ICC`` (NetEase)
and closed; beyond ``max_messages`` on one connection MAIL gets ``450 MI:DMC``;
after ``quota`` accepted messages MAIL gets ``451 MI:SFQ``.  With
``refuse_at_mail`` a connection beyond the limit is greeted with 220 and only
its MAIL gets the 421; with ``dmc_once_at`` only that one MAIL of a connection
is refused with ``450 MI:DMC`` and the ones after it are accepted again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP

from .smtpd import RecordingHandler, Server

__all__ = ["DMC", "ICC", "SFQ", "Limits", "limited_server"]

ICC = "421 HL:ICC 127.0.0.1 too many connections"
DMC = "450 MI:DMC 4.3.2 Connection closed, too many messages"
SFQ = "451 MI:SFQ 4.7.1 sending quota exceeded"


@dataclass
class Limits:
    """Limits a test sets, and what the server counted."""

    max_connections: int | None = None
    max_messages: int | None = None
    quota: int | None = None
    refuse_at_mail: bool = False
    dmc_once_at: int | None = None  # the MAIL (0-based, per connection) refused
    # Seconds between the 221 to QUIT and the close, the session counted all
    # along (Postfix's smtpd reports the disconnect to anvil, then closes).
    close_delay: float = 0.0
    active: int = 0
    peak: int = 0  # most sessions served at once
    sessions: int = 0  # connections served (greeted with 220)
    refused: int = 0  # connections greeted with 421 HL:ICC
    carried: list[int] = field(default_factory=list)  # messages per finished session
    accepted: int = 0
    mails: int = 0  # MAIL commands accepted
    mails_after_quota: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP, refusing connections and messages beyond the limits."""

    def __init__(self, handler: RecordingHandler, limits: Limits, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.served = False
        self.messages = 0
        self.over = False  # beyond max_connections, refused at MAIL
        self.mail_commands = 0

    async def _handle_client(self) -> None:
        limits = self.limits
        with limits.lock:
            over = (
                limits.max_connections is not None
                and limits.active >= limits.max_connections
            )
            if over:
                limits.refused += 1
            else:
                limits.active += 1
                limits.sessions += 1
                limits.peak = max(limits.peak, limits.active)
                self.served = True
        if over and limits.refuse_at_mail:
            self.over = True
        elif over:
            await self.push(ICC)
            self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        with self.limits.lock:
            if self.served:
                self.served = False
                self.limits.active -= 1
                self.limits.carried.append(self.messages)
        super().connection_lost(error)

    async def smtp_QUIT(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's naming
        if arg or not self.limits.close_delay:
            await super().smtp_QUIT(arg)
            return
        await self.push("221 Bye")
        # As Postfix: the session counts until the server's own close, even
        # when the client closes first (aiosmtpd would end it on that EOF).
        with self.limits.lock:
            self.served = False
            self.limits.carried.append(self.messages)
        self.loop.call_later(self.limits.close_delay, self._close_counted_session)

    def _close_counted_session(self) -> None:
        with self.limits.lock:
            self.limits.active -= 1
        if self.transport is not None:
            self.transport.close()

    async def smtp_MAIL(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's naming
        limits = self.limits
        if self.over:
            await self.push(ICC)
            self.transport.close()
            return
        index, self.mail_commands = self.mail_commands, self.mail_commands + 1
        with limits.lock:
            if index == limits.dmc_once_at:
                reply: str | None = DMC
            elif limits.quota is not None and limits.mails >= limits.quota:
                limits.mails_after_quota += 1
                reply = SFQ
            elif (
                limits.max_messages is not None and self.messages >= limits.max_messages
            ):
                reply = DMC
            else:
                reply = None
                limits.mails += 1  # the quota counts transactions begun
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_MAIL(arg)


class CountingHandler(RecordingHandler):
    """Counts each accepted message on its session and in the limits."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250") and isinstance(server, LimitedSMTP):
            server.messages += 1
            with server.limits.lock:
                server.limits.accepted += 1
        return reply


def limited_server(limits: Limits) -> Server:
    """A pipelining server on 127.0.0.1 that enforces *limits*."""
    server = Server(CountingHandler(pipelining=True))
    controller = server.controller

    def factory() -> SMTP:
        return LimitedSMTP(server.handler, limits, **controller.SMTP_kwargs)

    # aiosmtpd calls factory() once per accepted connection.
    controller.factory = factory  # type: ignore[method-assign]
    return server
