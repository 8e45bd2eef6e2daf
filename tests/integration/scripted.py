"""An aiosmtpd ``SMTP`` that logs every command and can refuse the DATA command.

``RecordingHandler`` sees only what aiosmtpd hands to handler hooks: EHLO, MAIL,
RCPT and the end of data.  aiosmtpd has no hook between ``DATA`` and its 354, nor
for AUTH or STARTTLS, so :func:`wiretap` swaps in :class:`ScriptedSMTP` for the
next connections of a running :class:`~.smtpd.Server`:

* every command verb the server reads goes into the returned list (AUTH with
  its mechanism, e.g. ``"AUTH CRAM-MD5"``), in order;
* ``handler.queue("DATA", "451 4.3.2 busy")`` answers the DATA command itself
  with that reply instead of 354;
* implicit-TLS connections count as TLS in ``Received.tls`` (aiosmtpd itself
  marks only STARTTLS sessions).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, syntax

from .smtpd import RecordingHandler, Server

__all__ = ["ScriptedSMTP", "wiretap"]

Method = Callable[[str], Awaitable[None]]


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP plus a command log and a scriptable DATA reply."""

    def __init__(self, handler: RecordingHandler, log: list[str], **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.command_log = log
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._logged(verb, method)

    def _logged(self, verb: str, method: Method) -> Method:
        @functools.wraps(method)
        async def logged(arg: str) -> None:
            mechanism = (
                arg.split(maxsplit=1)[0].upper() if verb == "AUTH" and arg else ""
            )
            self.command_log.append(f"{verb} {mechanism}".rstrip())
            await method(arg)

        return logged

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if self.session is not None and ssl_object is not None and not self.session.ssl:
            # Implicit TLS: aiosmtpd records only STARTTLS sessions as TLS.
            self.session.ssl = {"ssl_object": ssl_object}

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's naming
        handler = self.event_handler
        if self.envelope is not None and self.envelope.rcpt_tos:
            reply = handler._scripted("DATA")
            if reply is not None:
                await self.push(reply)
                return
        await super().smtp_DATA(arg)


def wiretap(server: Server) -> list[str]:
    """Serve *server*'s next connections with :class:`ScriptedSMTP`; return its log."""
    log: list[str] = []
    controller = server.controller

    def factory() -> SMTP:
        return ScriptedSMTP(server.handler, log, **controller.SMTP_kwargs)

    # aiosmtpd calls factory() once per accepted connection.
    controller.factory = factory  # type: ignore[method-assign]
    return log
