"""One SMTP session on top of ``smtplib.SMTP``, with a reply reader that cannot hang.

smtplib reads replies with ``file.readline()``: a per-``recv`` timeout, one 8 KiB line
limit and no limit on the number of lines.  A server that trickles a byte a second, or
sends an endless multiline reply, holds the client forever.  ``SMTPConnection`` keeps
smtplib's command, EHLO and STARTTLS machinery and replaces only the reader: every
reply has a deadline and caps on line length, line count and total size.
"""

from __future__ import annotations

import logging
import math
import smtplib
import socket
import ssl
import time
from typing import Final

from typing_extensions import override

from .._exceptions import (
    ConnectTimeoutError,
    NotSupportedError,
    ProtocolError,
    ReadTimeoutError,
    ServerDisconnectedError,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
)
from .._redaction import SecretForms
from .._reply import SMTPReply, parse_reply, parse_reply_line
from .._socket_factory import SocketFactory
from ._connect import open_socket
from ._hints import is_tls_refusal, looks_like_tls
from ._readiness import ReadableCheck, unacked_bytes

__all__ = ["MAX_REPLY_BYTES", "MAX_REPLY_LINE", "MAX_REPLY_LINES", "SMTPConnection"]

logger = logging.getLogger("smtpkit")

MAX_REPLY_LINE: Final = (
    2048  # RFC 5321 §4.5.3.1.5 says 512; leave room for chatty servers
)
MAX_REPLY_LINES: Final = 128  # an EHLO lists a dozen or two extensions
MAX_REPLY_BYTES: Final = 64 * 1024
_RECV_SIZE: Final = 65536
_DRAIN_WATCH: Final = 64 * 1024  # writes this large may outlast a reply timeout
_PROGRESS_POLL: Final = 0.2  # seconds between looks at a draining send queue
_WRITE_CHUNK: Final = 256 * 1024  # bytes per send() on a plain socket
_TLS_PIECE: Final = 16 * 1024  # one TLS record (RFC 8446 §5.1)
_TIMEOUT_SLACK: Final = 0.01  # seconds a read may outlast its reply's deadline
_MIN_CONNECT_WAIT: Final = 0.001  # seconds: a socket timeout of 0 is non-blocking
_HAS_SENDMSG: Final = hasattr(socket.socket, "sendmsg")  # not on Windows
_MAX_GATHER: Final = 64  # pieces per sendmsg, well under any IOV_MAX
_SPACE: Final = ord(" ")
_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)  # Linux


