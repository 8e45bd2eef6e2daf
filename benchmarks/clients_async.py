"""The asyncio rows: smtpkit's ``AsyncMailer`` next to aiosmtplib, and the loop's lag.

Every row sends the same pre-built bytes as the other raw rows (``Workload.data``):

- ``smtpkit-async``: ``AsyncMailer.send_many`` of ``(bytes, Envelope)`` pairs, pool
  of 8, ``concurrency=8``;
- ``smtpkit-async-1000``: 1,000 concurrent single ``await mailer.send(...)`` started
  at once with ``asyncio.gather``, pool of 8 (the mailer coalesces them into
  pipelined batches on its connections);
- ``aiosmtplib-1000``: the same 1,000 concurrent sends through aiosmtplib with 8
  connections, done the fair way: 8 ``aiosmtplib.SMTP`` objects, each driven by a
  worker coroutine that pulls ``(bytes, future)`` from one ``asyncio.Queue``; every
  sender puts its message on the queue and awaits its future.

During each of these runs a probe coroutine sleeps 1 ms in a loop and records how
late every wake-up is (the event loop's scheduling lag).  ``take_lag()`` hands the
figures of the last run to the harness, which prints p50/p99/max and checks the
issue's target (p99 < 5 ms for ``smtpkit-async-1000`` at RTT 20 ms).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from clients import (
    RECIPIENT,
    SENDER,
    BenchmarkError,
    Client,
    Target,
    Workload,
    aiosmtplib,
    check_results,
    client_context,
    smtpkit_config,
)

import smtpkit

CONCURRENT_SENDS = 1000
PROBE_INTERVAL = 0.001  # seconds the probe sleeps between wake-ups
T = TypeVar("T")


def has_async_mailer() -> bool:
    """Whether this smtpkit has ``AsyncMailer`` (issue 10)."""
    return hasattr(smtpkit, "AsyncMailer")


# -- the event loop's lag ------------------------------------------------------------


@dataclass(frozen=True)
class LoopLag:
    """How late the probe's 1 ms sleeps woke up during one run, in seconds."""

    samples: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, overshoots: list[float]) -> LoopLag:
        if len(overshoots) < 2:  # a run too short to judge: report what there is
            worst = max(overshoots, default=0.0)
            return cls(len(overshoots), worst, worst, worst)
        cuts = statistics.quantiles(overshoots, n=100, method="inclusive")
        return cls(
            len(overshoots), statistics.median(overshoots), cuts[98], max(overshoots)
        )

    def describe(self) -> str:
        return (
            f"p50 {self.p50 * 1000:.2f} ms, p99 {self.p99 * 1000:.2f} ms, "
            f"max {self.max * 1000:.2f} ms ({self.samples} wake-ups)"
        )


_last_lag: list[LoopLag] = []


def take_lag() -> LoopLag | None:
    """The loop lag of the last run (once), or None when the run had no probe."""
    return _last_lag.pop() if _last_lag else None


async def _probe(overshoots: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(PROBE_INTERVAL)
        overshoots.append(max(0.0, time.perf_counter() - start - PROBE_INTERVAL))


async def _with_probe(work: Awaitable[T]) -> T:
    """Await *work* while the probe measures the loop's lag."""
    overshoots: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(overshoots, stop))
    try:
        return await work
    finally:
        stop.set()
        await probe
        _last_lag.clear()
        _last_lag.append(LoopLag.of(overshoots))


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(_with_probe(main()))


# -- smtpkit -------------------------------------------------------------------------


def _async_mailer(target: Target, connections: int) -> smtpkit.AsyncMailer:
    return smtpkit.AsyncMailer(smtpkit_config(target, connections))


def run_smtpkit_async(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """AsyncMailer.send_many of (bytes, Envelope) pairs, pool of *connections*."""

    async def main() -> None:
        items = itertools.repeat((work.data, work.envelope), count)
        async with _async_mailer(target, connections) as mailer:
            results = await mailer.send_many(items, concurrency=connections)
        check_results("smtpkit-async", results, count)

    _run(main)


def run_smtpkit_async_concurrent(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """*count* concurrent ``await mailer.send(bytes, envelope=...)``, pool of 8."""

    async def main() -> None:
        async with _async_mailer(target, connections) as mailer:
            results = await asyncio.gather(
                *(mailer.send(work.data, envelope=work.envelope) for _ in range(count))
            )
        check_results("smtpkit-async-1000", list(results), count)

    _run(main)


# -- aiosmtplib ----------------------------------------------------------------------


def run_aiosmtplib_concurrent(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """*count* concurrent sends through *connections* aiosmtplib.SMTP objects.

    Each connection has a worker coroutine pulling from one queue, so no
    connection idles while sends wait, and no more than *connections* exist.
    """
    assert aiosmtplib is not None  # noqa: S101 - the client is skipped otherwise
    context = client_context(target)

    async def worker(queue: asyncio.Queue[asyncio.Future[None] | None]) -> None:
        smtp = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            start_tls=target.tls,
            tls_context=context,
            timeout=30,
        )
        async with smtp:
            while (done := await queue.get()) is not None:
                try:
                    refused, _ = await smtp.sendmail(SENDER, [RECIPIENT], work.data)
                except Exception as exc:
                    done.set_exception(exc)
                    continue
                if refused:
                    done.set_exception(BenchmarkError(f"refused: {refused}"))
                else:
                    done.set_result(None)

    async def send_one(queue: asyncio.Queue[asyncio.Future[None] | None]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await queue.put(done)
        await done

    async def main() -> None:
        queue: asyncio.Queue[asyncio.Future[None] | None] = asyncio.Queue()
        workers = [asyncio.create_task(worker(queue)) for _ in range(connections)]
        sending = asyncio.gather(*(send_one(queue) for _ in range(count)))
        # A worker that ends before the senders do has failed (connect, TLS...).
        await asyncio.wait([sending, *workers], return_when=asyncio.FIRST_COMPLETED)
        if not sending.done():
            sending.cancel()
            for task in workers:
                task.cancel()
            await asyncio.gather(sending, *workers, return_exceptions=True)
            for task in workers:
                if not task.cancelled() and task.exception() is not None:
                    msg = "an aiosmtplib worker failed"
                    raise BenchmarkError(msg) from task.exception()
            msg = "an aiosmtplib worker ended early"
            raise BenchmarkError(msg)
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        sending.result()

    _run(main)


ASYNC_CLIENTS = {c.name: c for c in [
    Client("smtpkit-async", "raw", 8, run_smtpkit_async,
           "smtpkit AsyncMailer.send_many((bytes, Envelope)), pool of 8",
           round_trips=1, needs="asyncmailer"),
    Client("smtpkit-async-1000", "raw", 8, run_smtpkit_async_concurrent,
           "1,000 concurrent AsyncMailer.send(bytes), pool of 8", round_trips=1,
           needs="asyncmailer", fixed_count=CONCURRENT_SENDS),
    Client("aiosmtplib-1000", "raw", 8, run_aiosmtplib_concurrent,
           "1,000 concurrent sends, 8 aiosmtplib.SMTP fed by one queue",
           needs="aiosmtplib", fixed_count=CONCURRENT_SENDS),
]}  # fmt: skip
"""The asyncio rows, added to ``clients.CLIENTS`` by bench.py."""
