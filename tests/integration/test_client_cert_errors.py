"""A server that refuses the client certificate says so, once, naming the server.

Under TLS 1.3 the client's handshake is over before the server has checked the
client certificate: the server's refusal is an alert on the client's first read
after the handshake (the greeting with implicit TLS, the EHLO after STARTTLS).
Before the fix that alert read as a lost connection: transient, retried three
times, and after STARTTLS without the server's name.

The refusing servers are scripts over the ssl module's blocking sockets (an
OpenSSL server, like Postfix, sends the alert; aiosmtpd's asyncio TLS just
closes the connection, which stays a lost connection).  Their context requires
a client certificate issued by the test CA, TLS 1.3 only (and TLS 1.2 only,
where the refusal comes inside the handshake instead).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any

import pytest
import trustme

from smtpkit import Mailer, Message, ServerDisconnectedError, SMTPConfig, TLSError

from .rawserver import RawConn, RawServer

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")
MODES = {"implicit": "the TLS handshake", "starttls": "STARTTLS"}
# Under TLS 1.3 the refusal is read once the client's handshake has succeeded.
AFTER = {
    "implicit": "after the TLS handshake",
    "starttls": "after the STARTTLS handshake",
}


def send(config: SMTPConfig) -> list[float]:
    """Send MESSAGE with the default retry policy; return the waits it slept."""
    waits: list[float] = []
    with Mailer(config, sleep=waits.append) as mailer:
        mailer.send(MESSAGE)
    return waits


def requiring_client_cert(
    ca: trustme.CA, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> ssl.SSLContext:
    """A server context that insists on a client certificate issued by *ca*."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    context.minimum_version = context.maximum_version = version
    return context


def refusing_server(tls: str, context: ssl.SSLContext) -> RawServer:
    """An SMTP server whose TLS handshake refuses the client's certificate."""

    def script(conn: RawConn) -> None:
        if tls == "starttls":
            conn.send(b"220 mtls.example.test ESMTP\r\n")
            conn.readline()  # EHLO
            conn.send(b"250-mtls.example.test\r\n250 STARTTLS\r\n")
            conn.readline()  # STARTTLS
            conn.send(b"220 go ahead\r\n")
        try:
            conn.start_tls(context)
        except ssl.SSLError:
            # OpenSSL has sent the alert.  Read until the client hangs up
            # before closing: closing at once races the client's EHLO after
            # STARTTLS, and the kernel answers that EHLO with a reset that
            # discards the unread alert (a lost connection, rightly retried).
            conn.wait_closed()
            conn.close()
            return
        conn.send(b"220 should not get here\r\n")
        conn.wait_closed()

    return RawServer(script)


def config_for_raw(server: RawServer, tls: str, ca_file: str, **fields: Any):
    return SMTPConfig(
        host=server.host, port=server.port, tls=tls, ca_file=ca_file, **fields
    )


@pytest.mark.parametrize("tls", MODES)
def test_a_missing_client_certificate_under_tls13_says_set_client_cert(
    ca, ca_file, tls
):
    with refusing_server(tls, requiring_client_cert(ca)) as server:
        with pytest.raises(TLSError) as info:
            send(config_for_raw(server, tls, ca_file))
    assert str(info.value) == (
        f"TLS failed with 127.0.0.1:{server.port} (tls={tls}) {AFTER[tls]}: "
        "the server requires a client certificate and refused the connection "
        "without one it accepts (TLSV13_ALERT_CERTIFICATE_REQUIRED); set "
        "client_cert and client_key (or load one into ssl_context)"
    )
    assert not info.value.is_transient
    assert info.value.command == ("connect" if tls == "implicit" else "STARTTLS")
    assert info.value.attempts == 1
    assert len(server.connections) == 1
    assert isinstance(info.value.__cause__, ssl.SSLError)
    assert server.errors == []


@pytest.mark.parametrize("tls", MODES)
def test_a_client_certificate_from_an_unknown_ca_names_the_file(
    ca, ca_file, tls, tmp_path
):
    stranger = trustme.CA().issue_cert("client.example.test")
    cert_file = tmp_path / "client.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    with refusing_server(tls, requiring_client_cert(ca)) as server:
        with pytest.raises(TLSError) as info:
            send(config_for_raw(server, tls, ca_file, client_cert=str(cert_file)))
    assert str(info.value) == (
        f"TLS failed with 127.0.0.1:{server.port} (tls={tls}) {AFTER[tls]}: "
        f"the server refused the client certificate client_cert={str(cert_file)!r} "
        "(TLSV1_ALERT_UNKNOWN_CA): check that it is the certificate the server "
        "expects, issued by a CA the server trusts, and still valid"
    )
    assert info.value.attempts == 1
    assert len(server.connections) == 1


@pytest.mark.parametrize("tls", MODES)
def test_under_tls12_the_refusal_inside_the_handshake_reads_the_same(ca, ca_file, tls):
    context = requiring_client_cert(ca, ssl.TLSVersion.TLSv1_2)
    with refusing_server(tls, context) as server:
        with pytest.raises(TLSError) as info:
            send(config_for_raw(server, tls, ca_file))
    assert str(info.value) == (
        f"TLS failed with 127.0.0.1:{server.port} (tls={tls}) during {MODES[tls]}: "
        "the server refused the handshake (SSLV3_ALERT_HANDSHAKE_FAILURE): it may "
        "require a client certificate (set client_cert and client_key) or share "
        "no cipher suite with this client"
    )
    assert info.value.attempts == 1


