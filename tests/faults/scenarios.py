"""smtp-sink fault scenarios, a bulk send through each, and the delivery invariant.

Shared by tests/faults/test_faults.py and benchmarks/reliability.py.  Each
``Scenario`` names smtp-sink options that inject one fault; ``run_scenario`` sends a
batch of messages with unique Message-IDs through one ``Mailer`` and compares every
``SendResult`` with what the servers really recorded.  The invariant, checked by
``check_invariant``:

* nothing is silently dropped: one result per message, in order, and every result
  that is not ``ok`` carries an error;
* every failure has the typed error the fault calls for (class, reply code, command,
  ``delivery_unknown``);
* a message reported delivered is on the server exactly once;
* a message reported failed is not on the server, unless its error (or an earlier
  attempt's) said the outcome was unknown (RFC 1047);
* no message is on the server twice unless its result is ``possibly_duplicated``;
* the server holds nothing that was not sent.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from smtpkit import (
    DataRefusedError,
    Mailer,
    Message,
    PoolLimits,
    ProtocolError,
    ReadTimeoutError,
    RecipientsRefusedError,
    RetryPolicy,
    SenderRefusedError,
    SendResult,
    ServerDisconnectedError,
    SMTPConfig,
    SMTPKitError,
    SMTPReplyError,
    SMTPTransport,
    TransportError,
)

from .smtpsink import FaultRouter, SmtpSink

__all__ = [
    "SCENARIOS",
    "Expected",
    "Scenario",
    "Tally",
    "check_invariant",
    "describe",
    "make_messages",
    "run_scenario",
]

DumpMeaning = Literal["accepted", "refused", "unknown"]


@dataclass(frozen=True)
class Expected:
    """One kind of failure a scenario may report: an exact class plus details."""

    error: type[TransportError]
    code: int | None = None
    command: str | None = None
    delivery_unknown: bool = False

    def matches(self, exc: SMTPKitError) -> bool:
        """True when *exc* is exactly this kind of failure."""
        if type(exc) is not self.error or not isinstance(exc, TransportError):
            return False
        if self.code is not None and (
            not isinstance(exc, SMTPReplyError) or exc.reply.code != self.code
        ):
            return False
        if self.command is not None and exc.command != self.command:
            return False
        return exc.delivery_unknown == self.delivery_unknown

    def __str__(self) -> str:
        parts = [self.error.__name__]
        if self.code is not None:
            parts.append(str(self.code))
        if self.command is not None:
            parts.append(f"at {self.command}")
        if self.delivery_unknown:
            parts.append("delivery_unknown")
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    """One smtp-sink fault and what the client must make of it.

    Attributes:
        key: Short id (pytest ids, the report's anchors).
        title: What goes wrong, in words.
        options: smtp-sink options of the faulty server.
        expected: The only failures allowed.
        share: Share of connections the router sends to the faulty sink (the rest
            go to a healthy one); None connects straight to the faulty sink (for
            ``-W``, whose delays are random already).
        dumps: What a message in the faulty sink's dump means: ``accepted`` (the
            server said 250), ``refused`` (dumped at the dot, then refused) or
            ``unknown`` (dumped, then the connection closed without a reply).
        timeout: ``SMTPConfig.timeout`` (seconds per reply).
        retry_ambiguous: ``RetryPolicy.retry_ambiguous``.
        transient: Whether the failure is worth retrying, so that a message that
            meets it on every attempt is tried ``attempts`` times (else once).
        messages: How many messages the test sends (the report may send more).
    """

    key: str
    title: str
    options: tuple[str, ...]
    expected: tuple[Expected, ...]
    share: float | None = 0.5
    dumps: DumpMeaning = "accepted"
    timeout: float = 10.0
    retry_ambiguous: bool = False
    transient: bool = True
    messages: int = 200

    @property
    def command_line(self) -> str:
        """The faulty sink's options as typed in a shell."""
        return " ".join(f"'{o}'" if o == "." else o for o in self.options)


