"""`FailoverTransport` and `RoundRobinTransport`: several servers behind one transport.

Each server keeps its own transport (an ``SMTPTransport`` keeps its own pool and
pipelines its batches).  A batch goes to one server; the messages that server
could not take because *it* failed (anything before MAIL FROM: connection, TLS,
greeting, EHLO, STARTTLS, AUTH; a 421; a lost session before the data) move on to
the next server, and the failed server is set aside for a cool-down.  A server
that fails after a message's data (``delivery_unknown``) is set aside too, but
that message never moves (another server would risk a duplicate), nor does one
refused at MAIL, RCPT or DATA (a 5xx, a 4xx other than 421).  A full pool
(``PoolTimeoutError``) moves the message without setting the server aside.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from typing_extensions import override

from .._config import SMTPConfig
from .._exceptions import (
    ClosedError,
    ConfigurationError,
    PoolTimeoutError,
    SMTPKitError,
    TransportError,
)
from .._message import Envelope
from .._verify_report import VerifyReport
from ._failover_config import DEFAULT_COOLDOWN, FailoverConfig
from ._failover_parts import (
    NOT_BACK,
    Outcome,
    Run,
    Server,
    ServerStats,
    checked,
    copy_error,
    moves_on,
    named,
    server_names,
    sets_aside,
)
from .base import OnResult, SendResult, Transport, contract_breach
from .smtp import SMTPTransport

__all__ = [
    "DEFAULT_COOLDOWN",
    "FailoverTransport",
    "RoundRobinTransport",
    "ServerStats",
]

logger = logging.getLogger("smtpkit")


class FailoverTransport(Transport):
    """Send through the first server that works; the others stand by.

    A batch goes to the preferred server (the first one, unless it is set aside
    after a failure).  When a server fails on its own (anything while setting up
    the session, before MAIL FROM; a 421; a network error or a timeout) it is set
    aside for *cooldown* seconds, and the messages it did not take move to the
    next server.  A message is never moved after its data was sent
    (``delivery_unknown``: the server is set aside all the same) nor after a 5xx
    or another 4xx to MAIL, RCPT or DATA: those outcomes are final for this
    attempt, as from a single server (the ``Mailer``'s retry policy then
    decides).  A server with no free connection (``PoolTimeoutError``) is busy,
    not broken: its messages move on, and the last server that works is waited
    for once more.  When every server fails, each message gets the last
    server's error.  Servers set aside are still tried, last, rather than
    failing a message no server was asked for.

    Each result names its server (``SendResult.server``), and so does each error
    (``TransportError.server``).  Thread-safe: each server's transport is (an
    ``SMTPTransport`` lends each connection to one thread at a time), and the
    shared counters are kept under a lock.

    Args:
        servers: Transports, or ``SMTPConfig`` values (each gets its own
            ``SMTPTransport``), in order of preference (any iterable, read once).
        cooldown: Seconds a failed server is set aside.
        names: One name per server, for results and stats; by default
            ``"host:port"`` for an SMTP server, the class name otherwise.
        clock: Monotonic clock for the cool-down, in seconds.

    Raises:
        ConfigurationError: No server, a negative cool-down, names that do
            not match the servers or repeat, or an ``SMTPConfig`` whose TLS
            files cannot be loaded.
    """

    def __init__(
        self,
        servers: Iterable[Transport | SMTPConfig],
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        names: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        given: list[object] = list(servers)  # read once: a generator is fine
        if not given:
            msg = f"{type(self).__name__} needs at least one server"
            raise ConfigurationError(msg)
        wait: object = cooldown
        if not (isinstance(wait, int | float) and 0 <= wait < math.inf):
            msg = f"cooldown must be a finite number of seconds >= 0, not {cooldown!r}"
            raise ConfigurationError(msg)
        for value in given:
            if not isinstance(value, Transport | SMTPConfig):
                msg = (
                    f"{type(self).__name__} takes transports or SMTPConfig values, "
                    f"not {type(value).__name__}"
                )
                raise TypeError(msg)
        listed = [v for v in given if isinstance(v, Transport | SMTPConfig)]
        labels = server_names(listed, names)
        transports: list[Transport] = []
        built: list[Transport] = []  # closed again if a later one cannot be built
        try:
            for server in listed:
                if isinstance(server, SMTPConfig):
                    transport: Transport = SMTPTransport(server)
                    built.append(transport)
                else:
                    transport = server
                transports.append(transport)
        except BaseException:
            for done in built:
                done.close()
            raise
        self._servers = [Server(n, t) for n, t in zip(labels, transports, strict=True)]
        self._cooldown = float(cooldown)
        self._clock = clock
        self._turn = itertools.count()  # where RoundRobinTransport starts a batch
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, config: FailoverConfig) -> FailoverTransport:
        """Build the transport *config* describes.

        Its ``strategy`` decides the class: a ``RoundRobinTransport`` for
        ``"roundrobin"``, a ``FailoverTransport`` for ``"failover"``.
        """
        kind = (
            RoundRobinTransport
            if config.strategy == "roundrobin"
            else FailoverTransport
        )
        return kind(config.servers, cooldown=config.cooldown)

    @classmethod
    def from_url(
        cls, url: str, *, cooldown: float = DEFAULT_COOLDOWN
    ) -> FailoverTransport:
        """Build one from ``failover(smtp://a smtp://b)`` or ``roundrobin(...)``.

        Raises:
            ConfigurationError: See ``FailoverConfig.from_url``.
        """
        return cls.from_config(FailoverConfig.from_url(url, cooldown=cooldown))

    def __repr__(self) -> str:
        names = " ".join(server.name for server in self._servers)
        return f"<{type(self).__name__} {names}>"

    @property
    def transports(self) -> tuple[Transport, ...]:
        """The servers' transports, in the order given."""
        return tuple(server.transport for server in self._servers)

    # -- choosing a server -------------------------------------------------------

    def _first(self) -> int:
        """Where this send starts in the list (always the first server here)."""
        return 0

    def _order(self) -> tuple[list[Server], int]:
        """The servers to try for one batch, and how many of them are available.

        Available servers come first, in turn; those set aside follow.
        """
        start = self._first()
        turn = self._servers[start:] + self._servers[:start]
        now = self._clock()
        with self._lock:
            back = {
                id(s): (s.down_until if s.down_until > now else -NOT_BACK) for s in turn
            }
        order = sorted(turn, key=lambda s: back[id(s)])  # stable: keeps the turn
        return order, sum(1 for s in turn if back[id(s)] == -NOT_BACK)

    @property
    @override
    def max_concurrency(self) -> int:
        """The preferred server's ``max_concurrency`` (it gets every batch)."""
        return self._order()[0][0].transport.max_concurrency

    # -- sending -----------------------------------------------------------------

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        """Send one message through the first server that takes it (one attempt).

        Raises:
            TransportError: The message's error (from the last server tried).
            ClosedError: The transport was closed.
        """
        [outcome] = self.send_batch([(envelope, data)])
        if isinstance(outcome, SMTPKitError):
            raise outcome
        return outcome

    @override
    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | SMTPKitError]:
        """Send a batch through one server, moving what it failed to the next.

        The server's own ``send_batch`` runs the batch (pipelined, on its pool);
        each message is reported once, with its final outcome.

        Raises:
            ClosedError: The transport was closed.
        """
        if self._closed:
            msg = "the transport is closed"
            raise ClosedError(msg)
        run = Run(items, on_result)
        pending = list(range(len(items)))
        order, available = self._order()
        for number, server in enumerate(order, 1):
            if not pending:
                break
            pending = self._send_on(server, run, pending)
            if number == available and pending:
                # The last server that works found its pool full: the servers set
                # aside left it their share, so what it could not take waits for
                # it once more rather than going to a server known to fail.
                pending = self._wait_again(server, run, pending)
        with self._lock:  # every server failed: the last one's error stands
            for index in pending:
                last = run.by[index]
                assert last is not None  # noqa: S101 - a server answered for it
                last.moved -= 1
                last.failed += 1
        for index in pending:
            run.settle(index)
        return run.results()

    def _wait_again(self, server: Server, run: Run, pending: list[int]) -> list[int]:
        """Send the *pending* items *server* was too busy for to it once more."""
        busy = [i for i in pending if isinstance(run.outcomes[i], PoolTimeoutError)]
        if not busy:
            return pending
        with self._lock:
            server.moved -= len(busy)  # they did not move after all
        logger.info(
            "server %s had no free connection; %d message(s) wait for it again",
            server.name,
            len(busy),
        )
        still = set(self._send_on(server, run, busy))
        return [i for i in pending if i in still or i not in busy]

    def _send_on(self, server: Server, run: Run, pending: list[int]) -> list[int]:
        """Send the *pending* items of *run* through *server*; return those that move on.

        A failure of the server's own (``sets_aside``) sets it aside, whether
        or not the message moves: a server that takes the data and never
        answers is no better than one that refuses the connection.
        """
        counts = {"delivered": 0, "failed": 0}
        down: list[Outcome] = []

        def arrived(position: int, outcome: Outcome) -> None:
            index = pending[position]
            if run.final[index]:
                return  # reported already (on_result, then the returned list)
            run.outcomes[index] = tagged = named(outcome, server.name)
            run.by[index] = server
            if sets_aside(tagged):
                down.append(tagged)
            if not moves_on(tagged):
                counts["delivered" if isinstance(tagged, SendResult) else "failed"] += 1
                run.settle(index)

        batch = [run.items[index] for index in pending]
        try:
            if server.takes_on_result:
                returned = server.transport.send_batch(batch, on_result=arrived)
            else:
                returned = server.transport.send_batch(batch)
        except SMTPKitError as exc:
            returned = [copy_error(exc) for _ in batch]
        except Exception as exc:  # a transport breaking the contract
            returned = [contract_breach(exc) for _ in batch]
        answer: object = returned  # a third party's transport may return anything
        if not isinstance(answer, list) or len(answer) != len(batch):
            problem = TypeError(
                f"{type(server.transport).__name__}.send_batch returned "
                f"{type(answer).__name__} for {len(batch)} message(s), "
                "not a list of one outcome per message"
            )
            returned = [contract_breach(problem) for _ in batch]
        final = run.final
        for position, outcome in enumerate(returned):
            if not final[pending[position]]:  # not reported through on_result
                arrived(position, checked(outcome))
        moving = [index for index in pending if not run.final[index]]
        with self._lock:
            server.delivered += counts["delivered"]
            server.failed += counts["failed"]
            server.moved += len(moving)
            if down:
                server.failures += 1
                server.down_until = self._clock() + self._cooldown
        if down:
            logger.warning(
                "server %s failed (%s); set aside for %.0f s, %d message(s) move on",
                server.name,
                type(down[0]).__name__,
                self._cooldown,
                len(moving),
            )
        return moving

    # -- checking and lifecycle ----------------------------------------------------

    @override
    def verify(self) -> VerifyReport:
        """Verify every server; return the first server's report.

        A standby server is checked too: it is only useful if it works.

        Raises:
            ClosedError: The transport was closed.
            TransportError: A server's error (``server`` names it).
        """
        if self._closed:
            msg = "the transport is closed"
            raise ClosedError(msg)
        reports = []
        for server in self._servers:
            try:
                reports.append(server.transport.verify())
            except TransportError as exc:
                exc.server = exc.server or server.name
                raise
        return reports[0]

    def stats(self) -> tuple[ServerStats, ...]:
        """Return each server's counters, in the order given."""
        now = self._clock()
        with self._lock:
            return tuple(
                ServerStats(
                    name=s.name,
                    delivered=s.delivered,
                    failed=s.failed,
                    moved=s.moved,
                    failures=s.failures,
                    available=s.down_until <= now,
                    cooldown_left=max(0.0, s.down_until - now),
                )
                for s in self._servers
            )

    @override
    def open(self) -> None:
        """Open every server's transport."""
        for server in self._servers:
            server.transport.open()

    @override
    def close(self) -> None:
        """Close every server's transport, even when one of them raises."""
        self._closed = True
        for server in self._servers:
            try:
                server.transport.close()
            except Exception:  # close() ignores errors, as every transport's does
                logger.warning("closing %s failed", server.name, exc_info=True)


class RoundRobinTransport(FailoverTransport):
    """Share the mail between servers: each send starts at the next server.

    Everything else is ``FailoverTransport``'s: a server that fails is set aside
    for the cool-down and its messages move on to the next one; results name
    their server.  ``send_many`` hands each server whole batches, so each one
    keeps pipelining on its own pool.

    Args:
        servers: As for ``FailoverTransport``.
        cooldown: As for ``FailoverTransport``.
        names: As for ``FailoverTransport``.
        clock: As for ``FailoverTransport``.
    """

    @override
    def _first(self) -> int:
        with self._lock:
            return next(self._turn) % len(self._servers)

    @property
    @override
    def max_concurrency(self) -> int:
        """The sum of the servers' ``max_concurrency``: every one is kept busy."""
        return sum(server.transport.max_concurrency for server in self._servers)
