"""Error wording without sockets: the translation table with a known server, the
TLS-mode validator, and the pieces of ``_hints`` the live tests cannot force."""

from __future__ import annotations

import pickle
import socket
import ssl

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import (
    AuthenticationRequiredError,
    ConnectError,
    ConnectTimeoutError,
    ServerDisconnectedError,
    SMTPConfig,
    SMTPReply,
    TLSError,
    TLSMode,
)
from smtpkit._transports import _hints
from smtpkit._transports._errors import Progress, map_errors
from smtpkit._transports._hints import (
    Endpoint,
    looks_like_tls,
    mail_refusal,
    tls_failure,
)

STARTTLS_587 = Endpoint("smtp.example.com", 587, TLSMode.STARTTLS, 30.0, None)


def translate(exc: BaseException, endpoint: Endpoint = STARTTLS_587) -> BaseException:
    with pytest.raises(Exception) as info, map_errors(Progress(endpoint=endpoint)):
        raise exc
    assert info.value.__cause__ is exc
    return info.value


@pytest.mark.parametrize(
    ("errno", "transient"),
    [(socket.EAI_NONAME, False), (socket.EAI_AGAIN, True)],
)
def test_dns_failures_name_the_host_and_heal_only_when_temporary(errno, transient):
    error = translate(socket.gaierror(errno, "Some Resolver Text"))
    assert isinstance(error, ConnectError)
    assert error.is_transient is transient
    advice = "" if transient else "; check the host name"
    assert str(error) == (
        "cannot resolve smtp.example.com (port 587, tls=starttls): "
        f"some resolver text{advice}"
    )
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert clone.is_transient is transient


def test_tcp_connect_timeout_names_the_server_and_the_setting():
    error = translate(TimeoutError("timed out"))
    assert isinstance(error, ConnectTimeoutError)
    assert str(error) == (
        "timed out: connecting to smtp.example.com:587 (tls=starttls) took longer "
        "than 30 s (timeout=30; set connect_timeout to change it)"
    )
    with_setting = Endpoint("mx.example", 25, TLSMode.NONE, 30.0, 5.0)
    assert str(translate(TimeoutError(), with_setting)).endswith(
        "took longer than 5 s (connect_timeout=5)"
    )


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (OSError(113, "No route to host"), "no route to host"),
        (OSError("odd"), "odd"),
        (OSError(), "oserror"),
    ],
)
def test_connect_failures_name_the_server(exc, reason):
    error = translate(exc)
    assert isinstance(error, ConnectError)
    assert error.is_transient
    assert (
        str(error) == f"cannot connect to smtp.example.com:587 (tls=starttls): {reason}"
    )


def test_an_ipv6_host_is_bracketed():
    endpoint = Endpoint("::1", 25, TLSMode.NONE, 30.0, None)
    assert str(endpoint) == "[::1]:25 (tls=none)"


@pytest.mark.parametrize(
    ("port", "tls", "connect_timeout", "timeout", "wait"),
    [
        (465, TLSMode.STARTTLS, None, 30.0, 3.0),  # cut short: a silent SMTPS port
        (465, TLSMode.NONE, None, 1.0, 1.0),  # never longer than the timeout
        (465, TLSMode.STARTTLS, 10.0, 30.0, 10.0),  # an explicit setting wins
        (465, TLSMode.IMPLICIT, None, 30.0, 30.0),  # the right mode: no cut
        (587, TLSMode.STARTTLS, None, 30.0, 30.0),
    ],
)
def test_greeting_wait(port, tls, connect_timeout, timeout, wait):
    endpoint = Endpoint("h", port, tls, timeout, connect_timeout)
    assert endpoint.greeting_wait() == wait
    assert _hints.IMPLICIT_PORT_GREETING_WAIT == 3.0


def cert_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("exc", "tail"),
    [
        (
            cert_error(10, "certificate has expired"),
            "the certificate is not valid now (certificate has expired)",
        ),
        (
            cert_error(50, "application verification failure"),
            "certificate verification failed (application verification failure)",
        ),
        (
            ssl.SSLError(1, "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] failure"),
            "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] failure",
        ),
    ],
)
def test_other_tls_failures_name_the_server_and_step(exc, tail):
    error = tls_failure(exc, STARTTLS_587, step="STARTTLS", min_version=None)
    assert isinstance(error, TLSError)
    assert not error.is_transient
    assert str(error) == (
        f"TLS failed with smtp.example.com:587 (tls=starttls) during STARTTLS: {tail}"
    )