_DOT_UNKNOWN = Expected(ServerDisconnectedError, None, "end of data", True)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "soft-mail",
        "4xx reject at MAIL",
        ("-r", "mail"),
        (Expected(SenderRefusedError, 450, "MAIL"),),
    ),
    Scenario(
        "soft-rcpt",
        "4xx reject at RCPT",
        ("-r", "rcpt"),
        (Expected(RecipientsRefusedError, 450, "RCPT"),),
    ),
    Scenario(
        "soft-data",
        "4xx reject at DATA",
        ("-r", "data"),
        (Expected(DataRefusedError, 450, "DATA"),),
    ),
    Scenario(
        "soft-dot",
        "4xx reject at end of data",
        ("-r", "."),
        (Expected(DataRefusedError, 450, "end of data"),),
        dumps="refused",
    ),
    Scenario(
        "hard-rcpt",
        "5xx reject at RCPT",
        ("-f", "rcpt"),
        (Expected(RecipientsRefusedError, 500, "RCPT"),),
        transient=False,
    ),
    Scenario(
        "hard-dot",
        "5xx reject at end of data",
        ("-f", "."),
        (Expected(DataRefusedError, 500, "end of data"),),
        dumps="refused",
        transient=False,
    ),
    Scenario(
        "421-mail",
        "421 and disconnect at MAIL",
        ("-Q", "mail"),
        (Expected(SMTPReplyError, 421, "MAIL"),),
    ),
    Scenario(
        "421-rcpt",
        "421 and disconnect at RCPT",
        ("-Q", "rcpt"),
        (Expected(SMTPReplyError, 421, "RCPT"),),
    ),
    Scenario(
        "421-dot",
        "421 and disconnect at end of data",
        ("-Q", "."),
        (Expected(DataRefusedError, 421, "end of data"),),
        dumps="refused",
    ),
    Scenario(
        "drop-mail",
        "disconnect without reply at MAIL",
        ("-q", "mail"),
        (Expected(ServerDisconnectedError, None, "MAIL"),),
    ),
    Scenario(
        "drop-rcpt",
        "disconnect without reply at RCPT",
        ("-q", "rcpt"),
        (Expected(ServerDisconnectedError, None, "RCPT"),),
    ),
    Scenario(
        "drop-data",
        "disconnect without reply at DATA",
        ("-q", "data"),
        (Expected(ServerDisconnectedError, None, "DATA"),),
    ),
    Scenario(
        "drop-dot",
        "disconnect without reply after the final dot",
        ("-q", "."),
        (_DOT_UNKNOWN,),
        dumps="unknown",
        transient=False,
    ),
    Scenario(
        "drop-dot-lockstep",
        "disconnect without reply after the final dot, no PIPELINING",
        ("-p", "-q", "."),
        (_DOT_UNKNOWN,),
        dumps="unknown",
        transient=False,
    ),
    Scenario(
        "drop-dot-retry",
        "disconnect after the final dot, retry_ambiguous=True",
        ("-q", "."),
        (_DOT_UNKNOWN,),
        dumps="unknown",
        retry_ambiguous=True,
    ),
    Scenario(
        "abort-data",
        "550 and disconnect right after the 354 to DATA",
        ("-A", "0"),
        # The 550 usually arrives right behind the 354, before the data is sent:
        # a reply nobody asked for, which the client refuses to attribute.  When
        # the data goes out first, the 550 answers it, or the reset of the closed
        # socket overtakes the 550 (outcome unknown).  A connection left idle
        # after a 550 is found dead at the next MAIL.
        (
            Expected(ProtocolError, None, "DATA"),
            Expected(DataRefusedError, 550, "end of data"),
            Expected(ServerDisconnectedError, None, "end of data", True),
            Expected(ServerDisconnectedError, None, "MAIL"),
        ),
        transient=False,
    ),
    Scenario(
        "misordered",
        "pipelined replies out of order (-W without -p)",
        # smtp-sink keeps reading pipelined commands while a -W delay holds a
        # reply back, so DATA's 503 overtakes RCPT's 250: replies out of order.
        ("-W", "rcpt:1:1"),
        (Expected(ProtocolError, None, "DATA"),),
        transient=False,
    ),
    Scenario(
        "delay-rcpt",
        "random RCPT delays past the timeout",
        ("-p", "-W", "rcpt:1:10"),
        (Expected(ReadTimeoutError, None, "RCPT"),),
        share=None,
        timeout=0.6,
    ),
    Scenario(
        "delay-dot",
        "random end-of-data delays past the timeout",
        ("-p", "-W", ".:1:5"),
        (Expected(ReadTimeoutError, None, "end of data", True),),
        share=None,
        timeout=0.6,
        transient=False,
    ),
)


