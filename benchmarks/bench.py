"""Throughput and CPU per message: smtpkit against smtplib, aiosmtplib and smtp-source.

Starts a local sink (Postfix's ``smtp-sink`` when installed, else aiosmtpd; an
aiosmtpd sink with a throw-away certificate for STARTTLS) and, for RTT > 0, a
latency-injecting proxy (``proxy.py``) in front of it, then sends the same
messages with every client, in one run.  See benchmarks/README.md.

    python benchmarks/bench.py                 # the full run (~10 minutes)
    python benchmarks/bench.py --quick         # a smoke run
    python benchmarks/bench.py --rtt 20 --sizes 2k --clients smtpkit-1,smtplib-reuse
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from sink import AiosmtpdSink, free_port

import smtpkit

try:
    import aiosmtplib
except ImportError:  # pragma: no cover - reported in the run header
    aiosmtplib = None  # type: ignore[assignment]  # the aiosmtplib-8 row is skipped

HERE = Path(__file__).resolve().parent
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.net"
SUBJECT = "Benchmark message {i}"
REFERENCE = "smtplib-reuse"  # every ratio is against this client in the same cell
SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
)
SMTP_SOURCE = shutil.which("smtp-source") or (
    "/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None
)


class BenchmarkError(RuntimeError):
    """A client failed or the sink did not receive every message."""


# -- what gets sent ------------------------------------------------------------------


def make_body(size: int) -> str:
    """ASCII text of *size* bytes in 72-character lines (7bit on the wire)."""
    line = "The quick brown fox jumps over the lazy dog; pack my box with liquor.\n"
    text = (line * (size // len(line) + 1))[: size - 1]
    return text + "\n"


def build_email(i: int, body: str) -> EmailMessage:
    """The message as a careful smtplib/aiosmtplib user builds it (Date, Message-ID)."""
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RECIPIENT
    msg["Subject"] = SUBJECT.format(i=i)
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(body)
    return msg


def build_message(i: int, body: str) -> smtpkit.Message:
    """The same message as an smtpkit user builds it (Date, Message-ID are automatic)."""
    return smtpkit.Message(
        sender=SENDER, to=[RECIPIENT], subject=SUBJECT.format(i=i), text=body
    )


# -- sinks and proxies ---------------------------------------------------------------


class Sink(Protocol):
    kind: str
    port: int

    def received(self) -> int: ...

    def octets(self) -> int | None: ...

    def close(self) -> None: ...


class SmtpSink:
    """Postfix's smtp-sink; ``-c`` writes running counters, which we read back."""

    kind = "smtp-sink"
    _MESG = re.compile(rb"mesg=(\d+)")

    def __init__(self, exe: str, workdir: Path) -> None:
        self.port = free_port()
        self._log = workdir / f"smtp-sink-{self.port}.out"
        args = [exe, "-c", "-4"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # required when run as root
        args += [f"127.0.0.1:{self.port}", "256"]
        errors = workdir / f"smtp-sink-{self.port}.err"
        with self._log.open("wb") as out, errors.open("wb") as err:
            self._process = subprocess.Popen(args, stdout=out, stderr=err)
        _wait_listening(self.port, self._process, errors)

    def received(self) -> int:
        with self._log.open("rb") as log:
            log.seek(max(0, self._log.stat().st_size - 256))
            counts = self._MESG.findall(log.read())
        return int(counts[-1]) if counts else 0

    def octets(self) -> int | None:
        return None  # smtp-sink counts messages, not bytes

    def close(self) -> None:
        _stop(self._process)


class Proxy:
    """``proxy.py`` in a child process, forwarding to *port* with *rtt_ms* of delay."""

    def __init__(self, port: int, rtt_ms: float) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "proxy.py"), "--target", f"127.0.0.1:{port}",
             "--rtt", str(rtt_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            _stop(self._process)
            msg = f"proxy.py did not start (said {line!r})"
            raise BenchmarkError(msg)
        self.port = int(line)

    def close(self) -> None:
        _stop(self._process)


def _wait_listening(port: int, process: subprocess.Popen[bytes], errors: Path) -> None:
    import socket  # noqa: PLC0415 - only for this readiness probe

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = errors.read_text(errors="replace").strip()
            msg = f"smtp-sink exited with {process.returncode}: {err}"
            raise BenchmarkError(msg)
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return
        time.sleep(0.05)
    msg = f"smtp-sink did not listen on port {port}"
    raise BenchmarkError(msg)


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the clients ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool
    ca_file: str | None


def _client_context(target: Target) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=target.ca_file) if target.tls else None


