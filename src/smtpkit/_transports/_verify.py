"""What an open session tells about its server, as a ``VerifyReport``.

``SMTPTransport.verify()`` opens the session with the pool's own set-up code
and hands it here before the QUIT, while the TLS socket can still be asked
about its certificate.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Final

from .._verify_report import VerifyReport
from ._connection import SMTPConnection

__all__ = ["verify_session"]

# The short names of RFC 4514 §3, and emailAddress as OpenSSL prints it.
_SHORT_NAMES: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def verify_session(
    open_session: Callable[[list[tuple[str, float]]], SMTPConnection],
    quit_all: Callable[[list[SMTPConnection]], None],
    *,
    host: str,
    port: int,
    starttls_used: bool,
) -> VerifyReport:
    """Open a session with *open_session*, describe it, and QUIT it with *quit_all*.

    *open_session* is the pool's own set-up, given a list in which each step
    notes when it ended; *quit_all* is the pool's polite close.
    """
    laps: list[tuple[str, float]] = []
    start = time.monotonic()
    conn = open_session(laps)
    conn.laps = None
    try:
        report = session_report(
            conn, host=host, port=port, starttls_used=starttls_used, timings=()
        )
    finally:
        quit_start = time.monotonic()
        quit_all([conn])  # never raises: errors while saying goodbye are ignored
    quit_time = time.monotonic() - quit_start
    timings = (*durations(start, laps), ("quit", quit_time))
    return dataclasses.replace(report, timings=timings)


def durations(
    start: float, laps: Sequence[tuple[str, float]]
) -> tuple[tuple[str, float], ...]:
    """Turn ``(step, instant it ended)`` into ``(step, seconds it took)``."""
    timings = []
    previous = start
    for step, instant in laps:
        timings.append((step, max(0.0, instant - previous)))
        previous = instant
    return tuple(timings)


def session_report(
    conn: SMTPConnection,
    *,
    host: str,
    port: int,
    starttls_used: bool,
    timings: tuple[tuple[str, float], ...],
) -> VerifyReport:
    """Describe the set-up session *conn* (before it is closed)."""
    features = dict(conn.esmtp_features)
    sock = conn.sock
    tls_version = cipher = subject = None
    expires = None
    if isinstance(sock, ssl.SSLSocket):
        tls_version = sock.version()
        cipher = (sock.cipher() or (None,))[0]
        subject, expires = _certificate(sock)
    greeting = conn.greeting
    return VerifyReport(
        host=host,
        port=port,
        banner="" if greeting is None else greeting.text,
        extensions=features,
        size_limit=_size_limit(features.get("size")),
        pipelining="pipelining" in features,
        chunking="chunking" in features,
        smtputf8="smtputf8" in features,
        starttls_used=starttls_used,
        tls_version=tls_version,
        cipher=cipher,
        certificate_subject=subject,
        certificate_expires=expires,
        auth_mechanism=conn.auth_mechanism,
        timings=timings,
    )


def _size_limit(param: str | None) -> int | None:
    """The SIZE parameter as bytes; None for none, 0 (RFC 1870 §4) or garbage."""
    if param is None:
        return None
    value = param.strip()
    if not value.isdigit() or not value.isascii() or int(value) == 0:
        return None
    return int(value)


def _certificate(sock: ssl.SSLSocket) -> tuple[str | None, datetime | None]:
    """The peer certificate's subject and expiry, when Python decoded it.

    ``getpeercert()`` decodes the certificate only when the context verified
    it; an unverified one (``CERT_NONE``) comes back empty.
    """
    try:
        cert = sock.getpeercert()
    except (ValueError, OSError):  # the TLS session ended meanwhile
        return None, None
    if not cert:
        return None, None
    rdns = cert.get("subject", ())
    pairs = [
        pair
        for rdn in (rdns if isinstance(rdns, tuple) else ())
        for pair in rdn
        if isinstance(pair, tuple)  # typeshed allows looser shapes than ssl makes
    ]
    subject = ", ".join(
        f"{_SHORT_NAMES.get(name, name)}={value}" for name, value in pairs
    )
    expires = None
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        try:
            seconds = ssl.cert_time_to_seconds(not_after)
        except ValueError:
            seconds = None
        if seconds is not None:
            expires = datetime.fromtimestamp(seconds, timezone.utc)
    return subject or None, expires
