"""The PASS/FAIL lines: the targets of issue 15 (and the earlier ones), as ratios.

Every check reads rows of the same run.  Scenario ``plain`` is smtp-sink, 2 KB
bodies unless the name says otherwise; target 4 needs CHUNKING, so it reads the
``postfix`` scenario.  A check whose rows were not measured prints SKIP with
what it needs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from clients import BUILD_REFERENCE, RAW_REFERENCE
from clients_async import LoopLag
from latency import ReadyTimes

KB2, KB100 = 2048, 102400


@dataclass
class Sample:
    messages: int
    wall: float
    cpu: float
    lag: LoopLag | None = None  # the event loop's lag, for the asyncio rows

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    @property
    def cpu_per_message(self) -> float:
        return self.cpu / self.messages


@dataclass
class Cell:
    rtt_ms: float
    scenario: str  # plain (smtp-sink), starttls (aiosmtpd), postfix
    size: int
    client: str
    messages: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(s.rate for s in self.samples)

    @property
    def cpu_per_message(self) -> float:
        return statistics.median(s.cpu_per_message for s in self.samples)

    @property
    def lag(self) -> LoopLag | None:
        """The loop lag of the repetition with the worst p99 (the one to judge)."""
        lags = [s.lag for s in self.samples if s.lag is not None]
        return max(lags, key=lambda lag: lag.p99, default=None)

    def describe_lag(self) -> str:
        """The worst repetition's lag, and every repetition's p99."""
        assert self.lag is not None  # noqa: S101 - only asked of the asyncio rows
        runs = ", ".join(f"{s.lag.p99 * 1000:.2f}" for s in self.samples if s.lag)
        return f"{self.lag.describe()}; p99 per run {runs} ms"


@dataclass
class TargetCheck:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str


class _Checks:
    def __init__(self, cells: list[Cell], noop: dict[tuple[float, str], float]) -> None:
        self.index = {(c.rtt_ms, c.scenario, c.size, c.client): c for c in cells}
        self.noop = noop
        self.found: list[TargetCheck] = []

    def cell(
        self, rtt: float, client: str, size: int = KB2, scenario: str = "plain"
    ) -> Cell | None:
        return self.index.get((rtt, scenario, size, client))

    def skip(self, name: str, needs: str) -> None:
        self.found.append(TargetCheck(name, "SKIP", f"needs {needs}"))

    def verdict(self, name: str, ok: bool, detail: str) -> None:
        self.found.append(TargetCheck(name, "PASS" if ok else "FAIL", detail))

    def rate_ratio(
        self, name: str, rtt: float, a: str, b: str, minimum: float, *,
        size: int = KB2, scenario: str = "plain",
    ) -> None:  # fmt: skip
        x, y = self.cell(rtt, a, size, scenario), self.cell(rtt, b, size, scenario)
        if x is None or y is None:
            self.skip(
                name, f"{a} and {b} at RTT {rtt:g} ({scenario}, {size // 1024} KB)"
            )
            return
        ratio = x.rate / y.rate
        detail = (
            f"{x.rate:.1f} vs {y.rate:.1f} msg/s = {ratio:.2f}x (need >= {minimum}x)"
        )
        self.verdict(name, ratio >= minimum, detail)

    def cpu_limit(
        self, name: str, client: str, size: int, limit_us: float, peer: str
    ) -> None:
        x = self.cell(0, client, size)
        if x is None:
            self.skip(name, f"{client} at RTT 0 (plain, {size // 1024} KB)")
            return
        us = x.cpu_per_message * 1e6
        y = self.cell(0, peer, size)
        versus = f"; {peer} {y.cpu_per_message * 1e6:.0f} us" if y else ""
        detail = f"{us:.0f} us/msg = {us / limit_us:.2f}x the limit {limit_us:.0f} us{versus}"
        self.verdict(name, us <= limit_us, detail)

    def noop_limit(self, name: str, rtt: float, client: str, minimum: float) -> None:
        x, rt = self.cell(rtt, client), self.noop.get((rtt, "plain"))
        if x is None or rt is None:
            self.skip(name, f"{client} and the NOOP round trip at RTT {rtt:g} (plain)")
            return
        limit = 1 / rt
        share = x.rate / limit
        detail = (f"{x.rate:.1f} msg/s vs limit {limit:.1f} (NOOP {rt * 1000:.1f} ms) = "
                  f"{share:.0%} (need >= {minimum:.0%})")  # fmt: skip
        self.verdict(name, share >= minimum, detail)

    def lag_limit(
        self, name: str, rtt: float, client: str, limit: float, peer: str
    ) -> None:
        """Judge the worst repetition's p99; *peer*'s lag shows the machine's share."""
        x, y = self.cell(rtt, client), self.cell(rtt, peer)
        if x is None or x.lag is None:
            self.skip(name, f"{client} at RTT {rtt:g} (plain, 2 KB)")
            return
        versus = f"; {peer}: p99 {y.lag.p99 * 1000:.2f} ms" if y and y.lag else ""
        detail = f"{x.describe_lag()}{versus} (need p99 < {limit * 1000:g} ms)"
        self.verdict(name, x.lag.p99 < limit, detail)


