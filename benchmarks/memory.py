"""Memory over a long campaign: ``send_iter`` stays flat, ``send_many``'s list grows.

Sends ``--count`` messages (default 1,000,000) through ``Mailer.send_iter`` with a
pool of 4 connections to a fast local sink, sampling this process's resident set
size (RSS, from /proc/self/statm) every ``--every`` messages, then
``--list-count`` messages through ``Mailer.send_many`` for contrast.  Prints the
growth of each and PASS when the stream's growth stays within ``--limit`` MiB
(issue 15, target 6).  The sink's own count is checked against what was sent.

    python benchmarks/memory.py                      # 1,000,000 messages (minutes)
    python benchmarks/memory.py --count 100000       # a quicker look

The sink is Postfix's ``smtp-sink`` when installed (``-u root`` when run as
root), else a minimal accept-everything SMTP server in a child process (this
file, ``--serve``).  Messages are raw bytes with their envelope, each with its own
Message-ID, so the run measures what the bulk engine keeps rather than MIME
rendering.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import smtpkit

MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
ENVELOPE = smtpkit.Envelope(sender="news@example.com", recipients=["rcpt@example.net"])
BODY = b"".join(b"line %04d of the newsletter body, 60 bytes or so.....\r\n" % n
                for n in range(32))  # fmt: skip
SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
)


def rss() -> int:
    """This process's resident set size in bytes, now (not the peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def messages(count: int, tag: str) -> Iterator[tuple[bytes, smtpkit.Envelope]]:
    """A generator, as a campaign reading its rows would be: nothing materialised."""
    for n in range(count):
        head = b"Message-ID: <%s.%d@memory.bench>\r\nSubject: issue %d\r\n\r\n" % (
            tag.encode(),
            n,
            n,
        )
        yield head + BODY, ENVELOPE