def test_a_hand_built_cert_error_without_verify_attributes():
    # A proxy client or a test may build one without verify_message/verify_code.
    exc = ssl.SSLCertVerificationError(
        1, "certificate verify failed: Hostname mismatch"
    )
    error = tls_failure(exc, STARTTLS_587, step="STARTTLS", min_version=None)
    assert isinstance(error, TLSError)
    assert "Hostname mismatch" in str(error)
    assert "AttributeError" not in str(error)


def test_an_eof_in_the_handshake_without_a_minimum_says_only_that():
    error = tls_failure(
        ssl.SSLEOFError(8, "EOF"), STARTTLS_587, step="connect", min_version=None
    )
    assert str(error).endswith(
        "during the TLS handshake: the server closed the connection in the handshake"
    )


@pytest.mark.parametrize(
    ("data", "tls"),
    [
        (b"\x16\x03\x01", True),
        (b"\x15\x03\x03", True),
        (b"220 ready", False),
        (b"\x16", False),
        (bytearray(b"\x16\x03"), True),
    ],
)
def test_looks_like_tls(data, tls):
    assert looks_like_tls(data) is tls


@pytest.mark.parametrize(
    ("text", "is_tls", "expected"),
    [
        (
            "5.7.0 Must issue a STARTTLS command first",
            False,
            "requires TLS before MAIL",
        ),
        ("5.7.0 TLS required", False, "requires TLS before MAIL"),
        ("5.7.0 Authentication required", True, "requires AUTH"),
        ("5.7.0 TLS client certificate required", True, "requires AUTH"),
    ],
)
def test_530_wordings(text, is_tls, expected):
    reply = SMTPReply.from_string(f"530 {text}")
    error = mail_refusal(reply, sender="a@x.example", logged_in=False, is_tls=is_tls)
    assert isinstance(error, AuthenticationRequiredError)
    assert expected in str(error)
    assert error.reply == reply


@pytest.mark.parametrize(
    "line", ["550 5.7.1 no", "451 4.7.0 later", "553 5.7.1 not yours"]
)
def test_other_mail_refusals_are_left_alone(line):
    reply = SMTPReply.from_string(line)
    assert (
        mail_refusal(reply, sender="a@x.example", logged_in=False, is_tls=False) is None
    )


def test_an_unreadable_tls_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "ca.pem"
    path.write_text("x")
    monkeypatch.setattr(_hints.os, "access", lambda *args: False)
    assert _hints.tls_file_problem("ca_file", str(path)) == (
        f"ca_file {str(path)!r} cannot be read (permission denied)"
    )


# -- the TLS mode validator -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("ssl", "SSL/SMTPS, TLS from the first byte (port 465), is tls='implicit'"),
        ("SMTPS", "SSL/SMTPS, TLS from the first byte (port 465), is tls='implicit'"),
        ("tls", "'tls' is ambiguous: STARTTLS on port 587"),
        ("start-tls", "STARTTLS (port 587) is tls='starttls'"),
        ("STARTTLS", "write it in lower case, tls='starttls'"),
        (" Implicit ", "write it in lower case, tls='implicit'"),
        ("plain", "no TLS at all (loopback or a trusted network only) is tls='none'"),
        ("", "no TLS at all (loopback or a trusted network only) is tls='none'"),
        ("quantum", "see TLSMode"),
        (1, "give a TLSMode or its value"),
    ],
)
def test_an_unknown_tls_mode_names_the_field_the_values_and_the_fix(value, hint):
    with pytest.raises(pydantic.ValidationError) as info:
        SMTPConfig(host="smtp.example.com", tls=value, username="u", password="s3cret")
    [error] = info.value.errors()
    assert error["loc"] == ("tls",)
    message = error["msg"]
    assert message.startswith(
        f"Value error, tls must be one of 'implicit', 'starttls' or 'none', not {value!r}: "
    )
    assert hint in message
    assert "s3cret" not in str(info.value)


