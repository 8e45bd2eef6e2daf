"""Throughput and CPU per message: smtpkit next to smtplib, aiosmtplib, Nodemailer,
smtp-source and a raw-socket pipelining client, in one run.

Starts the sinks (Postfix's ``smtp-sink``; an aiosmtpd sink with a throw-away
certificate for STARTTLS; a private Postfix with a discard transport, which offers
CHUNKING) and, for RTT > 0, a latency-injecting proxy (``proxy.py``) in front of
each, then sends with every client and checks the sink's count after every run.
See benchmarks/README.md.

    python benchmarks/bench.py                 # the full run (~25 minutes)
    python benchmarks/bench.py --quick         # a smoke run (~2 minutes)
    python benchmarks/bench.py --rtt 20 --sizes 2k --clients smtpkit-raw-1,smtplib-raw
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import clients_async
import clients_dkim
import clients_ext
from clients import (
    CLIENTS,
    BenchmarkError,
    Client,
    Target,
    Workload,
    aiosmtplib,
    django,
    supports_chunking_switch,
)
from latency import (
    Endpoints,
    ReadyTimes,
    connect_to_ready,
    noop_round_trip,
    print_ready,
)
from servers import AUTH_USER, SMTP_SINK, PostfixSink, Proxy, SmtpSink, postfix_problem
from sink import AiosmtpdSink
from targets import Cell, Sample, TargetCheck, check_targets

import smtpkit

CLIENTS.update(clients_async.ASYNC_CLIENTS)
CLIENTS.update(clients_dkim.DKIM_CLIENTS)
SCENARIOS = ("plain", "starttls", "postfix")
EXTERNAL = {
    "smtp-source": clients_ext.run_smtp_source,
    "node": clients_ext.run_nodemailer,
}


class Sink(Protocol):
    kind: str
    port: int

    def received(self) -> int: ...

    def octets(self) -> int | None: ...

    def close(self) -> None: ...


# -- measuring -----------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _runner(client: Client) -> Callable[[Target, int, Workload, int], object]:
    if client.run is not None:
        return client.run
    return EXTERNAL[client.needs or ""]


def measure(
    client: Client, target: Target, sink: Sink, count: int, work: Workload
) -> Sample:
    """One timed run; raises BenchmarkError unless the sink got exactly *count* more."""
    run = _runner(client)
    gc.collect()
    before, octets_before = sink.received(), sink.octets()
    cpu0, child0, start = time.process_time(), _children_cpu(), time.perf_counter()
    try:
        timed = run(target, count, work, client.connections)
    except Exception as exc:  # any client failure ends the benchmark loudly
        msg = f"{client.name} failed: {exc!r}"
        raise BenchmarkError(msg) from exc
    wall = time.perf_counter() - start
    lag = clients_async.take_lag()  # the asyncio rows measure the loop's lag
    # Client CPU only: the sinks and the proxy are other processes.  A child process
    # (smtp-source) is charged the growth of RUSAGE_CHILDREN around the run; the
    # node driver times itself (its start-up is not sending mail).
    if isinstance(timed, tuple):
        wall, cpu = timed
    elif client.external:
        cpu = _children_cpu() - child0
    else:
        cpu = time.process_time() - cpu0
    expected = before + count
    deadline = time.monotonic() + getattr(sink, "wait_seconds", lambda: 10.0)()
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
        and octets - octets_before < count * work.size
    ):
        msg = (
            f"{client.name}: the {sink.kind} sink received "
            f"{octets - octets_before} bytes for {count} bodies of {work.size} bytes"
        )
        raise BenchmarkError(msg)
    return Sample(count, wall, cpu, lag)


def message_count(client: Client, rtt_ms: float, size: int, quick: bool) -> int:
    """Messages per run, sized so every run takes about as long.

    One connection gets about 1.5 s (0.3 s with --quick) of sending at
    ``client.round_trips`` round trips plus ~1 ms + 50 ns/byte of CPU (client and
    sink) per message; pipelined one-connection rows get twice that, so their
    connection set-up (about 3 round trips) weighs little against the NOOP limit.
    A pool of k connections gets k times as many (each connection carries as
    many), capped by that CPU estimate (at RTT 0 the CPU is the limit).
    New-connection-per-message clients get half the count.  A row defined by its
    count (1,000 concurrent sends) always sends that many.
    """
    if client.fixed_count is not None:
        return client.fixed_count
    cpu = 0.001 + size * 50e-9
    seconds, low, high = (0.3, 5, 80) if quick else (1.5, 30, 600)
    if client.round_trips == 1 and client.connections == 1:
        seconds *= 2
    per_message = client.round_trips * rtt_ms / 1000 + cpu
    base = max(low, min(high, round(seconds / per_message)))
    if client.new_connection_per_message:
        return max(low // 2, base // 2)
    return min(base * client.connections, max(base, round(seconds / cpu)))


# -- reporting -----------------------------------------------------------------------


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:6.2f}x" if reference else "    n/a"


def _size_label(size: int) -> str:
    return f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"


def print_table(cells: list[Cell], noop: float | None) -> None:
    """One table per group (raw bytes, built per message), each with its reference."""
    first = cells[0]
    limit = (
        f"; NOOP {noop * 1000:.1f} ms, limit {1 / noop:.1f} msg/s per connection"
        if noop
        else ""
    )
    print(
        f"\nRTT {first.rtt_ms:g} ms, {_size_label(first.size)} body, {first.scenario}{limit}"
    )
    for group, title in (
        ("raw", "same pre-built bytes"),
        ("build", "built per message"),
    ):
        rows = [c for c in cells if CLIENTS[c.client].group == group]
        if not rows:
            continue
        reference = CLIENTS[rows[0].client].reference
        ref = next((c for c in rows if c.client == reference), None)
        print(f"  {title} (vs {reference})")
        print(f"  {'client':<22}{'msgs':>6}{'msg/s':>10}{'vs ref':>9}{'of limit':>9}"
              f"{'CPU us/msg':>12}{'vs ref':>9}")  # fmt: skip
        for cell in rows:
            conns = CLIENTS[cell.client].connections
            share = f"{cell.rate * noop / conns:8.0%}" if noop else "     n/a"
            rate_ratio = _ratio(cell.rate, ref.rate if ref else None)
            cpu_ratio = _ratio(
                cell.cpu_per_message, ref.cpu_per_message if ref else None
            )
            print(f"  {cell.client:<22}{cell.messages:>6}{cell.rate:>10.1f}"
                  f"{rate_ratio:>9}{share:>9}"
                  f"{cell.cpu_per_message * 1e6:>12.0f}{cpu_ratio:>9}")  # fmt: skip
    for cell in cells:
        if cell.lag is not None:
            print(f"  event loop lag during {cell.client}: {cell.describe_lag()}")
    sys.stdout.flush()


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
    parser.add_argument("--rtt", type=_csv(float), default=[0.0, 20.0],
                        help="round-trip times in ms (default 0,20)")  # fmt: skip
    parser.add_argument("--sizes", type=_csv(_parse_size), default=[2048, 102400],
                        help="body sizes, e.g. 2k,100k (default)")  # fmt: skip
    parser.add_argument("--clients", type=_csv(str), default=None,
                        help=f"comma list of {', '.join(CLIENTS)}")  # fmt: skip
    parser.add_argument("--transports", type=_csv(str), default=list(SCENARIOS),
                        help="plain (smtp-sink), starttls (aiosmtpd), postfix")  # fmt: skip
    parser.add_argument("--ready-rtt", type=float, default=20.0,
                        help="RTT in ms for connect-to-ready (0: skip it)")  # fmt: skip
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 3)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument(
        "--check", action="store_true", help="exit 2 when a target FAILs"
    )
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    names = args.clients or [n for n, c in CLIENTS.items() if not c.optional]
    unknown = sorted(set(names) - set(CLIENTS))
    bad_transports = sorted(set(args.transports) - set(SCENARIOS))
    if unknown or bad_transports:
        parser.error(f"unknown clients/transports: {unknown + bad_transports}")
    args.client_list = [CLIENTS[n] for n in CLIENTS if n in names]
    return args


def _missing(need: str | None) -> str | None:
    """Why a capability is missing, or None when present."""
    problems: dict[str, Callable[[], str | None]] = {
        "aiosmtplib": lambda: None if aiosmtplib else "aiosmtplib not installed",
        "django": lambda: None if django else "Django not installed",
        "chunking": lambda: None if supports_chunking_switch()
        else "this smtpkit has no SMTPConfig(chunking=...)",
        "asyncmailer": lambda: None if clients_async.has_async_mailer()
        else "this smtpkit has no AsyncMailer",
        "smtp-source": lambda: None if clients_ext.SMTP_SOURCE
        else "smtp-source not installed (apt-get install postfix)",
        "node": clients_ext.nodemailer_problem,
        "dkim": clients_dkim.dkim_problem,
    }  # fmt: skip
    return None if need is None else problems[need]()


def _available(clients: list[Client], notes: list[str]) -> list[Client]:
    found, cache = [], {}
    for client in clients:
        if client.needs not in cache:
            cache[client.needs] = _missing(client.needs)
        if cache[client.needs] is None:
            found.append(client)
        else:
            notes.append(f"{client.name} skipped: {cache[client.needs]}")
    return found


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
    proxies: dict[tuple[int, float], Proxy] = field(default_factory=dict)

    def proxied(self, port: int, rtt_ms: float) -> int:
        """RTT 0 connects straight to *port*; otherwise through a proxy."""
        if rtt_ms <= 0:
            return port
        if (port, rtt_ms) not in self.proxies:
            self.proxies[port, rtt_ms] = Proxy(port, rtt_ms)
        return self.proxies[port, rtt_ms].port

    def target(self, rtt_ms: float) -> Target:
        port = self.proxied(self.sink.port, rtt_ms)
        return Target("127.0.0.1", port, self.ca_file is not None, self.ca_file)

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.sink.close()


def _start_endpoints(
    args: argparse.Namespace,
    workdir: Path,
    stack: contextlib.ExitStack,
    notes: list[str],
) -> dict[str, Endpoint]:
    endpoints: dict[str, Endpoint] = {}
    if "plain" in args.transports:
        plain: Sink = SmtpSink(SMTP_SINK, workdir) if SMTP_SINK else AiosmtpdSink()
        if SMTP_SINK is None:
            notes.append("smtp-sink not installed: the plain sink is aiosmtpd (slower)")
        endpoints["plain"] = Endpoint(plain, None)
        stack.callback(endpoints["plain"].close)
    if "starttls" in args.transports:
        ca_file, cert, key = _make_certificates(workdir)
        endpoints["starttls"] = Endpoint(AiosmtpdSink((cert, key)), ca_file)
        stack.callback(endpoints["starttls"].close)
    if "postfix" in args.transports or args.ready_rtt > 0:
        problem = postfix_problem()
        if problem is None:
            endpoints["postfix"] = Endpoint(PostfixSink(), None)
            stack.callback(endpoints["postfix"].close)
        else:
            notes.append(f"Postfix scenario and connect-to-ready skipped: {problem}")
    return endpoints


def _header(
    args: argparse.Namespace, endpoints: dict[str, Endpoint]
) -> dict[str, object]:
    meta: dict[str, object] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
        "smtpkit": smtpkit.__version__,
        "aiosmtplib": getattr(aiosmtplib, "__version__", None),
        "nodemailer": clients_ext.nodemailer_version(),
        "chunking_switch": supports_chunking_switch(),
        "sinks": {name: e.sink.kind for name, e in endpoints.items()},
        "quick": args.quick,
        "reps": args.reps,
    }
    print("smtpkit benchmark: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    return meta


def _runs_on(client: Client, scenario: str) -> bool:
    if scenario == "starttls" and not client.supports_tls:
        return False
    # The Postfix scenario is about the transports (CHUNKING): raw bytes only.
    return scenario != "postfix" or client.group == "raw"


def _measure_all(
    args: argparse.Namespace,
    clients: list[Client],
    endpoints: dict[str, Endpoint],
    noop: dict[tuple[float, str], float],
) -> list[Cell]:
    works = {size: Workload.of_size(size) for size in {*args.sizes, 2048}}
    # Warm up every client once (imports, first-use caches) outside the figures.
    for scenario, endpoint in endpoints.items():
        for client in clients:
            if _runs_on(client, scenario) and scenario in args.transports:
                measure(client, endpoint.target(0), endpoint.sink,
                        2 * client.connections, works[2048])  # fmt: skip
    cells: list[Cell] = []
    for rtt in args.rtt:
        for scenario in [
            s for s in SCENARIOS if s in args.transports and s in endpoints
        ]:
            endpoint = endpoints[scenario]
            target = endpoint.target(rtt)
            if rtt > 0:
                noop[rtt, scenario] = noop_round_trip(target.host, target.port)
            for size in args.sizes:
                group = [Cell(rtt, scenario, size, c.name, message_count(c, rtt, size, args.quick))
                         for c in clients if _runs_on(c, scenario)]  # fmt: skip
                for rep in range(args.reps):
                    shift = rep % len(group)  # rotate the order to spread drift
                    for cell in group[shift:] + group[:shift]:
                        sample = measure(CLIENTS[cell.client], target, endpoint.sink,
                                         cell.messages, works[size])  # fmt: skip
                        cell.samples.append(sample)
                print_table(group, noop.get((rtt, scenario)))
                cells.extend(group)
    return cells


def _measure_ready(
    args: argparse.Namespace,
    endpoints: dict[str, Endpoint],
    noop: dict[tuple[float, str], float],
) -> list[ReadyTimes]:
    endpoint = endpoints.get("postfix")
    if args.ready_rtt <= 0 or endpoint is None:
        return []
    sink = endpoint.sink
    assert isinstance(sink, PostfixSink)  # noqa: S101 - the only sink with AUTH
    rtt = args.ready_rtt
    ports = {
        "plain": endpoint.proxied(sink.port_of("plain"), rtt),
        "starttls+auth": endpoint.proxied(sink.port_of("submission"), rtt),
        "implicit+auth": endpoint.proxied(sink.port_of("smtps"), rtt),
    }
    round_trip = noop.get((rtt, "postfix")) or noop_round_trip(
        "127.0.0.1", ports["plain"]
    )
    ends = Endpoints("127.0.0.1", ports, sink.ca_file, AUTH_USER, sink.password)
    times = connect_to_ready(ends, 3 if args.quick else 8)
    print_ready(times, round_trip)
    return times


def _write_json(path: Path, **parts: object) -> None:
    cells = parts.pop("cells")
    assert isinstance(cells, list)  # noqa: S101 - always a list of Cell
    payload = {
        **parts,
        "results": [
            {**{k: v for k, v in asdict(c).items() if k != "samples"},
             "rate": c.rate, "cpu_per_message": c.cpu_per_message,
             "samples": [asdict(s) for s in c.samples]}
            for c in cells
        ],
    }  # fmt: skip
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"\nwrote {path}")


def _jsonable(value: object) -> object:
    if isinstance(value, (TargetCheck, ReadyTimes)):
        return asdict(value)
    return str(value)


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> int:
    notes: list[str] = []
    clients = _available(args.client_list, notes)
    endpoints = _start_endpoints(args, workdir, stack, notes)
    meta = _header(args, endpoints)
    for note in notes:
        print(f"note: {note}")
    started = time.monotonic()
    noop: dict[tuple[float, str], float] = {}
    cells = _measure_all(args, clients, endpoints, noop)
    ready = _measure_ready(args, endpoints, noop)
    elapsed = time.monotonic() - started
    print(
        f"\nmeasured in {elapsed:.0f} s; medians of {args.reps} run(s); CPU is the "
        "client's (process_time; smtp-source: child rusage; node: its own cpuUsage); "
        "'of limit' is msg/s per connection over 1/NOOP round trip"
    )
    checks = check_targets(cells, noop, ready)
    caveat = " (--quick: too few messages to judge them)" if args.quick else ""
    print(f"\nTargets{caveat}:")
    for check in checks:
        print(f"{check.status} {check.name}: {check.detail}")
    if args.json is not None:
        _write_json(args.json, meta=meta, notes=notes,
                    clients={c.name: c.description for c in clients},
                    noop={f"{r:g} ms {s}": v for (r, s), v in noop.items()},
                    ready=ready, cells=cells, targets=checks)  # fmt: skip
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
