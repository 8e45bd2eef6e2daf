"""The clients the benchmark compares, and what each one sends.

Two groups, each with its own reference client for the ratios:

- **raw**: every client sends the *same pre-built bytes* (``Workload.data``, built
  once before any timing), so the transports are compared, not the MIME libraries;
  the reference is ``smtplib-raw`` (one reused connection, ``sendmail``).
- **build**: every client builds each message inside the timed run, the way its
  users would (smtpkit ``Message``, stdlib ``EmailMessage``, Django's
  ``EmailMessage``); the reference is ``smtplib-reuse``.

External clients (``smtp-source``, Nodemailer) live in ``clients_ext.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rawclient import send_pipelined

import smtpkit
from smtpkit.contrib.otel import SMTPTelemetry

try:
    import aiosmtplib
except ImportError:  # pragma: no cover - reported in the run header
    aiosmtplib = None  # type: ignore[assignment]  # the aiosmtplib rows are skipped

try:
    import django
except ImportError:  # the django row is skipped
    django = None  # type: ignore[assignment]

SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.net"
SUBJECT = "Benchmark message {i}"
RAW_REFERENCE = "smtplib-raw"
BUILD_REFERENCE = "smtplib-reuse"


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


@dataclass(frozen=True)
class Workload:
    """One body size: the text for the builders and the bytes for the raw clients."""

    size: int
    body: str
    data: bytes  # CRLF line ends, not dot-stuffed; identical for every raw client
    envelope: smtpkit.Envelope

    @classmethod
    def of_size(cls, size: int) -> Workload:
        body = make_body(size)
        data = build_email(0, body).as_bytes(policy=SMTP)
        return cls(size, body, data, smtpkit.Envelope(SENDER, [RECIPIENT]))


# -- where it goes -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls: bool
    ca_file: str | None


def client_context(target: Target) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=target.ca_file) if target.tls else None


# A run function sends *count* messages; it may return its own (wall, cpu) seconds
# when it measured them itself (a child process that excludes its start-up).
SelfTimed = tuple[float, float] | None
RunFn = Callable[[Target, int, Workload, int], SelfTimed]


def supports_chunking_switch() -> bool:
    """Whether this smtpkit has ``SMTPConfig(chunking=...)`` (issue 15, item 4)."""
    return "chunking" in smtpkit.SMTPConfig.model_fields


def smtpkit_config(
    target: Target, connections: int, **extra: Any
) -> smtpkit.SMTPConfig:
    """The config every smtpkit client (threads or asyncio) sends with."""
    return smtpkit.SMTPConfig(
        host=target.host,
        port=target.port,
        tls=smtpkit.TLSMode.STARTTLS if target.tls else smtpkit.TLSMode.NONE,
        ca_file=target.ca_file,
        pool=smtpkit.PoolLimits(max_connections=connections),
        **extra,
    )


def smtpkit_mailer(target: Target, connections: int, **extra: Any) -> smtpkit.Mailer:
    return smtpkit.Mailer(smtpkit_config(target, connections, **extra))


def check_results(name: str, results: list[smtpkit.SendResult], count: int) -> None:
    bad = [r for r in results if not r.ok]
    if len(results) != count or bad:
        detail = bad[0].error if bad else f"{len(results)} results"
        msg = f"{name}: {len(bad)} of {count} messages failed: {detail!r}"
        raise BenchmarkError(msg)


# -- build group ---------------------------------------------------------------------


def run_smtpkit(target: Target, count: int, work: Workload, connections: int) -> None:
    """send_many over a generator of Message, pool of *connections*."""
    messages = (build_message(i, work.body) for i in range(count))
    with smtpkit_mailer(target, connections) as mailer:
        results = mailer.send_many(messages, concurrency=connections)
    check_results("smtpkit", results, count)


def run_smtpkit_send(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """Mailer.send(Message) in a loop on one pooled connection."""
    with smtpkit_mailer(target, connections) as mailer:
        for i in range(count):
            result = mailer.send(build_message(i, work.body))
            if not result.ok:
                msg = f"smtpkit send: message {i} failed: {result!r}"
                raise BenchmarkError(msg)


def run_smtplib_reuse(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """One smtplib.SMTP connection, send_message(EmailMessage) per message."""
    context = client_context(target)
    with smtplib.SMTP(target.host, target.port, timeout=30) as smtp:
        if context is not None:
            smtp.starttls(context=context)
        for i in range(count):
            if smtp.send_message(build_email(i, work.body)):
                msg = f"smtplib: message {i} refused"
                raise BenchmarkError(msg)


def run_smtplib_new(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """A new smtplib.SMTP connection (connect, EHLO, ..., QUIT) per message."""
    context = client_context(target)
    for i in range(count):
        with smtplib.SMTP(target.host, target.port, timeout=30) as smtp:
            if context is not None:
                smtp.starttls(context=context)
            if smtp.send_message(build_email(i, work.body)):
                msg = f"smtplib: message {i} refused"
                raise BenchmarkError(msg)


def _aiosmtplib_workers(
    target: Target, count: int, connections: int, send: Callable[[Any, int], Any]
) -> None:
    """*connections* aiosmtplib.SMTP clients taking messages from one counter."""
    assert aiosmtplib is not None  # noqa: S101 - the client is skipped otherwise
    context = client_context(target)
    numbers = iter(range(count))

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
                refused, _ = await send(smtp, i)
                if refused:
                    msg = f"aiosmtplib: message {i} refused: {refused}"
                    raise BenchmarkError(msg)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(connections)))

    asyncio.run(main())


def run_aiosmtplib(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """aiosmtplib, send_message(EmailMessage) per message."""
    _aiosmtplib_workers(
        target,
        count,
        connections,
        lambda smtp, i: smtp.send_message(build_email(i, work.body)),
    )


def run_django(target: Target, count: int, work: Workload, connections: int) -> None:
    """Django's SMTP backend: one connection, EmailMessage per message."""
    assert django is not None  # noqa: S101 - the client is skipped otherwise
    from django.conf import settings  # noqa: PLC0415 - optional dependency
    from django.core import mail  # noqa: PLC0415

    if not settings.configured:
        settings.configure(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
        django.setup()
    connection = mail.get_connection(
        host=target.host,
        port=target.port,
        use_tls=target.tls,
        timeout=30,
        fail_silently=False,
    )
    if target.ca_file is not None:  # Django has no CA option: trust ours explicitly
        connection.ssl_context = client_context(target)  # type: ignore[attr-defined]
    messages = (
        mail.EmailMessage(
            SUBJECT.format(i=i), work.body, SENDER, [RECIPIENT], connection=connection
        )
        for i in range(count)
    )
    with connection:
        sent = connection.send_messages(list(messages))
    if sent != count:
        msg = f"django: sent {sent} of {count}"
        raise BenchmarkError(msg)


# -- raw group -----------------------------------------------------------------------


def run_smtpkit_raw(
    target: Target, count: int, work: Workload, connections: int, **extra: Any
) -> None:
    """send_many of (bytes, Envelope) pairs, pool of *connections*."""
    items = itertools.repeat((work.data, work.envelope), count)
    with smtpkit_mailer(target, connections, **extra) as mailer:
        results = mailer.send_many(items, concurrency=connections)
    check_results("smtpkit raw", results, count)


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run_smtpkit_raw_failover(
    target: Target, count: int, work: Workload, connections: int, *, dead: bool = False
) -> None:
    """run_smtpkit_raw through a FailoverTransport with one live server.

    With *dead*, a dead port is listed first: the first batch moves on, and the
    rest go straight to the live server while the dead one cools down.
    """
    live = smtpkit_config(target, connections)
    servers = [live]
    if dead:
        dead_port = {"host": "127.0.0.1", "port": _dead_port()}
        servers.insert(0, live.model_copy(update=dead_port))
    transport = smtpkit.FailoverTransport(servers)
    items = itertools.repeat((work.data, work.envelope), count)
    with smtpkit.Mailer(transport=transport) as mailer:
        results = mailer.send_many(items, concurrency=connections)
    check_results("smtpkit raw failover", results, count)
    if any(r.server != transport.stats()[-1].name for r in results):
        msg = "smtpkit raw failover: a result does not name the live server"
        raise BenchmarkError(msg)


def run_smtpkit_raw_failover_dead(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """run_smtpkit_raw_failover with a dead port listed before the live server."""
    run_smtpkit_raw_failover(target, count, work, connections, dead=True)
def _noop(*args: object) -> None:
    """A hook that does nothing: what calling hooks costs by itself."""


NOOP_HOOKS = smtpkit.Hooks(
    before_send=[_noop], after_send=[_noop], on_retry=[_noop], on_failure=[_noop]
)


def run_smtpkit_raw_hooks(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """run_smtpkit_raw with a no-op hook of each kind (before, after, retry, failure)."""
    items = itertools.repeat((work.data, work.envelope), count)
    config = smtpkit_config(target, connections)
    with smtpkit.Mailer(config, hooks=NOOP_HOOKS) as mailer:
        results = mailer.send_many(items, concurrency=connections)
    check_results("smtpkit raw hooks", results, count)


def run_smtpkit_raw_otel(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """run_smtpkit_raw with SMTPTelemetry on: the SDK's tracer (batch processor,
    in-memory exporter) and meter (in-memory reader); every span is checked."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = SMTPTelemetry(tracer_provider, meter_provider=meter_provider)
    items = itertools.repeat((work.data, work.envelope), count)
    mailer = smtpkit.Mailer(smtpkit_config(target, connections), hooks=telemetry.hooks)
    telemetry.watch(mailer.transport)
    with mailer:
        results = mailer.send_many(items, concurrency=connections)
    check_results("smtpkit raw otel", results, count)
    tracer_provider.force_flush()
    sends = [s for s in exporter.get_finished_spans() if s.name == "smtp send"]
    if len(sends) != count:
        msg = f"smtpkit raw otel: {len(sends)} spans for {count} messages"
        raise BenchmarkError(msg)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def run_smtpkit_raw_send(
    target: Target, count: int, work: Workload, connections: int, **extra: Any
) -> None:
    """Mailer.send(bytes, envelope=...) per call, one connection."""
    with smtpkit_mailer(target, connections, **extra) as mailer:
        for i in range(count):
            result = mailer.send(work.data, envelope=work.envelope)
            if not result.ok:
                msg = f"smtpkit raw send: message {i} failed: {result!r}"
                raise BenchmarkError(msg)


def run_smtpkit_raw_nochunk(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """run_smtpkit_raw with SMTPConfig(chunking=False): the DATA path."""
    run_smtpkit_raw(target, count, work, connections, chunking=False)


def run_smtpkit_raw_send_nochunk(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """run_smtpkit_raw_send with SMTPConfig(chunking=False): the DATA path."""
    run_smtpkit_raw_send(target, count, work, connections, chunking=False)


def run_smtplib_raw(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """One smtplib.SMTP connection, sendmail(from, to, bytes) per message."""
    context = client_context(target)
    with smtplib.SMTP(target.host, target.port, timeout=30) as smtp:
        if context is not None:
            smtp.starttls(context=context)
        for i in range(count):
            if smtp.sendmail(SENDER, [RECIPIENT], work.data):
                msg = f"smtplib: message {i} refused"
                raise BenchmarkError(msg)


def run_aiosmtplib_raw(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """aiosmtplib, sendmail(from, [to], bytes) per message."""
    _aiosmtplib_workers(
        target,
        count,
        connections,
        lambda smtp, _: smtp.sendmail(SENDER, [RECIPIENT], work.data),
    )


def run_rawsocket(target: Target, count: int, work: Workload, connections: int) -> None:
    """The ~100-line pipelining client of rawclient.py (the ceiling)."""
    send_pipelined(
        target.host,
        target.port,
        count,
        work.data,
        sender=SENDER,
        recipient=RECIPIENT,
        connections=connections,
        context=client_context(target),
    )


@dataclass(frozen=True)
class Client:
    """One row of the tables.

    Attributes:
        round_trips: Round trips per message on one connection (sizes the runs so
            each takes about as long: 1 when pipelined, 4 in lockstep).
        needs: A capability the row needs ("aiosmtplib", "django", "chunking",
            "smtp-source", "node", "asyncmailer"); the row is skipped when it is
            missing.
        fixed_count: The run's message count when the row is defined by it (1,000
            concurrent sends), instead of one scaled to the RTT.
    """

    name: str
    group: str  # "raw" or "build"
    connections: int
    run: RunFn | None  # None: an external client (clients_ext.py)
    description: str
    round_trips: int = 4
    new_connection_per_message: bool = False
    supports_tls: bool = True
    needs: str | None = None
    optional: bool = False  # run only when named in --clients
    fixed_count: int | None = None  # messages per run, whatever the RTT and size

    @property
    def external(self) -> bool:
        return self.run is None

    @property
    def reference(self) -> str:
        return RAW_REFERENCE if self.group == "raw" else BUILD_REFERENCE


_ALL = [
    # raw bytes: the transports side by side
    Client("smtpkit-raw-1", "raw", 1, run_smtpkit_raw,
           "smtpkit send_many((bytes, Envelope)), pool of 1", round_trips=1),
    Client("smtpkit-raw-8", "raw", 8, run_smtpkit_raw,
           "smtpkit send_many((bytes, Envelope)), pool of 8", round_trips=1),
    Client("smtpkit-raw-1-failover", "raw", 1, run_smtpkit_raw_failover,
           "as smtpkit-raw-1, through FailoverTransport([live])", round_trips=1),
    Client("smtpkit-raw-8-failover", "raw", 8, run_smtpkit_raw_failover,
           "as smtpkit-raw-8, through FailoverTransport([live])", round_trips=1),
    Client("smtpkit-raw-8-fo-dead", "raw", 8, run_smtpkit_raw_failover_dead,
           "as smtpkit-raw-8, FailoverTransport([dead port, live])", round_trips=1,
           optional=True),
    Client("smtpkit-raw-send", "raw", 1, run_smtpkit_raw_send,
           "smtpkit send(bytes, envelope=) per call, 1 connection", round_trips=2),
    Client("smtpkit-raw-send-data", "raw", 1, run_smtpkit_raw_send_nochunk,
           "the same with SMTPConfig(chunking=False): DATA, today's path",
           round_trips=2, needs="chunking"),
    Client("smtpkit-raw-1-hooks", "raw", 1, run_smtpkit_raw_hooks,
           "smtpkit-raw-1 with a no-op hook of each kind", round_trips=1,
           optional=True),
    Client("smtpkit-raw-8-hooks", "raw", 8, run_smtpkit_raw_hooks,
           "smtpkit-raw-8 with a no-op hook of each kind", round_trips=1,
           optional=True),
    Client("smtpkit-raw-1-otel", "raw", 1, run_smtpkit_raw_otel,
           "smtpkit-raw-1 with SMTPTelemetry (SDK, batch processor)",
           round_trips=1, optional=True),
    Client("smtpkit-raw-8-otel", "raw", 8, run_smtpkit_raw_otel,
           "smtpkit-raw-8 with SMTPTelemetry (SDK, batch processor)",
           round_trips=1, optional=True),
    Client("smtpkit-raw-1-data", "raw", 1, run_smtpkit_raw_nochunk,
           "send_many with SMTPConfig(chunking=False), pool of 1", round_trips=1,
           needs="chunking", optional=True),
    Client(RAW_REFERENCE, "raw", 1, run_smtplib_raw,
           "smtplib, one connection, sendmail(from, to, bytes)"),
    Client("aiosmtplib-raw-1", "raw", 1, run_aiosmtplib_raw,
           "aiosmtplib, 1 connection, sendmail(bytes)", needs="aiosmtplib"),
    Client("aiosmtplib-raw-8", "raw", 8, run_aiosmtplib_raw,
           "aiosmtplib, 8 connections, sendmail(bytes)", needs="aiosmtplib"),
    Client("nodemailer-8", "raw", 8, None,
           "Nodemailer pool (maxConnections 8), sendMail({raw})", needs="node"),
    Client("smtp-source-1", "raw", 1, None,
           "Postfix smtp-source -d -s 1 (C, lockstep; its own payload)",
           supports_tls=False, needs="smtp-source"),
    Client("smtp-source-8", "raw", 8, None,
           "Postfix smtp-source -d -s 8 (C, lockstep; its own payload)",
           supports_tls=False, needs="smtp-source"),
    Client("rawsocket-1", "raw", 1, run_rawsocket,
           "100-line raw-socket pipelining client, 1 connection", round_trips=1),
    Client("rawsocket-8", "raw", 8, run_rawsocket,
           "100-line raw-socket pipelining client, 8 connections", round_trips=1),
    # messages built per message: what users write
    Client("smtpkit-1", "build", 1, run_smtpkit,
           "smtpkit send_many(Message), pool of 1", round_trips=1),
    Client("smtpkit-4", "build", 4, run_smtpkit,
           "smtpkit send_many(Message), pool of 4", round_trips=1, optional=True),
    Client("smtpkit-8", "build", 8, run_smtpkit,
           "smtpkit send_many(Message), pool of 8", round_trips=1),
    Client("smtpkit-send", "build", 1, run_smtpkit_send,
           "smtpkit send(Message) per call, 1 connection", round_trips=2,
           optional=True),
    Client("smtplib-new", "build", 1, run_smtplib_new,
           "smtplib, new connection per message", new_connection_per_message=True),
    Client(BUILD_REFERENCE, "build", 1, run_smtplib_reuse,
           "smtplib, one connection, send_message(EmailMessage)"),
    Client("aiosmtplib-8", "build", 8, run_aiosmtplib,
           "aiosmtplib, 8 connections, send_message(EmailMessage)",
           needs="aiosmtplib"),
    Client("django", "build", 1, run_django,
           "Django SMTP backend, one connection, EmailMessage", needs="django"),
]  # fmt: skip
CLIENTS: dict[str, Client] = {c.name: c for c in _ALL}
