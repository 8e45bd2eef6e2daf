"""A socket_factory that fails: named, timed, classified and kept free of secrets.

Regression tests for a review of the proxy support: the recipes of
docs/guide/proxies.md run as printed against proxies on loopback (microsocks, a
proxy that trickles, one that drops every connection, an HTTPS proxy whose
certificate does not verify) and the errors must name the factory, honour
``connect_timeout``, retry only what may heal and never quote a password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import trustme

from smtpkit import (
    ConnectError,
    ConnectTimeoutError,
    Mailer,
    Message,
    RetryPolicy,
    SMTPConfig,
)

from .proxies import (
    connect_proxy,
    http_connect_factory,
    microsocks,
    run_microsocks,
    socks_socket_factory,
)
from .smtpd import Server, free_port

__all__ = ["connect_proxy", "microsocks"]  # fixtures, used by name

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")


def send(config: SMTPConfig, **kwargs: Any) -> None:
    with Mailer(config, **kwargs) as mailer:
        mailer.send(MESSAGE)


def config(port: int, factory: Any = None, **fields: Any) -> SMTPConfig:
    fields.setdefault("timeout", 5.0)
    fields.setdefault("tls", "none")
    return SMTPConfig(host="127.0.0.1", port=port, socket_factory=factory, **fields)


@contextlib.contextmanager
def listener(serve: Callable[[socket.socket, tuple[str, int]], None]) -> Iterator[int]:
    """A loopback port whose connections *serve* handles, one thread each."""
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(0.05)
    stopped = threading.Event()
    threads: list[threading.Thread] = []

    def accept() -> None:
        while not stopped.is_set():
            try:
                conn, peer = lst.accept()
            except TimeoutError:
                continue
            except OSError:  # pragma: no cover - closed under it
                return
            thread = threading.Thread(target=serve, args=(conn, peer), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield lst.getsockname()[1]
    finally:
        stopped.set()
        acceptor.join(5)
        lst.close()
        for thread in threads:
            thread.join(5)


# --- 1. a password the proxy protocol cannot carry ------------------------------


def test_a_non_ascii_socks_password_is_not_shown(start_server):
    server = start_server()
    password = "Pässwort-Geheim"
    with run_microsocks("-u", "relay", "-P", "x") as address:
        url = f"socks5://relay:{quote(password)}@{address}"
        waits: list[float] = []
        with pytest.raises(ConnectError) as info:
            send(config(server.port, socks_socket_factory(url)), sleep=waits.append)
    err = info.value
    assert "socket_factory" in str(err)
    assert "UnicodeEncodeError" in str(err)
    assert not err.is_transient
    assert waits == []
    assert err.__cause__ is None
    assert err.__context__ is None
    shown = "".join(traceback.format_exception(err)) + repr(err)
    assert "ä" not in shown
    assert "\\xe4" not in shown
    assert "Geheim" not in shown
    assert server.messages == []


def test_an_os_error_caused_by_a_unicode_error_is_not_chained(start_server):
    server = start_server()

    def factory(*args: Any) -> socket.socket:
        try:
            "secret-ü".encode("ascii")
        except UnicodeEncodeError as exc:
            raise ConnectionError("proxy handshake failed") from exc
        raise AssertionError  # pragma: no cover

    with pytest.raises(ConnectError) as info:
        send(config(server.port, factory), retry=RetryPolicy(attempts=1))
    assert info.value.is_transient
    assert info.value.__cause__ is None
    assert "secret" not in "".join(traceback.format_exception(info.value))


def test_an_os_error_from_the_factory_stays_the_cause(start_server):
    server = start_server()
    refused = ConnectionRefusedError(111, "proxy refused")

    def factory(*args: Any) -> socket.socket:
        raise refused

    with pytest.raises(ConnectError) as info:
        send(config(server.port, factory), retry=RetryPolicy(attempts=1))
    assert info.value.__cause__ is refused
    assert "<locals>.factory failed: proxy refused" in str(info.value)


# --- 2. connect_timeout through a factory ---------------------------------------


def _trickle(conn: socket.socket, data: bytes, gap: float) -> None:
    for byte in data:
        time.sleep(gap)
        conn.sendall(bytes([byte]))


def _trickling_proxy(kind: str, gap: float) -> Callable[..., None]:
    """A proxy that answers one byte per *gap* seconds, then drops the client."""

    def serve(conn: socket.socket, _peer: tuple[str, int]) -> None:
        with conn, contextlib.suppress(OSError):
            if kind == "socks5":
                conn.recv(16)
                _trickle(conn, b"\x05\x00", gap)
                conn.recv(300)
                _trickle(conn, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x19", gap)
            else:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                _trickle(conn, b"HTTP/1.1 200 Connection established\r\n\r\n", gap)
            time.sleep(1)

    return serve


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_a_trickling_proxy_is_a_connect_timeout_naming_the_factory(kind):
    with listener(_trickling_proxy(kind, 0.06)) as port:
        factory = (
            socks_socket_factory(f"socks5://127.0.0.1:{port}")
            if kind == "socks5"
            else http_connect_factory("127.0.0.1", port)
        )
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError) as info:
            send(
                config(free_port(), factory, connect_timeout=0.3),
                retry=RetryPolicy(attempts=1),
            )
        took = time.monotonic() - started
    assert "socket_factory" in str(info.value)
    assert "greeting" not in str(info.value)
    assert info.value.is_transient
    if kind == "http":  # one deadline for the whole exchange (per read: 2.3 s)
        assert took < 1.0
    else:  # python-socks: a timeout per read, the deadline checked on return
        assert took < 3.0


def test_a_factory_returning_late_gets_a_timeout_and_its_socket_closed(start_server):
    server = start_server()
    made: list[socket.socket] = []

    def slow(
        host: str, port: int, timeout: float, source_address: tuple[str, int] | None
    ) -> socket.socket:
        sock = socket.create_connection((host, port), timeout)
        made.append(sock)
        time.sleep(timeout + 0.05)
        return sock

    with pytest.raises(ConnectTimeoutError) as info:
        send(
            config(server.port, slow, connect_timeout=0.2),
            retry=RetryPolicy(attempts=1),
        )
    assert "socket_factory" in str(info.value)
    assert "took longer than the 0.2 s left of the connect timeout" in str(info.value)
    assert made[0].fileno() == -1
    assert server.messages == []


# --- 3. which recipe failures heal ----------------------------------------------


def _dropper(accepted: list[int]) -> Callable[..., None]:
    def serve(conn: socket.socket, _peer: tuple[str, int]) -> None:
        accepted.append(1)
        conn.close()

    return serve


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_a_proxy_dropping_the_connection_is_transient(kind):
    accepted: list[int] = []
    with listener(_dropper(accepted)) as port:
        factory = (
            socks_socket_factory(f"socks5://127.0.0.1:{port}")
            if kind == "socks5"
            else http_connect_factory("127.0.0.1", port)
        )
        waits: list[float] = []
        with pytest.raises(ConnectError) as info:
            send(config(free_port(), factory), sleep=waits.append)
    assert info.value.is_transient
    assert "socket_factory" in str(info.value)
    assert len(accepted) == 3  # retried like any connect failure
    assert len(waits) == 2


def test_a_server_down_behind_the_socks_proxy_is_transient(microsocks):
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config(free_port(), socks_socket_factory(microsocks)), sleep=waits.append)
    assert info.value.is_transient
    assert "SOCKS proxy" in str(info.value)
    assert len(waits) == 2


def test_a_socks_proxy_refusing_the_credentials_is_permanent(start_server):
    server = start_server()
    with run_microsocks("-u", "relay", "-P", "right") as address:
        factory = socks_socket_factory(f"socks5://relay:wrong@{address}")
        waits: list[float] = []
        with pytest.raises(ConnectError) as info:
            send(config(server.port, factory), sleep=waits.append)
    assert not info.value.is_transient
    assert "ProxyError" in str(info.value)
    assert waits == []


@pytest.mark.parametrize(
    ("reply", "transient"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", False),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", False),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", True),
        (b"HTTP/1.1\r\n\r\n", True),
    ],
)
def test_http_connect_refusals(start_server, connect_proxy, reply, transient):
    server = start_server()
    connect_proxy.reply = reply
    factory = http_connect_factory("127.0.0.1", connect_proxy.port, auth=("u", "pw"))
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config(server.port, factory), sleep=waits.append)
    assert info.value.is_transient is transient
    assert len(connect_proxy.requests) == (3 if transient else 1)
    assert server.messages == []


# --- 4. failures at the proxy are not the server's ------------------------------


@pytest.fixture(scope="module")
def https_proxy_port() -> Iterator[int]:
    """A port that speaks TLS with a certificate for proxy.corp from an unknown CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("proxy.corp").configure_cert(context)

    def serve(conn: socket.socket, _peer: tuple[str, int]) -> None:
        with contextlib.suppress(OSError), conn:
            context.wrap_socket(conn, server_side=True).close()

    with listener(serve) as port:
        yield port


