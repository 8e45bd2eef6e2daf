"""Error messages that name the server and say what to change (issue 9, items 5-7).

Each test provokes the failure against a real server on 127.0.0.1 (aiosmtpd, or a
raw socket script where aiosmtpd cannot misbehave that way) and checks the exact
text a user reads, its transience, and that nothing reached the server.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from smtpkit import (
    AuthenticationError,
    AuthenticationRequiredError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    GreetingRefusedError,
    Mailer,
    Message,
    NotSupportedError,
    RetryPolicy,
    SenderRefusedError,
    ServerDisconnectedError,
    SMTPConfig,
    TLSError,
)
from smtpkit._transports import _hints

from .rawserver import RawConn, RawServer
from .scripted import wiretap
from .smtpd import check_password, free_port

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="hi", text="x")
SECRET = "pa55-Wörd-never-shown"


def send(config: SMTPConfig, *, retry: RetryPolicy | None = None) -> list[float]:
    """Send MESSAGE with the default retry policy; return the waits it slept."""
    waits: list[float] = []
    kwargs = {"retry": retry} if retry is not None else {}
    with Mailer(config, sleep=waits.append, **kwargs) as mailer:
        mailer.send(MESSAGE)
    return waits


def silent(conn: RawConn) -> None:
    """Accept and say nothing, like an implicit-TLS server waiting for a ClientHello."""
    conn.wait_closed()


# -- item 5: the endpoint is named ------------------------------------------------


def test_refused_connection_names_host_port_and_tls_mode():
    port = free_port()
    config = SMTPConfig(host="127.0.0.1", port=port, tls="none")
    with pytest.raises(ConnectError) as info:
        send(config, retry=RetryPolicy.never())
    assert str(info.value) == (
        f"cannot connect to 127.0.0.1:{port} (tls=none): connection refused"
    )
    assert info.value.is_transient  # the server may be restarting
    assert info.value.command == "connect"
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


@pytest.fixture
def unresolvable(monkeypatch: pytest.MonkeyPatch):
    """Make host names under .invalid fail to resolve with a chosen error, without
    asking any resolver (tests send no traffic beyond loopback)."""
    errors: dict[str, socket.gaierror] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            raise errors["next"]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return errors


def test_unknown_host_is_named_and_not_retried(unresolvable):
    unresolvable["next"] = socket.gaierror(
        socket.EAI_NONAME, "Name or service not known"
    )
    config = SMTPConfig(host="smtp.exmaple.invalid", username="u", password=SECRET)
    with pytest.raises(ConnectError) as info:
        send(config)
    exc = info.value
    assert isinstance(exc.__cause__, socket.gaierror)
    assert str(exc) == (
        "cannot resolve smtp.exmaple.invalid (port 587, tls=starttls): "
        "name or service not known; check the host name"
    )
    assert not exc.is_transient
    assert exc.attempts == 1
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)


def test_a_temporary_resolver_failure_is_retried(unresolvable):
    unresolvable["next"] = socket.gaierror(
        socket.EAI_AGAIN, "Temporary failure in name resolution"
    )
    config = SMTPConfig(host="smtp.example.invalid")
    with pytest.raises(ConnectError) as info:
        send(config, retry=RetryPolicy(attempts=2, wait_initial=0, wait_jitter=0))
    assert info.value.is_transient
    assert info.value.attempts == 2
    assert str(info.value) == (
        "cannot resolve smtp.example.invalid (port 587, tls=starttls): "
        "temporary failure in name resolution"
    )


def test_greeting_timeout_names_the_setting_and_stays_transient():
    with RawServer(silent) as server:
        config = SMTPConfig(
            host="127.0.0.1", port=server.port, tls="none", connect_timeout=0.3
        )
        with pytest.raises(ConnectTimeoutError) as info:
            send(config, retry=RetryPolicy.never())
    assert str(info.value) == (
        f"no greeting from 127.0.0.1:{server.port} (tls=none) within 0.3 s "
        "(connect_timeout=0.3); a server that expects implicit TLS is silent "
        "too: if this is an SMTPS port, set tls='implicit' (an smtps:// URL)"
    )
    assert info.value.is_transient
    assert not isinstance(info.value, TLSError)


def test_greeting_timeout_without_connect_timeout_names_timeout():
    with RawServer(silent) as server:
        config = SMTPConfig(host="127.0.0.1", port=server.port, tls="none", timeout=0.3)
        with pytest.raises(
            ConnectTimeoutError,
            match=r"within 0\.3 s \(timeout=0\.3; set connect_timeout to change it\)",
        ):
            send(config, retry=RetryPolicy.never())


def test_implicit_tls_handshake_timeout_is_named():
    with RawServer(silent) as server:
        config = SMTPConfig(
            host="127.0.0.1", port=server.port, tls="implicit", connect_timeout=0.3
        )
        with pytest.raises(ConnectTimeoutError) as info:
            send(config, retry=RetryPolicy.never())
    assert str(info.value) == (
        f"timed out: TLS handshake with 127.0.0.1:{server.port} (tls=implicit) "
        "took longer than 0.3 s (connect_timeout=0.3)"
    )
    assert info.value.is_transient


def test_untrusted_certificate_says_to_set_ca_file(
    start_server, untrusted_tls_context, config_for, ca_file
):
    server = start_server(tls_context=untrusted_tls_context, require_starttls=True)
    with pytest.raises(TLSError) as info:
        send(config_for(server, tls="starttls", ca_file=ca_file))
    assert str(info.value).startswith(
        f"TLS failed with 127.0.0.1:{server.port} (tls=starttls) during STARTTLS: "
        "the certificate is not trusted (unable to get local issuer certificate); "
        "for a private or test CA, set ca_file to the CA's PEM file"
    )
    assert info.value.attempts == 1
    assert server.messages == []


def test_hostname_mismatch_says_which_name(start_server, ca, ca_file):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.test").configure_cert(context)
    server = start_server(ssl_context=context)
    config = SMTPConfig(
        host="localhost", port=server.port, tls="implicit", ca_file=ca_file, timeout=5
    )
    with pytest.raises(TLSError) as info:
        send(config)
    assert str(info.value).startswith(
        f"TLS failed with localhost:{server.port} (tls=implicit) during the TLS "
        "handshake: the certificate is not valid for 'localhost' (Hostname mismatch"
    )
    assert str(info.value).endswith("connect by a name the certificate lists")


def test_no_common_tls_version_names_tls_min_version(
    start_server, ca, config_for, ca_file
):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    server = start_server(tls_context=context, require_starttls=True)
    config = config_for(server, tls="starttls", ca_file=ca_file, tls_min_version="1.3")
    with pytest.raises(TLSError) as info:
        send(config)
    # aiosmtpd hangs up rather than sending a protocol_version alert; others
    # send the alert.  Either way the setting to look at is named.
    assert str(info.value) in {
        f"TLS failed with 127.0.0.1:{server.port} (tls=starttls) during STARTTLS: "
        + detail
        for detail in (
            "the server closed the connection in the handshake; it may not accept "
            "tls_min_version=1.3",
            "no TLS version that both sides accept (tls_min_version=1.3) "
            "(TLSV1_ALERT_PROTOCOL_VERSION)",
        )
    }


@pytest.mark.parametrize(
    ("field", "make", "expected"),
    [
        ("ca_file", None, "ca_file {path!r} does not exist"),
        ("client_cert", None, "client_cert {path!r} does not exist"),
        ("ca_path", None, "ca_path {path!r} does not exist"),
        ("ca_file", "dir", "ca_file {path!r} is not a file"),
        ("ca_path", "file", "ca_path {path!r} is not a directory"),
        ("ca_file", "garbage", "from ca_file {path!r}: "),
        ("client_cert", "garbage", "from client_cert {path!r}: "),
    ],
)
def test_tls_file_errors_name_the_field_and_path(tmp_path, field, make, expected):
    path = tmp_path / "tls.pem"
    if make == "dir":
        path.mkdir()
    elif make in ("file", "garbage"):
        path.write_text("not a certificate\n")
    config = SMTPConfig(host="smtp.example.com", **{field: str(path)})
    with pytest.raises(ConfigurationError) as info:
        Mailer(config)
    text = str(info.value)
    assert text.startswith("cannot load TLS certificates")
    assert expected.format(path=str(path)) in text


# -- item 6: TLS mode / port mismatch ---------------------------------------------


def test_implicit_tls_against_a_plaintext_server_says_use_starttls(
    start_server, config_for
):
    server = start_server()  # plain SMTP: greets with "220 ..." in cleartext
    with pytest.raises(TLSError) as info:
        send(config_for(server, tls="implicit"))
    assert str(info.value) == (
        f"127.0.0.1:{server.port} (tls=implicit) did not answer the TLS handshake "
        "with TLS (WRONG_VERSION_NUMBER): the server probably sent a plaintext "
        "SMTP greeting; use tls='starttls' (the default; an smtp:// URL) for ports "
        "587 and 25; tls='implicit' is for port 465"
    )
    assert not info.value.is_transient
    assert info.value.attempts == 1
    assert server.messages == []


@pytest.fixture
def as_smtps_port(monkeypatch):
    """Treat *port* like 465 (no test binds a privileged port)."""

    def mark(port: int) -> None:
        monkeypatch.setattr(_hints, "IMPLICIT_TLS_PORTS", frozenset({port}))

    return mark


def test_starttls_against_an_implicit_tls_port_fails_fast_with_the_fix(
    start_server, server_tls_context, as_smtps_port
):
    # Default STARTTLS, default timeouts (30 s), against an implicit-TLS aiosmtpd:
    # it waits silently for a ClientHello.  Before: 2 x 30 s, then "no greeting".
    server = start_server(ssl_context=server_tls_context)
    as_smtps_port(server.port)
    config = SMTPConfig(host="127.0.0.1", port=server.port)
    waits: list[float] = []
    started = time.monotonic()
    with pytest.raises(TLSError) as info:
        waits = send(config)
    elapsed = time.monotonic() - started
    assert str(info.value) == (
        f"no greeting from 127.0.0.1:{server.port} (tls=starttls) within 3 s: "
        f"port {server.port} probably expects implicit TLS, where the server waits "
        "silently for the client to start TLS; set tls='implicit' (an smtps:// "
        "URL); if this server really is plaintext and slow to greet, set "
        "connect_timeout"
    )
    assert not info.value.is_transient
    assert info.value.attempts == 1
    assert waits == []
    assert 2.9 < elapsed < 4.5  # measured: 3.0 s, the cap; never 30 s or a retry
    assert server.messages == []


def test_an_explicit_connect_timeout_is_honoured_on_an_smtps_port(as_smtps_port):
    with RawServer(silent) as server:
        as_smtps_port(server.port)
        config = SMTPConfig(
            host="127.0.0.1", port=server.port, tls="none", connect_timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(TLSError) as info:
            send(config)
        assert time.monotonic() - started < 1.5
    assert str(info.value) == (
        f"no greeting from 127.0.0.1:{server.port} (tls=none) within 0.5 s: "
        f"port {server.port} probably expects implicit TLS, where the server waits "
        "silently for the client to start TLS; set tls='implicit' (an smtps:// "
        "URL); if this server really is plaintext and slow to greet, raise "
        "connect_timeout=0.5"
    )


@pytest.mark.parametrize(
    ("sent", "count"), [(b"220", 3), (b"220-mail.example.test\r\n", 23)]
)
def test_a_partial_greeting_is_incomplete_not_silent(sent, count):
    # Some bytes came: the server is not an implicit-TLS one waiting for the
    # client, so there is no "maybe SMTPS" hint.
    def stall(conn: RawConn) -> None:
        conn.send(sent)
        conn.wait_closed()

    with RawServer(stall) as server:
        config = SMTPConfig(
            host="127.0.0.1", port=server.port, tls="none", connect_timeout=0.3
        )
        with pytest.raises(ConnectTimeoutError) as info:
            send(config, retry=RetryPolicy.never())
    assert str(info.value) == (
        f"incomplete greeting from 127.0.0.1:{server.port} (tls=none) within 0.3 s: "
        f"the server sent {count} bytes of it, then nothing (connect_timeout=0.3)"
    )
    assert info.value.is_transient


def test_a_partial_greeting_on_an_smtps_port_is_no_mismatch(as_smtps_port):
    def stall(conn: RawConn) -> None:
        conn.send(b"22")
        conn.wait_closed()

    with RawServer(stall) as server:
        as_smtps_port(server.port)
        config = SMTPConfig(host="127.0.0.1", port=server.port, tls="starttls")
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError) as info:
            send(config, retry=RetryPolicy.never())
        assert time.monotonic() - started < 4.5
    assert str(info.value) == (
        f"incomplete greeting from 127.0.0.1:{server.port} (tls=starttls) within "
        "3 s: the server sent 2 bytes of it, then nothing (smtpkit waits 3 s on "
        f"port {server.port} unless connect_timeout is set)"
    )
    assert not isinstance(info.value, TLSError)


def test_a_plain_server_on_an_smtps_port_still_works(start_server, as_smtps_port):
    # The short wait only cuts off silence: a greeting in time is fine.
    server = start_server()
    as_smtps_port(server.port)
    send(SMTPConfig(host="127.0.0.1", port=server.port, tls="none"))
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    "record", [b"\x16\x03\x01\x00\x2a", b"\x15\x03\x03\x00\x02\x02\x46"]
)
def test_tls_bytes_instead_of_a_greeting_fail_at_once(record):
    def tls_first(conn: RawConn) -> None:
        conn.send(record)
        conn.wait_closed()

    with RawServer(tls_first) as server:
        config = SMTPConfig(host="127.0.0.1", port=server.port, tls="starttls")
        started = time.monotonic()
        with pytest.raises(TLSError) as info:
            send(config)
        assert time.monotonic() - started < 1.0  # no wait for a line, no retry
    assert str(info.value) == (
        f"127.0.0.1:{server.port} (tls=starttls) answered with TLS where a "
        "plaintext SMTP greeting was expected: the server spoke TLS first; "
        "set tls='implicit' (an smtps:// URL)"
    )
    assert not info.value.is_transient
    assert info.value.attempts == 1


def test_mailpit_style_url_without_starttls_suggests_tls_none(start_server):
    server = start_server()  # like Mailpit on :1025: no STARTTLS, no AUTH
    log = wiretap(server)
    config = SMTPConfig.from_url(f"smtp://127.0.0.1:{server.port}")
    with pytest.raises(NotSupportedError) as info:
        send(config)
    assert str(info.value) == (
        f"127.0.0.1:{server.port} (tls=starttls) does not offer STARTTLS, which "
        "tls='starttls' (the default, also for smtp:// URLs) requires; for a local "
        "test server such as Mailpit or MailHog use tls='none' (?tls=none in a "
        "URL), but only on loopback or a trusted network: without TLS the message "
        "and any password travel in cleartext"
    )
    assert info.value.command == "STARTTLS"
    assert log == ["EHLO", "QUIT"]
    # The suggested fix works.
    send(SMTPConfig.from_url(f"smtp://127.0.0.1:{server.port}?tls=none"))
    assert len(server.messages) == 1


# -- item 7: 530 at MAIL FROM means "log in first" ------------------------------------


def test_530_authentication_required_says_set_credentials(start_server, config_for):
    server = start_server(authenticator=check_password, auth_required=True)
    with pytest.raises(AuthenticationRequiredError) as info:
        send(config_for(server))
    exc = info.value
    assert isinstance(exc, AuthenticationError)
    assert not isinstance(exc, SenderRefusedError)
    assert exc.reply.code == 530
    assert exc.command == "MAIL"
    assert exc.sender == "a@example.com"
    assert str(exc) == (
        "sender <a@example.com> refused, the server requires AUTH: set username "
        f"and password (or auth=) in SMTPConfig: {exc.reply}"
    )
    assert not exc.is_transient
    assert exc.attempts == 1
    assert server.messages == []


def test_530_must_issue_starttls_says_use_tls(
    start_server, server_tls_context, config_for
):
    server = start_server(tls_context=server_tls_context, require_starttls=True)
    with pytest.raises(AuthenticationRequiredError) as info:
        send(config_for(server, tls="none"))
    assert "the server requires TLS before MAIL: use tls='starttls'" in str(info.value)
    assert server.messages == []


@pytest.mark.parametrize(
    "reply",
    [
        "530 5.7.57 Client was not authenticated to send anonymous mail",
        "530 Authentication required",
    ],
)
def test_other_530_wordings_are_recognised(start_server, config_for, pipelining, reply):
    server = start_server(pipelining=pipelining)
    server.handler.queue("MAIL", reply)
    with pytest.raises(AuthenticationRequiredError, match="set username and password"):
        send(config_for(server))


def test_530_after_a_successful_login_says_so(
    start_server, server_tls_context, config_for, ca_file
):
    server = start_server(
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
    )
    server.handler.queue("MAIL", "530 5.7.0 Authentication required")
    config = config_for(
        server, tls="starttls", ca_file=ca_file, username="alice", password="wonderland"
    )
    with pytest.raises(AuthenticationRequiredError) as info:
        send(config)
    assert "still requires authentication after a successful login" in str(info.value)
    assert "wonderland" not in str(info.value)


def test_a_real_sender_refusal_stays_a_sender_refusal(start_server, config_for):
    server = start_server()
    server.handler.queue("MAIL", "553 5.7.1 Sender address rejected: not owned by user")
    with pytest.raises(SenderRefusedError) as info:
        send(config_for(server))
    assert not isinstance(info.value, AuthenticationError)


def test_a_refused_greeting_names_the_server():
    def refuse(conn: RawConn) -> None:
        conn.send(b"554 5.3.2 no service here\r\n")
        conn.wait_closed()

    with RawServer(refuse) as server:
        config = SMTPConfig(host="127.0.0.1", port=server.port, tls="none")
        with pytest.raises(GreetingRefusedError) as info:
            send(config)
    assert str(info.value) == (
        f"127.0.0.1:{server.port} (tls=none) refused the session in its greeting: "
        f"{info.value.reply}"
    )
    assert info.value.reply.code == 554


def test_a_hang_up_before_the_greeting_names_the_server():
    with RawServer(lambda conn: conn.hang_up()) as server:
        config = SMTPConfig(host="127.0.0.1", port=server.port, tls="none")
        with pytest.raises(ServerDisconnectedError) as info:
            send(config, retry=RetryPolicy.never())
    assert str(info.value) == (
        f"server closed the connection (connecting to 127.0.0.1:{server.port} "
        "(tls=none))"
    )
    assert info.value.is_transient
