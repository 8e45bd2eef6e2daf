"""A scripted server offering CHUNKING (RFC 3030) and PIPELINING that counts round trips.

It answers lazily, like a real pipelining server: replies pile up while client
bytes are still waiting and go out in one write once the client has nothing more
to say.  Each such write is one round trip the client waited for, so
``ChunkSMTP.flushes`` counts them per connection; ``log`` keeps every command and
``chunks`` every BDAT payload exactly as received.  ``faults`` changes replies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .rawserver import RawConn

__all__ = ["ChunkSMTP", "Faults"]

#: How long the server waits for more client bytes before it answers.
SETTLE = 0.05


@dataclass
class Faults:
    """What the server does wrong, per command; each list is used up in order.

    Attributes:
        replies: Reply lines to send instead of the normal one, per verb
            (``"MAIL"``, ``"RCPT"``, ``"BDAT"``, ``"RSET"``).
        cut_after: Read this many bytes of the next chunk, then reset the link.
        silent_after_chunk: Read the whole next chunk, then hang up without a reply.
        double_bdat: Answer the next BDAT twice.
    """

    replies: dict[str, list[bytes]] = field(default_factory=dict)
    cut_after: int | None = None
    silent_after_chunk: bool = False
    double_bdat: bool = False


class ChunkSMTP:
    """The script: ``RawServer(ChunkSMTP(...))``.

    Args:
        extensions: EHLO keywords; CHUNKING and PIPELINING unless told otherwise.
        faults: Misbehaviour to play.
    """

    def __init__(
        self,
        *,
        extensions: tuple[str, ...] = ("PIPELINING", "CHUNKING", "8BITMIME"),
        faults: Faults | None = None,
    ) -> None:
        self.extensions = extensions
        self.faults = faults or Faults()
        self.log: list[str] = []
        self.chunks: list[bytes] = []
        self.data: list[bytes] = []  # DATA bodies, dot-stuffing undone
        self.flushes: list[int] = []  # per connection: reply writes after EHLO

    def __call__(self, conn: RawConn) -> None:
        self.flushes.append(0)
        index = len(self.flushes) - 1
        pending: list[bytes] = []

        def answer(reply: bytes) -> None:
            pending.append(reply)
            if not _more_coming(conn):
                # Counted before the reply leaves: a fast client reads the
                # count as soon as it has the reply.
                self.flushes[index] += 1
                conn.send(b"".join(pending))
                pending.clear()

        conn.send(b"220 chunk ESMTP\r\n")
        in_mail = has_rcpt = False
        while line := conn.readline():
            words = line.decode("utf-8").split()
            verb = words[0].upper() if words else ""
            self.log.append(line.decode("utf-8").rstrip("\r\n"))
            if verb == "EHLO":
                lines = ["chunk", *self.extensions]
                conn.send(
                    "".join(
                        f"250{'-' if i < len(lines) - 1 else ' '}{x}\r\n"
                        for i, x in enumerate(lines)
                    ).encode()
                )
                continue
            if verb == "QUIT":
                conn.send(b"221 bye\r\n")
                return
            override = self._override(verb)
            if verb == "MAIL":
                reply = override or b"250 2.1.0 ok\r\n"
                in_mail, has_rcpt = reply.startswith(b"2"), False
            elif verb == "RCPT":
                reply = override or (
                    b"250 2.1.5 ok\r\n" if in_mail else b"503 5.5.1 need MAIL\r\n"
                )
                has_rcpt = has_rcpt or reply.startswith(b"2")
            elif verb in ("RSET", "NOOP"):
                reply = override or b"250 2.0.0 ok\r\n"
                in_mail = has_rcpt = in_mail and verb == "NOOP"
            elif verb == "BDAT":
                if not self._chunk(conn, int(words[1])):
                    return
                default = (
                    f"250 2.0.0 queued as C{len(self.chunks)}\r\n".encode()
                    if has_rcpt
                    else b"554 5.5.1 no valid recipients\r\n"
                )
                reply = override or default
                in_mail = has_rcpt = False
                if self.faults.double_bdat:
                    self.faults.double_bdat = False
                    reply += reply
            elif verb == "DATA":
                self.flushes[index] += 1
                conn.send(b"".join(pending) + b"354 go\r\n")
                pending.clear()
                self.data.append(_read_dot_data(conn))
                reply, in_mail, has_rcpt = b"250 2.0.0 queued\r\n", False, False
            else:
                reply = b"500 5.5.2 what\r\n"
            if reply.startswith(b"421"):  # RFC 5321 §3.8: reply, then close
                conn.send(b"".join(pending) + reply)
                conn.hang_up()
                return
            answer(reply)

    def _override(self, verb: str) -> bytes | None:
        queue = self.faults.replies.get(verb)
        return queue.pop(0) if queue else None

    def _chunk(self, conn: RawConn, size: int) -> bool:
        """Read one chunk; False when the script ends the connection instead."""
        faults = self.faults
        if faults.cut_after is not None:
            conn.read_exact(faults.cut_after)
            conn.reset()
            return False
        chunk = conn.read_exact(size)
        if chunk is None:
            return False
        self.chunks.append(chunk)
        if faults.silent_after_chunk:
            conn.hang_up()
            return False
        return True


def _more_coming(conn: RawConn) -> bool:
    """True when the client sent more bytes, now or within ``SETTLE`` seconds."""
    if conn.has_buffered():
        return True
    time.sleep(SETTLE)
    return conn.has_buffered()


def _read_dot_data(conn: RawConn) -> bytes:
    lines = []
    while (line := conn.readline()) not in (b".\r\n", b""):
        lines.append(line[1:] if line.startswith(b".") else line)
    return b"".join(lines)