class SMTPConnection(smtplib.SMTP):
    """An ``smtplib.SMTP`` whose replies are bounded in time and size.

    Args:
        timeout: Seconds allowed for each reply (a deadline, not a per-read timeout).
        tls_context: When given, TLS starts before the greeting (implicit TLS).
        local_hostname: Name for EHLO.
        tls_session: A TLS session of an earlier connection to the same server
            with the same context, to resume (implicit TLS or STARTTLS).
        socket_factory: Opens the TCP connection instead of
            ``socket.create_connection`` (``SMTPConfig.socket_factory``).
        source_address: Local (address, port) to connect from.
    """

    def __init__(
        self,
        *,
        timeout: float,
        local_hostname: str,
        tls_context: ssl.SSLContext | None = None,
        tls_session: ssl.SSLSession | None = None,
        socket_factory: SocketFactory | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self._socket_factory = socket_factory
        self._source_address = source_address
        self._rbuf = bytearray()
        self._readable = ReadableCheck()
        self.tls_session = tls_session
        self._deadline: float | None = None
        self._reply_deadline = 0.0
        self._unacked: int | None = None
        self.last_command = "connect"
        self._implicit_tls = tls_context
        self.reply_timeout = timeout
        self.written = 0  # bytes of the last send_raw that reached the kernel
        self.is_tls = False
        self.logged_in = False  # set by the transport after a successful AUTH
        # During AUTH: the credentials as sent, kept out of the logged replies.
        self.reply_forms: SecretForms | None = None
        # A MAIL got 250 here: the server takes transactions on this session, so
        # a BDAT chunk may follow MAIL and RCPT unanswered (see _session.py).
        self.mail_accepted = False
        # Set by the transport once the handshake (EHLO, STARTTLS, AUTH) is done.
        # Until then an alert about the client's certificate, the handshake or
        # the TLS version is the server refusing this client (under TLS 1.3 a
        # refused client certificate arrives on the first read after the
        # handshake), so it goes to map_errors as the ssl error it is.
        self.established = False
        # Where opening the connection got to: "tcp", "tls" (the implicit-TLS
        # handshake), "greeting", then "open".  Errors name the stage.
        self.connect_stage = "tcp"
        self._greeting_wait: float | None = None
        # Bytes read while waiting for the greeting: none at all is the silence
        # of an implicit-TLS server, some is a slow or stalled plaintext one.
        self.greeting_received = 0
        # Facts for verify()'s report, cheap enough to note for every session.
        self.greeting: SMTPReply | None = None
        self.connected_at: float | None = None  # TCP (and implicit TLS) done
        self.auth_mechanism: str | None = None  # set by the transport's AUTH
        self.laps: list[tuple[str, float]] | None = None  # only verify() sets it
        self.last_used = time.monotonic()
        super().__init__(
            local_hostname=local_hostname,
            timeout=timeout,
            source_address=source_address,
        )

    def _get_socket(  # overrides smtplib's private hook, absent from typeshed
        self, host: str, port: int, timeout: float
    ) -> socket.socket:
        self.connect_stage = "tcp"
        # open() set the deadline: the factory gets the time left of connect_timeout.
        deadline = self._deadline if self._deadline is not None else math.inf
        timeout = max(min(deadline - time.monotonic(), timeout), _MIN_CONNECT_WAIT)
        sock = open_socket(
            host,
            port,
            timeout,
            factory=self._socket_factory,
            source_address=self._source_address,
        )
        if self._implicit_tls is not None:
            self.connect_stage = "tls"
            try:
                sock = self._implicit_tls.wrap_socket(
                    sock, server_hostname=host, session=self.tls_session
                )
            except BaseException:
                sock.close()
                raise
            self.is_tls = True
        self.connected_at = time.monotonic()
        self.connect_stage = "greeting"
        if self._greeting_wait is not None and self._deadline is not None:
            self._deadline = min(self._deadline, time.monotonic() + self._greeting_wait)
        return sock

    def open(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        *,
        greeting_wait: float | None = None,
    ) -> SMTPReply:
        """Connect and return the greeting, all within *connect_timeout* seconds.

        Args:
            host: Server name or address.
            port: TCP port.
            connect_timeout: Seconds for the TCP connect, any implicit-TLS
                handshake and the greeting together.
            greeting_wait: Seconds to wait for the greeting once connected, when
                that should be shorter (an implicit-TLS port used without TLS).

        Raises:
            ConnectTimeoutError: No greeting in time.
            TLSError: TLS bytes came where the plaintext greeting was expected.
        """
        self.timeout = connect_timeout
        self._deadline = time.monotonic() + connect_timeout
        self._greeting_wait = greeting_wait
        # smtplib sets _host only in __init__, and starttls() checks the server's
        # certificate against it: without this, STARTTLS fails with ValueError.
        self._host = host
        try:
            code, text = self.connect(host, port)
        except ReadTimeoutError as exc:
            msg = f"no greeting within {connect_timeout} s"
            raise ConnectTimeoutError(msg) from exc
        finally:
            self._deadline = None
        self.connect_stage = "open"
        self.timeout = self.reply_timeout
        self.greeting = parse_reply(code, text)
        return self.greeting

    def lap(self, step: str) -> None:
        """Note when set-up *step* ended, into ``laps`` (one test per step otherwise)."""
        if self.laps is not None:
            self.laps.append((step, time.monotonic()))

    def start_tls(self, context: ssl.SSLContext) -> SMTPReply:
        """Run STARTTLS (RFC 3207) and forget everything learnt before it.

        smtplib's ``starttls`` wraps the socket without looking at what else the
        server sent, so the check below could only come after the handshake; this
        does the same few steps in the safe order.

        Raises:
            NotSupportedError: The server does not offer STARTTLS.
            SMTPReplyError: The server refused STARTTLS.
            ProtocolError: The server sent bytes after its 220, before the handshake.
        """
        if not self.has_extn("starttls"):
            msg = "server does not offer STARTTLS, which the configuration requires"
            raise NotSupportedError(msg, command="STARTTLS")
        self.putcmd("STARTTLS")
        reply = self.read_reply()
        if reply.code != 220:
            raise SMTPReplyError(reply, command="STARTTLS")
        if self.pending_bytes():
            # Anything after the 220 was not protected by TLS: a man in the middle
            # injected it to be read as a reply inside the session (CVE-2011-0411).
            self.close()
            msg = "server sent data after its STARTTLS reply, before the TLS handshake"
            raise ProtocolError(msg, command="STARTTLS")
        assert self.sock is not None  # noqa: S101 - read_reply just used it
        self.sock = context.wrap_socket(
            self.sock, server_hostname=self._host, session=self.tls_session
        )
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.is_tls = True
        return reply

    @override
    def putcmd(self, cmd: str, args: str = "") -> None:
        # RFC 2920 §3.1 and response-injection defence: nothing may be waiting
        # before a command goes out, or the next reply would be misattributed.
        self.check_quiet(cmd.upper())
        self.last_command = cmd.upper()
        shown = args if self.last_command != "AUTH" else args.split(" ", 1)[0] + " ***"
        self.log_command(cmd, shown)
        super().putcmd(cmd, args)

    def log_command(self, cmd: str, args: str) -> None:
        """Log a command at DEBUG (addresses only ever appear at this level)."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(">>> %s", f"{cmd} {args}".rstrip())

    def send_raw(self, payload: bytes | list[bytes], *, step: str = "command") -> None:
        """Send queued commands and data in one write (RFC 2920 PIPELINING).

        *payload* may come in pieces: a plain socket sends them with one system
        call without joining them (no copy of a large message to put commands
        after it); a TLS socket gets them joined.

        ``timeout`` bounds each stretch without progress, not the whole write: a
        server reading a large message slowly but steadily is not cut off.
        ``written`` tells how many bytes reached the kernel if the write fails,
        so the caller knows whether a message's final ``.`` left this client.

        Raises:
            ProtocolError: The server sent bytes nobody asked for, so the replies
                to these commands could be misattributed.
            ServerDisconnectedError: The connection failed during the write (a
                reset, a TLS close, a broken pipe).
            SMTPTimeoutError: The server took nothing for ``timeout`` seconds.
        """
        self.written = 0
        self.check_quiet(step)
        sock = self.sock
        if sock is None:
            msg = f"not connected when sending {step}"
            raise ServerDisconnectedError(msg, command=step)
        pieces: list[bytes] | None = None
        if isinstance(payload, bytes):
            data = payload
        elif (
            _HAS_SENDMSG
            and not isinstance(sock, ssl.SSLSocket)
            and 1 < len(payload) <= _MAX_GATHER
            and sum(map(len, payload)) <= _WRITE_CHUNK
        ):
            # Joined only if the socket takes a part.  Larger writes go in
            # _WRITE_CHUNK pieces: one huge sendmsg fills a send buffer that the
            # kernel reports writable again only after a third of it drained, so
            # a slow, steady reader would look like one that took no data.
            pieces, data = payload, b""
        else:
            data = b"".join(payload)
        total = len(data) if pieces is None else sum(map(len, pieces))
        idle = self.reply_timeout
        if sock.gettimeout() != idle:  # settimeout is a system call each time
            sock.settimeout(idle)
        # A socket's timeout bounds one send() call.  A plain send() returns
        # after any progress; an SSL one writes its whole piece or fails, so its
        # pieces are one TLS record (16 KiB): progress at any rate counts.
        piece = _TLS_PIECE if isinstance(sock, ssl.SSLSocket) else _WRITE_CHUNK
        try:
            if pieces is not None:
                self.written = sock.sendmsg(pieces)
                if self.written < total:  # the socket took a part: the rest below
                    data = b"".join(pieces)
            view = memoryview(data)
            while self.written < total:
                self.written += sock.send(view[self.written : self.written + piece])
        except TimeoutError:
            self.close()
            msg = (
                f"server took no data for {idle} s while sending {step} "
                f"({self.written} of {total} bytes written)"
            )
            raise SMTPTimeoutError(msg, command=step) from None
        except OSError as exc:  # ssl.SSLError included: a TLS close is a lost link
            self.close()
            msg = (
                f"connection lost while sending {step} "
                f"({self.written} of {total} bytes written): {exc}"
            )
            raise ServerDisconnectedError(msg, command=step) from exc

    def check_quiet(self, step: str) -> None:
        """Make sure the server has sent nothing unasked before *step* goes out.

        Lock-step replies are paired with commands by order alone, so a stray
        or duplicated reply waiting on the socket would be read as the answer
        to the next command.  It is caught here even when it arrived in a TCP
        segment of its own, after the last reply was read.

        Raises:
            ProtocolError: Unsolicited bytes are waiting.
            ServerDisconnectedError: The server has closed the connection.
        """
        closed = not self._rbuf and self._read_unsolicited() is None
        if closed and self.sock is not None:
            self.close()
            msg = f"server closed the connection before {step}"
            raise ServerDisconnectedError(msg, command=step)
        if self._rbuf:
            count = len(self._rbuf)
            self.close()
            msg = f"server sent {count} unexpected bytes before {step}"
            raise ProtocolError(msg, command=step)

    def _read_unsolicited(self) -> bytes | None:
        """Read, without blocking, whatever the server sent that nobody asked for.

        Returns the bytes (also kept in the buffer), ``b""`` when nothing is
        waiting, or None when the server closed the connection.
        """
        sock = self.sock
        if sock is None:
            return None
        if not self._readable(sock):
            return b""
        try:
            sock.settimeout(0.0)
            chunk = sock.recv(_RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return b""  # e.g. only a TLS 1.3 session ticket was waiting
        except OSError as exc:
            self._raise_setup_alert(exc)
            return None
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.reply_timeout)
        if not chunk:
            return None
        self._rbuf += chunk
        return chunk

    def send_secret(self, line: str) -> None:
        """Send one SASL response line; it is never logged."""
        logger.debug(">>> *** (SASL response)")
        self.send(line + "\r\n")

    def read_reply(self, *, deadline: float | None = None) -> SMTPReply:
        """Read one complete reply, bounded in time and size.

        Args:
            deadline: A ``time.monotonic()`` instant to finish by, instead of
                ``timeout`` seconds from now (several reads can share one).
        """
        saved, self._deadline = self._deadline, deadline or self._deadline
        try:
            code, text = self.getreply()
        finally:
            self._deadline = saved
        return parse_reply(code, text)

    def next_reply(self, *, debug: bool) -> SMTPReply:
        """Read one reply on the transaction runner's path, *debug* saying whether to log.

        The runner asks the logger once per batch, not per reply.  A complete
        one-line reply already buffered (pipelined replies arrive several to a
        recv) is taken straight from the buffer, with the checks of
        :meth:`getreply`: three digits, a space, the line within
        ``MAX_REPLY_LINE``.  The same few lines come back all session long
        ("250 2.1.5 Ok"), so each distinct line is parsed once.
        """
        buf = self._rbuf
        deadline = None
        if not buf:
            # The usual case after a write: wait for the first bytes here, so
            # that a reply arriving whole takes the short way below too.
            self._start_reply()
            while not buf:
                self._receive()
            # Kept if the long way follows; read after the wait, since upload
            # progress moves the deadline while a large write drains.
            deadline = self._reply_deadline
        end = buf.find(b"\n")
        if not (3 < end < MAX_REPLY_LINE and buf[3] == _SPACE and buf[:3].isdigit()):
            return self.read_reply(deadline=deadline)
        line = bytes(buf[: end + 1])
        del buf[: end + 1]
        if debug:
            text = line[4:].strip(b" \t\r\n").decode("utf-8", "replace")
            logger.debug("<<< %s %s", line[:3].decode("ascii"), text)
        self.last_used = time.monotonic()
        return parse_reply_line(line)

    @override
    def getreply(self) -> tuple[int, bytes]:
        buf = self._rbuf
        end = buf.find(b"\n")
        if 3 < end < MAX_REPLY_LINE and buf[3] == _SPACE and buf[:3].isdigit():
            # Fast path: a complete one-line reply is already buffered (pipelined
            # replies arrive several to a recv).  Same checks as below: a code of
            # three digits, then a space; the line within MAX_REPLY_LINE.
            code = int(buf[:3])
            text = bytes(buf[4:end]).strip(b" \t\r\n")
            del buf[: end + 1]
            return self._got_reply(code, text)
        self._start_reply()
        lines: list[bytes] = []
        total = 0
        code = -1
        while True:
            line = self._readline()
            total += len(line)
            if len(lines) >= MAX_REPLY_LINES or total > MAX_REPLY_BYTES:
                self.close()
                msg = f"reply longer than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes"
                raise ProtocolError(msg)
            head = line[:3]
            if (
                len(line) < 3
                or not head.isdigit()
                or line[3:4] not in (b" ", b"-", b"\r", b"\n")
            ):
                self.close()
                msg_0 = f"malformed reply line: {self._quoted(lines, line)}"
                raise ProtocolError(msg_0)
            if lines and int(head) != code:
                self.close()
                shown = self._quoted(lines, line)
                msg_0 = f"reply code changed within a multiline reply: {shown}"
                raise ProtocolError(msg_0)
            code = int(head)
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                break
        return self._got_reply(code, b"\n".join(lines))

    def _quoted(self, lines: list[bytes], line: bytes) -> str:
        """*line*, the start of it, as an error quotes it; during AUTH, redacted.

        The lines before it are searched too (see ``SecretForms.redact_lines``):
        a server quoting what it was sent may have split it across them.
        """
        forms = self.reply_forms
        if forms is None:
            return repr(line[:80])
        texts = [*lines, line[4:].strip(b" \t\r\n")]
        shown = forms.redact_lines(b"\n".join(texts).decode("utf-8", "replace"))
        last = shown.rsplit("\n", 1)[-1]
        return repr(f"{line[:4].decode('utf-8', 'replace')}{last}"[:80])

    def _got_reply(self, code: int, text: bytes) -> tuple[int, bytes]:
        """Log a complete reply and note when the connection was last used.

        During AUTH, :attr:`reply_forms` hides what the server may quote back.
        """
        if logger.isEnabledFor(logging.DEBUG):
            shown = text.decode("utf-8", "replace")
            if self.reply_forms is not None:
                shown = self.reply_forms.redact_lines(shown)
            logger.debug("<<< %s %s", code, shown)
        self.last_used = time.monotonic()
        return code, text

    def _readline(self) -> bytes:
        buf = self._rbuf
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                line = bytes(buf[: end + 1])
                del buf[: end + 1]
                if len(line) > MAX_REPLY_LINE:
                    self.close()
                    msg = f"reply line longer than {MAX_REPLY_LINE} bytes"
                    raise ProtocolError(msg)
                return line
            if len(buf) > MAX_REPLY_LINE:
                self.close()
                msg = f"reply line longer than {MAX_REPLY_LINE} bytes"
                raise ProtocolError(msg)
            start = len(buf)
            self._receive()

    def _start_reply(self) -> None:
        """Start the clock of a reply about to be read."""
        self._reply_deadline = self._deadline or (time.monotonic() + self.reply_timeout)
        # Only a large write can still be draining: no syscall per small reply.
        self._unacked = (
            unacked_bytes(self.sock) if self.written >= _DRAIN_WATCH else None
        )

    def _receive(self) -> None:
        """Wait for more of the reply, until its deadline, and add it to the buffer.

        Returns without data when a read timed out before the deadline (while
        a large write drains, reads wake up to watch its progress).
        """
        buf = self._rbuf
        if self._unacked:
            self._note_upload_progress()
        remaining = self._reply_deadline - time.monotonic()
        if remaining <= 0 or self.sock is None:
            self.close()
            msg = f"no complete reply within {self.reply_timeout} s"
            raise ReadTimeoutError(msg)
        # While our data still drains, wake up to watch it; else just wait.
        wanted = min(remaining, _PROGRESS_POLL) if self._unacked else remaining
        current = self.sock.gettimeout()
        # settimeout is a system call: keep a timeout that ends at most
        # _TIMEOUT_SLACK after the deadline (the caller then checks it).
        if current is None or not wanted <= current <= wanted + _TIMEOUT_SLACK:
            self.sock.settimeout(wanted)
        try:
            chunk = self.sock.recv(_RECV_SIZE)
            if _QUICKACK is not None:
                # ACK the next segment at once.  A server that sends its
                # pipelined replies in two writes (Postfix flushes MAIL's and
                # RCPT's before it reads a BDAT chunk longer than its buffer)
                # has the second held by Nagle until the first is ACKed, and a
                # client with nothing to send delays that ACK by 40 ms.
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except TimeoutError:
            return  # the deadline (or progress) is checked at the next call
        except OSError as exc:
            self._raise_setup_alert(exc)
            self.close()
            msg = f"connection lost: {exc}"
            raise ServerDisconnectedError(msg) from exc
        if not chunk:
            self.close()
            msg = "server closed the connection"
            raise ServerDisconnectedError(msg)
        buf += chunk
        if self.connect_stage != "greeting":
            return
        self.greeting_received += len(chunk)
        if looks_like_tls(buf):
            # A TLS record where "220 ..." belongs: the server expects the
            # client to speak TLS first.  Waiting for a line would time out.
            self.close()
            msg = "TLS bytes where the greeting was expected"
            raise TLSError(msg)

    def _raise_setup_alert(self, exc: OSError) -> None:
        """Close and re-raise *exc* if the server refuses this client's TLS session.

        Only before the session is set up, and only for the alerts that
        ``is_tls_refusal`` names.  A reset, an EOF or any other alert (say
        internal_error from a server under load) is left to the caller: it reads
        as a lost connection, which may be retried.
        """
        if not self.established and is_tls_refusal(exc):
            self.close()
            raise exc

    def _note_upload_progress(self) -> None:
        """Restart the reply deadline when the server took more of our data.

        While a large message drains from our send queue the server is still
        reading it: only silence, not slowness, may time the reply out.  The
        queue is watched every ``_PROGRESS_POLL`` seconds, so the deadline runs
        from (at most that long after) the last progress.
        """
        unacked = unacked_bytes(self.sock)
        if (
            unacked is not None
            and self._unacked is not None
            and unacked < self._unacked
        ):
            self._reply_deadline = max(
                self._reply_deadline, time.monotonic() + self.reply_timeout
            )
        self._unacked = unacked

    def is_alive(self) -> bool:
        """Check, without a round trip, that an idle session has not been closed.

        An idle SMTP session has nothing to read: readable means the server hung
        up (or sent an unsolicited 421 before doing so).  Uses ``poll``, so it
        works for any file descriptor number (``select`` fails above 1023).
        """
        if self.sock is None or self._rbuf:
            return False
        return self._read_unsolicited() == b""

    def pending_bytes(self) -> int:
        """How many received bytes no reply has consumed, including any waiting."""
        if not self._rbuf:
            self._read_unsolicited()
        return len(self._rbuf)

    def wait_closed(self, deadline: float) -> None:
        """After QUIT's reply: read until the server closes, or until *deadline*.

        A server may count a session until it has closed it: Postfix's smtpd
        reports the disconnect to anvil before it closes the socket, so a
        connection opened before that close may be refused "too many
        connections".  A server closes right after its 221 (RFC 5321
        §4.1.1.10), so this costs no round trip.  Raises ``OSError`` on a
        timeout or a broken connection, which ends the wait as well.
        """
        sock = self.sock
        while sock is not None and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(4096):
                return

    @override
    def close(self) -> None:
        self._rbuf.clear()
        super().close()
