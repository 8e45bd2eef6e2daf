"""Client CPU per message on the SMTP transport path: smtpkit against smtplib.

Issue 15 targets 1 and 2.  Starts Postfix's ``smtp-sink`` on loopback (an
aiosmtpd sink in a child process when it is missing), then sends the same
pre-built bytes with

* smtpkit: ``Mailer.send_many`` of ``(bytes, Envelope)`` pairs, one connection;
* smtplib: ``SMTP.sendmail(from, to, bytes)`` in a loop on one connection;
* smtpkit ``Message`` objects, rendered per message (``send_many``, 2 KB only),

and prints messages per second and ``time.process_time()`` microseconds per message
(this process only: the sink runs in another) with the ratios, medians of
``--repeat`` runs.  The sink's own count is checked after every run.

    python benchmarks/transport_cpu.py                  # 2 KB and 100 KB
    python benchmarks/transport_cpu.py --count 500 --sizes 2k --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import os
import pstats
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import smtpkit

SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.net"
SIZES = {"2k": 2 * 1024, "100k": 100 * 1024}
# Issue 15, target 1: client CPU per message on the transport path.
CPU_TARGETS = {"2k": 120.0, "100k": 350.0, "message-2k": 300.0}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Sink:
    """``smtp-sink -c``: accepts everything and prints running counters."""

    _MESG = re.compile(rb"mesg=(\d+)")

    def __init__(self, exe: str, workdir: Path) -> None:
        self.port = free_port()
        self._out = workdir / "sink.out"
        args = [exe, "-c", "-4"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # smtp-sink refuses to run as root otherwise
        args += [f"127.0.0.1:{self.port}", "256"]
        with self._out.open("wb") as out:
            self._process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        self.close()
        msg = f"smtp-sink did not start: {self._out.read_bytes()[-200:]!r}"
        raise RuntimeError(msg)

    def received(self) -> int:
        """Messages the sink has counted so far."""
        # smtp-sink updates its counter line after it answers, so give it a moment.
        time.sleep(0.2)
        counts = self._MESG.findall(self._out.read_bytes()[-512:])
        return int(counts[-1]) if counts else 0

    def close(self) -> None:
        """Stop the sink."""
        self._process.terminate()
        self._process.wait(5)


def build_raw(i: int, size: int) -> bytes:
    """One message of about *size* bytes, CRLF line endings, 72-character lines."""
    line = b"The quick brown fox jumps over the lazy dog; pack my box with liquor.\r\n"
    head = (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: Benchmark message {i}\r\n"
        f"Message-ID: <{i}.bench@example.com>\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
    ).encode()
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def run_smtpkit(port: int, raws: list[bytes]) -> None:
    """``send_many`` of ``(bytes, Envelope)`` pairs on one connection."""
    envelope = smtpkit.Envelope(SENDER, [RECIPIENT])
    config = smtpkit.SMTPConfig(
        host="127.0.0.1",
        port=port,
        tls=smtpkit.TLSMode.NONE,
        pool=smtpkit.PoolLimits(max_connections=1),
    )
    with smtpkit.Mailer(config) as mailer:
        results = mailer.send_many([(raw, envelope) for raw in raws], concurrency=1)
    failed = [r for r in results if not r.ok]
    if failed:
        msg = f"smtpkit: {len(failed)} failed, first: {failed[0].error!r}"
        raise RuntimeError(msg)


def run_smtpkit_messages(port: int, raws: list[bytes]) -> None:
    """``send_many`` of ``Message`` objects (rendered per message), one connection."""
    text = raws[0].split(b"\r\n\r\n", 1)[1].decode().replace("\r\n", "\n")
    messages = (
        smtpkit.Message(
            sender=SENDER, to=[RECIPIENT], subject=f"Benchmark message {i}", text=text
        )
        for i in range(len(raws))
    )
    config = smtpkit.SMTPConfig(
        host="127.0.0.1",
        port=port,
        tls=smtpkit.TLSMode.NONE,
        pool=smtpkit.PoolLimits(max_connections=1),
    )
    with smtpkit.Mailer(config) as mailer:
        results = mailer.send_many(messages, concurrency=1)
    failed = [r for r in results if not r.ok]
    if failed:
        msg = f"smtpkit: {len(failed)} failed, first: {failed[0].error!r}"
        raise RuntimeError(msg)


def run_smtplib(port: int, raws: list[bytes]) -> None:
    """``smtplib.SMTP.sendmail`` in a loop, reusing one connection."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as client:
        for raw in raws:
            client.sendmail(SENDER, [RECIPIENT], raw)