@pytest.mark.parametrize("tls", MODES)
def test_the_right_client_certificate_still_works(start_server, ca, ca_file, tls):
    context = requiring_client_cert(ca)
    if tls == "implicit":
        server = start_server(ssl_context=context)
    else:
        server = start_server(tls_context=context, require_starttls=True)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file = os.path.join(tmp, "client.pem")
        client = ca.issue_cert("client.example.test")
        client.private_key_and_cert_chain_pem.write_to_path(cert_file)
        config = SMTPConfig(
            host=server.host,
            port=server.port,
            tls=tls,
            ca_file=ca_file,
            client_cert=cert_file,
        )
        assert send(config) == []
    assert len(server.messages) == 1


def test_a_reset_after_the_handshake_stays_a_lost_connection(
    server_tls_context, ca_file
):
    # Only a TLS alert is a refusal: a server that just drops the connection
    # after the handshake may be restarting, so that is still transient.
    def handshake_then_reset(conn: RawConn) -> None:
        conn.start_tls(server_tls_context)
        conn.reset()

    with RawServer(handshake_then_reset) as server:
        config = SMTPConfig(
            host=server.host, port=server.port, tls="implicit", ca_file=ca_file
        )
        with pytest.raises(ServerDisconnectedError) as info:
            send(config)
    assert info.value.is_transient
    assert info.value.attempts == 3


# Other alerts right after the handshake.  No real server sends internal_error or
# bad_record_mac on demand, so the client's own sockets (ssl's sslsocket_class
# hook, over a real handshake with a real server) raise on their first read what
# OpenSSL raises when such an alert arrives there.

LOST_SESSION_ALERTS = [
    "TLSV1_ALERT_INTERNAL_ERROR",  # a server under load, a proxy's backend down
    "SSLV3_ALERT_BAD_RECORD_MAC",
    "TLSV1_ALERT_DECODE_ERROR",
    "TLSV1_ALERT_DECRYPT_ERROR",
    "SSLV3_ALERT_UNEXPECTED_MESSAGE",
]
REFUSAL_ALERTS = [
    "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_PROTOCOL_VERSION",
]


def alerting_context(ca: trustme.CA, reason: str, sessions: int) -> ssl.SSLContext:
    """A client context whose first *sessions* TLS sessions read *reason*'s alert."""
    left = [sessions]

    class AlertingSocket(ssl.SSLSocket):
        def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
            if left[0] > 0:
                left[0] -= 1
                exc = ssl.SSLError(1, f"[SSL: {reason}] alert (_ssl.c:2580)")
                exc.reason = reason
                exc.library = "SSL"
                raise exc
            return super().recv(buflen, flags)

    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.sslsocket_class = AlertingSocket
    return context


def alerting_config(server, tls: str, ca, reason: str, *, sessions: int) -> SMTPConfig:
    """A config for *server* whose first *sessions* TLS sessions read *reason*."""
    return SMTPConfig(
        host=server.host,
        port=server.port,
        tls=tls,
        ssl_context=alerting_context(ca, reason, sessions=sessions),
    )


def tls_server(start_server, tls: str, context: ssl.SSLContext):
    if tls == "implicit":
        return start_server(ssl_context=context)
    return start_server(tls_context=context, require_starttls=True)


@pytest.mark.parametrize("reason", LOST_SESSION_ALERTS)
@pytest.mark.parametrize("tls", MODES)
def test_another_alert_after_the_handshake_is_a_lost_session_and_retried(
    start_server, server_tls_context, ca, tls, reason
):
    # Before: a permanent TLSError "during the TLS handshake", never retried.
    server = tls_server(start_server, tls, server_tls_context)
    config = alerting_config(server, tls, ca, reason, sessions=1)
    waits = send(config)
    assert len(waits) == 1
    assert len(server.messages) == 1


@pytest.mark.parametrize("tls", MODES)
def test_an_alert_after_every_handshake_fails_as_a_lost_connection(
    start_server, server_tls_context, ca, tls
):
    server = tls_server(start_server, tls, server_tls_context)
    reason = "TLSV1_ALERT_INTERNAL_ERROR"
    config = alerting_config(server, tls, ca, reason, sessions=3)
    with pytest.raises(ServerDisconnectedError) as info:
        send(config)
    assert info.value.is_transient
    assert info.value.attempts == 3
    assert "TLS handshake" not in str(info.value)
    assert server.messages == []


@pytest.mark.parametrize("reason", REFUSAL_ALERTS)
@pytest.mark.parametrize("tls", MODES)
def test_a_refusal_after_the_handshake_says_after_and_is_not_retried(
    start_server, server_tls_context, ca, tls, reason
):
    server = tls_server(start_server, tls, server_tls_context)
    config = alerting_config(server, tls, ca, reason, sessions=3)
    with pytest.raises(TLSError) as info:
        send(config)
    assert str(info.value).startswith(
        f"TLS failed with 127.0.0.1:{server.port} (tls={tls}) {AFTER[tls]}: "
    )
    assert reason in str(info.value)
    assert not info.value.is_transient
    assert info.value.attempts == 1
    assert server.messages == []
