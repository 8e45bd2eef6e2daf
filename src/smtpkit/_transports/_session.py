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
import functools
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
from .._mime import normalize_line_endings
from .._reply import SMTPReply
from ._connection import SMTPConnection
from ._hints import mail_refusal
from .base import OnResult, RecipientResult, SendResult

__all__ = ["Item", "Reporter", "TransactionRunner", "dot_stuff", "mail_options"]

ReplyHandler = Callable[[SMTPReply], None]
_DOT_LINE_RE: Final = re.compile(rb"^\.", re.MULTILINE)
_DOT_AFTER_LF_RE: Final = re.compile(rb"\n\.")


def mail_options(conn: SMTPConnection, envelope: Envelope, data: bytes) -> str:
    """Return the MAIL FROM parameters, or raise when the server cannot take it.

    Raises:
        NotSupportedError: Over the SIZE limit, 8-bit data without 8BITMIME, or
            non-ASCII addresses without SMTPUTF8.
    """
    options = []
    features = conn.esmtp_features
    limit = features.get("size", "")
    if limit.isdigit() and 0 < int(limit) < len(data):
        msg = f"message is {len(data)} bytes; the server accepts at most {limit}"
        raise NotSupportedError(msg, command="MAIL")
    if "size" in features:
        options.append(f" SIZE={len(data)}")
    if not data.isascii():
        if "8bitmime" not in features:
            msg = "message contains 8-bit data but the server does not offer 8BITMIME"
            raise NotSupportedError(msg, command="MAIL")
        options.append(" BODY=8BITMIME")
    if envelope.needs_smtputf8:
        if "smtputf8" not in features:
            msg = "non-ASCII addresses need SMTPUTF8, which the server does not offer"
            raise NotSupportedError(msg, command="MAIL")
        options.append(" SMTPUTF8")
    return "".join(options)


def dot_stuff(data: bytes) -> bytes:
    """Normalise line endings, double leading dots and append the ``.`` line.

    After this, no line of the message can be mistaken for the end of DATA
    (RFC 5321 §4.5.2).
    """
    return _stuff(normalize_line_endings(data))


def _stuff(data: bytes) -> bytes:
    """Dot-stuff CRLF-normalised *data* and append the ``.`` line."""
    # A regex search for a literal runs a fast scan, unlike ``b"\n." in data``.
    if data.startswith(b".") or _DOT_AFTER_LF_RE.search(data):
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

    @functools.cached_property
    def payload(self) -> bytes:
        """The data dot-stuffed for DATA, ending with the ``.`` line.

        Built only when DATA is used: BDAT sends ``data`` as it is.
        """
        return _stuff(self.data)

    mail: SMTPReply | None = None
    rcpt: dict[str, SMTPReply] = field(default_factory=dict)
    data_reply: SMTPReply | None = None
    data_sent: bool = False
    outcome: SendResult | SMTPKitError | None = None

    @property
    def accepted(self) -> list[str]:
        """Recipients whose RCPT got 250 or 251."""
        return [r for r, reply in self.rcpt.items() if reply.code in (250, 251)]

    def finish(self, final: SMTPReply) -> None:
        """Record the reply to the end of data."""
        if not 200 <= final.code < 300:
            self.outcome = DataRefusedError(final, command="end of data")
            return
        accepted = set(self.accepted)
        recipients = {
            r: RecipientResult(r, final if r in accepted else reply)
            for r, reply in self.rcpt.items()
        }
        self.outcome = SendResult(
            envelope=self.envelope, recipients=recipients, reply=final
        )


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
        for item in items:
            if item.outcome is not None:
                self.settled_one(item)