def _smtpkit_mailer(target: Target, connections: int) -> smtpkit.Mailer:
    config = smtpkit.SMTPConfig(
        host=target.host,
        port=target.port,
        tls=smtpkit.TLSMode.STARTTLS if target.tls else smtpkit.TLSMode.NONE,
        ca_file=target.ca_file,
        pool=smtpkit.PoolLimits(max_connections=connections),
    )
    return smtpkit.Mailer(config)


def run_smtpkit(target: Target, count: int, body: str, connections: int) -> None:
    """send_many over a pool of *connections* (concurrency = connections)."""
    messages = (build_message(i, body) for i in range(count))
    with _smtpkit_mailer(target, connections) as mailer:
        results = mailer.send_many(messages, concurrency=connections)
    bad = [r for r in results if not r.ok]
    if len(results) != count or bad:
        detail = bad[0].error if bad else f"{len(results)} results"
        msg = f"smtpkit: {len(bad)} of {count} messages failed: {detail!r}"
        raise BenchmarkError(msg)


def run_smtpkit_send(target: Target, count: int, body: str, connections: int) -> None:
    """Mailer.send() in a loop on one pooled connection."""
    with _smtpkit_mailer(target, connections) as mailer:
        for i in range(count):
            result = mailer.send(build_message(i, body))
            if not result.ok:
                msg = f"smtpkit send: message {i} failed: {result!r}"
                raise BenchmarkError(msg)


def run_smtplib_reuse(target: Target, count: int, body: str, connections: int) -> None:
    """One smtplib.SMTP connection for every message."""
    context = _client_context(target)
    with smtplib.SMTP(target.host, target.port, timeout=30) as smtp:
        if context is not None:
            smtp.starttls(context=context)
        for i in range(count):
            if smtp.send_message(build_email(i, body)):
                msg = f"smtplib: message {i} refused"
                raise BenchmarkError(msg)


def run_smtplib_new(target: Target, count: int, body: str, connections: int) -> None:
    """A new smtplib.SMTP connection (connect, EHLO, ..., QUIT) per message."""
    context = _client_context(target)
    for i in range(count):
        with smtplib.SMTP(target.host, target.port, timeout=30) as smtp:
            if context is not None:
                smtp.starttls(context=context)
            if smtp.send_message(build_email(i, body)):
                msg = f"smtplib: message {i} refused"
                raise BenchmarkError(msg)


def run_aiosmtplib(target: Target, count: int, body: str, connections: int) -> None:
    """*connections* aiosmtplib.SMTP clients, each sending from one shared queue."""
    assert aiosmtplib is not None  # noqa: S101 - the client is skipped otherwise
    context = _client_context(target)
    numbers = iter(range(count))  # shared: each worker takes the next message

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            start_tls=target.tls,
            tls_context=context,
            timeout=30,
        )
        async with smtp:
            for i in numbers:
                refused, _ = await smtp.send_message(build_email(i, body))
                if refused:
                    msg = f"aiosmtplib: message {i} refused: {refused}"
                    raise BenchmarkError(msg)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(connections)))

    asyncio.run(main())


def run_smtp_source(target: Target, count: int, size: int, connections: int) -> None:
    """Postfix's C load client: -d reuses each session, -s sessions in parallel."""
    assert SMTP_SOURCE is not None  # noqa: S101 - the client is skipped otherwise
    args = [
        SMTP_SOURCE, "-4", "-d", "-s", str(connections), "-m", str(count),
        "-l", str(size), "-f", SENDER, "-t", RECIPIENT, "-S", "Benchmark message",
        "-M", "localhost", f"{target.host}:{target.port}",
    ]  # fmt: skip
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        msg = f"smtp-source exited with {done.returncode}: {done.stderr.strip()}"
        raise BenchmarkError(msg)