@pytest.mark.parametrize("tls", ["none", "starttls"])
def test_tls_failing_with_the_proxy_is_not_a_server_tls_error(
    start_server, https_proxy_port, tls
):
    server = start_server()

    def https_proxy(
        host: str, port: int, timeout: float, source_address: tuple[str, int] | None
    ) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", https_proxy_port), timeout)
        try:
            context = ssl.create_default_context()
            return context.wrap_socket(raw, server_hostname="proxy.corp")
        except BaseException:
            raw.close()
            raise

    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config(server.port, https_proxy, tls=tls), sleep=waits.append)
    assert type(info.value) is ConnectError
    assert "<locals>.https_proxy failed TLS with the proxy" in str(info.value)
    assert not info.value.is_transient
    assert waits == []


@pytest.mark.parametrize(
    ("exc", "shown", "transient"),
    [
        (
            ssl.SSLCertVerificationError(
                1, "certificate verify failed: Hostname mismatch"
            ),
            "Hostname mismatch",
            False,
        ),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "EOF", True),
    ],
)
def test_a_hand_built_ssl_error_from_the_factory(start_server, exc, shown, transient):
    server = start_server()

    def factory(*args: Any) -> socket.socket:
        raise exc

    with pytest.raises(ConnectError) as info:
        send(config(server.port, factory), retry=RetryPolicy(attempts=1))
    assert "failed TLS with the proxy" in str(info.value)
    assert shown in str(info.value)
    assert info.value.is_transient is transient


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_a_dead_proxy_is_named(start_server, kind):
    server = start_server()
    dead = free_port()
    factory = (
        socks_socket_factory(f"socks5://127.0.0.1:{dead}")
        if kind == "socks5"
        else http_connect_factory("127.0.0.1", dead)
    )
    with pytest.raises(ConnectError) as info:
        send(config(server.port, factory), retry=RetryPolicy(attempts=1))
    text = str(info.value)
    assert text.startswith("socket_factory ")
    assert "refused" in text.lower()
    assert not text.startswith(f"cannot connect to 127.0.0.1:{server.port}")
    assert info.value.is_transient