class ConnectionLostError(Exception):
    """Internal: the session ended (network error or 421) with replies owed."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(error)
        self.error = error


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
        self._out: list[tuple[bytes, Item | None]] = []  # (bytes, item whose data)
        self._unsent = False  # the last write failed before a byte of it left
        self._expect: collections.deque[tuple[str, Item | None, ReplyHandler]] = (
            collections.deque()
        )

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
        for item in items:
            self._begin(item)
        self._drain()

    def _report(self) -> None:
        """Pass on the settled outcomes not passed on yet, in item order."""
        items = self._items
        while (
            self._on_outcome is not None
            and self._reported < len(items)
            and items[self._reported].outcome is not None
        ):
            self._reported += 1
            self._on_outcome(items[self._reported - 1])

    # -- queue --------------------------------------------------------------------

    def _queue(
        self,
        command: str,
        line: bytes,
        item: Item | None,
        handler: ReplyHandler,
        *,
        data_of: Item | None = None,
    ) -> None:
        self._out.append((line, data_of))
        self._expect.append((command, item, handler))

    def _command(
        self, item: Item | None, command: str, args: str, handler: ReplyHandler
    ) -> None:
        text = f"{command} {args}\r\n" if args else f"{command}\r\n"
        utf8 = item is not None and item.utf8
        self.conn.log_command(command, args)
        self._queue(command, text.encode("utf-8" if utf8 else "ascii"), item, handler)

    def _drain(self) -> None:
        if self._out:
            self._write()
        while self._expect:
            command, _, handler = self._expect[0]
            self.command = command
            reply = self.conn.read_reply()
            # On failure the command stays owed: its message shares the error.
            if not _is_valid_reply(command, reply.code):
                self.reusable = False
                msg = f"reply {reply.code} makes no sense for {command}: out of step"
                raise ConnectionLostError(ProtocolError(msg, command=command))
            if reply.code == 421:
                # RFC 5321 §3.8: the server is closing the session.
                self.reusable = False
                if command in _END_OF_DATA:
                    error: SMTPReplyError = DataRefusedError(
                        reply, command="end of data"
                    )
                else:
                    error = SMTPReplyError(reply, command=command)
                raise ConnectionLostError(error)
            if command == "RSET" and reply.code != 250:
                # The transaction state is unknown: a next MAIL could be refused
                # as nested (503).  The messages after it go to a new session.
                self.reusable = False
                raise ConnectionLostError(SMTPReplyError(reply, command="RSET"))
            self._expect.popleft()
            handler(reply)
            self.answered += 1
            self._report()
        if self.conn.pending_bytes():
            # More bytes than replies owed: an unsolicited or duplicated reply.
            # Whatever it belongs to, the replies can no longer be trusted.
            self.reusable = False
            msg = f"server sent {self.conn.pending_bytes()} bytes nobody asked for"
            raise ConnectionLostError(ProtocolError(msg, command=command))
        self.command = "MAIL"

    def _write(self) -> None:
        """Send everything queued in one write; note which messages' data left.

        A message counts as sent (``data_sent``, the outcome may be unknown after
        a failure, RFC 1047) only once its final ``.`` (or the last byte of its
        BDAT chunk) reached the kernel.  When
        the write fails earlier, the server cannot have the message: the failure
        is certain and the message may be retried.
        """
        segments = list(self._out)
        self._out.clear()
        payload = b"".join(line for line, _ in segments)
        data_step = "BDAT" if self.chunked else "DATA"
        carries_data = any(data_of is not None for _, data_of in segments)
        step = data_step if carries_data else self._expect[0][0]
        self.command = step
        try:
            self.conn.send_raw(payload, step=step)
        except BaseException:
            self.reusable = False
            self._unsent = self.conn.written == 0
            raise
        finally:
            end = 0
            for line, data_of in segments:
                end += len(line)
                if data_of is not None and end <= self.conn.written:
                    data_of.data_sent = True

    # -- one transaction ------------------------------------------------------------

    def _begin(self, item: Item) -> None:
        try:
            options = mail_options(self.conn, item.envelope, item.data)
        except NotSupportedError as exc:
            item.outcome = exc  # nothing sent: the session stays usable
            return
        envelope = item.envelope
        self._command(
            item,
            "MAIL",
            f"FROM:<{envelope.sender}>{options}",
            functools.partial(setattr, item, "mail"),
        )
        if self.chunked:
            self._begin_chunked(item)
            return
        if not self.pipelined:
            self._drain()
            if item.mail is None or item.mail.code != 250:
                self._abort(item)
                return
        for rcpt in envelope.recipients:
            self._command(
                item,
                "RCPT",
                f"TO:<{rcpt}>",
                functools.partial(item.rcpt.__setitem__, rcpt),
            )
            if not self.pipelined:
                self._drain()
        if self.pipelined or item.accepted:
            self._command(
                item, "DATA", "", functools.partial(setattr, item, "data_reply")
            )
        # The previous message's data and this group go out together here.
        self._drain()
        refused = item.mail is None or item.mail.code != 250 or not item.accepted
        if refused or item.data_reply is None or item.data_reply.code != 354:
            self._abort(item)
            return
        self._queue("end of data", item.payload, item, item.finish, data_of=item)
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
        for rcpt in item.envelope.recipients:
            self._command(
                item,
                "RCPT",
                f"TO:<{rcpt}>",
                functools.partial(item.rcpt.__setitem__, rcpt),
            )
        if not self.conn.mail_accepted:
            self._drain()
            assert item.mail is not None  # noqa: S101 - _drain read it or raised
            if item.mail.code == 250:
                self.conn.mail_accepted = True
            if item.mail.code != 250 or not item.accepted:
                self._abort(item)
                return
        size = len(item.data)
        self.conn.log_command("BDAT", f"{size} LAST")
        self._out.append((f"BDAT {size} LAST\r\n".encode("ascii"), None))
        self._queue(
            "BDAT",
            item.data,
            item,
            functools.partial(self._chunk_reply, item),
            data_of=item,
        )
        self._drain()
        if not isinstance(item.outcome, SendResult):
            self._command(None, "RSET", "", _ignore)  # RFC 3030 §2 ends it anyway

    def _chunk_reply(self, item: Item, final: SMTPReply) -> None:
        """Settle *item* by the reply to its ``BDAT LAST``, as it is read.

        Settled here, not after the drain: a later failure of the session (a
        stray reply, say) must not take an accepted message back.
        """
        item.data_reply = final
        accepted = item.mail is not None and item.mail.code == 250 and item.accepted
        if accepted and 200 <= final.code < 300:
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
            self._queue("end of data", b".\r\n", None, _ignore)
        self._command(None, "RSET", "", _ignore)  # a refusal is seen in _drain
        if not self.pipelined:
            self._drain()


_END_OF_DATA: Final = frozenset({"end of data", "BDAT"})


def _is_valid_reply(command: str, code: int) -> bool:
    """True when *code* is a possible reply to *command* (RFC 5321 §4.3.2)."""
    if code in (421,) or 400 <= code < 600:
        return True
    return code == 354 if command == "DATA" else 200 <= code < 300


def _ignore(reply: SMTPReply) -> None:
    """Discard a reply whose content changes nothing."""