RunFn = Callable[[Target, int, str, int], None]


@dataclass(frozen=True)
class Client:
    name: str
    connections: int
    run: RunFn | None  # None: smtp-source (takes the size, not the body)
    description: str
    new_connection_per_message: bool = False
    supports_tls: bool = True
    optional: bool = False  # run only when named in --clients

    @property
    def external(self) -> bool:
        return self.run is None


CLIENTS = {
    c.name: c
    for c in [
        Client("smtpkit-1", 1, run_smtpkit, "Mailer, pool of 1, send_many(concurrency=1)"),
        Client("smtpkit-4", 4, run_smtpkit, "Mailer, pool of 4, send_many(concurrency=4)"),
        Client("smtpkit-8", 8, run_smtpkit, "Mailer, pool of 8, send_many(concurrency=8)"),
        Client("smtpkit-send", 1, run_smtpkit_send, "Mailer, pool of 1, send() in a loop",
               optional=True),
        Client("smtplib-new", 1, run_smtplib_new, "smtplib, new connection per message",
               new_connection_per_message=True),
        Client(REFERENCE, 1, run_smtplib_reuse, "smtplib, one connection reused"),
        Client("aiosmtplib-8", 8, run_aiosmtplib, "aiosmtplib, 8 concurrent connections"),
        Client("smtp-source-8", 8, None, "Postfix smtp-source -d -s 8 (C, no pipelining)",
               supports_tls=False),
    ]
}  # fmt: skip


# -- measuring -----------------------------------------------------------------------


@dataclass
class Sample:
    messages: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    @property
    def cpu_per_message(self) -> float:
        return self.cpu / self.messages


@dataclass
class Cell:
    rtt_ms: float
    size: int
    tls: bool
    client: str
    messages: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(s.rate for s in self.samples)

    @property
    def cpu_per_message(self) -> float:
        return statistics.median(s.cpu_per_message for s in self.samples)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    client: Client, target: Target, sink: Sink, count: int, size: int
) -> Sample:
    """One timed run; raises BenchmarkError unless the sink got exactly *count* more."""
    body = make_body(size)
    gc.collect()
    before, octets_before = sink.received(), sink.octets()
    cpu0, child0, start = time.process_time(), _children_cpu(), time.perf_counter()
    try:
        if client.run is None:
            run_smtp_source(target, count, size, client.connections)
        else:
            client.run(target, count, body, client.connections)
    except Exception as exc:  # any client failure ends the benchmark loudly
        msg = f"{client.name} failed: {exc!r}"
        raise BenchmarkError(msg) from exc
    wall = time.perf_counter() - start
    # Client CPU only: the sink and the proxy are other processes.  smtp-source is a
    # child process, so its CPU is the growth of RUSAGE_CHILDREN around the run.
    cpu = _children_cpu() - child0 if client.external else time.process_time() - cpu0
    expected = before + count
    deadline = time.monotonic() + 5
    while sink.received() < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    got = sink.received() - before
    if got != count:
        msg = f"{client.name}: the {sink.kind} sink received {got} of {count} messages"
        raise BenchmarkError(msg)
    octets = sink.octets()
    # Where the sink counts bytes, each message must at least have carried its body.
    if (
        octets is not None
        and octets_before is not None
        and octets - octets_before < count * size
    ):
        msg = (
            f"{client.name}: the {sink.kind} sink received "
            f"{octets - octets_before} bytes for {count} bodies of {size} bytes"
        )
        raise BenchmarkError(msg)
    return Sample(count, wall, cpu)


