"""An aiosmtpd sink in a child process, for STARTTLS and when smtp-sink is missing.

It accepts everything, advertises PIPELINING (as Postfix and smtp-sink do) and
counts messages and DATA bytes in shared memory, so the benchmark can check that
every message arrived.  It runs in its own process so that its CPU time is never
charged to the client being measured.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.synchronize
import socket
import ssl
import time
from typing import Any

_CTX = multiprocessing.get_context("spawn")


class _CountingHandler:
    def __init__(self, messages: Any, octets: Any) -> None:
        self.messages = messages
        self.octets = octets

    async def handle_EHLO(  # noqa: N802 - aiosmtpd hook name
        self,
        server: Any,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.messages.get_lock():
            self.messages.value += 1
        with self.octets.get_lock():
            self.octets.value += len(envelope.content)
        return "250 2.0.0 Ok: queued"


def _serve(
    *,
    port: int,
    tls_files: tuple[str, str] | None,
    messages: Any,
    octets: Any,
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
) -> None:
    from aiosmtpd.controller import Controller  # noqa: PLC0415 - child process only

    kwargs: dict[str, Any] = {}
    if tls_files is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls_files)
        kwargs = {"tls_context": context, "require_starttls": True}
    controller = Controller(
        _CountingHandler(messages, octets),
        hostname="127.0.0.1",
        port=port,
        ident="bench-sink",
        **kwargs,
    )
    controller.start()
    ready.set()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        controller.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AiosmtpdSink:
    """Start the sink; ``tls_files=(cert, key)`` makes it require STARTTLS."""

    kind = "aiosmtpd"

    def __init__(self, tls_files: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self._messages = _CTX.Value("q", 0)
        self._octets = _CTX.Value("q", 0)
        self._stop = _CTX.Event()
        ready = _CTX.Event()
        self._process = _CTX.Process(
            target=_serve,
            kwargs={
                "port": self.port,
                "tls_files": tls_files,
                "messages": self._messages,
                "octets": self._octets,
                "ready": ready,
                "stop": self._stop,
            },
            name="bench-sink",
            daemon=True,
        )
        self._process.start()
        deadline = time.monotonic() + 30
        while not ready.wait(0.1):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self.close()
                msg = f"the aiosmtpd sink did not start ({self._process.exitcode=})"
                raise RuntimeError(msg)

    def received(self) -> int:
        """Messages received so far."""
        with self._messages.get_lock():
            return int(self._messages.value)

    def octets(self) -> int:
        """DATA bytes received so far (after dot-unstuffing)."""
        with self._octets.get_lock():
            return int(self._octets.value)

    def close(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