def make_messages(count: int, tag: str) -> list[Message]:
    """*count* small messages with unique Message-IDs ``<tag.N@smtpkit.test>``."""
    return [
        Message(
            sender="sender@example.com",
            to=("rcpt@example.net",),
            subject=f"fault test {i}",
            text=f"message {i} of {count}\n",
            message_id=f"<{tag}.{i}@smtpkit.test>",
        )
        for i in range(count)
    ]


@dataclass
class Tally:
    """What one run did, from the client's and the servers' side.

    Attributes:
        tried: Messages handed to ``send_many``.
        delivered: Results that are ``ok``.
        failed: Failed results per error kind (class, code, command).
        on_server: Distinct messages the servers accepted or may have accepted.
        duplicated: Messages the servers hold more than once.
        flagged_possibly_duplicated: Results with ``possibly_duplicated``.
        delivery_unknown: Failed results whose error has ``delivery_unknown``.
        refused_dumps: Messages smtp-sink dumped at the dot and then refused.
        routed: Connections the router sent to each sink.
        attempts: Sum of ``result.attempts``.  A message whose connection fails
            after earlier messages on it went through is moved to a fresh
            connection without that counting as an attempt.
        connections: Connections the pool opened.
        discarded: Connections thrown away after an error.
        seconds: Wall time of ``send_many``.
        violations: Every breach of the invariant (empty when it holds).
        results: What ``send_many`` returned.
    """

    scenario: Scenario
    tried: int = 0
    delivered: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    on_server: int = 0
    duplicated: int = 0
    flagged_possibly_duplicated: int = 0
    delivery_unknown: int = 0
    refused_dumps: int = 0
    routed: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    connections: int = 0
    discarded: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    results: list[SendResult] = field(default_factory=list, repr=False)

    @property
    def failed_total(self) -> int:
        """All failed results."""
        return sum(self.failed.values())

    def as_dict(self) -> dict[str, object]:
        """Plain data, for JSON."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("scenario", "results")
        }
        data["scenario"] = self.scenario.key
        data["failed"] = dict(self.failed)
        return data


def describe(exc: SMTPKitError) -> str:
    """``Class code at command`` of an error, as the report groups them."""
    parts = [type(exc).__name__]
    if isinstance(exc, SMTPReplyError):
        parts.append(str(exc.reply.code))
    if isinstance(exc, TransportError) and exc.command:
        parts.append(f"at {exc.command}")
    return " ".join(parts)


def _ambiguous(result: SendResult) -> bool:
    """True when the client said the server may hold this message after all."""
    if result.possibly_duplicated:
        return True
    error = result.error
    if not isinstance(error, TransportError):
        return False
    return any(e.delivery_unknown for e in (error, *error.history))


def check_invariant(
    scenario: Scenario,
    ids: list[str],
    results: list[SendResult],
    accepted: collections.Counter[str],
    unknown: collections.Counter[str],
) -> list[str]:
    """Return every way *results* disagree with the server-side record.

    Args:
        scenario: The fault (for the allowed errors).
        ids: The Message-IDs sent, in input order.
        results: What ``send_many`` returned.
        accepted: Message-IDs the servers accepted (said 250 to), with counts.
        unknown: Message-IDs the servers received in full but never answered.
    """
    problems: list[str] = []
    if len(results) != len(ids):
        problems.append(f"{len(ids)} messages sent but {len(results)} results")
    for index, (mid, result) in enumerate(zip(ids, results, strict=False)):
        where = f"message {index} {mid}"
        held = accepted[mid] + unknown[mid]
        if result.message_id != mid:
            problems.append(f"{where}: result is for {result.message_id} (order lost)")
        if not result.ok:
            if result.error is None:
                problems.append(f"{where}: not ok but no error (silently dropped)")
            elif not any(e.matches(result.error) for e in scenario.expected):
                problems.append(
                    f"{where}: unexpected error {describe(result.error)}"
                    f" (delivery_unknown={getattr(result.error, 'delivery_unknown', None)}):"
                    f" {result.error}"
                )
        ambiguous = _ambiguous(result)
        if result.ok and accepted[mid] == 0:
            problems.append(f"{where}: reported delivered but not on the server")
        if not result.ok and accepted[mid] and not ambiguous:
            problems.append(f"{where}: reported failed but the server accepted it")
        if unknown[mid] and not ambiguous:
            problems.append(
                f"{where}: the server got it without replying, but the result does"
                " not say the delivery is unknown"
            )
        if held > 1 and not result.possibly_duplicated:
            problems.append(f"{where}: on the server {held} times, not flagged")
    strays = (set(accepted) | set(unknown)) - set(ids)
    if strays:
        problems.append(f"{len(strays)} messages on the server were never sent")
    return problems


@contextlib.contextmanager
def _servers(
    scenario: Scenario, share: float | None, directory: Path, seed: int
) -> Iterator[tuple[SmtpSink, SmtpSink | None, FaultRouter | None]]:
    """The faulty sink, plus a healthy sink and a router unless *share* is None."""
    faulty = SmtpSink(*scenario.options, directory=directory, name="faulty")
    healthy = SmtpSink(directory=directory, name="healthy") if share else None
    router = None
    try:
        faulty.start()
        if healthy is not None:
            healthy.start()
            router = FaultRouter(
                healthy.address, faulty.address, share=share or 0.0, seed=seed
            )
            router.__enter__()
        yield faulty, healthy, router
    finally:
        if router is not None:
            router.close()
        if healthy is not None:
            healthy.stop()
        faulty.stop()


def run_scenario(
    scenario: Scenario,
    directory: Path,
    *,
    messages: int | None = None,
    pool: int = 4,
    seed: int = 0,
    always: bool = False,
) -> Tally:
    """Send *messages* through the scenario's fault; return the tally.

    Args:
        scenario: The fault.
        directory: An empty directory for the sinks' dumps.
        messages: How many (default ``scenario.messages``).
        pool: ``PoolLimits.max_connections`` and the ``send_many`` concurrency.
        seed: Seeds the router's choice of sink.
        always: Connect straight to the faulty sink, so every connection meets
            the fault (no router, no healthy sink).
    """
    count = messages or scenario.messages
    tag = f"{scenario.key}.{uuid.uuid4().hex[:12]}"
    batch = make_messages(count, tag)
    ids = [m.message_id for m in batch if m.message_id]
    retry = RetryPolicy(
        attempts=3,
        wait_initial=0.0,
        wait_jitter=0.0,
        timeout=None,
        retry_ambiguous=scenario.retry_ambiguous,
    )
    tally = Tally(scenario=scenario, tried=count)
    share = None if always else scenario.share
    with _servers(scenario, share, directory, seed) as (faulty, healthy, router):
        target: SmtpSink | FaultRouter = router if router is not None else faulty
        config: SMTPConfig = target.config(
            timeout=scenario.timeout,
            # Small per-connection budgets make the router pick a sink often.
            pool=PoolLimits(max_connections=pool, max_messages_per_connection=10),
        )
        start = time.monotonic()
        with Mailer(config, retry=retry, sleep=lambda _: None) as mailer:
            results = mailer.send_many(batch, concurrency=pool)
            assert isinstance(mailer.transport, SMTPTransport)
            stats = mailer.transport.stats()
        tally.seconds = time.monotonic() - start
        tally.connections, tally.discarded = stats.created, stats.discarded
        if router is not None:
            tally.routed = dict(router.routed)
        faulty_ids = faulty.message_ids()
        accepted = (
            healthy.message_ids() if healthy is not None else collections.Counter()
        )
    unknown: collections.Counter[str] = collections.Counter()
    if scenario.dumps == "accepted":
        accepted += faulty_ids
    elif scenario.dumps == "unknown":
        unknown = faulty_ids
    else:
        tally.refused_dumps = sum(faulty_ids.values())
    tally.results = results
    tally.violations = check_invariant(scenario, ids, results, accepted, unknown)
    for result in results:
        tally.attempts += result.attempts
        tally.flagged_possibly_duplicated += result.possibly_duplicated
        if result.ok:
            tally.delivered += 1
        elif result.error is not None:
            tally.failed[describe(result.error)] += 1
            tally.delivery_unknown += bool(
                getattr(result.error, "delivery_unknown", False)
            )
    held = accepted + unknown
    tally.on_server = len(held)
    tally.duplicated = sum(1 for n in held.values() if n > 1)
    return tally
