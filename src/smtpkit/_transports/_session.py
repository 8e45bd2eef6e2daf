"""SMTP transactions on one connection, pipelined across messages when allowed.

With PIPELINING (RFC 2920) a message costs one round trip: its data, the final ``.``
and the next message's MAIL, RCPT and DATA go out in one write, and the replies come
back in order.  Without it every command waits for its reply (lockstep).  Both modes
run the same code: commands are queued with the function that will handle their
reply, and :meth:`TransactionRunner._drain` sends the queue and reads the replies;
lockstep simply drains after every command.

With CHUNKING (RFC 3030) as well, MAIL, every RCPT and ``BDAT <n> LAST`` followed by
the message go out in one write: no DATA, no 354 to wait for, so even a single
message costs one round trip.  BDAT data is counted, not dot-stuffed.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .._exceptions import (
    DataRefusedError,
    NotSupportedError,
    ProtocolError,
    RecipientsRefusedError,
    SenderRefusedError,
    SMTPKitError,
    SMTPReplyError,
    TransportError,
)
from .._message import Envelope
from .._mime import has_dot_line, normalize_line_endings
from .._reply import SMTPReply
from ._connection import SMTPConnection
from ._hints import mail_refusal
from .base import OnResult, RecipientResult, SendResult

__all__ = ["Item", "MailOptions", "Reporter", "TransactionRunner", "dot_stuff"]

logger = logging.getLogger("smtpkit")
_DOT_LINE_RE: Final = re.compile(rb"^\.", re.MULTILINE)


class MailOptions:
    """The MAIL FROM parameters a session's extensions call for, worked out per session.

    The EHLO keywords do not change within a session, so they are looked up
    once, not for every message.
    """

    def __init__(self, conn: SMTPConnection) -> None:
        features = conn.esmtp_features
        limit = features.get("size", "")
        # isdigit() alone passes "²" (EHLO is read as latin-1), which int() refuses.
        digits = limit.isascii() and limit.isdigit()
        self.limit = int(limit) if digits else 0  # 0: no limit stated
        self.size = "size" in features
        self.eightbit = "8bitmime" in features
        self.smtputf8 = "smtputf8" in features

    def __call__(self, data: bytes, *, utf8: bool) -> str:
        """Return the MAIL FROM parameters, or raise when the server cannot take it.

        Raises:
            NotSupportedError: Over the SIZE limit, 8-bit data without 8BITMIME,
                or non-ASCII addresses without SMTPUTF8.
        """
        size = len(data)
        if 0 < self.limit < size:
            msg = f"message is {size} bytes; the server accepts at most {self.limit}"
            raise NotSupportedError(msg, command="MAIL")
        options = f" SIZE={size}" if self.size else ""
        if not data.isascii():
            if not self.eightbit:
                msg = (
                    "message contains 8-bit data but the server does not offer 8BITMIME"
                )
                raise NotSupportedError(msg, command="MAIL")
            options += " BODY=8BITMIME"
        if utf8:
            if not self.smtputf8:
                msg = (
                    "non-ASCII addresses need SMTPUTF8, which the server does not offer"
                )
                raise NotSupportedError(msg, command="MAIL")
            options += " SMTPUTF8"
        return options


def dot_stuff(data: bytes) -> bytes:
    """Normalise line endings, double leading dots and append the ``.`` line.

    After this, no line of the message can be mistaken for the end of DATA
    (RFC 5321 §4.5.2).
    """
    return _stuff(normalize_line_endings(data))


def _stuff(data: bytes) -> bytes:
    """Dot-stuff CRLF-normalised *data* and append the ``.`` line."""
    if has_dot_line(data):
        data = _DOT_LINE_RE.sub(b"..", data)
    return data + b".\r\n"


@dataclass(eq=False)
class Item:
    """One message's transaction state on its way through a connection."""

    envelope: Envelope
    data: bytes  # CRLF line endings; its length is the SIZE= value (RFC 1870)
    utf8: bool  # envelope.needs_smtputf8, worked out once per message

    @classmethod
    def prepare(cls, envelope: Envelope, data: bytes) -> Item:
        """Normalise the line endings of *data* for the wire."""
        return cls(envelope, normalize_line_endings(data), envelope.needs_smtputf8)

    mail: SMTPReply | None = None
    rcpt: dict[str, SMTPReply] = field(default_factory=dict)
    data_reply: SMTPReply | None = None
    data_sent: bool = False
    outcome: SendResult | SMTPKitError | None = None

    @property
    def accepted(self) -> list[str]:
        """Recipients whose RCPT got 250 or 251."""
        return [r for r, reply in self.rcpt.items() if reply.code in _RCPT_OK]

    def is_refused(self) -> bool:
        """True when MAIL, or every RCPT, was refused (or not answered)."""
        mail = self.mail
        if mail is None or mail.code != 250:
            return True
        for reply in self.rcpt.values():  # noqa: SIM110 - no generator per message
            if reply.code in _RCPT_OK:
                return False
        return True

    def finish(self, final: SMTPReply) -> None:
        """Record the reply to the end of data."""
        if not 200 <= final.code < 300:
            self.outcome = DataRefusedError(final, command="end of data")
            return
        recipients = {
            r: RecipientResult(r, final if reply.code in _RCPT_OK else reply)
            for r, reply in self.rcpt.items()
        }
        self.outcome = SendResult(
            envelope=self.envelope, recipients=recipients, reply=final
        )