def check_targets(
    cells: list[Cell],
    noop: dict[tuple[float, str], float],
    ready: list[ReadyTimes],
) -> list[TargetCheck]:
    """Issue 15's targets 1-5, then the targets of the earlier performance issue."""
    c = _Checks(cells, noop)
    c.cpu_limit("1. CPU, raw bytes send_many, loopback, 2 KB: smtpkit-raw-1 <= 120 us/msg",
                "smtpkit-raw-1", KB2, 120, RAW_REFERENCE)  # fmt: skip
    c.cpu_limit("1. CPU, raw bytes send_many, loopback, 100 KB: smtpkit-raw-1 <= 350 us/msg",
                "smtpkit-raw-1", KB100, 350, RAW_REFERENCE)  # fmt: skip
    c.cpu_limit("1. CPU, Message render + send, loopback, 2 KB: smtpkit-1 <= 300 us/msg",
                "smtpkit-1", KB2, 300, BUILD_REFERENCE)  # fmt: skip
    c.rate_ratio("2. loopback, 1 connection, 2 KB: smtpkit-raw-1 >= 2x smtplib-raw",
                 0, "smtpkit-raw-1", RAW_REFERENCE, 2.0)  # fmt: skip
    c.rate_ratio("2. loopback, 1 connection, 100 KB: smtpkit-raw-1 >= 1x smtplib-raw",
                 0, "smtpkit-raw-1", RAW_REFERENCE, 1.0, size=KB100)  # fmt: skip
    c.rate_ratio("3. RTT 20 ms, 8 connections: smtpkit-raw-8 >= 4.5x aiosmtplib-raw-8",
                 20, "smtpkit-raw-8", "aiosmtplib-raw-8", 4.5)  # fmt: skip
    c.rate_ratio("3. RTT 20 ms, 8 connections: smtpkit-raw-8 >= 2.2x nodemailer-8",
                 20, "smtpkit-raw-8", "nodemailer-8", 2.2)  # fmt: skip
    c.noop_limit("3. RTT 20 ms, 1 connection: smtpkit-raw-1 >= 95% of the NOOP limit",
                 20, "smtpkit-raw-1", 0.95)  # fmt: skip
    c.rate_ratio("4. RTT 20 ms, single send() (Postfix, CHUNKING): >= 1.8x the DATA path",
                 20, "smtpkit-raw-send", "smtpkit-raw-send-data", 1.8,
                 scenario="postfix")  # fmt: skip
    _ready_checks(c, ready)
    _async_checks(c)
    c.rate_ratio("earlier: RTT 20 ms, 1 connection, Message: smtpkit-1 >= 3.5x smtplib-reuse",
                 20, "smtpkit-1", BUILD_REFERENCE, 3.5)  # fmt: skip
    c.rate_ratio("earlier: RTT 20 ms, 8 connections, Message: smtpkit-8 >= 3x aiosmtplib-8",
                 20, "smtpkit-8", "aiosmtplib-8", 3.0)  # fmt: skip
    c.rate_ratio("earlier: RTT 0, 1 connection, Message: smtpkit-1 >= 1.5x smtplib-reuse",
                 0, "smtpkit-1", BUILD_REFERENCE, 1.5)  # fmt: skip
    return c.found


def _ready_checks(c: _Checks, ready: list[ReadyTimes]) -> None:
    """Target 5: smtpkit needs no more round trips to a ready session than smtplib.

    Judged in round trips of the NOOP time at RTT 20 ms, with a quarter of a round
    trip for noise (the proxy's jitter alone moves a figure by a few percent).
    """
    by_key = {(t.client, t.mode): t for t in ready}
    rtt = c.noop.get((20.0, "postfix"))
    for mode in ("plain", "starttls+auth", "implicit+auth"):
        name = f"5. connect to ready, {mode}: smtpkit no slower than smtplib"
        mine, ref = by_key.get(("smtpkit", mode)), by_key.get(("smtplib", mode))
        if mine is None or ref is None or rtt is None:
            c.skip(
                name,
                "the connect-to-ready measurement at RTT 20 ms (Postfix + Dovecot)",
            )
            continue
        extra = (mine.typical - ref.typical) / rtt
        detail = (
            f"{mine.typical * 1000:.1f} vs {ref.typical * 1000:.1f} ms = "
            f"{mine.typical / ref.typical:.2f}x, {extra:+.1f} round trips "
            f"(first connection {mine.first * 1000:.1f} vs {ref.first * 1000:.1f} ms; "
            "need <= +0.25)"
        )
        c.verdict(name, extra <= 0.25, detail)


def _async_checks(c: _Checks) -> None:
    """Issue 10: AsyncMailer at RTT 20 ms, 2 KB, against the asyncio alternatives."""
    c.rate_ratio("10. RTT 20 ms, 8 connections: smtpkit-async >= 3x aiosmtplib-raw-8",
                 20, "smtpkit-async", "aiosmtplib-raw-8", 3.0)  # fmt: skip
    c.rate_ratio("10. RTT 20 ms, 8 connections: smtpkit-async >= 1.8x nodemailer-8",
                 20, "smtpkit-async", "nodemailer-8", 1.8)  # fmt: skip
    c.rate_ratio("10. RTT 20 ms, 1,000 concurrent send(), pool 8: smtpkit-async-1000 "
                 ">= 2.5x aiosmtplib-1000", 20, "smtpkit-async-1000", "aiosmtplib-1000",
                 2.5)  # fmt: skip
    c.lag_limit("10. RTT 20 ms, 1,000 concurrent send(): event loop lag p99 < 5 ms",
                20, "smtpkit-async-1000", 0.005, "aiosmtplib-1000")  # fmt: skip
