"""SMTPConfig(socket_factory=, source_address=): proxies and local addresses, for real.

The SOCKS5 and HTTP CONNECT recipe of docs/guide/proxies.md runs as printed,
through microsocks and a CONNECT proxy on loopback, over STARTTLS and implicit
TLS with full certificate verification.  The server's peer address proves the
route: each proxy connects onward from an address of its own.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smtpkit import (
    ConnectError,
    ConnectTimeoutError,
    Mailer,
    Message,
    SMTPConfig,
    TLSError,
)

from .proxies import (
    CONNECT_SOURCE,
    SOCKS_SOURCE,
    PeerRecordingHandler,
    connect_proxy,
    http_connect_factory,
    microsocks,
    run_microsocks,
    socks_socket_factory,
    track_connections,
)
from .smtpd import Server, free_port

__all__ = ["connect_proxy", "microsocks"]  # fixtures, used by name

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")


@pytest.fixture(params=["starttls", "implicit"])
def tls_server(
    request: pytest.FixtureRequest,
    start_server: Callable[..., Server],
    server_tls_context: ssl.SSLContext,
    ca_file: str,
) -> Iterator[tuple[Server, dict[str, Any]]]:
    """A server with TLS of either mode, and the config fields that reach it.

    It is stopped only once every connection to it has closed.
    """
    handler = PeerRecordingHandler()
    if request.param == "starttls":
        server = start_server(
            handler=handler, tls_context=server_tls_context, require_starttls=True
        )
    else:
        server = start_server(handler=handler, ssl_context=server_tls_context)
    fields = {
        "host": server.host,
        "port": server.port,
        "tls": request.param,
        "ca_file": ca_file,
        "timeout": 5.0,
    }
    wait_until_closed = track_connections(server)
    yield server, fields
    wait_until_closed()


def send(config: SMTPConfig, **kwargs: Any) -> None:
    with Mailer(config, **kwargs) as mailer:
        mailer.send(MESSAGE)


def test_through_socks5_with_tls(microsocks, tls_server):
    server, fields = tls_server
    send(SMTPConfig(socket_factory=socks_socket_factory(microsocks), **fields))
    assert len(server.messages) == 1
    assert server.handler.encrypted == [True]
    assert [peer[0] for peer in server.handler.peers] == [SOCKS_SOURCE]


def test_through_http_connect_with_tls(connect_proxy, tls_server):
    server, fields = tls_server
    factory = http_connect_factory("127.0.0.1", connect_proxy.port)
    send(SMTPConfig(socket_factory=factory, **fields))
    assert connect_proxy.requests == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]
    assert server.handler.encrypted == [True]
    assert [peer[0] for peer in server.handler.peers] == [CONNECT_SOURCE]


def test_tls_through_a_proxy_still_verifies_the_server(
    connect_proxy, start_server, untrusted_tls_context, ca_file
):
    server = start_server(
        handler=PeerRecordingHandler(),
        tls_context=untrusted_tls_context,
        require_starttls=True,
    )
    wait_until_closed = track_connections(server)
    config = SMTPConfig(
        host=server.host,
        port=server.port,
        ca_file=ca_file,
        timeout=5.0,
        socket_factory=http_connect_factory("127.0.0.1", connect_proxy.port),
    )
    with pytest.raises(TLSError):
        send(config)
    assert connect_proxy.requests  # it did go through the proxy
    assert server.messages == []
    wait_until_closed()


def test_a_pool_of_sessions_through_socks5(microsocks, start_server):
    server = start_server(handler=PeerRecordingHandler())
    config = SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        timeout=5.0,
        socket_factory=socks_socket_factory(microsocks),
    )
    with Mailer(config) as mailer:
        results = mailer.send_many([MESSAGE] * 12)
    assert all(item.error is None for item in results)
    assert len(server.messages) == 12
    assert {peer[0] for peer in server.handler.peers} == {SOCKS_SOURCE}


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        (
            b"HTTP/1.1 503 Unavailable\r\n\r\n",
            "could not open the tunnel: HTTP/1.1 503",
        ),
        (b"HTTP/1.1 200 OK\r\n", "the proxy closed or sent no end"),
    ],
)
def test_a_proxy_refusing_the_tunnel_is_a_transient_connect_error(
    connect_proxy, server, reply, shown
):
    connect_proxy.reply = reply
    config = SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        timeout=5.0,
        socket_factory=http_connect_factory("127.0.0.1", connect_proxy.port),
    )
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config, sleep=waits.append)
    assert shown.lower() in str(info.value).lower()
    assert info.value.is_transient
    assert len(connect_proxy.requests) == 3  # retried like any connect failure
    assert server.messages == []


def test_a_socks_proxy_refusing_the_destination(microsocks):
    config = SMTPConfig(
        host="127.0.0.1",
        port=free_port(),  # nobody listens: microsocks answers "connection refused"
        tls="none",
        timeout=5.0,
        socket_factory=socks_socket_factory(microsocks),
    )
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(config, sleep=waits.append)
    assert "socket_factory" in str(info.value)
    assert "connection refused" in str(info.value).lower()
    assert info.value.is_transient  # the server may come back: retried
    assert len(waits) == 2


def test_source_address_without_a_factory(start_server):
    server = start_server(handler=PeerRecordingHandler())
    config = SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        timeout=5.0,
        source_address="127.0.0.4",
    )
    send(config)
    assert [peer[0] for peer in server.handler.peers] == ["127.0.0.4"]


def test_the_factory_gets_the_server_timeout_and_source_address(start_server):
    server = start_server(handler=PeerRecordingHandler())
    calls: list[tuple[Any, ...]] = []

    def factory(
        host: str, port: int, timeout: float, source_address: tuple[str, int] | None
    ) -> socket.socket:
        calls.append((host, port, timeout, source_address))
        sock = socket.create_connection((host, port), timeout, source_address)
        sock.settimeout(None)  # smtpkit sets the timeout it needs
        return sock

    config = SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        timeout=5.0,
        connect_timeout=2.5,
        source_address=("127.0.0.5", 0),
        socket_factory=factory,
    )
    send(config)
    assert [(c[0], c[1], c[3]) for c in calls] == [
        (server.host, server.port, ("127.0.0.5", 0))
    ]
    assert 2.0 < calls[0][2] <= 2.5  # what is left of connect_timeout
    assert [peer[0] for peer in server.handler.peers] == ["127.0.0.5"]


def _config(server: Server, factory: Any) -> SMTPConfig:
    return SMTPConfig(
        host=server.host,
        port=server.port,
        tls="none",
        timeout=5.0,
        socket_factory=factory,
    )


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(111, "proxy refused"), True),
        (OSError(101, "network unreachable"), True),
    ],
)
def test_an_os_error_from_the_factory_is_a_transient_connect_error(
    server, exc, transient
):
    calls = []

    def factory(*args: Any) -> socket.socket:
        calls.append(args)
        raise exc

    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(_config(server, factory), sleep=waits.append)
    assert info.value.is_transient is transient
    assert len(calls) == 3  # the default policy's three attempts
    assert len(waits) == 2


def test_a_timeout_from_the_factory_is_a_connect_timeout(server):
    def factory(*args: Any) -> socket.socket:
        raise TimeoutError

    with pytest.raises(ConnectTimeoutError):
        send(_config(server, factory), sleep=lambda _: None)


class BrokenProxyError(Exception):
    pass


@pytest.mark.parametrize(
    ("factory", "shown"),
    [
        (
            lambda *a: (_ for _ in ()).throw(BrokenProxyError("auth refused")),
            "raised BrokenProxyError: auth refused",
        ),
        (
            lambda *a: (_ for _ in ()).throw(BrokenProxyError()),
            "raised BrokenProxyError",
        ),
        (lambda *a: None, "returned NoneType, not a socket"),
        (lambda *a: socket.socket(), "returned a socket that is not connected"),
    ],
)
def test_a_broken_factory_is_a_permanent_connect_error(server, factory, shown):
    waits: list[float] = []
    with pytest.raises(ConnectError) as info:
        send(_config(server, factory), sleep=waits.append)
    assert shown in str(info.value)
    assert "socket_factory" in str(info.value)
    assert not info.value.is_transient
    assert waits == []


def test_a_non_socket_result_is_closed(server):
    closed = []

    class NotASocket:
        def close(self) -> None:
            closed.append(True)

    with pytest.raises(ConnectError, match="returned NotASocket"):
        send(_config(server, lambda *a: NotASocket()))
    assert closed == [True]


def test_an_interrupted_factory_propagates(server):
    def factory(*args: Any) -> socket.socket:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        send(_config(server, factory))


@pytest.mark.parametrize("bad", [("", 0), ("127.0.0.1", -1), ("127.0.0.1", 65536)])
def test_source_address_is_checked(bad):
    with pytest.raises(ValueError, match="source_address"):
        SMTPConfig(host="smtp.example.com", source_address=bad)


def test_socket_factory_must_be_callable():
    with pytest.raises(ValueError, match="socket_factory"):
        SMTPConfig(host="smtp.example.com", socket_factory="socks5://proxy")  # type: ignore[arg-type]


@pytest.fixture
def silent_proxy() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_a_stalled_proxy_is_a_connect_timeout(silent_proxy, kind):
    factory = (
        socks_socket_factory(f"socks5://127.0.0.1:{silent_proxy}")
        if kind == "socks5"
        else http_connect_factory("127.0.0.1", silent_proxy)
    )
    config = SMTPConfig(
        host="127.0.0.1",
        port=25,
        tls="none",
        timeout=5.0,
        connect_timeout=0.3,
        socket_factory=factory,
    )
    waits: list[float] = []
    with pytest.raises(ConnectTimeoutError) as info:
        send(config, sleep=waits.append)
    assert info.value.is_transient
    assert len(waits) == 2  # retried like any connect timeout


def test_socks5_with_credentials(start_server):
    server = start_server(handler=PeerRecordingHandler())
    secret = "proxy-secret-0123456789"
    with run_microsocks("-u", "relay", "-P", secret) as address:
        fields: dict[str, Any] = {
            "host": server.host,
            "port": server.port,
            "tls": "none",
            "timeout": 5.0,
        }
        good = socks_socket_factory(f"socks5://relay:{secret}@{address}")
        send(SMTPConfig(socket_factory=good, **fields))
        bad = socks_socket_factory(f"socks5://relay:wrong-{secret}@{address}")
        waits: list[float] = []
        with pytest.raises(ConnectError) as info:
            send(SMTPConfig(socket_factory=bad, **fields), sleep=waits.append)
    assert [peer[0] for peer in server.handler.peers] == [SOCKS_SOURCE]
    assert not info.value.is_transient
    assert waits == []
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