def message_count(client: Client, rtt_ms: float, size: int, quick: bool) -> int:
    """Messages per run, sized so the full run stays near 10 minutes on 2 cores.

    A one-connection client gets about 1.8 s (0.3 s with --quick) of lockstep
    sending: 4 round trips plus ~1 ms + 50 ns/byte of CPU (client and sink) per
    message.  A pool of k connections gets k times that, so every connection
    carries as many messages and connection set-up is amortized alike, but no more
    than that CPU estimate allows in the same time (at RTT 0 the CPU is the limit).
    New-connection-per-message clients get half the count (they are the slowest).
    """
    cpu = 0.001 + size * 50e-9
    seconds, low, high = (0.3, 5, 60) if quick else (1.8, 30, 400)
    base = max(low, min(high, round(seconds / (4 * rtt_ms / 1000 + cpu))))
    if client.new_connection_per_message:
        return max(low // 2, base // 2)
    return min(base * client.connections, max(base, round(seconds / cpu)))


# -- reporting -----------------------------------------------------------------------


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:6.2f}x" if reference else "    n/a"


def print_table(cells: list[Cell]) -> None:
    first = cells[0]
    ref = next((c for c in cells if c.client == REFERENCE), None)
    mode = "STARTTLS" if first.tls else "plain"
    print(f"\nRTT {first.rtt_ms:g} ms, {_size_label(first.size)} body, {mode}")
    print(f"  {'client':<15}{'msgs':>6}{'msg/s':>10}{'vs reuse':>10}"
          f"{'CPU ms/msg':>12}{'vs reuse':>10}{'reps':>6}")  # fmt: skip
    for cell in cells:
        rate_ratio = _ratio(cell.rate, ref.rate if ref else None)
        cpu_ratio = _ratio(cell.cpu_per_message, ref.cpu_per_message if ref else None)
        print(f"  {cell.client:<15}{cell.messages:>6}{cell.rate:>10.1f}{rate_ratio:>10}"
              f"{cell.cpu_per_message * 1000:>12.3f}{cpu_ratio:>10}"
              f"{len(cell.samples):>6}")  # fmt: skip
    sys.stdout.flush()


def _size_label(size: int) -> str:
    return f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"


@dataclass
class TargetCheck:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str


def check_targets(cells: list[Cell]) -> list[TargetCheck]:
    """The issue's targets, on the plain (smtp-sink) rows with 2 KB bodies."""
    index = {(c.rtt_ms, c.size, c.tls, c.client): c for c in cells}

    def cell(rtt: float, client: str) -> Cell | None:
        return index.get((rtt, 2048, False, client))

    checks = []

    def ratio_check(name: str, rtt: float, a: str, b: str, minimum: float) -> None:
        x, y = cell(rtt, a), cell(rtt, b)
        if x is None or y is None:
            checks.append(
                TargetCheck(name, "SKIP", f"needs {a} and {b} at RTT {rtt:g}")
            )
            return
        ratio = x.rate / y.rate
        status = "PASS" if ratio >= minimum else "FAIL"
        detail = (
            f"{x.rate:.1f} vs {y.rate:.1f} msg/s = {ratio:.2f}x (need >= {minimum}x)"
        )
        checks.append(TargetCheck(name, status, detail))

    ratio_check("RTT 20 ms, one connection, 2 KB: smtpkit-1 >= 3.5x smtplib-reuse",
                20, "smtpkit-1", REFERENCE, 3.5)  # fmt: skip
    ratio_check("RTT 20 ms, 8 connections, 2 KB: smtpkit-8 >= 3x aiosmtplib-8",
                20, "smtpkit-8", "aiosmtplib-8", 3.0)  # fmt: skip
    ratio_check("RTT 20 ms, 8 connections, 2 KB: smtpkit-8 >= 1.0x smtp-source-8",
                20, "smtpkit-8", "smtp-source-8", 1.0)  # fmt: skip
    ratio_check("RTT 0, one connection, 2 KB: smtpkit-1 >= 1.5x smtplib-reuse",
                0, "smtpkit-1", REFERENCE, 1.5)  # fmt: skip
    name = "RTT 0, one connection, 2 KB: smtpkit-1 CPU/msg <= smtplib-reuse"
    x, y = cell(0, "smtpkit-1"), cell(0, REFERENCE)
    if x is None or y is None:
        checks.append(
            TargetCheck(name, "SKIP", f"needs smtpkit-1 and {REFERENCE} at RTT 0")
        )
    else:
        ok = x.cpu_per_message <= y.cpu_per_message
        detail = (f"{x.cpu_per_message * 1000:.3f} vs {y.cpu_per_message * 1000:.3f} "
                  f"CPU ms/msg = {x.cpu_per_message / y.cpu_per_message:.2f}x")  # fmt: skip
        checks.append(TargetCheck(name, "PASS" if ok else "FAIL", detail))
    return checks


