"""A TLS alert from the server during the handshake: lost session or refusal.

A server under load, or a TLS proxy whose backend is down, may answer the
ClientHello with internal_error (or bad_record_mac, decode_error...).  That says
nothing about this client's settings: the connection is lost
(``ServerDisconnectedError``) and retried, as after the handshake.  Only the
alerts that refuse this client (its certificate, the handshake, the TLS version,
weak parameters, an unknown server name) are a permanent ``TLSError``.

Before the fix every alert during the handshake was a permanent ``TLSError``.
The servers here speak just enough TLS to read the ClientHello and answer it with
one alert record (RFC 8446 §6: ``15 03 03 00 02 02 <code>``), for implicit TLS
and after STARTTLS; a later session may complete a real handshake and deliver.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import pytest

from smtpkit import (
    Mailer,
    Message,
    RetryPolicy,
    ServerDisconnectedError,
    SMTPConfig,
    TLSError,
)

from .rawserver import RawConn, RawServer

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")
WHERE = {"implicit": "during the TLS handshake", "starttls": "during STARTTLS"}
COMMAND = {"implicit": "connect", "starttls": "STARTTLS"}

# Alert code (RFC 8446 §6.2, RFC 6066) -> what OpenSSL names it.
LOST_SESSION = {
    80: "TLSV1_ALERT_INTERNAL_ERROR",
    20: "SSLV3_ALERT_BAD_RECORD_MAC",
    50: "TLSV1_ALERT_DECODE_ERROR",
    51: "TLSV1_ALERT_DECRYPT_ERROR",
    10: "SSLV3_ALERT_UNEXPECTED_MESSAGE",
    47: "SSLV3_ALERT_ILLEGAL_PARAMETER",
    22: "TLSV1_ALERT_RECORD_OVERFLOW",
    90: "TLSV1_ALERT_USER_CANCELLED",
    120: "tlsv1 alert no application protocol",  # OpenSSL has no name for it
}
REFUSAL = {
    40: "SSLV3_ALERT_HANDSHAKE_FAILURE",
    70: "TLSV1_ALERT_PROTOCOL_VERSION",
    49: "TLSV1_ALERT_ACCESS_DENIED",
    42: "SSLV3_ALERT_BAD_CERTIFICATE",
    48: "TLSV1_ALERT_UNKNOWN_CA",
    116: "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    71: "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    112: "TLSV1_UNRECOGNIZED_NAME",
}


def alerting_server(
    tls: str, alerts: Sequence[int | None], context: ssl.SSLContext | None = None
) -> RawServer:
    """A server whose n-th session answers the ClientHello with alerts[n].

    A session whose entry is None (or past the end) completes the handshake with
    *context* and accepts one message; STARTTLS sessions first greet and offer it.
    """
    sessions: list[RawConn] = []

    def script(conn: RawConn) -> None:
        sessions.append(conn)
        n = len(sessions) - 1
        code = alerts[n] if n < len(alerts) else None
        if tls == "starttls":
            conn.send(b"220 edge ESMTP\r\n")
            conn.readline()  # EHLO
            conn.send(b"250-edge\r\n250 STARTTLS\r\n")
            conn.readline()  # STARTTLS
            conn.send(b"220 2.0.0 go ahead\r\n")
        if code is not None:
            conn.read_some(65536)  # the ClientHello
            conn.send(bytes([0x15, 3, 3, 0, 2, 2, code]))  # fatal alert
            conn.wait_closed()
            return
        assert context is not None
        conn.start_tls(context)
        if tls == "implicit":
            conn.send(b"220 edge ESMTP\r\n")
        serve_one_message(conn)

    return RawServer(script)


def serve_one_message(conn: RawConn) -> None:
    """Answer EHLO, one transaction and QUIT, keeping the message."""
    while line := conn.readline():
        verb = line[:4].upper()
        if verb == b"DATA":
            conn.send(b"354 go ahead\r\n")
            data = conn.read_data()
            conn.received = data  # type: ignore[attr-defined]
            conn.send(b"250 2.0.0 queued\r\n")
        elif verb == b"QUIT":
            conn.send(b"221 2.0.0 bye\r\n")
            return
        else:
            conn.send(b"250 edge\r\n")


def config(server: RawServer, tls: str, **fields: object) -> SMTPConfig:
    return SMTPConfig(
        host=server.host, port=server.port, tls=tls, timeout=5.0, **fields
    )


def send(
    config: SMTPConfig,
    retry: RetryPolicy | None = None,
    waits: list[float] | None = None,
) -> list[float]:
    """Send MESSAGE (default retry policy); return the waits it slept."""
    waits = [] if waits is None else waits
    with Mailer(config, retry=retry or RetryPolicy(), sleep=waits.append) as mailer:
        mailer.send(MESSAGE)
    return waits


@pytest.mark.parametrize(("code", "alert"), LOST_SESSION.items())
@pytest.mark.parametrize("tls", WHERE)
def test_an_alert_that_is_no_refusal_is_a_lost_connection_retried(
    ca_file, tls, code, alert
):
    with alerting_server(tls, [code] * 3) as server:
        waits: list[float] = []
        with pytest.raises(ServerDisconnectedError) as info:
            send(config(server, tls, ca_file=ca_file), waits=waits)
        assert len(server.connections) == 3
    err = info.value
    assert str(err) == (
        f"connection to 127.0.0.1:{server.port} (tls={tls}) lost {WHERE[tls]}: "
        f"the server sent a TLS alert ({alert}), which does not refuse this "
        "client's settings; another attempt may succeed"
    )
    assert err.is_transient
    assert err.attempts == 3
    assert len(err.history) == 2
    assert all(isinstance(e, ServerDisconnectedError) for e in err.history)
    assert err.command == COMMAND[tls]
    assert not err.delivery_unknown
    assert isinstance(err.__cause__, ssl.SSLError)
    assert len(waits) == 2
    assert server.errors == []


@pytest.mark.parametrize("tls", WHERE)
def test_a_send_gets_past_an_internal_error_alert_on_the_next_attempt(
    ca_file, server_tls_context, tls
):
    with alerting_server(tls, [80], server_tls_context) as server:
        waits = send(config(server, tls, ca_file=ca_file))
        assert len(server.connections) == 2
        delivered = server.connections[1].received  # type: ignore[attr-defined]
    assert len(waits) == 1
    assert b"Subject: s" in delivered
    assert server.errors == []


@pytest.mark.parametrize("tls", WHERE)
def test_a_lost_session_alert_is_not_retried_without_retry_network_errors(ca_file, tls):
    policy = RetryPolicy(retry_network_errors=False)
    with alerting_server(tls, [80] * 3) as server:
        with pytest.raises(ServerDisconnectedError) as info:
            send(config(server, tls, ca_file=ca_file), policy)
        assert len(server.connections) == 1
    assert info.value.attempts == 1


@pytest.mark.parametrize(("code", "alert"), REFUSAL.items())
@pytest.mark.parametrize("tls", WHERE)
def test_an_alert_refusing_this_client_is_permanent(ca_file, tls, code, alert):
    with alerting_server(tls, [code] * 3) as server:
        with pytest.raises(TLSError) as info:
            send(config(server, tls, ca_file=ca_file))
        assert len(server.connections) == 1
    err = info.value
    assert str(err).startswith(
        f"TLS failed with 127.0.0.1:{server.port} (tls={tls}) {WHERE[tls]}: "
    )
    assert alert in str(err)
    assert not err.is_transient
    assert err.attempts == 1
    assert err.command == COMMAND[tls]
    assert server.errors == []


def test_weak_parameters_and_an_unknown_name_say_what_to_change(ca_file):
    with alerting_server("implicit", [71, 112]) as server:
        cfg = config(server, "implicit", ca_file=ca_file)
        with pytest.raises(TLSError) as weak:
            send(cfg)
        with pytest.raises(TLSError) as unknown:
            send(cfg)
    head = f"TLS failed with 127.0.0.1:{server.port} (tls=implicit) during the TLS "
    assert str(weak.value) == (
        f"{head}handshake: the server requires stronger TLS parameters than this "
        "client offers (TLSV1_ALERT_INSUFFICIENT_SECURITY); if ssl_context is set, "
        "check its ciphers and versions"
    )
    assert str(unknown.value) == (
        f"{head}handshake: the server does not serve the name '127.0.0.1' "
        "(TLSV1_UNRECOGNIZED_NAME); connect by a name the server is configured for"
    )


@pytest.mark.parametrize("tls", WHERE)
def test_an_untrusted_server_certificate_stays_permanent(
    ca_file, untrusted_tls_context, tls
):
    # The client's own verdict on the server's certificate is no alert: the
    # same certificate fails the same way on every attempt.
    with alerting_server(tls, [], untrusted_tls_context) as server:
        with pytest.raises(TLSError) as info:
            send(config(server, tls, ca_file=ca_file))
        assert len(server.connections) == 1
    assert "the certificate is not trusted" in str(info.value)
    assert not info.value.is_transient
    assert info.value.attempts == 1