def test_a_datagram_socket_is_refused(start_server):
    server = start_server()
    made: list[socket.socket] = []

    def udp(host: str, port: int, *args: Any) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((host, port))
        made.append(sock)
        return sock

    with pytest.raises(ConnectError, match="not a stream") as info:
        send(config(server.port, udp), retry=RetryPolicy(attempts=1))
    assert not info.value.is_transient
    assert made[0].fileno() == -1


# --- 5. the SOCKS recipe binds source_address -----------------------------------


def test_the_socks_recipe_connects_from_source_address():
    peers: list[str] = []

    def record(conn: socket.socket, peer: tuple[str, int]) -> None:
        peers.append(peer[0])
        conn.close()

    with listener(record) as port:
        factory = socks_socket_factory(f"socks5://127.0.0.1:{port}")
        with pytest.raises(ConnectError):
            send(
                config(25, factory, source_address="127.0.0.5"),
                retry=RetryPolicy(attempts=1),
            )
    assert peers == ["127.0.0.5"]


# --- 7. source_address --------------------------------------------------------


def test_an_address_this_host_lacks_is_a_permanent_error(start_server):
    server = start_server()
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config(server.port, source_address="192.0.2.10"), sleep=waits.append)
    assert "source_address 192.0.2.10:0" in str(info.value)
    assert not info.value.is_transient
    assert waits == []


def test_a_source_address_of_the_other_family_is_a_permanent_error(start_server):
    server = start_server()
    with pytest.raises(ConnectError) as info:
        send(config(server.port, source_address="::1"), retry=RetryPolicy(attempts=1))
    assert "source_address ::1 is IPv6" in str(info.value)
    assert not info.value.is_transient


def test_source_address_with_a_name_that_resolves_to_several(start_server):
    server: Server = start_server()
    # "localhost" may resolve to ::1 too: only the IPv4 entries are tried.
    send(
        config(server.port, source_address="127.0.0.6").model_copy(
            update={"host": "localhost"}
        )
    )
    assert len(server.messages) == 1


def test_a_refused_connect_from_source_address_is_transient():
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config(free_port(), source_address="127.0.0.1"), sleep=waits.append)
    assert info.value.is_transient
    assert "cannot connect to 127.0.0.1" in str(info.value)
    assert len(waits) == 2