# -- sinks -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Session(socketserver.StreamRequestHandler):
    """Accept everything, advertise PIPELINING, count messages."""

    def handle(self) -> None:
        # Replies go out one write each: without NODELAY, Nagle holds them back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        write = self.wfile.write
        write(b"220 sink ESMTP\r\n")
        in_data = False
        for line in self.rfile:
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    self.server.count += 1  # type: ignore[attr-defined]
                    write(b"250 2.0.0 Ok: queued\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                in_data = True
                write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                write(b"221 bye\r\n")
                return
            else:
                write(b"250 ok\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    count = 0


def serve(port: int) -> None:
    """Run the fallback sink (``--serve PORT``); prints its count when stopped."""
    with _Server(("127.0.0.1", port), _Session) as server:
        print("ready", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        print(f"mesg={server.count}", flush=True)


class Sink:
    """smtp-sink, or the fallback sink, in a child process; ``received()`` counts."""

    _MESG = re.compile(rb"mesg=(\d+)")

    def __init__(self, workdir: Path, *, python: bool = False) -> None:
        self.port = free_port()
        self._out = workdir / "sink.out"
        if SMTP_SINK is not None and not python:
            self.kind = "smtp-sink"
            args = [SMTP_SINK, "-c", "-4"]
            if os.geteuid() == 0:
                args += ["-u", "root"]
            args += [f"127.0.0.1:{self.port}", "1000"]
        else:
            self.kind = "python socket sink"
            args = [sys.executable, __file__, "--serve", str(self.port)]
        with self._out.open("wb") as out:
            self._process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError as exc:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    msg = "the sink did not start: " + self._out.read_text()
                    raise SystemExit(msg) from exc
                time.sleep(0.05)

    def received(self) -> int:
        if self.kind != "smtp-sink":  # the fallback prints its count when stopped
            self.close()
        with self._out.open("rb") as out:
            out.seek(max(0, self._out.stat().st_size - 256))
            counts = self._MESG.findall(out.read())
        return int(counts[-1]) if counts else 0

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(2)  # SIGINT: the fallback prints its count
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


# -- the runs ----------------------------------------------------------------------


def mailer(port: int) -> smtpkit.Mailer:
    config = smtpkit.SMTPConfig(
        host="127.0.0.1",
        port=port,
        tls="none",
        pool=smtpkit.PoolLimits(max_connections=4, max_messages_per_connection=100_000),
    )
    return smtpkit.Mailer(config)


def run_stream(port: int, count: int, every: int) -> tuple[int, list[tuple[int, int]]]:
    """Send *count* messages through send_iter; RSS sampled every *every*."""
    samples: list[tuple[int, int]] = []
    failed = 0
    with mailer(port) as m:
        gc.collect()
        samples.append((0, rss()))
        start = time.perf_counter()
        with m.send_iter(messages(count, "iter")) as stream:
            for done, result in enumerate(stream, 1):
                failed += not result.ok
                if done % every == 0:
                    samples.append((done, rss()))
                    rate = done / (time.perf_counter() - start)
                    print(
                        f"  send_iter {done:>9,}  RSS {samples[-1][1] / MIB:7.1f} MiB"
                        f"  ({rate:,.0f} msg/s)",
                        flush=True,
                    )
    return failed, samples


def run_list(port: int, count: int) -> tuple[int, int, int]:
    """Send *count* messages through send_many; RSS before and with the list held."""
    with mailer(port) as m:
        gc.collect()
        before = rss()
        results = m.send_many(messages(count, "list"))
        after = rss()
        failed = sum(not r.ok for r in results)
    return failed, before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--list-count", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=50_000)
    parser.add_argument("--limit", type=float, default=50.0, help="MiB of growth")
    parser.add_argument(
        "--python-sink", action="store_true", help="the fallback sink, not smtp-sink"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    every = max(1, min(args.every, args.count))
    print(
        f"smtpkit {smtpkit.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()} x {os.cpu_count()} CPU(s); pool of 4 connections; "
        f"{len(BODY) + 60} byte messages"
    )
    with tempfile.TemporaryDirectory() as workdir:
        sink = Sink(Path(workdir), python=args.python_sink)
        try:
            print(f"sink: {sink.kind} on 127.0.0.1:{sink.port}")
            started = time.perf_counter()
            failed, samples = run_stream(sink.port, args.count, every)
            elapsed = time.perf_counter() - started
            list_failed, before, after = (
                run_list(sink.port, args.list_count) if args.list_count else (0, 0, 0)
            )
            received = sink.received()
        finally:
            sink.close()
    base = samples[0][1]
    peak = max(value for _, value in samples)
    growth = (peak - base) / MIB
    settled = samples[1][1] if len(samples) > 1 else base
    print(
        f"\nsend_iter: {args.count:,} messages in {elapsed:.0f} s, {failed} failed; "
        f"RSS {base / MIB:.1f} MiB at the start, peak {peak / MIB:.1f} MiB: "
        f"growth {growth:.1f} MiB ({(samples[-1][1] - settled) / MIB:+.1f} MiB after "
        f"the first {samples[1][0] if len(samples) > 1 else 0:,} messages)"
    )
    if args.list_count:
        per = (after - before) / args.list_count
        print(
            f"send_many: {args.list_count:,} messages, {list_failed} failed; RSS "
            f"{before / MIB:.1f} -> {after / MIB:.1f} MiB: growth "
            f"{(after - before) / MIB:.1f} MiB, {per:,.0f} bytes per message "
            f"(~{per * args.count / MIB:,.0f} MiB for {args.count:,})"
        )
    expected = args.count + args.list_count
    counted = received == expected
    print(f"sink counted {received:,} of {expected:,} messages")
    ok = counted and failed == 0 and growth <= args.limit
    verdict = "PASS" if ok else "FAIL"
    print(
        f"{verdict}: send_iter RSS growth {growth:.1f} MiB over {args.count:,} "
        f"messages (target <= {args.limit:g} MiB)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