def test_the_url_query_gets_the_same_hint():
    with pytest.raises(pydantic.ValidationError, match="is tls='implicit'"):
        SMTPConfig.from_url("smtp://smtp.example.com?tls=ssl")


@given(st.text(max_size=20))
def test_any_other_text_is_refused_with_the_valid_values(value):
    if value in {mode.value for mode in TLSMode}:
        assert SMTPConfig(host="h", tls=value).tls is TLSMode(value)
        return
    with pytest.raises(pydantic.ValidationError) as info:
        SMTPConfig(host="h", tls=value)
    assert "tls must be one of 'implicit', 'starttls' or 'none'" in str(info.value)


def test_a_missing_greeting_after_implicit_tls_names_only_the_setting():
    endpoint = Endpoint("h", 465, TLSMode.IMPLICIT, 30.0, 5.0)
    assert endpoint.greeting_timeout_message(5.0) == (
        "no greeting from h:465 (tls=implicit) within 5 s (connect_timeout=5)",
        False,
    )


@pytest.mark.parametrize("min_version", [None, "1.3"])
def test_no_common_tls_version(min_version):
    exc = ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] alert")
    exc.reason = "TLSV1_ALERT_PROTOCOL_VERSION"
    error = tls_failure(exc, STARTTLS_587, step="STARTTLS", min_version=min_version)
    limit = " (tls_min_version=1.3)" if min_version else ""
    assert str(error).endswith(
        f"no TLS version that both sides accept{limit} (TLSV1_ALERT_PROTOCOL_VERSION)"
    )


def _ssl_error(cls: type[ssl.SSLError], reason: str | None) -> ssl.SSLError:
    exc = cls(1, f"[SSL: {reason}] ...")
    exc.reason = reason
    return exc