# -- the run -------------------------------------------------------------------------


def _parse_size(text: str) -> int:
    text = text.strip().lower()
    if text.endswith("k"):
        return int(float(text[:-1]) * 1024)
    return int(text)


def _csv(kind: Callable[[str], object]) -> Callable[[str], list[object]]:
    return lambda text: [kind(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="smtpkit throughput benchmark (see benchmarks/README.md)"
    )
    parser.add_argument("--quick", action="store_true", help="few messages, 1 rep")
    parser.add_argument("--rtt", type=_csv(float), default=[0.0, 2.0, 20.0],
                        help="round-trip times in ms (default 0,2,20)")  # fmt: skip
    parser.add_argument("--sizes", type=_csv(_parse_size), default=[2048, 102400],
                        help="body sizes, e.g. 2k,100k (default)")  # fmt: skip
    parser.add_argument("--clients", type=_csv(str), default=None,
                        help=f"comma list of {', '.join(CLIENTS)}")  # fmt: skip
    parser.add_argument("--transports", type=_csv(str), default=["plain", "starttls"],
                        help="plain, starttls or both (default)")  # fmt: skip
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 3)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--check", action="store_true",
                        help="exit 2 when a target FAILs")  # fmt: skip
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    names = args.clients or [n for n, c in CLIENTS.items() if not c.optional]
    unknown = sorted(set(names) - set(CLIENTS))
    bad_transports = sorted(set(args.transports) - {"plain", "starttls"})
    if unknown or bad_transports:
        parser.error(f"unknown clients/transports: {unknown + bad_transports}")
    args.client_list = [CLIENTS[n] for n in CLIENTS if n in names]
    return args


def _available(client: Client, notes: list[str]) -> bool:
    if client.name == "smtp-source-8" and SMTP_SOURCE is None:
        notes.append(
            "smtp-source-8 skipped: smtp-source not installed (apt-get install postfix)"
        )
        return False
    if client.run is run_aiosmtplib and aiosmtplib is None:
        notes.append("aiosmtplib-8 skipped: aiosmtplib not installed")
        return False
    return True


def _make_certificates(workdir: Path) -> tuple[str, str, str]:
    import trustme  # noqa: PLC0415 - only needed for STARTTLS

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert, key = (workdir / n for n in ("ca.pem", "server.pem", "server.key"))
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    return str(ca_file), str(cert), str(key)


@dataclass
class Endpoint:
    sink: Sink
    ca_file: str | None
    proxies: dict[float, Proxy] = field(default_factory=dict)

    def target(self, rtt_ms: float) -> Target:
        """RTT 0 connects straight to the sink; otherwise through a proxy."""
        port = self.sink.port
        if rtt_ms > 0:
            if rtt_ms not in self.proxies:
                self.proxies[rtt_ms] = Proxy(port, rtt_ms)
            port = self.proxies[rtt_ms].port
        return Target("127.0.0.1", port, self.ca_file is not None, self.ca_file)

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.sink.close()


