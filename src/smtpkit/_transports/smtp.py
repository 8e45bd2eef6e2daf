"""`SMTPTransport`: pooled smtplib sessions, one SMTP transaction per ``send``.

smtplib, ssl and socket exceptions become smtpkit exceptions in one place,
``_errors.map_errors``, which wraps every network step here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Final, TypeVar

from typing_extensions import override

from .._config import SMTPConfig, TLSMode
from .._exceptions import (
    AuthenticationError,
    ClosedError,
    ConfigurationError,
    GreetingRefusedError,
    HeloRefusedError,
    NetworkError,
    NotSupportedError,
    ProtocolError,
    SMTPKitError,
    SMTPReplyError,
    TransportError,
)
from .._message import Envelope
from .._reply import parse_reply
from .._verify_report import VerifyReport
from ._adaptive import PoolAdapter, Refusals
from ._connection import SMTPConnection
from ._errors import Progress, map_errors
from ._hints import Endpoint, auth_refused_message, no_starttls_message
from ._login_guard import LoginGuard
from ._observer import SessionObserver, SessionTracker
from ._pool import ConnectionPool, Pooled, PoolStats
from ._sasl import login_refused, sasl_exchange
from ._session import (
    ConnectionLostError,
    Item,
    Reporter,
    TransactionRunner,
    dot_stuff,
)
from ._tls_context import build_tls_context
from ._verify import verify_session
from .base import OnResult, SendResult, Transport

__all__ = ["SMTPTransport", "dot_stuff"]

logger = logging.getLogger("smtpkit")

_CLOSE_WITHIN: Final = 5.0  # seconds for all the QUITs of a closing pool together
# Seconds QUIT waits for the server to close after its 221 (see wait_closed).
_SERVER_CLOSES_WITHIN: Final = 0.5


@functools.cache
def _local_fqdn() -> str:
    # smtplib asks the resolver for every connection; once per process is enough.
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn else "localhost.localdomain"


class SMTPTransport(Transport):
    """Send over SMTP with a pool of logged-in ``smtplib`` sessions.

    Thread-safe: each session belongs to one thread at a time (the pool lends it).
    Subclasses may override :meth:`create_connection`, :meth:`handshake` and
    :meth:`is_usable`, e.g. for LMTP or extra checks (a proxy needs no subclass:
    ``SMTPConfig.socket_factory``).

    Args:
        config: Server, TLS, credentials and pool limits.

    Raises:
        ConfigurationError: The TLS files in *config* cannot be loaded.
    """

    _sessions: SessionTracker | None = None

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self._endpoint = Endpoint(
            host=config.host,
            port=config.port,
            tls=config.tls,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
        )
        self._tls_context = (
            build_tls_context(config) if config.tls is not TLSMode.NONE else None
        )
        self._closed = False
        # The TLS session of the last connection set up, resumed by the next one
        # (one transport: one server, one context, so it is never offered to
        # another host).  Replaced by each new connection's own session.
        self._tls_session: ssl.SSLSession | None = None
        self._pool: ConnectionPool[SMTPConnection] = ConnectionPool(
            create=self._open_session,
            dispose=self._dispose,
            close_all=self._quit_all,
            is_usable=self.is_usable,
            is_alive=lambda conn: conn.is_alive(),  # a subclass may override it
            limits=config.pool,
        )
        self._adapter = PoolAdapter(self._pool, config.adapt)
        self._login_guard = LoginGuard(config.adapt)

    def __repr__(self) -> str:
        cfg = self.config
        return f"<{type(self).__name__} {cfg.host}:{cfg.port} tls={cfg.tls.value}>"

    @property
    def session_observer(self) -> SessionObserver | None:
        """Told when each session starts, is set up and ends (for telemetry).

        One observer at a time: setting another while one is set raises
        ``ConfigurationError`` (replacing it would leave the sessions it was
        told of without their end).  Set None first to change it; the sessions
        open then are not reported to either.
        """
        return None if self._sessions is None else self._sessions.observer

    @session_observer.setter
    def session_observer(self, observer: SessionObserver | None) -> None:
        current = self._sessions
        if observer is None:
            self._sessions = None
        elif current is None:
            self._sessions = SessionTracker(observer)
        elif current.observer is not observer:
            msg = (
                "this SMTPTransport already has a session observer (a second "
                "SMTPTelemetry.watch()?); set transport.session_observer = None "
                "first to replace it"
            )
            raise ConfigurationError(msg)

    # -- extension points -------------------------------------------------------

    def create_connection(self) -> SMTPConnection:
        """Connect and read the greeting (implicit TLS starts first).

        On port 465 without ``tls="implicit"`` and without ``connect_timeout``,
        the greeting is awaited for at most 3 seconds: such a server waits
        silently for a TLS handshake, and the error says to use implicit TLS.

        Raises:
            GreetingRefusedError: The greeting was not 220.
            ConnectError: The server cannot be resolved or reached.
            ConnectTimeoutError: Connecting or the greeting took too long.
            TLSError: The TLS handshake failed, or the TLS mode does not match
                the server (the message names the setting to change).
        """
        cfg = self.config
        endpoint = self._endpoint
        conn = SMTPConnection(
            timeout=cfg.timeout,
            local_hostname=cfg.local_hostname or _local_fqdn(),
            tls_context=self._tls_context if cfg.tls is TLSMode.IMPLICIT else None,
            tls_session=self._tls_session,
            socket_factory=cfg.socket_factory,
            source_address=cfg.source_address,
        )
        progress = Progress(
            endpoint=endpoint,
            conn=conn,
            tls_min_version=cfg.tls_min_version,
            client_cert=cfg.client_cert,
        )
        try:
            with map_errors(progress):
                greeting = conn.open(
                    cfg.host,
                    cfg.port,
                    endpoint.connect_wait,
                    greeting_wait=endpoint.greeting_wait(),
                )
        except BaseException:
            conn.close()
            raise
        if greeting.code != 220:
            conn.close()
            msg = f"{endpoint} refused the session in its greeting: {greeting}"
            raise GreetingRefusedError(greeting, command="connect", message=msg)
        return conn

    def handshake(self, conn: SMTPConnection) -> None:
        """EHLO (HELO fallback), STARTTLS and a fresh EHLO, then AUTH.

        Raises:
            NotSupportedError: STARTTLS is required but not offered, or no
                configured AUTH mechanism is offered.
            AuthenticationError: The server refused the credentials.
        """
        self._greet(conn)
        conn.lap("ehlo")
        if self.config.tls is TLSMode.STARTTLS:
            # No fallback to cleartext: nothing is sent without TLS.
            if not conn.has_extn("starttls"):
                msg = no_starttls_message(self._endpoint)
                raise NotSupportedError(msg, command="STARTTLS")
            assert self._tls_context is not None  # noqa: S101 - built for every TLS mode
            conn.start_tls(self._tls_context)
            conn.lap("starttls")
            self._greet(conn)  # RFC 3207 §4.2: forget everything learnt before TLS
            conn.lap("ehlo after tls")
        if self.config.wants_auth:
            self._login(conn)
            conn.lap("auth")

    def is_usable(self, conn: SMTPConnection) -> bool:
        """Check an idle connection with NOOP; False when it no longer answers."""
        try:
            conn.putcmd("NOOP")
            return conn.read_reply().code == 250
        except (OSError, smtplib.SMTPException, SMTPKitError):
            return False

    # -- session setup ----------------------------------------------------------

    def _greet(self, conn: SMTPConnection) -> None:
        code, text = conn.ehlo()
        if not 200 <= code < 300:
            code, text = conn.helo()
            if not 200 <= code < 300:
                raise HeloRefusedError(parse_reply(code, text), command="HELO")

    def _login(self, conn: SMTPConnection) -> None:
        if not conn.is_tls and not self.config.allow_insecure_auth:
            msg = "refusing to send credentials over a connection without TLS"
            raise NotSupportedError(msg, command="AUTH")
        if not conn.has_extn("auth"):
            msg = "server does not offer AUTH, but credentials are configured"
            raise NotSupportedError(msg, command="AUTH")
        offered = set(conn.esmtp_features["auth"].upper().split())
        # PLAIN outranks CRAM-MD5 only where TLS also proved who the server is:
        # an unverified TLS peer may be anyone, and CRAM-MD5 never shows it
        # the password.
        strategies = self.config.auth_strategies(over_tls=_server_verified(conn))
        chosen = next((s for s in strategies if s.mechanism in offered), None)
        if chosen is None:
            names = ", ".join(s.mechanism for s in strategies)
            listed = " ".join(sorted(offered)) or "no mechanism"
            msg = f"server offers AUTH with {listed}; configured: {names}"
            raise NotSupportedError(msg, command="AUTH")
        with self._login_guard.attempt():  # no login spiral (ProviderAdaptation)
            reply = sasl_exchange(conn, chosen)
            if reply.code == 535:
                login_refused(chosen)  # a token provider drops the refused token
                if chosen.retries_after_failure():
                    reply = sasl_exchange(conn, chosen)
                    if reply.code == 535:
                        login_refused(chosen)  # the next login fetches anew
            if reply.code != 235:
                raise AuthenticationError(
                    reply,
                    command="AUTH",
                    message=auth_refused_message(
                        reply, chosen.mechanism, self._endpoint
                    ),
                )
        conn.logged_in = True
        conn.auth_mechanism = chosen.mechanism
        logger.debug("authenticated with %s", chosen.mechanism)

    def _open_session(
        self, laps: list[tuple[str, float]] | None = None
    ) -> SMTPConnection:
        """Connect, greet, secure and log in: a session ready for transactions.

        *laps*, from ``verify()``, collects when each step ended.
        """
        progress = Progress(
            endpoint=self._endpoint,
            tls_min_version=self.config.tls_min_version,
            client_cert=self.config.client_cert,
        )
        if self.config.wants_auth:
            self._login_guard.check()  # refused for good: do not even connect
        sessions = self._sessions
        if sessions is None:
            return self._set_up(progress, laps)
        token = sessions.started(self._endpoint.host, self._endpoint.port)
        try:
            conn = self._set_up(progress, laps)
        except BaseException as exc:
            sessions.failed(token, exc)
            raise
        try:
            sessions.ready(token, conn)
        except BaseException:  # Ctrl-C from the observer: no socket outlives it
            self._dispose(conn, polite=False)
            raise
        return conn

    def _set_up(
        self, progress: Progress, laps: list[tuple[str, float]] | None
    ) -> SMTPConnection:
        with map_errors(progress):
            conn = self.create_connection()
            if laps is not None:
                conn.laps = laps
                if conn.connected_at is not None:  # None from a custom connection
                    laps.append(("connect", conn.connected_at))
                conn.lap("greeting" if laps else "connect")
            progress.command = "EHLO"
            try:
                self.handshake(conn)
            except BaseException as exc:
                progress.command = conn.last_command
                progress.tls_up = conn.is_tls
                # RFC 5321 §4.1.1.10: after a refusal (AUTH 535, HELO, a missing
                # extension) the session is intact and ends with QUIT, not a
                # dropped connection.
                polite = isinstance(exc, NotSupportedError) or (
                    isinstance(exc, SMTPReplyError) and exc.reply.code != 421
                )
                self._dispose(conn, polite=polite)
                raise
        conn.established = True
        self._keep_tls_session(conn)
        return conn

    def _keep_tls_session(self, conn: SMTPConnection) -> None:
        """Keep *conn*'s TLS session so the pool's next connection resumes it.

        Taken once the session is set up: a TLS 1.3 server sends its ticket
        after the handshake, and it has been read with the first reply since.
        Resuming saves the certificate exchange and its verification (RFC 8446
        §2.2); a server that declines simply runs a full handshake.
        """
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket) and sock.session is not None:
            self._tls_session = sock.session
            logger.debug("TLS session resumed: %s", sock.session_reused)

    def _dispose(self, conn: SMTPConnection, polite: bool) -> None:
        if polite:
            self._quit_all([conn])
        else:
            conn.close()
            if self._sessions is not None:
                self._sessions.closed(conn)

    def _quit_all(self, conns: list[SMTPConnection]) -> None:
        """QUIT every connection: all the commands first, then all the replies.

        Closing a pool of N sessions then costs one round trip, not N, and a hung
        server holds ``close()`` for one shared deadline (at most 5 seconds),
        not 5 seconds per session.  Then the server's close is awaited (at most
        0.5 s more; see ``SMTPConnection.wait_closed``).  Errors are ignored:
        the sessions end either way.
        """
        deadline = time.monotonic() + min(self.config.timeout, _CLOSE_WITHIN)
        try:
            asked = []
            for conn in conns:
                with contextlib.suppress(OSError, smtplib.SMTPException, SMTPKitError):
                    conn.reply_timeout = max(0.01, deadline - time.monotonic())
                    conn.log_command("QUIT", "")
                    conn.send_raw(b"QUIT\r\n", step="QUIT")
                    asked.append(conn)
            answered = []
            for conn in asked:
                with contextlib.suppress(OSError, smtplib.SMTPException, SMTPKitError):
                    conn.read_reply(deadline=deadline)
                    answered.append(conn)
            # Until the server has closed, it may still count the session: a
            # pool replacing a spent connection would be refused for it.
            closed_by = min(deadline, time.monotonic() + _SERVER_CLOSES_WITHIN)
            for conn in answered:
                with contextlib.suppress(OSError):
                    conn.wait_closed(closed_by)
        finally:  # even when interrupted: no socket outlives close()
            for conn in conns:
                conn.close()
            if self._sessions is not None:  # every socket is closed first
                self._sessions.closed(*conns)

    # -- sending ----------------------------------------------------------------

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        """Run one SMTP transaction on a pooled connection.

        A reused connection that turns out to be dead before anything of the
        message was sent is replaced once without counting as an attempt.

        Raises:
            TransportError: See the exception hierarchy; 4xx replies and network
                errors are ``is_transient``.
            ClosedError: The transport was closed.
        """
        [outcome] = self.send_batch([(envelope, data)])
        if isinstance(outcome, SMTPKitError):
            raise outcome
        return outcome

    @property
    @override
    def max_concurrency(self) -> int:
        """The pool's size: ``send_many`` keeps every connection busy.

        ``max_connections`` at first; after the server said "too many
        connections", the size learnt (see ``ProviderAdaptation``), so the next
        ``send_many`` starts no more threads than connections it can get.
        """
        return self._pool.size

    @override
    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | SMTPKitError]:
        """Send several messages, one attempt each, pipelined on pooled connections.

        With PIPELINING each message's data, its final dot and the next message's
        commands share one write, so a connection carries about one message per
        round trip.  Messages that a failing connection never started are moved to
        a fresh connection; they do not count as attempted.

        Raises:
            ClosedError: The transport was closed.
            PoolTimeoutError: No connection became free in time.
        """
        if self._closed:
            msg = "the transport is closed"
            raise ClosedError(msg)
        pending = [Item.prepare(envelope, data) for envelope, data in items]
        all_items = list(pending)
        report = Reporter(all_items, on_result)
        stale_retry_used = False
        refusals = Refusals()  # "too many connections" refusals absorbed
        while pending:
            try:
                pooled = self._pool.acquire()
            except (TransportError, ClosedError) as exc:
                if self._adapter.absorbs(exc, refusals):
                    continue  # the server allows fewer: wait for an open one
                # Could not connect (or log in), or close() came first: every
                # message still waiting shares the fate, each with its own copy
                # for retry bookkeeping.  Messages already sent keep their outcome.
                for item in pending:
                    item.outcome = _copy_error(exc)
                break
            reusable = False
            try:  # from here the session goes back to the pool exactly once
                allowance = self._pool.max_messages - pooled.messages
                if self.config.pool.per_connection_rate is not None:
                    allowance = 1  # spaced out one by one
                    self._pace(pooled)
                batch = pending[: max(1, allowance)]
                error, fresh_start, reusable = self._run(
                    pooled.conn, batch, reused=pooled.reused, report=report
                )
                requeued = self._adapter.requeue(pooled, batch)
                pooled.messages += len([i for i in batch if i.outcome is not None])
            finally:
                self._pool.release(pooled, reusable=reusable)
            self._adapter.delivered_in(batch, refusals)
            if error is not None and self._adapter.refused_midway(
                batch, error, refusals
            ):
                requeued = 1  # "too many connections" after the greeting
            if error is None or requeued:
                # Refused for "too many messages" or "connections": they go to
                # another connection (this one carried some, or others are open:
                # this always progresses).
                report.settled(batch)
                pending = [item for item in pending if item.outcome is None]
                continue
            if fresh_start and not stale_retry_used:
                # RFC 5321 §4.5.3.2: servers drop idle sessions (and a session
                # may hold a stray reply).  Nothing was answered on this one, so
                # nothing was attempted: once more on a new connection, free.
                logger.debug("session failed before any message started; reconnecting")
                stale_retry_used = True
                for item in batch:
                    item.outcome = None
                continue
            if all(item.outcome is None for item in batch):
                batch[0].outcome = _copy_error(error)  # always make progress
            # Messages the failing connection never started go to another one.
            pending = [item for item in pending if item.outcome is None]
        report.settled(all_items)
        return [item.outcome for item in all_items if item.outcome is not None]

    def _pace(self, pooled: Pooled[SMTPConnection]) -> None:
        """Wait until this connection may start another message (per_connection_rate)."""
        rate = self.config.pool.per_connection_rate
        assert rate is not None  # noqa: S101 - only called when set
        if pooled.messages:
            wait = pooled.last_used + 1.0 / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _run(
        self,
        conn: SMTPConnection,
        batch: list[Item],
        *,
        reused: bool,
        report: Reporter | None = None,
    ) -> tuple[TransportError | None, bool, bool]:
        """Run *batch* on one connection.

        Returns:
            The connection's error, if any; whether the connection failed before
            this batch got anywhere (nothing sent at all, or a *reused* session
            lost or 421 before its first reply), so trying again on a new one
            costs no attempt; and whether the session may be reused.
        """
        pipelined = self.config.pipelining and conn.has_extn("pipelining")
        runner = TransactionRunner(
            conn,
            pipelined=pipelined,
            chunked=self.config.chunking and conn.has_extn("chunking"),
            on_outcome=self._adapter.reported(report.settled_one) if report else None,
        )
        progress = Progress(command="MAIL")
        error: TransportError | None = None
        try:
            with map_errors(progress):
                try:
                    runner.run(batch)
                except ConnectionLostError as lost:
                    raise lost.error from None
                except BaseException:
                    progress.command = runner.command
                    raise
        except TransportError as exc:
            error = exc
            # The message whose reply failed was attempted, and so was any whose
            # data went out (the server may have it, RFC 1047).  Messages merely
            # pipelined behind them sent nothing of themselves: they move on.
            # A message already refused (MAIL or every RCPT) keeps that refusal,
            # unless the replies were found out of step: then none read can be
            # trusted to answer the command it was read for.
            awaited = runner.awaited()
            trusted = not isinstance(exc, ProtocolError)
            for item in runner.owed():
                if item.outcome is None:
                    refusal = runner.refused_so_far(item) if trusted else None
                    if refusal is not None:
                        item.outcome = refusal
                    elif item is awaited or item.data_sent:
                        item.outcome = _error_for(item, exc, own=item is awaited)
        # A BDAT chunk leaves before any reply is read: once one has left, the
        # server may hold the message, so a lost session is no free retry (a
        # 421 to the first MAIL still is: the server refused the transaction).
        data_left = any(item.data_sent for item in batch)
        fresh_start = (
            error is not None
            and runner.answered == 0
            and (not data_left or isinstance(error, SMTPReplyError))
            and (runner.awaited() is None or (reused and _is_stale(error)))
        )
        return error, fresh_start, error is None and runner.reusable

    # -- checking ---------------------------------------------------------------

    @override
    def verify(self) -> VerifyReport:
        """Open one session as a send would, QUIT it, and report what was seen.

        The session is the pool's own set-up (:meth:`create_connection`, then
        :meth:`handshake`) on a connection of its own: none is taken from the
        pool or given to it, and no MAIL is sent.

        Raises:
            ClosedError: The transport was closed.
            TransportError: As for a send's connection set-up: ``ConnectError``,
                ``TLSError``, ``AuthenticationError``, ``NotSupportedError``...
        """
        if self._closed:
            msg = "the transport is closed"
            raise ClosedError(msg)
        return verify_session(
            self._open_session,
            self._quit_all,
            host=self.config.host,
            port=self.config.port,
            starttls_used=self.config.tls is TLSMode.STARTTLS,
        )

    # -- lifecycle --------------------------------------------------------------

    def stats(self) -> PoolStats:
        """Return the connection pool's counters."""
        return self._pool.stats()

    @override
    def close(self) -> None:
        """QUIT every idle connection; busy ones close when their send ends."""
        self._closed = True
        self._pool.close()