_RCPT_OK: Final = (250, 251)


class Reporter:
    """Passes each item's final outcome to ``send_batch``'s *on_result*, once."""

    def __init__(self, items: list[Item], on_result: OnResult | None) -> None:
        self._index = {id(item): i for i, item in enumerate(items)}
        self._on_result = on_result

    def settled_one(self, item: Item) -> None:
        """Report *item*, whose outcome is final, unless it was reported already."""
        index = self._index.pop(id(item), None)
        if self._on_result is not None and index is not None:
            assert item.outcome is not None  # noqa: S101 - only settled items come here
            self._on_result(index, item.outcome)

    def settled(self, items: list[Item]) -> None:
        """Report every item of *items* that has its outcome."""
        if not self._index:
            return  # every item was reported as it settled
        for item in items:
            if item.outcome is not None:
                self.settled_one(item)


class ConnectionLostError(Exception):
    """Internal: the session ended (network error or 421) with replies owed."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(error)
        self.error = error


# What the runner waits for: the command a reply answers, the item it belongs to
# (None for RSET and the empty message that ends an abandoned DATA), and the
# recipient of a RCPT.  A reply is handled by its command, in _drain.
_Expected = tuple[str, "Item | None", str]
_END_OF_DATA: Final = frozenset({"end of data", "BDAT"})
# Replies after which an outcome may have been settled (see _drain).
_SETTLING: Final = frozenset({"end of data", "BDAT", "RSET"})
# Commands whose 2xx replies are checked further: DATA wants 354, RSET 250.
_CHECKED: Final = frozenset({"DATA", "RSET"})


class TransactionRunner:
    """Run transactions for *items*, in order, on one open connection.

    Per-message refusals become each item's ``outcome``.  A failure of the
    connection itself propagates (as an smtplib/OS error for the transport to
    translate, or as a ``TransportError``); items left without an outcome were
    never attempted and may go to another connection.

    *on_outcome* hears of each item whose outcome is settled, in order, as the
    replies come in; only once a reply was read, because until then a failing
    connection sends every item to another one as if never tried.
    """

    def __init__(
        self,
        conn: SMTPConnection,
        *,
        pipelined: bool,
        chunked: bool = False,
        on_outcome: Callable[[Item], None] | None = None,
    ) -> None:
        self.conn = conn
        self.pipelined = pipelined
        # BDAT only together with PIPELINING: its whole point here is sending the
        # message without waiting for the MAIL and RCPT replies.
        self.chunked = chunked and pipelined
        self._on_outcome = on_outcome
        self._items: list[Item] = []
        self._reported = 0  # items passed to on_outcome, from the start
        self.reusable = True
        self.answered = 0  # replies handled so far
        self.command = "MAIL"  # the command whose reply is awaited, for errors
        self._out: list[bytes] = []  # queued for the next write
        # (index in _out, item) of the piece that ends each message's data
        self._data_ends: list[tuple[int, Item]] = []
        self._unsent = False  # the last write failed before a byte of it left
        self._expect: collections.deque[_Expected] = collections.deque()
        self._options = MailOptions(conn)
        self._debug = False  # log commands and replies (asked once per run)
        # The RCPT lines of the last envelope, kept while the same recipients
        # tuple comes back (send_many of one Envelope object): (recipients,
        # SMTPUTF8, lines).  A tuple is immutable, so its identity proves the lines.
        self._rcpt_lines: tuple[tuple[str, ...], bool, bytes] | None = None

    def owed(self) -> list[Item]:
        """Items with a reply still owed (their fate is decided by the failure)."""
        return [item for _, item, _ in self._expect if item is not None]

    def awaited(self) -> Item | None:
        """The item whose reply was being waited for when the connection failed.

        None when the failed write sent nothing: then no message was attempted.
        """
        if self._unsent or not self._expect:
            return None
        return self._expect[0][1]

    def run(self, items: list[Item]) -> None:
        """Send every item; stop early only if the connection fails."""
        self._items = items
        self._debug = logger.isEnabledFor(logging.DEBUG)
        for item in items:
            self._begin(item)
        self._drain()
        # Every earlier drain is followed by a write, which checks first that
        # nothing unasked is waiting (SMTPConnection.check_quiet); the last one
        # is checked here.
        if self.conn.pending_bytes():
            # More bytes than replies owed: an unsolicited or duplicated reply.
            # Whatever it belongs to, the replies can no longer be trusted.
            self.reusable = False
            msg = f"server sent {self.conn.pending_bytes()} bytes nobody asked for"
            raise ConnectionLostError(ProtocolError(msg, command=self.command))
        self.command = "MAIL"

    def _report(self) -> None:
        """Pass on the settled outcomes not passed on yet, in item order."""
        on_outcome = self._on_outcome
        if on_outcome is None:
            return
        items = self._items
        while self._reported < len(items) and items[self._reported].outcome is not None:
            self._reported += 1
            on_outcome(items[self._reported - 1])

    # -- queue --------------------------------------------------------------------

    def _send_data(self, data: bytes, item: Item) -> None:
        """Queue the last bytes of *item*'s data, so its ``data_sent`` can be told."""
        self._data_ends.append((len(self._out), item))
        self._out.append(data)

    def _command(self, item: Item | None, command: str, args: str = "") -> None:
        """Queue a command whose reply needs no argument to be handled."""
        text = f"{command} {args}\r\n" if args else f"{command}\r\n"
        if self._debug:
            self.conn.log_command(command, args)
        utf8 = item is not None and item.utf8
        self._out.append(text.encode("utf-8" if utf8 else "ascii"))
        self._expect.append((command, item, ""))

    def _rcpts(self, item: Item) -> None:
        """Queue a RCPT TO for each of *item*'s recipients, in one piece."""
        recipients = item.envelope.recipients
        cached = self._rcpt_lines
        if cached is not None and cached[0] is recipients and cached[1] is item.utf8:
            lines = cached[2]
        else:
            text = "".join(f"RCPT TO:<{rcpt}>\r\n" for rcpt in recipients)
            lines = text.encode("utf-8" if item.utf8 else "ascii")
            self._rcpt_lines = (recipients, item.utf8, lines)
        if self._debug:
            for rcpt in recipients:
                self.conn.log_command("RCPT", f"TO:<{rcpt}>")
        self._out.append(lines)
        self._expect.extend([("RCPT", item, rcpt) for rcpt in recipients])

    def _drain(self) -> None:
        """Send what is queued, then read and handle every reply owed."""
        if self._out:
            self._write()
        expect = self._expect
        read = self.conn.next_reply
        debug = self._debug
        while expect:
            command, item, rcpt = expect[0]
            self.command = command
            reply = read(debug=debug)
            code = reply.code
            # On failure the command stays owed: its message shares the error.
            if not 200 <= code < 300 or command in _CHECKED:
                self._check(command, reply)
            expect.popleft()
            if command == "RCPT":
                assert item is not None  # noqa: S101 - queued with its item
                item.rcpt[rcpt] = reply
            elif command == "MAIL":
                assert item is not None  # noqa: S101 - queued with its item
                item.mail = reply
            elif command == "DATA":
                assert item is not None  # noqa: S101 - queued with its item
                item.data_reply = reply
            elif command == "end of data":
                if item is not None:  # None: the empty message of an abort
                    item.finish(reply)
            elif command == "BDAT":
                assert item is not None  # noqa: S101 - queued with its item
                self._chunk_reply(item, reply)
            self.answered += 1
            # Outcomes are settled by these replies (an abort's or an
            # unsupported message's outcome comes before the RSET or the next
            # end of data): reporting after them reports everything, in order.
            if command in _SETTLING:
                self._report()
        self.command = "MAIL"

    def _check(self, command: str, reply: SMTPReply) -> None:
        """Raise unless *reply* is a possible answer to *command* on a live session."""
        code = reply.code
        if 400 <= code < 600:
            if code == 421:
                # RFC 5321 §3.8: the server is closing the session.
                self._lost_session(command, reply)
            if command == "RSET":
                self._rset_refused(reply)
        elif not (code == 354 if command == "DATA" else 200 <= code < 300):
            # A reply that cannot answer the command (RFC 5321 §4.3.2).
            self._out_of_step(command, reply)
        elif command == "RSET" and code != 250:
            self._rset_refused(reply)

    def _lost_session(self, command: str, reply: SMTPReply) -> None:
        self.reusable = False
        if command in _END_OF_DATA:
            error: SMTPReplyError = DataRefusedError(reply, command="end of data")
        else:
            error = SMTPReplyError(reply, command=command)
        raise ConnectionLostError(error)

    def _rset_refused(self, reply: SMTPReply) -> None:
        # The transaction state is unknown: a next MAIL could be refused as
        # nested (503).  The messages after it go to a new session.
        self.reusable = False
        raise ConnectionLostError(SMTPReplyError(reply, command="RSET"))

    def _out_of_step(self, command: str, reply: SMTPReply) -> None:
        self.reusable = False
        msg = f"reply {reply.code} makes no sense for {command}: out of step"
        raise ConnectionLostError(ProtocolError(msg, command=command))

    def _write(self) -> None:
        """Send everything queued in one write; note which messages' data left.

        A message counts as sent (``data_sent``, the outcome may be unknown after
        a failure, RFC 1047) only once its final ``.`` (or the last byte of its
        BDAT chunk) reached the kernel.  When the write fails earlier, the
        server cannot have the message: the failure is certain and the message
        may be retried.
        """
        out, ends = self._out, self._data_ends
        self._out, self._data_ends = [], []
        payload = out[0] if len(out) == 1 else out  # joined only where it must be
        data_step = "BDAT" if self.chunked else "DATA"
        step = data_step if ends else self._expect[0][0]
        self.command = step
        conn = self.conn
        try:
            conn.send_raw(payload, step=step)
        except BaseException:
            self.reusable = False
            self._unsent = conn.written == 0
            raise
        finally:
            if ends:
                written = conn.written
                end, start = 0, 0
                for index, item in ends:
                    end += sum(map(len, out[start : index + 1]))
                    start = index + 1
                    if end <= written:
                        item.data_sent = True

    # -- one transaction ------------------------------------------------------------

    def _begin(self, item: Item) -> None:
        try:
            options = self._options(item.data, utf8=item.utf8)
        except NotSupportedError as exc:
            item.outcome = exc  # nothing sent: the session stays usable
            return
        self._command(item, "MAIL", f"FROM:<{item.envelope.sender}>{options}")
        if self.chunked:
            self._begin_chunked(item)
            return
        if not self.pipelined:
            self._drain()
            if item.mail is None or item.mail.code != 250:
                self._abort(item)
                return
            for rcpt in item.envelope.recipients:
                self._out.append(
                    f"RCPT TO:<{rcpt}>\r\n".encode("utf-8" if item.utf8 else "ascii")
                )
                if self._debug:
                    self.conn.log_command("RCPT", f"TO:<{rcpt}>")
                self._expect.append(("RCPT", item, rcpt))
                self._drain()
            if not item.is_refused():
                self._command(item, "DATA")
        else:
            self._rcpts(item)
            self._command(item, "DATA")
        # The previous message's data and this group go out together here.
        self._drain()
        data_reply = item.data_reply
        if item.is_refused() or data_reply is None or data_reply.code != 354:
            self._abort(item)
            return
        self._expect.append(("end of data", item, ""))
        data = item.data
        if has_dot_line(data):
            data = _DOT_LINE_RE.sub(b"..", data)
        self._out.append(data)  # the message itself is never copied to add the dot
        self._send_data(b".\r\n", item)
        if not self.pipelined:
            self._drain()

    def _begin_chunked(self, item: Item) -> None:
        """Send RCPT and ``BDAT <n> LAST`` with the data, on a proven session at once.

        RFC 3030 §2: BDAT may be pipelined, and the server reads its *n* octets
        even when it refuses the chunk (no recipient, say), so MAIL, RCPT and the
        whole message go out before any reply is read: one round trip.  But a
        server may refuse MAIL before looking at it at all (Postfix's "530 Must
        issue a STARTTLS command first") and then it also refuses BDAT without
        reading the chunk: the message would be read as SMTP commands.  So the
        data goes out blind only once a MAIL was accepted on this session;
        until then the MAIL and RCPT replies come first (two round trips, as
        with DATA).
        """
        self._rcpts(item)
        if not self.conn.mail_accepted:
            self._drain()
            assert item.mail is not None  # noqa: S101 - _drain read it or raised
            if item.mail.code == 250:
                self.conn.mail_accepted = True
            if item.is_refused():
                self._abort(item)
                return
        size = len(item.data)
        if self._debug:
            self.conn.log_command("BDAT", f"{size} LAST")
        self._out.append(f"BDAT {size} LAST\r\n".encode("ascii"))
        self._send_data(item.data, item)
        self._expect.append(("BDAT", item, ""))
        self._drain()
        if not isinstance(item.outcome, SendResult):
            self._command(None, "RSET")  # RFC 3030 §2 ends it anyway

    def _chunk_reply(self, item: Item, final: SMTPReply) -> None:
        """Settle *item* by the reply to its ``BDAT LAST``, as it is read.

        Settled here, not after the drain: a later failure of the session (a
        stray reply, say) must not take an accepted message back.
        """
        item.data_reply = final
        if 200 <= final.code < 300 and not item.is_refused():
            item.finish(final)
        elif not 200 <= final.code < 300:
            item.outcome = self._refusal(item)
        else:
            # The server took a message this client counts as refused: the
            # replies are out of step and the message may well be queued.
            self.reusable = False
            msg = f"reply {final.code} to BDAT after MAIL or every RCPT was refused"
            error = ProtocolError(msg, command="BDAT")
            error.delivery_unknown = True
            item.outcome = error
            raise ConnectionLostError(error)

    def _refusal(self, item: Item) -> SMTPKitError:
        """Why *item* failed: its MAIL, all its RCPTs, or its DATA/BDAT was refused."""
        assert item.mail is not None  # noqa: S101 - every path reads MAIL's reply first
        if item.mail.code != 250:
            sender = item.envelope.sender
            return mail_refusal(
                item.mail,
                sender=sender,
                logged_in=self.conn.logged_in,
                is_tls=self.conn.is_tls,
            ) or SenderRefusedError(item.mail, sender=sender)
        if not item.accepted:
            return RecipientsRefusedError(item.rcpt)
        assert item.data_reply is not None  # noqa: S101 - DATA follows accepted RCPTs
        # A refused BDAT LAST is the end-of-data reply (RFC 3030 §2): users see
        # the same error whichever way the server took the message.
        command = "end of data" if self.chunked else "DATA"
        return DataRefusedError(item.data_reply, command=command)

    def refused_so_far(self, item: Item) -> SMTPKitError | None:
        """Why *item* failed, when the replies read so far already refuse it.

        A server may refuse MAIL (or every RCPT) and hang up at once (NetEase's
        ``450 MI:DMC ... Connection closed``): when pipelined, the session then
        fails while a later reply of *item* is awaited, but its fate was decided
        by the refusal, as :meth:`_abort` would record it.  None while its data
        may have left or the refusal is not complete.
        """
        if item.data_sent or item.mail is None:
            return None
        all_answered = set(item.envelope.recipients) <= item.rcpt.keys()
        if item.mail.code != 250 or (all_answered and not item.accepted):
            return self._refusal(item)
        return None

    def _abort(self, item: Item) -> None:
        """Record why *item* failed and reset the transaction."""
        item.outcome = self._refusal(item)
        if item.data_reply is not None and item.data_reply.code == 354:
            # RFC 2920 §3.1: DATA was accepted although no recipient was; end it
            # with an empty message, which the server must refuse.
            self._out.append(b".\r\n")
            self._expect.append(("end of data", None, ""))
        self._command(None, "RSET")  # a refusal is seen in _drain
        if not self.pipelined:
            self._drain()