def _header(
    args: argparse.Namespace, endpoints: dict[bool, Endpoint]
) -> dict[str, object]:
    meta: dict[str, object] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "smtpkit": smtpkit.__version__,
        "aiosmtplib": getattr(aiosmtplib, "__version__", None),
        "sinks": {
            ("starttls" if tls else "plain"): e.sink.kind
            for tls, e in endpoints.items()
        },
        "quick": args.quick,
        "reps": args.reps,
    }
    print("smtpkit benchmark: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    return meta


def _cells_for(
    args: argparse.Namespace, clients: list[Client], tls: bool, rtt: float, size: int
) -> list[Cell]:
    return [
        Cell(rtt, size, tls, c.name, message_count(c, rtt, size, args.quick))
        for c in clients
        if c.supports_tls or not tls
    ]


def _start_endpoints(
    args: argparse.Namespace,
    workdir: Path,
    stack: contextlib.ExitStack,
    notes: list[str],
) -> dict[bool, Endpoint]:
    """The plain sink (smtp-sink, else aiosmtpd) and the STARTTLS sink (aiosmtpd)."""
    endpoints: dict[bool, Endpoint] = {}
    if "plain" in args.transports:
        plain: Sink = SmtpSink(SMTP_SINK, workdir) if SMTP_SINK else AiosmtpdSink()
        if SMTP_SINK is None:
            notes.append("smtp-sink not installed: the plain sink is aiosmtpd (slower)")
        endpoints[False] = Endpoint(plain, None)
        stack.callback(endpoints[False].close)
    if "starttls" in args.transports:
        ca_file, cert, key = _make_certificates(workdir)
        endpoints[True] = Endpoint(AiosmtpdSink((cert, key)), ca_file)
        stack.callback(endpoints[True].close)
    return endpoints


def _measure_all(
    args: argparse.Namespace, clients: list[Client], endpoints: dict[bool, Endpoint]
) -> list[Cell]:
    # Warm up every client once (imports, first-use caches) outside the figures.
    for tls, endpoint in endpoints.items():
        for client in clients:
            if client.supports_tls or not tls:
                count = 3 * client.connections
                measure(client, endpoint.target(0), endpoint.sink, count, 2048)
    cells: list[Cell] = []
    for rtt in args.rtt:
        for tls, endpoint in endpoints.items():
            target = endpoint.target(rtt)
            for size in args.sizes:
                group = _cells_for(args, clients, tls, rtt, size)
                for rep in range(args.reps):
                    shift = rep % len(group)  # rotate the order to spread drift
                    for cell in group[shift:] + group[:shift]:
                        client = CLIENTS[cell.client]
                        sample = measure(
                            client, target, endpoint.sink, cell.messages, size
                        )
                        cell.samples.append(sample)
                print_table(group)
                cells.extend(group)
    return cells


def _write_json(
    path: Path,
    *,
    meta: dict[str, object],
    notes: list[str],
    clients: list[Client],
    cells: list[Cell],
    checks: list[TargetCheck],
) -> None:
    payload = {
        "meta": meta,
        "notes": notes,
        "clients": {c.name: c.description for c in clients},
        "results": [
            {
                **{k: v for k, v in asdict(c).items() if k != "samples"},
                "rate": c.rate,
                "cpu_per_message": c.cpu_per_message,
                "samples": [asdict(s) for s in c.samples],
            }
            for c in cells
        ],
        "targets": [asdict(check) for check in checks],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> int:
    notes: list[str] = []
    clients = [c for c in args.client_list if _available(c, notes)]
    endpoints = _start_endpoints(args, workdir, stack, notes)
    meta = _header(args, endpoints)
    for note in notes:
        print(f"note: {note}")
    started = time.monotonic()
    cells = _measure_all(args, clients, endpoints)
    elapsed = time.monotonic() - started
    print(
        f"\nmeasured in {elapsed:.0f} s; medians of {args.reps} run(s); CPU is the "
        f"client process's (smtp-source: its child rusage); ratios are against "
        f"{REFERENCE} in the same table"
    )
    checks = check_targets(cells)
    caveat = " (--quick: too few messages to judge them)" if args.quick else ""
    print(f"\nTargets (plain transport, 2 KB body){caveat}:")
    for check in checks:
        print(f"{check.status} {check.name}: {check.detail}")
    if args.json is not None:
        _write_json(
            args.json,
            meta=meta,
            notes=notes,
            clients=clients,
            cells=cells,
            checks=checks,
        )
    return 2 if args.check and any(c.status == "FAIL" for c in checks) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smtpkit-bench-") as tmp, \
            contextlib.ExitStack() as stack:  # fmt: skip
        try:
            return run(args, Path(tmp), stack)
        except RuntimeError as exc:  # BenchmarkError, or a sink that did not start
            print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
