"""`FailoverTransport` and `RoundRobinTransport`: several servers behind one transport.

Each server keeps its own transport (an ``SMTPTransport`` keeps its own pool and
pipelines its batches).  A batch goes to one server; the messages that server
could not take because *it* failed (no connection, TLS, greeting, a 421, a lost
session before the data) move on to the next server, and the failed server is set
aside for a cool-down.  A message whose data reached a server
(``delivery_unknown``) or that a server refused for itself (a 5xx, a 4xx other
than 421) never moves: another server would risk a duplicate or repeat a refusal.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from typing_extensions import override

from .._config import SMTPConfig
from .._exceptions import (
    ClosedError,
    ConfigurationError,
    GreetingRefusedError,
    NetworkError,
    SMTPKitError,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)
from .._message import Envelope
from .._verify_report import VerifyReport
from ._failover_config import DEFAULT_COOLDOWN, FailoverConfig
from .base import OnResult, SendResult, Transport, contract_breach
from .smtp import SMTPTransport

__all__ = [
    "DEFAULT_COOLDOWN",
    "FailoverTransport",
    "RoundRobinTransport",
    "ServerStats",
    "moves_on",
]

logger = logging.getLogger("smtpkit")

Outcome = SendResult | SMTPKitError
_NOT_BACK: Final = math.inf


def moves_on(outcome: Outcome) -> bool:
    """True when *outcome* is a server's own failure that another server may retry.

    A connection, TLS or greeting failure, a 421 (the server is closing the
    session), or a session lost or timed out before the message data was sent.
    Never a ``delivery_unknown`` error, a 5xx, or another 4xx reply.
    """
    if not isinstance(outcome, TransportError) or outcome.delivery_unknown:
        return False
    if isinstance(outcome, SMTPReplyError):
        code = outcome.reply.code
        return code == 421 or (
            isinstance(outcome, GreetingRefusedError) and 400 <= code < 500
        )
    return isinstance(outcome, NetworkError | SMTPTimeoutError | TLSError)


@dataclass(frozen=True, slots=True)
class ServerStats:
    """Counters of one server of a ``FailoverTransport`` (``stats()``).

    Attributes:
        name: The server's name (``"host:port"``), as ``SendResult.server`` says.
        delivered: Messages it took (a result, possibly with some refusals).
        failed: Messages whose final error came from it (refused, or every
            server failed and it was the last one tried).
        moved: Messages it failed that moved on to another server.
        failures: Times it failed and was set aside.
        available: False while it is set aside after a failure.
        cooldown_left: Seconds until it is tried first again (0 when available).
    """

    name: str
    delivered: int
    failed: int
    moved: int
    failures: int
    available: bool
    cooldown_left: float


class _Server:
    """One server's transport and counters (guarded by the owner's lock)."""

    __slots__ = (
        "delivered",
        "down_until",
        "failed",
        "failures",
        "moved",
        "name",
        "takes_on_result",
        "transport",
    )

    def __init__(self, name: str, transport: Transport) -> None:
        self.name = name
        self.transport = transport
        self.takes_on_result = _takes_on_result(transport)
        self.down_until = -_NOT_BACK
        self.delivered = self.failed = self.moved = self.failures = 0


class FailoverTransport(Transport):
    """Send through the first server that works; the others stand by.

    A batch goes to the preferred server (the first one, unless it is set aside
    after a failure).  When a server fails with a connection, TLS or greeting
    error, a 421, or loses the session before a message's data was sent, it is
    set aside for *cooldown* seconds and the messages it did not take move to the
    next server.  A message is never moved after its data was sent
    (``delivery_unknown``) nor after a 5xx or another 4xx: those outcomes are
    final for this attempt, as from a single server (the ``Mailer``'s retry
    policy then decides).  When every server fails, each message gets the last
    server's error.  Servers set aside are still tried, last, rather than
    failing a message no server was asked for.

    Each result names its server (``SendResult.server``), and so does each error
    (``TransportError.server``).  Thread-safe: each server's transport is (an
    ``SMTPTransport`` lends each connection to one thread at a time), and the
    shared counters are kept under a lock.

    Args:
        servers: Transports, or ``SMTPConfig`` values (each gets its own
            ``SMTPTransport``), in order of preference.
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
        servers: Sequence[Transport | SMTPConfig],
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        names: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        given: list[object] = list(servers)  # untyped callers pass anything
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
        labels = _names(servers, names)
        transports: list[Transport] = []
        built: list[Transport] = []  # closed again if a later one cannot be built
        try:
            for server in servers:
                if isinstance(server, SMTPConfig):
                    built.append(SMTPTransport(server))
                transports.append(
                    built[-1] if isinstance(server, SMTPConfig) else server
                )
        except BaseException:
            for transport in built:
                transport.close()
            raise
        self._servers = [_Server(n, t) for n, t in zip(labels, transports, strict=True)]
        self._cooldown = float(cooldown)
        self._clock = clock
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

    def _order(self) -> list[_Server]:
        """The servers to try for one batch: available ones first, in turn."""
        start = self._first()
        turn = self._servers[start:] + self._servers[:start]
        now = self._clock()
        with self._lock:
            back = {
                id(s): (s.down_until if s.down_until > now else -_NOT_BACK)
                for s in turn
            }
        return sorted(turn, key=lambda s: back[id(s)])  # stable: keeps the turn

    @property
    @override
    def max_concurrency(self) -> int:
        """The preferred server's ``max_concurrency`` (it gets every batch)."""
        return self._order()[0].transport.max_concurrency

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
        run = _Run(items, on_result)
        pending = list(range(len(items)))
        for server in self._order():
            if not pending:
                break
            pending = self._send_on(server, run, pending)
        for index in pending:  # every server failed: the last one's error stands
            run.settle(index)
        return run.results()

    def _send_on(self, server: _Server, run: _Run, pending: list[int]) -> list[int]:
        """Send the *pending* items of *run* through *server*; return those that move on."""
        counts = {"delivered": 0, "failed": 0}

        def arrived(position: int, outcome: Outcome) -> None:
            index = pending[position]
            if run.final[index]:
                return  # reported already (on_result, then the returned list)
            run.outcomes[index] = named = _named(outcome, server.name)
            if not moves_on(named):
                counts["delivered" if isinstance(named, SendResult) else "failed"] += 1
                run.settle(index)

        batch = [run.items[index] for index in pending]
        try:
            if server.takes_on_result:
                returned = server.transport.send_batch(batch, on_result=arrived)
            else:
                returned = server.transport.send_batch(batch)
        except SMTPKitError as exc:
            returned = [_copy_error(exc) for _ in batch]
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
        for position, outcome in enumerate(returned):
            arrived(position, _checked(outcome))
        moving = [index for index in pending if not run.final[index]]
        self._count(server, moving, counts["delivered"], counts["failed"])
        return moving

    def _count(
        self, server: _Server, moving: list[int], delivered: int, failed: int
    ) -> None:
        with self._lock:
            server.delivered += delivered
            server.failed += failed
            if moving:
                server.moved += len(moving)
                server.failures += 1
                server.down_until = self._clock() + self._cooldown
        if moving:
            logger.warning(
                "server %s failed; set aside for %.0f s, %d message(s) move on",
                server.name,
                self._cooldown,
                len(moving),
            )

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

    def __init__(
        self,
        servers: Sequence[Transport | SMTPConfig],
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        names: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(servers, cooldown=cooldown, names=names, clock=clock)
        self._turn = itertools.count()

    @override
    def _first(self) -> int:
        with self._lock:
            return next(self._turn) % len(self._servers)

    @property
    @override
    def max_concurrency(self) -> int:
        """The sum of the servers' ``max_concurrency``: every one is kept busy."""
        return sum(server.transport.max_concurrency for server in self._servers)


def _names(
    servers: Sequence[Transport | SMTPConfig], names: Sequence[str] | None
) -> list[str]:
    """The servers' names: *names*, checked, or ones made up from the servers."""
    if names is not None:
        given: list[object] = list(names)
        if len(given) != len(servers):
            msg = f"names lists {len(given)} names for {len(servers)} servers"
            raise ConfigurationError(msg)
        chosen = [n for n in given if isinstance(n, str) and n]
        if len(set(chosen)) != len(given):
            msg = "names must be distinct, non-empty strings"
            raise ConfigurationError(msg)
        return chosen
    labels: list[str] = []
    for number, server in enumerate(servers, 1):
        config = (
            server
            if isinstance(server, SMTPConfig)
            else getattr(server, "config", None)
        )
        label = (
            f"{config.host}:{config.port}"
            if isinstance(config, SMTPConfig)
            else type(server).__name__
        )
        labels.append(f"{label}#{number}" if label in labels else label)
    return labels


class _Run:
    """One ``send_batch`` call: each item's latest outcome, and which are final."""

    def __init__(
        self, items: Sequence[tuple[Envelope, bytes]], on_result: OnResult | None
    ) -> None:
        self.items = items
        self.on_result = on_result
        self.outcomes: list[Outcome | None] = [None] * len(items)
        self.final = [False] * len(items)

    def settle(self, index: int) -> None:
        """Make item *index*'s latest outcome its final one, and report it."""
        outcome = self.outcomes[index]
        assert outcome is not None  # noqa: S101 - a server answered for it
        self.final[index] = True
        if self.on_result is not None:
            self.on_result(index, outcome)

    def results(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome is not None]


def _checked(outcome: object) -> Outcome:
    """*outcome* if a transport may return it, else a contract breach."""
    if isinstance(outcome, SendResult | SMTPKitError):
        return outcome
    return contract_breach(TypeError(f"send_batch returned {type(outcome).__name__}"))


def _named(outcome: Outcome, name: str) -> Outcome:
    """*outcome* naming the server it came from (a nested one's name stays)."""
    if isinstance(outcome, SendResult):
        if outcome.server is None:
            return outcome.with_updates(server=name)
        return outcome
    if isinstance(outcome, TransportError) and outcome.server is None:
        outcome.server = name
    return outcome


def _copy_error(exc: SMTPKitError) -> SMTPKitError:
    """A copy of *exc* for one message, so retry bookkeeping stays per message."""
    duplicate = copy.copy(exc)
    duplicate.__cause__ = exc.__cause__
    return duplicate


def _takes_on_result(transport: Transport) -> bool:
    """Whether ``transport.send_batch`` accepts ``on_result=`` (older ones do not)."""
    try:
        parameters = inspect.signature(transport.send_batch).parameters.values()
    except (TypeError, ValueError):  # a builtin or otherwise opaque callable
        return False
    return any(
        p.name == "on_result" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )
