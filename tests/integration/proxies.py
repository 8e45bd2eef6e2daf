"""Proxies on loopback for the socket_factory tests: microsocks and an HTTP CONNECT proxy.

Also the two socket factories of docs/guide/proxies.md, loaded as printed.

Both connect onward from a source address of their own (127.0.0.2 for microsocks,
127.0.0.3 for the CONNECT proxy; all of 127/8 is loopback on Linux), so the SMTP
server sees by the peer address alone that a session came through the proxy.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from smtpkit import SocketFactory

from ..services import service_unavailable
from .smtpd import RecordingHandler, Server, free_port

__all__ = [
    "CONNECT_SOURCE",
    "SOCKS_SOURCE",
    "ConnectProxy",
    "PeerRecordingHandler",
    "connect_proxy",
    "http_connect_factory",
    "load_doc_recipe",
    "microsocks",
    "run_microsocks",
    "socks_socket_factory",
    "track_connections",
]

SOCKS_SOURCE = "127.0.0.2"
CONNECT_SOURCE = "127.0.0.3"
_ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def load_doc_recipe(page: str, name: str) -> Any:
    """Run the ``python`` block of docs/guide/*page* defining *name*; return it.

    The recipes are tested as the documentation prints them, not as a copy.
    """
    text = (_ROOT / "docs" / "guide" / page).read_text(encoding="utf-8")
    for source in _BLOCK.findall(text):
        if f"def {name}(" in source:
            namespace: dict[str, Any] = {"__name__": f"recipe_{name}"}
            exec(compile(source, page, "exec"), namespace)  # noqa: S102 - our docs
            return namespace[name]
    msg = f"no python block of {page} defines {name}"
    raise LookupError(msg)


socks_socket_factory: Callable[[str], SocketFactory] = load_doc_recipe(
    "proxies.md", "socks_socket_factory"
)
http_connect_factory: Callable[..., SocketFactory] = load_doc_recipe(
    "proxies.md", "http_connect_factory"
)


@dataclass
class PeerRecordingHandler(RecordingHandler):
    """A RecordingHandler that also records each message's peer and TLS state.

    ``encrypted`` is read from the transport, so it is true for implicit TLS too
    (aiosmtpd's ``session.ssl`` is set by STARTTLS only).
    """

    peers: list[tuple[str, int]] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.peers.append(session.peer[:2])
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.encrypted.append(ssl_object is not None)
        return await super().handle_DATA(server, session, envelope)


def track_connections(server: Server) -> Callable[[], None]:
    """Count *server*'s open connections; return a wait until none is left.

    Through a proxy the server hears of the client's close a moment later than
    on a direct connection; stopping it before then would leave its TLS
    transport open (a ResourceWarning, an error here).
    """
    controller = server.controller
    opened: set[SMTP] = set()

    class CountingSMTP(SMTP):
        def connection_made(self, transport: Any) -> None:
            opened.add(self)  # STARTTLS calls it again, with the TLS transport
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            super().connection_lost(error)
            opened.discard(self)

    def factory() -> SMTP:
        return CountingSMTP(server.handler, **controller.SMTP_kwargs)

    controller.factory = factory  # type: ignore[method-assign]

    def wait_until_closed() -> None:
        deadline = time.monotonic() + 5
        while opened and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not opened, "the server still has connections open"

    return wait_until_closed


def _wait_for_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), 0.2),
        ):
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def run_microsocks(*options: str) -> Iterator[str]:
    """Run microsocks on a loopback port with *options*; yield its ``host:port``."""
    binary = shutil.which("microsocks")
    if binary is None:
        service_unavailable(
            "microsocks", "not installed (tests/mta/install.sh installs it)"
        )
    port = free_port()
    process = subprocess.Popen(
        [binary, "-i", "127.0.0.1", "-p", str(port), "-b", SOCKS_SOURCE, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not _wait_for_port(port, time.monotonic() + 5):
            service_unavailable("microsocks", "not listening within 5 s of its start")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture
def microsocks() -> Iterator[str]:
    """A microsocks SOCKS5 proxy on loopback; yields its ``socks5://`` URL."""
    with run_microsocks() as address:
        yield f"socks5://{address}"


class ConnectProxy:
    """A minimal HTTP CONNECT proxy (RFC 9110 §9.3.6) in threads, on 127.0.0.1.

    Records each CONNECT request line in ``requests``; connects onward from
    ``CONNECT_SOURCE``; answers ``reply`` instead of 200 when it is set.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.reply: bytes | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # accept() wakes up to see stop()
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._stopped = False
        self._start(self._accept)

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._open.append(client)
            self._start(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("ascii")
        self.requests.append(line)
        if self.reply is not None:
            client.sendall(self.reply)
            client.close()
            return
        host, _, port = line.split()[1].rpartition(":")
        upstream = socket.create_connection(
            (host.strip("[]"), int(port)), 5, (CONNECT_SOURCE, 0)
        )
        self._open.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._start(self._pipe, client, upstream)
        self._pipe(upstream, client)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        for sock in (source, target):  # SMTP needs no half-closed tunnel
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Close every socket and wait for the threads."""
        self._stopped = True
        self._listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    """A ConnectProxy on loopback, stopped after the test."""
    proxy = ConnectProxy()
    yield proxy
    proxy.stop()
