"""The servers the clients talk to: smtp-sink, a private Postfix, and the RTT proxy.

- ``SmtpSink``: Postfix's ``smtp-sink -c`` (C, throws mail away, counts it).
- ``PostfixSink``: a private Postfix instance on 127.0.0.1, started with the test
  suite's own ``tests/postfix/mta.py`` (Dovecot as SASL backend), whose every
  transport is ``discard``.  Unlike smtp-sink it offers CHUNKING (RFC 3030), so
  smtpkit's BDAT path runs; it also has STARTTLS + AUTH and implicit TLS + AUTH
  listeners for the connect-to-ready measurement.  It counts a message when the
  discard agent logs ``status=sent`` for it: accepted *and* through the queue.
- ``Proxy``: ``proxy.py`` in a child process, adding RTT.

The aiosmtpd sink (STARTTLS, or plain when smtp-sink is missing) is ``sink.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from clients import BenchmarkError
from sink import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
)
AUTH_USER = "alice@example.com"  # one of tests/postfix/mta_config.TEST_USERS


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
        stop(self._process)


def postfix_problem() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    _import_mta()
    from tests.postfix.mta import mta_unavailable_reason  # noqa: PLC0415

    return mta_unavailable_reason()


def _import_mta() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests.postfix.mta, the suite's own code


class PostfixSink:
    """A private Postfix whose transports all discard; counts discarded messages."""

    kind = "postfix"
    _SENT = b"status=sent"

    def __init__(self) -> None:
        _import_mta()
        from tests.postfix.mta import Endpoint, PostfixInstance  # noqa: PLC0415

        self.mta = PostfixInstance(
            endpoints=(
                Endpoint("plain"),
                Endpoint("submission", tls="starttls", auth=True),
                Endpoint("smtps", tls="implicit", auth=True),
            ),
            main_cf={
                "default_transport": "discard:benchmark",
                "relay_transport": "discard:benchmark",
            },
        )
        self.mta.start()
        self.port = self.mta.ports["plain"]
        self.ca_file = self.mta.ca_file
        self.password = self.mta.users[AUTH_USER]
        self._offset = 0
        self._count = 0
        self._partial = b""

    def port_of(self, endpoint: str) -> int:
        return self.mta.ports[endpoint]

    def received(self) -> int:
        """Messages discarded so far (read incrementally from Postfix's log)."""
        try:
            with self.mta.log_path.open("rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        text = self._partial + chunk
        complete, _, self._partial = text.rpartition(b"\n")
        self._count += complete.count(self._SENT)
        return self._count

    def octets(self) -> int | None:
        return None

    def wait_seconds(self) -> float:
        """Delivery is asynchronous: allow the queue time to drain."""
        return 120.0

    def close(self) -> None:
        self.mta.stop()


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
            stop(self._process)
            msg = f"proxy.py did not start (said {line!r})"
            raise BenchmarkError(msg)
        self.port = int(line)

    def close(self) -> None:
        stop(self._process)


def _wait_listening(port: int, process: subprocess.Popen[bytes], errors: Path) -> None:
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


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
