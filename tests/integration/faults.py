"""Fault-injecting aiosmtpd servers for the pool, retry, bulk and fork tests.

``FaultHandler`` extends ``RecordingHandler``: it logs every command per
server-side session (RSET, NOOP and QUIT included), tracks how many sessions are
open at once, and can stall, block or drop the connection at the end of data.
``FaultServer`` runs it behind an ``SMTP`` subclass that tells the handler when a
connection goes away, which aiosmtpd has no hook for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from .smtpd import RecordingHandler, Server, free_port

__all__ = [
    "FaultHandler",
    "FaultServer",
    "client_sockets",
    "fault_servers",
    "open_fds",
    "server_sockets",
    "wait_until",
]


@dataclass
class FaultHandler(RecordingHandler):
    """A ``RecordingHandler`` with a per-session command log and fault switches.

    Attributes:
        events: ``(session id, command)`` in the order the server saw them.
        open_sessions: Ids of sessions that said EHLO and are still connected.
        max_open: The most sessions open at the same time.
        data_delay: Seconds the end-of-data reply is held back (asyncio sleep).
        stall_next: End-of-data replies still to be held ``stall_for`` seconds.
        drop_next: End-of-data replies still to be replaced by closing the
            connection (the message is recorded first: the server "queued" it).
        block: When set, end of data waits until the event is set.
        blocked: Set once a data transaction is waiting on ``block``.
    """

    events: list[tuple[int, str]] = field(default_factory=list)
    open_sessions: set[int] = field(default_factory=set)
    max_open: int = 0
    data_delay: float = 0.0
    stall_next: int = 0
    stall_for: float = 0.0
    drop_next: int = 0
    block: threading.Event | None = None
    blocked: threading.Event = field(default_factory=threading.Event)

    def _log(self, session: Any, command: str) -> None:
        self.events.append((getattr(session, "smtpkit_id", 0), command))

    def commands_of(self, session_id: int) -> list[str]:
        """Return the commands one session sent, in order."""
        return [cmd for sid, cmd in self.events if sid == session_id]

    def session_closed(self, session: Any) -> None:
        """Called by ``FaultSMTP`` when a connection is gone."""
        self.open_sessions.discard(getattr(session, "smtpkit_id", 0))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        responses = await super().handle_EHLO(
            server, session, envelope, hostname, responses
        )
        self.open_sessions.add(session.smtpkit_id)
        self.max_open = max(self.max_open, len(self.open_sessions))
        self._log(session, "EHLO")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        reply = await super().handle_MAIL(
            server, session, envelope, address, mail_options
        )
        self._log(session, f"MAIL {reply[:3]}")
        return reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = await super().handle_RCPT(
            server, session, envelope, address, rcpt_options
        )
        self._log(session, f"RCPT {reply[:3]}")
        return reply

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self._log(session, "EOD")
        if self.block is not None:
            self.blocked.set()
            await asyncio.to_thread(self.block.wait, 30)
        if self.stall_next > 0:
            self.stall_next -= 1
            await asyncio.sleep(self.stall_for)
        elif self.data_delay:
            await asyncio.sleep(self.data_delay)
        reply = await super().handle_DATA(server, session, envelope)
        if self.drop_next > 0 and reply.startswith("2"):
            # The message is stored, but the client never hears about it.
            self.drop_next -= 1
            self._log(session, "DROP")
            server.transport.close()
        return reply

    async def handle_RSET(self, server, session, envelope):  # noqa: N802
        self._log(session, "RSET")
        return "250 OK"

    async def handle_NOOP(self, server, session, envelope, arg):  # noqa: N802
        self._log(session, "NOOP")
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802
        self._log(session, "QUIT")
        return "221 Bye"


class FaultSMTP(SMTP):
    """aiosmtpd's ``SMTP`` that reports closed connections to its handler."""

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        super().connection_lost(error)
        handler = self.event_handler
        if isinstance(handler, FaultHandler):
            handler.session_closed(session)


class _FaultController(Controller):
    def factory(self) -> SMTP:
        return FaultSMTP(self.handler, **self.SMTP_kwargs)


class FaultServer(Server):
    """A running aiosmtpd server with a ``FaultHandler`` on 127.0.0.1."""

    handler: FaultHandler

    def __init__(
        self, handler: FaultHandler | None = None, **controller_kwargs: Any
    ) -> None:
        self.handler = handler or FaultHandler()
        self.host = "127.0.0.1"
        self.port = free_port()
        kwargs = {"ready_timeout": 10.0, **controller_kwargs}
        self.controller = _FaultController(
            self.handler, hostname=self.host, port=self.port, **kwargs
        )
        self.controller.start()

    def session_of(self, index: int) -> int:
        """Return the server-side session id of accepted message *index*."""
        return self.handler.messages[index].session_id


StartFaultServer = Callable[..., FaultServer]


@contextlib.contextmanager
def fault_servers() -> Iterator[StartFaultServer]:
    """Yield a function that starts ``FaultServer``s; all stop on exit.

    Its keyword arguments go to aiosmtpd (e.g. ``timeout=0.3`` drops idle
    sessions); ``handler=`` passes a prepared ``FaultHandler``.
    """
    servers: list[FaultServer] = []

    def start(*, handler: FaultHandler | None = None, **kwargs: Any) -> FaultServer:
        server = FaultServer(handler, **kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            if server.handler.block is not None:
                server.handler.block.set()  # never leave a handler thread waiting
            server.stop()


def open_fds() -> int:
    """Count this process's open file descriptors."""
    return len(os.listdir("/proc/self/fd"))


def _inet_ends(port: int) -> Iterator[tuple[object, object]]:
    """Yield (local, peer) addresses of this process's connected TCP sockets."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # closed meanwhile
        with sock:
            try:
                yield sock.getsockname(), sock.getpeername()
            except OSError:
                continue  # listening or unconnected


def client_sockets(port: int) -> int:
    """Count this process's TCP sockets connected *to* 127.0.0.1:*port*."""
    return sum(peer == ("127.0.0.1", port) for _, peer in _inet_ends(port))


def server_sockets(port: int) -> int:
    """Count the connections a server on 127.0.0.1:*port* in this process holds."""
    return sum(local == ("127.0.0.1", port) for local, _ in _inet_ends(port))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll *predicate* until it is true or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
