"""Fixtures that start real SMTP servers (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from smtpkit import SMTPConfig
from smtpkit.auth import Auth

from ..mailers import mailer_kind, make_mailer
from .smtpd import RecordingHandler, Server, check_password

# Fixtures: every test asking for make_mailer runs for Mailer and AsyncMailer.
__all__ = ["mailer_kind", "make_mailer"]

pytestmark = pytest.mark.integration

StartServer = Callable[..., Server]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throw-away certificate authority made for this test run."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA certificate as a PEM file, for ``SMTPConfig(ca_file=...)``."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_tls_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose certificate is valid for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def untrusted_tls_context() -> ssl.SSLContext:
    """A server context signed by a CA the client does not trust."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelined"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    """Run a test against a server without and with PIPELINING (RFC 2920)."""
    return bool(request.param)


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start aiosmtpd servers; each stops when the test ends.

    Keyword arguments go to aiosmtpd's ``Controller``/``SMTP`` (``tls_context``,
    ``require_starttls``, ``ssl_context``, ``authenticator``, ``enable_SMTPUTF8``,
    ``data_size_limit``...); ``handler=`` and ``pipelining=`` pick the handler.
    """
    servers: list[Server] = []

    def start(
        *,
        handler: RecordingHandler | None = None,
        pipelining: bool = False,
        **kwargs: Any,
    ) -> Server:
        server = Server(handler or RecordingHandler(pipelining=pipelining), **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: StartServer, pipelining: bool) -> Server:
    """A plain SMTP server (no TLS, no AUTH), with and without PIPELINING."""
    return start_server(pipelining=pipelining)


@pytest.fixture
def config_for() -> Callable[..., SMTPConfig]:
    """Build an ``SMTPConfig`` pointing at a test server (plain by default)."""

    def build(server: Server, **fields: Any) -> SMTPConfig:
        fields.setdefault("tls", "none")
        fields.setdefault("timeout", 5.0)
        return SMTPConfig(host=server.host, port=server.port, **fields)

    return build


@pytest.fixture
def auth_server(
    start_server: StartServer, server_tls_context: ssl.SSLContext, pipelining: bool
) -> Server:
    """A submission-style server: STARTTLS required, then PLAIN/LOGIN/CRAM-MD5/XOAUTH2."""
    return start_server(
        pipelining=pipelining,
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
        auth_required=True,
    )


@pytest.fixture
def submission(
    auth_server: Server, config_for: Callable[..., SMTPConfig], ca_file: str
) -> Callable[[Auth], SMTPConfig]:
    """Build a STARTTLS config for the AUTH test server with the given strategy."""

    def build(auth: Auth) -> SMTPConfig:
        return config_for(auth_server, tls="starttls", ca_file=ca_file, auth=auth)

    return build