@pytest.mark.parametrize(
    ("exc", "refusal"),
    [
        (_ssl_error(ssl.SSLError, "TLSV13_ALERT_CERTIFICATE_REQUIRED"), True),
        (_ssl_error(ssl.SSLError, "SSLV3_ALERT_BAD_CERTIFICATE"), True),
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA"), True),
        (_ssl_error(ssl.SSLError, "SSLV3_ALERT_HANDSHAKE_FAILURE"), True),
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_PROTOCOL_VERSION"), True),
        # Alerts that say nothing about this client: the session is just lost.
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_INTERNAL_ERROR"), False),
        (_ssl_error(ssl.SSLError, "SSLV3_ALERT_BAD_RECORD_MAC"), False),
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_DECODE_ERROR"), False),
        (_ssl_error(ssl.SSLError, "SSLV3_ALERT_CLOSE_NOTIFY"), False),
        (_ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"), False),
        (_ssl_error(ssl.SSLZeroReturnError, "ZERO_RETURN"), False),
        (_ssl_error(ssl.SSLError, None), False),
        (ConnectionResetError(104, "Connection reset by peer"), False),
        (OSError("TLSV13_ALERT_CERTIFICATE_REQUIRED"), False),
    ],
)
def test_only_an_alert_refusing_this_client_is_a_refusal(exc, refusal):
    assert _hints.is_tls_refusal(exc) is refusal


def _unnamed_ssl_error(text: str) -> ssl.SSLError:
    """What OpenSSL raises for an error it has no reason name for."""
    exc = ssl.SSLError(1, f"[SSL] {text} (_ssl.c:1006)")
    exc.reason = None
    return exc


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        # The server's alerts that refuse nothing: the session is lost.
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_INTERNAL_ERROR"), True),
        (_ssl_error(ssl.SSLError, "SSLV3_ALERT_BAD_RECORD_MAC"), True),
        (_ssl_error(ssl.SSLError, "TLSV13_ALERT_MISSING_EXTENSION"), True),
        (_ssl_error(ssl.SSLError, "TLSV1_UNSUPPORTED_EXTENSION"), True),
        (_unnamed_ssl_error("tlsv1 alert no application protocol"), True),
        # Refusals of this client stay TLSError.
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_INSUFFICIENT_SECURITY"), False),
        (_ssl_error(ssl.SSLError, "TLSV1_UNRECOGNIZED_NAME"), False),
        (_ssl_error(ssl.SSLError, "TLSV1_ALERT_ACCESS_DENIED"), False),
        # What this client found wrong itself is no alert from the server.
        (_ssl_error(ssl.SSLError, "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"), False),
        (_ssl_error(ssl.SSLError, "UNEXPECTED_MESSAGE"), False),
        (_ssl_error(ssl.SSLError, "WRONG_VERSION_NUMBER"), False),
        (_ssl_error(ssl.SSLError, "NO_CIPHERS_AVAILABLE"), False),
        (_ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED"), False),
        (_ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"), False),
        (_unnamed_ssl_error("unknown error"), False),
        (ConnectionResetError(104, "Connection reset by peer"), False),
        (OSError("TLSV1_ALERT_INTERNAL_ERROR"), False),
    ],
)
def test_only_a_server_alert_that_refuses_nothing_is_a_lost_session(exc, lost):
    assert _hints.is_lost_session_alert(exc) is lost


def test_an_unnamed_alert_reads_as_openssl_words_it():
    exc = _unnamed_ssl_error("tlsv1 alert no application protocol")
    error = translate(exc, Endpoint("mx.example.com", 465, TLSMode.IMPLICIT, 9, None))
    assert type(error) is ServerDisconnectedError
    assert str(error) == (
        "connection to mx.example.com:465 (tls=implicit) lost during the TLS "
        "handshake: "
        "the server sent a TLS alert (tlsv1 alert no application protocol), which "
        "does not refuse this client's settings; another attempt may succeed"
    )


def test_a_lost_session_alert_without_a_known_server_is_still_lost():
    exc = _ssl_error(ssl.SSLError, "TLSV1_ALERT_INTERNAL_ERROR")
    with pytest.raises(ServerDisconnectedError) as info, map_errors(Progress()):
        raise exc
    assert str(info.value) == (
        "connection lost during connect: [SSL: TLSV1_ALERT_INTERNAL_ERROR] ..."
    )
    assert info.value.is_transient
    assert info.value.command == "connect"


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ("connect", "after the TLS handshake"),
        ("STARTTLS", "after the STARTTLS handshake"),
    ],
)
def test_an_alert_after_the_handshake_does_not_say_during(step, where):
    exc = _ssl_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA")
    error = tls_failure(
        exc, STARTTLS_587, step=step, min_version=None, after_handshake=True
    )
    assert str(error).startswith(
        f"TLS failed with smtp.example.com:587 (tls=starttls) {where}: the server "
        "requires a client certificate"
    )
    assert "during" not in str(error)


@pytest.mark.parametrize(
    "reason", ["SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_CERTIFICATE_EXPIRED"]
)
def test_a_refused_client_certificate_is_named(reason):
    exc = _ssl_error(ssl.SSLError, reason)
    error = tls_failure(
        exc, STARTTLS_587, step="STARTTLS", min_version=None, client_cert="/c.pem"
    )
    assert str(error) == (
        "TLS failed with smtp.example.com:587 (tls=starttls) during STARTTLS: the "
        f"server refused the client certificate client_cert='/c.pem' ({reason}): "
        "check that it is the certificate the server expects, issued by a CA the "
        "server trusts, and still valid"
    )


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.mark.parametrize("value", [["implicit"], {"mode": "implicit"}, {"implicit"}])
def test_a_container_for_tls_is_a_validation_error_for_the_field(value):
    # Before: TypeError (unhashable) from the validator's set lookup.
    with pytest.raises(pydantic.ValidationError) as info:
        SMTPConfig(host="h", tls=value, password="s3cret")
    [error] = info.value.errors()
    assert error["loc"] == ("tls",)
    assert error["msg"] == (
        "Value error, tls must be one of 'implicit', 'starttls' or 'none', "
        f"not {value!r}: give a TLSMode or its value"
    )


@given(JSONISH)
def test_any_json_value_for_tls_validates_or_names_the_field(value):
    errors: list[tuple[object, ...]] = []
    try:
        config = SMTPConfig(host="h", tls=value)
    except pydantic.ValidationError as exc:
        errors = [error["loc"] for error in exc.errors()]
    else:
        assert config.tls in set(TLSMode)
        return
    assert errors == [("tls",)]