def _is_stale(exc: TransportError) -> bool:
    """True when a reused connection died before the first reply of a batch."""
    if isinstance(exc, SMTPReplyError):
        return exc.reply.code == 421
    return isinstance(exc, NetworkError)


_E = TypeVar("_E", bound=SMTPKitError)


def _server_verified(conn: SMTPConnection) -> bool:
    """True when the session is TLS with the server's certificate and name checked."""
    context = getattr(conn.sock, "context", None)
    return (
        conn.is_tls
        and isinstance(context, ssl.SSLContext)
        and context.verify_mode == ssl.CERT_REQUIRED
        and context.check_hostname
    )


def _copy_error(exc: _E) -> _E:
    """A copy of *exc* for one message, so retry bookkeeping stays per message."""
    duplicate = copy.copy(exc)
    duplicate.__cause__ = exc.__cause__  # copy goes through __reduce__: no chain
    return duplicate


def _error_for(item: Item, exc: TransportError, *, own: bool) -> TransportError:
    """The connection's error as one message with a reply owed sees it.

    *own*: the failing reply was to one of this message's commands.  A refusal
    of another command (an RSET the write carried before this message's BDAT
    chunk) says nothing of this message, which the server went on to read.
    """
    duplicate = _copy_error(exc)
    if item.data_sent and not (own and isinstance(exc, SMTPReplyError)):
        # RFC 1047: the data went out but no usable reply came back (lost, timed
        # out, garbled, or the session ended at another command's reply): the
        # server may have queued the message.
        duplicate.delivery_unknown = True
        duplicate.command = "end of data"
    return duplicate
