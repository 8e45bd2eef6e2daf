"""A scripted SMTP server for fault tests: correct SMTP except where a test says.

``Script`` is a ``RawServer`` script that keeps real transaction state (a refused
MAIL opens no transaction, DATA needs an accepted RCPT, a refused RSET leaves the
transaction open) and lets a test choose the data phase of each session and
replies to single commands.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable

from smtpkit import Message, RetryDetails, RetryPolicy, SMTPConfig

from .rawserver import RawConn, RawServer

__all__ = [
    "NEVER",
    "TWICE",
    "DataHandler",
    "Script",
    "accept",
    "config",
    "message",
    "retries_seen",
]

NEVER = RetryPolicy.never()
TWICE = RetryPolicy(attempts=2, wait_initial=0.01, wait_jitter=0)

DataHandler = Callable[[RawConn, int], bool]
"""Reads one message's data after the 354 and replies; False ends the session."""


def accept(conn: RawConn, number: int) -> bool:
    data = conn.read_data()
    if data is None:
        return False
    conn.received.append(data)  # type: ignore[attr-defined]
    conn.send(f"250 2.0.0 queued as Q{number}\r\n".encode())
    return True


class Script:
    """A correct SMTP server whose data phase (and a few replies) a test chooses.

    Attributes:
        received: Complete messages, from every connection, in order.
        sessions: How many connections were served.
    """

    def __init__(
        self,
        *,
        pipelining: bool = True,
        data: list[DataHandler] | None = None,
        replies: dict[str, list[bytes]] | None = None,
        tls: ssl.SSLContext | None = None,
        after_reply: dict[str, Callable[[RawConn], None]] | None = None,
        stall: Callable[[int, str], bool] | None = None,
    ) -> None:
        self.pipelining = pipelining
        self.data = data or []  # one handler per session, then `accept`
        self.replies = replies or {}
        self.tls = tls
        self.after_reply = after_reply or {}
        # stall(session, verb) -> True: never answer that command in that session.
        self.stall = stall or (lambda session, verb: False)
        self.received: list[bytes] = []
        self.sessions = 0
        self.lock = threading.Lock()

    def reply(self, conn: RawConn, verb: str, default: bytes) -> bool:
        """Send the scripted reply or *default*; True when it was a 2xx."""
        queue = self.replies.get(verb)
        reply = queue.pop(0) if queue else default
        conn.send(reply)
        hook = self.after_reply.get(verb)
        if hook is not None:
            hook(conn)
        return reply.startswith(b"2")

    def __call__(self, conn: RawConn) -> None:
        with self.lock:
            session = self.sessions
            self.sessions += 1
        conn.received = self.received  # type: ignore[attr-defined]
        handle = self.data[session] if session < len(self.data) else accept
        if self.tls is not None:
            conn.start_tls(self.tls)
        if self.stall(session, "connect"):
            conn.wait_closed()
            return
        conn.send(b"220 edge ESMTP\r\n")
        in_mail = has_rcpt = False
        while line := conn.readline():
            verb = line[:4].decode("ascii", "replace").upper()
            if self.stall(session, verb):
                conn.wait_closed()
                return
            if verb == "EHLO":
                conn.send(
                    b"250-edge\r\n250 PIPELINING\r\n"
                    if self.pipelining
                    else b"250 edge\r\n"
                )
            elif verb == "MAIL":
                if in_mail:
                    conn.send(b"503 5.5.1 nested MAIL command\r\n")
                    continue
                in_mail = self.reply(conn, "MAIL", b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                if not in_mail:
                    conn.send(b"503 5.5.1 need MAIL\r\n")
                    continue
                has_rcpt |= self.reply(conn, "RCPT", b"250 2.1.5 ok\r\n")
            elif verb == "DATA":
                if not has_rcpt:
                    conn.send(b"503 5.5.1 need RCPT\r\n")
                    continue
                conn.send(b"354 go ahead\r\n")
                in_mail = has_rcpt = False
                if not handle(conn, len(self.received) + 1):
                    return
            elif verb == "RSET":
                queue = self.replies.get("RSET")
                if queue:  # a refused RSET leaves the transaction open
                    conn.send(queue.pop(0))
                else:
                    in_mail = has_rcpt = False
                    conn.send(b"250 2.0.0 ok\r\n")
            elif verb == "NOOP":
                conn.send(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                conn.send(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.send(b"500 5.5.2 what\r\n")


def config(server: RawServer, **fields: object) -> SMTPConfig:
    fields.setdefault("tls", "none")
    fields.setdefault("timeout", 3.0)
    return SMTPConfig(host=server.host, port=server.port, **fields)


def message(n: int = 0, *, size: int = 0) -> Message:
    body = f"body {n}\n" + ("x" * 76 + "\n") * (size // 77)
    return Message(sender="a@example.com", to=f"u{n}@example.com", text=body)


def retries_seen() -> tuple[list[BaseException], Callable[[RetryDetails], None]]:
    errors: list[BaseException] = []
    return errors, lambda details: errors.append(details.error)
