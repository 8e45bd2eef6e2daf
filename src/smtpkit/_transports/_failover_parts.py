"""The parts of ``FailoverTransport``: which failures move on, each server's state.

One ``send_batch`` call is a ``Run``: each message's latest outcome and whether
it is final.  A ``Server`` holds one server's transport and counters; its
``ServerStats`` are what ``FailoverTransport.stats()`` returns.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .._config import SMTPConfig
from .._exceptions import (
    ConfigurationError,
    GreetingRefusedError,
    HeloRefusedError,
    NetworkError,
    PoolTimeoutError,
    ProtocolError,
    SMTPKitError,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)
from .._message import Envelope
from .base import OnResult, SendResult, Transport, contract_breach, takes_on_result

__all__ = [
    "NOT_BACK",
    "Outcome",
    "Run",
    "Server",
    "ServerStats",
    "checked",
    "copy_error",
    "moves_on",
    "named",
    "server_names",
    "sets_aside",
]

Outcome = SendResult | SMTPKitError
NOT_BACK: Final = math.inf


# The steps of setting up a session, before MAIL FROM: a failure there is the
# server's own, whatever its reply code (no message was offered yet).
_SET_UP: Final = frozenset({"connect", "EHLO", "HELO", "STARTTLS", "AUTH"})
# A garbled reply to these may have followed the data: the message stays.
_DATA: Final = frozenset({"DATA", "BDAT", "end of data"})


def sets_aside(outcome: Outcome) -> bool:
    """True when *outcome* is the server's own failure: it is set aside.

    A connection, network, timeout or TLS failure (also after the message data,
    ``delivery_unknown``), a reply that breaks the protocol (``ProtocolError``),
    a 421 (the server is closing the session), or any
    failure while setting up the session, before MAIL FROM: connect, greeting,
    EHLO/HELO, STARTTLS, AUTH.  Not a full pool (``PoolTimeoutError``: the server
    is busy, not broken), nor a refusal of MAIL, RCPT or DATA.
    """
    if not isinstance(outcome, TransportError) or isinstance(outcome, PoolTimeoutError):
        return False
    if outcome.command in _SET_UP or isinstance(
        outcome, GreetingRefusedError | HeloRefusedError
    ):
        return True
    if isinstance(outcome, SMTPReplyError):
        return outcome.reply.code == 421
    return isinstance(
        outcome, NetworkError | SMTPTimeoutError | TLSError | ProtocolError
    )


def moves_on(outcome: Outcome) -> bool:
    """True when another server may take the message *outcome* is about.

    The server's own failure (``sets_aside``) before the message data was sent,
    or a full pool (``PoolTimeoutError``).  Never a ``delivery_unknown`` error
    (another server would risk a duplicate), nor a refusal of MAIL, RCPT or
    DATA (a 5xx, a 4xx other than 421): those stand, as from one server.
    """
    if isinstance(outcome, PoolTimeoutError):
        return True
    if not sets_aside(outcome):
        return False
    assert isinstance(outcome, TransportError)  # noqa: S101 - sets_aside says so
    if isinstance(outcome, ProtocolError) and outcome.command in _DATA:
        return False
    return not outcome.delivery_unknown


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


class Server:
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
        self.takes_on_result = takes_on_result(transport)
        self.down_until = -NOT_BACK
        self.delivered = self.failed = self.moved = self.failures = 0


def server_names(
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


class Run:
    """One ``send_batch`` call: each item's latest outcome, and which are final."""

    def __init__(
        self, items: Sequence[tuple[Envelope, bytes]], on_result: OnResult | None
    ) -> None:
        self.items = items
        self.on_result = on_result
        self.outcomes: list[Outcome | None] = [None] * len(items)
        self.final = [False] * len(items)
        self.by: list[Server | None] = [None] * len(items)  # the latest outcome's

    def settle(self, index: int) -> None:
        """Make item *index*'s latest outcome its final one, and report it."""
        outcome = self.outcomes[index]
        assert outcome is not None  # noqa: S101 - a server answered for it
        self.final[index] = True
        if self.on_result is not None:
            self.on_result(index, outcome)

    def results(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome is not None]


def checked(outcome: object) -> Outcome:
    """*outcome* if a transport may return it, else a contract breach."""
    if isinstance(outcome, SendResult | SMTPKitError):
        return outcome
    return contract_breach(TypeError(f"send_batch returned {type(outcome).__name__}"))


# Every field of a result, read at once (a field added later is carried too).
_RESULT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(SendResult) if f.init)
_read_fields: Final = operator.attrgetter(*_RESULT_FIELDS)
_SERVER: Final = _RESULT_FIELDS.index("server")


def named(outcome: Outcome, name: str) -> Outcome:
    """*outcome* naming the server it came from (a nested one's name stays)."""
    if isinstance(outcome, SendResult):
        if outcome.server is not None:
            return outcome
        if type(outcome) is not SendResult:  # a subclass: keep its class
            return outcome.with_updates(server=name)
        values = list(_read_fields(outcome))
        values[_SERVER] = name
        return SendResult(*values)  # a third of with_updates' cost
    if isinstance(outcome, TransportError) and outcome.server is None:
        outcome.server = name
    return outcome


def copy_error(exc: SMTPKitError) -> SMTPKitError:
    """A copy of *exc* for one message, so retry bookkeeping stays per message."""
    duplicate = copy.copy(exc)
    duplicate.__cause__ = exc.__cause__
    return duplicate
