"""Round-trip measurements: the NOOP limit and connect-to-ready time.

- ``noop_round_trip``: the median time of a NOOP and its reply on one open
  connection through the same proxy the clients use.  One message per round trip
  is the most a connection can carry with SMTP, so ``1 / noop`` msg/s per
  connection is the "1-round-trip limit" the targets compare against.
- ``connect_to_ready``: the time from nothing to a session ready for MAIL FROM:
  TCP connect, greeting, EHLO, and for the TLS modes the handshake and AUTH
  PLAIN (Postfix + Dovecot).  smtpkit is timed on the path its pool uses to open
  a connection (``SMTPTransport._open_session``: ``create_connection`` then
  ``handshake``), several times on one transport, so a later connection can
  reuse what the first one learnt (a TLS session); smtplib is timed with a new
  ``smtplib.SMTP``/``SMTP_SSL`` per connection sharing one ``SSLContext``, the
  way an application reuses its context.  Both use AUTH PLAIN (smtplib would
  pick CRAM-MD5, one more round trip, if left to choose).
"""

from __future__ import annotations

import smtplib
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from clients import BenchmarkError

import smtpkit

MODES = ("plain", "starttls+auth", "implicit+auth")


def noop_round_trip(host: str, port: int, samples: int = 20) -> float:
    """Median seconds of one NOOP round trip on an open session."""
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.ehlo()
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            code, _ = smtp.noop()
            times.append(time.perf_counter() - start)
            if code != 250:
                msg = f"NOOP answered {code}"
                raise BenchmarkError(msg)
    return statistics.median(times)


@dataclass(frozen=True)
class Endpoints:
    """Where each mode listens (through the proxy), and what to trust."""

    host: str
    ports: dict[str, int]  # mode -> port
    ca_file: str
    username: str
    password: str


@dataclass
class ReadyTimes:
    """Connect-to-ready seconds of one client and mode: the first, then the rest."""

    client: str
    mode: str
    first: float
    later: list[float]

    @property
    def typical(self) -> float:
        """The median of the later connections (the first when there are none)."""
        return statistics.median(self.later) if self.later else self.first


def _smtpkit_opener(
    ends: Endpoints, mode: str
) -> tuple[Callable[[], None], Callable[[], None]]:
    tls = {
        "plain": smtpkit.TLSMode.NONE,
        "starttls+auth": smtpkit.TLSMode.STARTTLS,
        "implicit+auth": smtpkit.TLSMode.IMPLICIT,
    }[mode]
    auth = (
        {}
        if mode == "plain"
        else {"username": ends.username, "password": ends.password}
    )
    config = smtpkit.SMTPConfig(
        host=ends.host,
        port=ends.ports[mode],
        tls=tls,
        ca_file=ends.ca_file,
        local_hostname="client.example.com",
        **auth,
    )
    transport = smtpkit.SMTPTransport(config)
    opened: list[object] = []

    def open_one() -> None:
        # The pool's own opener when present; else the public extension points.
        opener = getattr(transport, "_open_session", None)
        if opener is not None:
            opened.append(opener())
        else:  # pragma: no cover - an smtpkit without the private opener
            conn = transport.create_connection()
            transport.handshake(conn)
            opened.append(conn)

    def close() -> None:
        for conn in opened:
            conn.close()  # type: ignore[attr-defined]  # an SMTPConnection
        opened.clear()
        transport.close()

    return open_one, close


def _smtplib_opener(
    ends: Endpoints, mode: str
) -> tuple[Callable[[], None], Callable[[], None]]:
    context = ssl.create_default_context(cafile=ends.ca_file)
    port = ends.ports[mode]
    opened: list[smtplib.SMTP] = []

    def open_one() -> None:
        if mode == "implicit+auth":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                ends.host, port, local_hostname="client.example.com",
                context=context, timeout=30,
            )  # fmt: skip
        else:
            smtp = smtplib.SMTP(
                ends.host, port, local_hostname="client.example.com", timeout=30
            )
        opened.append(smtp)
        smtp.ehlo()
        if mode == "starttls+auth":
            smtp.starttls(context=context)
            smtp.ehlo()
        if mode != "plain":
            smtp.user, smtp.password = ends.username, ends.password
            code, _ = smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=True)
            if code != 235:
                msg = f"smtplib AUTH answered {code}"
                raise BenchmarkError(msg)

    def close() -> None:
        for smtp in opened:
            smtp.close()
        opened.clear()

    return open_one, close


OPENERS = {"smtpkit": _smtpkit_opener, "smtplib": _smtplib_opener}


def connect_to_ready(ends: Endpoints, connections: int) -> list[ReadyTimes]:
    """Time *connections* sequential opens per client and mode."""
    found = []
    for mode in MODES:
        for client, make in OPENERS.items():
            open_one, close = make(ends, mode)
            times = []
            try:
                for _ in range(connections):
                    start = time.perf_counter()
                    open_one()
                    times.append(time.perf_counter() - start)
            except Exception as exc:
                msg = f"connect-to-ready {client} {mode} failed: {exc!r}"
                raise BenchmarkError(msg) from exc
            finally:
                close()
            found.append(ReadyTimes(client, mode, times[0], times[1:]))
    return found


def print_ready(times: list[ReadyTimes], rtt: float) -> None:
    """The connect-to-ready table, in ms and in round trips of the NOOP *rtt*."""
    print(f"\nConnect to ready (RTT {rtt * 1000:.1f} ms by NOOP), Postfix + Dovecot")
    print(f"  {'mode':<15}{'client':<9}{'first ms':>10}{'later ms':>10}"
          f"{'RTTs':>6}{'vs smtplib':>12}")  # fmt: skip
    by_key = {(t.client, t.mode): t for t in times}
    for t in times:
        ref = by_key.get(("smtplib", t.mode))
        ratio = f"{t.typical / ref.typical:10.2f}x" if ref else "n/a"
        print(f"  {t.mode:<15}{t.client:<9}{t.first * 1000:>10.1f}"
              f"{t.typical * 1000:>10.1f}{t.typical / rtt:>6.1f}{ratio:>12}")  # fmt: skip
