"""Postfix's ``smtp-sink`` as a test server, and a router that makes its faults intermittent.

``SmtpSink`` starts ``/usr/sbin/smtp-sink`` on 127.0.0.1 with ``-D`` (every completed
mail transaction is appended to one dump file) and ``-c`` (counters on stdout), plus
any fault options (``-r``/``-f``/``-Q``/``-q``/``-W``/``-A``...).  ``message_ids()``
counts the ``Message-ID`` of every dumped message, which is the server-side record
the load and fault suites compare the client's results with.

Note what smtp-sink dumps: a transaction is written out the moment its final ``.``
arrives, *before* the reply to the dot is chosen.  So with ``-r .``, ``-f .``, ``-Q .``
or ``-q .`` the dump holds messages the server then refused (or never answered);
whoever reads the dump decides what it means for the fault in use.

smtp-sink's faults are always on (except ``-W`` delays, which have odds).
``FaultRouter`` is the small complement that makes them intermittent: a TCP proxy
that sends each new connection either to a healthy sink or, with probability
``share``, to a faulty one, so one bulk send meets both.

smtp-sink comes with the ``postfix`` package (tests/mta/install.sh installs it);
``smtp_sink_unavailable_reason()`` says why it cannot run here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from typing_extensions import Self

from smtpkit import SMTPConfig

__all__ = [
    "FaultRouter",
    "SmtpSink",
    "free_port",
    "smtp_sink_path",
    "smtp_sink_unavailable_reason",
]

HOST = "127.0.0.1"
_MESSAGE_ID_RE = re.compile(
    rb"^Message-ID:\s*(<[^>\r\n]*>)", re.MULTILINE | re.IGNORECASE
)
_COUNTERS_RE = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


def smtp_sink_path() -> str | None:
    """Where smtp-sink is installed, or None."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which("smtp-sink", path=path)


def smtp_sink_unavailable_reason() -> str | None:
    """Why smtp-sink cannot run here, or None when it can."""
    if smtp_sink_path() is None:
        return "smtp-sink is not installed (run tests/mta/install.sh as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return "smtp-sink runs as root only with -u USER, and 'nobody' is missing"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _greeting(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(512).startswith(b"220")
    except OSError:
        return False


class SmtpSink:
    """One smtp-sink process on 127.0.0.1 with a dump file and counters.

    Args:
        *options: Extra smtp-sink options, e.g. ``"-r", "rcpt"``.
        directory: Where the dump and the process output go; a fresh temporary
            directory (removed on ``stop``) when None.
        name: Prefix of the files in *directory*, so that sinks can share it.
    """

    def __init__(
        self, *options: str, directory: Path | None = None, name: str = "sink"
    ) -> None:
        self.options = options
        self.name = name
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="smtpkit-sink-"))
        self.dump_path = self.directory / f"{name}.dump"
        self.stdout_path = self.directory / f"{name}.out"
        self.stderr_path = self.directory / f"{name}.err"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<SmtpSink {HOST}:{self.port} {' '.join(self.options)}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(remove=exc is None)

    @property
    def address(self) -> tuple[str, int]:
        """Host and port the sink listens on."""
        return HOST, self.port

    def start(self, *, timeout: float = 10.0) -> None:
        """Start smtp-sink and wait until it greets.

        Raises:
            RuntimeError: smtp-sink is missing or did not start.
        """
        binary = smtp_sink_path()
        if binary is None:
            msg = "smtp-sink is not installed"
            raise RuntimeError(msg)
        # Root must name a user to run as; that user writes the dump.
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        privileges: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.directory, nobody.pw_uid, nobody.pw_gid)
            privileges = ["-u", "nobody"]
        for _ in range(5):  # another process may grab the free port first
            self.port = free_port()
            argv = [
                binary,
                *privileges,
                "-c",
                "-D",
                str(self.dump_path),
                *self.options,
                f"{HOST}:{self.port}",
                "256",
            ]
            with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
                self._process = subprocess.Popen(argv, stdout=out, stderr=err)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._process.poll() is None:
                if _greeting(self.port, timeout=1.0):
                    return
                time.sleep(0.02)
            self._kill()
        msg = f"smtp-sink did not start: {self.stderr_path.read_text(errors='replace')}"
        raise RuntimeError(msg)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def stop(self, *, remove: bool = True) -> None:
        """Stop smtp-sink; remove its temporary directory unless told not to."""
        self._kill()
        if remove and self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def config(self, **fields: Any) -> SMTPConfig:
        """An ``SMTPConfig`` (no TLS) for this sink; *fields* override."""
        return SMTPConfig(host=HOST, port=self.port, tls="none", **fields)

    def dump(self) -> bytes:
        """Everything dumped so far (complete transactions, see the module docstring)."""
        try:
            return self.dump_path.read_bytes()
        except FileNotFoundError:
            return b""

    def message_ids(self) -> collections.Counter[str]:
        """How many times each Message-ID was dumped."""
        return collections.Counter(
            m.decode("ascii", "replace") for m in _MESSAGE_ID_RE.findall(self.dump())
        )

    def counters(self) -> dict[str, int]:
        """smtp-sink's last ``-c`` counters: sessions, QUITs and messages."""
        try:
            found = _COUNTERS_RE.findall(self.stdout_path.read_bytes())
        except FileNotFoundError:
            found = []
        sess, quit_, mesg = found[-1] if found else (b"0", b"0", b"0")
        return {"sessions": int(sess), "quits": int(quit_), "messages": int(mesg)}


class FaultRouter:
    """A TCP proxy sending each connection to a healthy or (sometimes) a faulty server.

    Each accepted connection is joined to *faulty* with probability *share*, and to
    *healthy* otherwise.  Bytes are copied both ways unchanged; when one side closes
    or half-closes, the other side is told the same, so a server that hangs up
    without a reply looks exactly like that to the client.

    Args:
        healthy: Address of the well-behaved server.
        faulty: Address of the misbehaving server.
        share: Probability that a connection goes to *faulty* (0 to 1).
        seed: Seed of the choice, for repeatable runs.
    """

    def __init__(
        self,
        healthy: tuple[str, int],
        faulty: tuple[str, int],
        *,
        share: float,
        seed: int = 0,
    ) -> None:
        self.healthy = healthy
        self.faulty = faulty
        self.share = share
        self.routed = {"healthy": 0, "faulty": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((HOST, 0), backlog=128)
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="fault-router", daemon=True
        )

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def config(self, **fields: Any) -> SMTPConfig:
        """An ``SMTPConfig`` (no TLS) that connects through the router."""
        return SMTPConfig(host=HOST, port=self.port, tls="none", **fields)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)  # so that close() is noticed
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            client.settimeout(None)
            with self._lock:
                faulty = self._rng.random() < self.share
                self.routed["faulty" if faulty else "healthy"] += 1
            try:
                server = socket.create_connection(
                    self.faulty if faulty else self.healthy, timeout=5
                )
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets.update((client, server))
                done = threading.Event()
                for source, target in ((client, server), (server, client)):
                    thread = threading.Thread(
                        target=self._pump,
                        args=(source, target, done),
                        name="fault-router-pump",
                        daemon=True,
                    )
                    self._threads.append(thread)
                    thread.start()

    def _pump(
        self, source: socket.socket, target: socket.socket, done: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):  # a reset ends this direction too
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)  # pass the hang-up (or reset) on
        with self._lock:
            finished = done.is_set()  # the other direction has finished too
            done.set()
        if finished:
            self._forget(source, target)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
                sock.close()

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        with self._lock:
            self._stopping.set()
            socks = list(self._sockets)
            self._sockets.clear()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)
        self._listener.close()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