Runner = Callable[[int, list[bytes]], None]


def profile_worker(port: int, raws: list[bytes]) -> None:
    """cProfile one smtpkit run in the worker thread, where the sending happens."""
    profiler = cProfile.Profile(time.thread_time)  # CPU, not wall-clock, time
    original = smtpkit.Mailer._send_batch

    def profiled(self: smtpkit.Mailer, *args: Any) -> None:
        profiler.runcall(original, self, *args)

    smtpkit.Mailer._send_batch = profiled  # type: ignore[method-assign]
    try:
        run_smtpkit(port, raws)
    finally:
        smtpkit.Mailer._send_batch = original  # type: ignore[method-assign]
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler).sort_stats("ncalls").print_stats(60)


def measure(sink: Sink, runner: Runner, raws: list[bytes]) -> tuple[float, float]:
    """Run once; return (messages per second, CPU microseconds per message)."""
    before = sink.received()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    runner(sink.port, raws)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    got = sink.received() - before
    if got != len(raws):
        msg = f"{runner.__name__}: the sink counted {got} of {len(raws)} messages"
        raise RuntimeError(msg)
    return len(raws) / wall, cpu / len(raws) * 1e6


def main() -> int:
    """Run the comparison and print one line per client and a verdict per target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=2000, help="messages per run (2 KB)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--sizes", default="2k,100k", help="comma-separated: 2k,100k")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one smtpkit run per size"
    )
    args = parser.parse_args()
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(exe).exists():
        print("smtp-sink not found (apt-get install postfix)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        sink = Sink(exe, Path(tmp))
        try:
            return _run(sink, args)
        finally:
            sink.close()


def _run(sink: Sink, args: argparse.Namespace) -> int:
    ok = True
    print(f"python {sys.version.split()[0]}, smtpkit {smtpkit.__version__}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    for size_name in args.sizes.split(","):
        size = SIZES[size_name]
        # 100 KB messages take ~50x longer each: fewer of them keep runs short.
        count = args.count if size < 10_000 else max(50, args.count // 10)
        raws = [build_raw(i, size) for i in range(count)]
        clients: dict[str, Runner] = {"smtpkit": run_smtpkit, "smtplib": run_smtplib}
        if size_name == "2k":
            clients["smtpkit-message"] = run_smtpkit_messages
        if args.profile:
            profile_worker(sink.port, raws)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(args.repeat):
            for name, runner in clients.items():  # interleaved: same conditions
                runs[name].append(measure(sink, runner, raws))
        rate = {n: statistics.median(r for r, _ in v) for n, v in runs.items()}
        cpu = {n: statistics.median(c for _, c in v) for n, v in runs.items()}
        print(f"\n{size_name}: {count} messages x {args.repeat} runs (medians)")
        for name in clients:
            print(f"  {name:16} {rate[name]:9,.0f} msg/s {cpu[name]:9,.0f} us CPU/msg")
        ratio = rate["smtpkit"] / rate["smtplib"]
        cpu_ratio = cpu["smtplib"] / cpu["smtpkit"]
        print(f"  smtpkit/smtplib: {ratio:.2f}x msg/s, {cpu_ratio:.2f}x less CPU")
        checks = [(f"CPU <= {CPU_TARGETS[size_name]:.0f} us/msg",
                   cpu["smtpkit"] <= CPU_TARGETS[size_name])]  # fmt: skip
        wanted = 2.0 if size_name == "2k" else 1.0
        checks.append((f">= {wanted:.1f}x smtplib msg/s", ratio >= wanted))
        if "smtpkit-message" in cpu:
            limit = CPU_TARGETS["message-2k"]
            checks.append((f"Message render+send <= {limit:.0f} us/msg",
                           cpu["smtpkit-message"] <= limit))  # fmt: skip
        for label, passed in checks:
            print(f"  {'PASS' if passed else 'FAIL'} {size_name} {label}")
            ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
