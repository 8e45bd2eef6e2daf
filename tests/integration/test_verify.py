"""``Mailer.verify()`` against aiosmtpd: one session as a send opens it, no mail.

Each test checks what the server saw (``wiretap`` logs every command) as well
as the report, and the failures raise the typed errors a send would.
"""

from __future__ import annotations

import json
import logging
import ssl
from datetime import datetime, timezone

import pytest

from smtpkit import (
    AuthenticationError,
    ClosedError,
    ConnectError,
    Mailer,
    Message,
    NotSupportedError,
    RetryPolicy,
    SMTPConfig,
    SMTPConnection,
    SMTPTransport,
    TLSError,
    VerifyReport,
)
from smtpkit.auth import LoginAuth, PlainAuth

from .scripted import wiretap
from .smtpd import free_port

pytestmark = pytest.mark.integration

WRONG = "hunter2-not-the-password"
MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="v", text="x")


def steps(report: VerifyReport) -> list[str]:
    return [step for step, _ in report.timings]


@pytest.fixture
def starttls_server(start_server, server_tls_context):
    return start_server(tls_context=server_tls_context, require_starttls=True)


@pytest.fixture
def implicit_server(start_server, server_tls_context):
    return start_server(ssl_context=server_tls_context)


def test_plain_session_is_reported_and_sends_no_mail(start_server, config_for):
    server = start_server(pipelining=True, enable_SMTPUTF8=True)
    log = wiretap(server)
    with Mailer(config_for(server)) as mailer:
        report = mailer.verify()
    assert log == ["EHLO", "QUIT"]
    assert server.messages == []
    assert "MAIL" not in server.handler.commands
    assert (report.host, report.port) == (server.host, server.port)
    assert report.banner  # aiosmtpd's "<host> Python SMTP ..." text, no code
    assert not report.banner.startswith("220")
    assert report.pipelining
    assert report.smtputf8
    assert not report.chunking
    assert report.size_limit == 33554432  # aiosmtpd's default data_size_limit
    assert report.extensions["size"] == "33554432"
    assert all(name == name.lower() for name in report.extensions)
    assert report.tls_version is report.cipher is report.certificate_subject is None
    assert report.certificate_expires is None
    assert not report.starttls_used
    assert report.auth_mechanism is None
    assert steps(report) == ["connect", "greeting", "ehlo", "quit"]
    assert all(seconds >= 0 for _, seconds in report.timings)
    assert report.total_time == pytest.approx(sum(s for _, s in report.timings))


def test_starttls_session_reports_tls_and_certificate(
    starttls_server, config_for, ca_file
):
    log = wiretap(starttls_server)
    with Mailer(config_for(starttls_server, tls="starttls", ca_file=ca_file)) as m:
        report = m.verify()
    assert log == ["EHLO", "STARTTLS", "EHLO", "QUIT"]
    assert report.starttls_used
    assert report.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert report.cipher
    assert report.certificate_subject is not None
    assert "O=trustme" in report.certificate_subject
    expires = report.certificate_expires
    assert expires is not None
    assert expires.tzinfo == timezone.utc
    assert expires > datetime.now(timezone.utc)
    assert "starttls" not in report.extensions  # the EHLO under TLS is reported
    assert steps(report) == [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "ehlo after tls",
        "quit",
    ]


def test_implicit_tls_session(implicit_server, config_for, ca_file):
    log = wiretap(implicit_server)
    config = config_for(implicit_server, tls="implicit", ca_file=ca_file)
    report = Mailer(config).verify()
    assert log == ["EHLO", "QUIT"]
    assert report.tls_version is not None
    assert not report.starttls_used
    assert report.certificate_subject is not None
    assert steps(report) == ["connect", "greeting", "ehlo", "quit"]
    assert "TLS: " in str(report)
    assert "(implicit)" in str(report)


@pytest.mark.parametrize("auth_class", [PlainAuth, LoginAuth])
def test_login_is_reported_by_mechanism(auth_server, submission, auth_class):
    log = wiretap(auth_server)
    report = Mailer(submission(auth_class("alice", "wonderland"))).verify()
    assert report.auth_mechanism == auth_class.mechanism
    assert f"AUTH {auth_class.mechanism}" in " ".join(log)
    assert log[-1] == "QUIT"
    assert "MAIL" not in log
    assert auth_server.messages == []
    assert steps(report) == [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "ehlo after tls",
        "auth",
        "quit",
    ]


@pytest.mark.parametrize("auth_class", [PlainAuth, LoginAuth])
def test_wrong_password_says_what_to_do(auth_server, submission, auth_class, caplog):
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    log = wiretap(auth_server)
    mailer = Mailer(submission(auth_class("alice", WRONG)))
    with pytest.raises(AuthenticationError) as info:
        mailer.verify()
    error = info.value
    assert error.reply.code == 535
    assert error.command == "AUTH"
    text = str(error)
    assert text.startswith(
        f"127.0.0.1:{auth_server.port} (tls=starttls) refused the login "
        f"(AUTH {auth_class.mechanism}): 535"
    )
    assert "check the username and password" in text
    assert "app password" in text
    assert "MAIL" not in log
    assert log[-1] == "QUIT"  # RFC 5321 §4.1.1.10: a refusal still ends politely
    shown = [text, repr(error), *(r.getMessage() for r in caplog.records)]
    assert not any(WRONG in line for line in shown)


def test_report_never_holds_credentials(auth_server, submission, caplog):
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    report = Mailer(submission(PlainAuth("alice", "wonderland"))).verify()
    for shown in (
        repr(report),
        str(report),
        json.dumps(report.as_dict()),
        *(r.getMessage() for r in caplog.records),
    ):
        assert "wonderland" not in shown


def test_refused_port_is_a_connect_error(config_for):
    config = SMTPConfig(host="127.0.0.1", port=free_port(), tls="none", timeout=5.0)
    with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1"):
        Mailer(config).verify()


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_untrusted_certificate_is_a_tls_error(
    start_server, untrusted_tls_context, config_for, ca_file, mode
):
    server = (
        start_server(tls_context=untrusted_tls_context, require_starttls=True)
        if mode == "starttls"
        else start_server(ssl_context=untrusted_tls_context)
    )
    with pytest.raises(TLSError, match="certificate"):
        Mailer(config_for(server, tls=mode, ca_file=ca_file)).verify()
    assert server.messages == []


def test_missing_starttls_is_not_supported(start_server, config_for):
    server = start_server()
    with pytest.raises(NotSupportedError, match="does not offer STARTTLS"):
        Mailer(config_for(server, tls="starttls")).verify()


def test_verify_uses_its_own_connection_not_the_pool(start_server, config_for):
    server = start_server()
    log = wiretap(server)
    with Mailer(config_for(server), retry=RetryPolicy.never()) as mailer:
        mailer.send(MESSAGE)
        transport = mailer.transport
        assert isinstance(transport, SMTPTransport)
        before = transport.stats()
        mailer.verify()
        mailer.send(MESSAGE)  # the pooled session is still the one in use
        after = transport.stats()
    assert log.count("EHLO") == 2  # the pool's session and verify's
    assert log.count("MAIL") == 2
    assert after.created == before.created
    assert len(server.messages) == 2


def test_verify_leaves_an_unopened_mailer_usable(start_server, config_for):
    server = start_server()
    mailer = Mailer(config_for(server))
    mailer.verify()
    assert "unopened" in repr(mailer)
    assert mailer.send(MESSAGE).ok
    mailer.close()
    with pytest.raises(ClosedError):
        mailer.verify()


def test_transport_verify_after_close_is_closed_error(start_server, config_for):
    transport = SMTPTransport(config_for(start_server()))
    transport.close()
    with pytest.raises(ClosedError):
        transport.verify()


def test_resumed_tls_session_still_reports_the_certificate(
    starttls_server, config_for, ca_file
):
    config = config_for(starttls_server, tls="starttls", ca_file=ca_file)
    with Mailer(config, retry=RetryPolicy.never()) as mailer:
        mailer.send(MESSAGE)  # the next session resumes this one's TLS session
        report = mailer.verify()
    assert report.certificate_subject is not None
    assert report.certificate_expires is not None


def test_unverified_tls_reports_no_certificate(starttls_server, config_for):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    config = config_for(starttls_server, tls="starttls", ssl_context=context)
    report = Mailer(config).verify()
    assert report.tls_version is not None
    assert report.cipher
    assert report.certificate_subject is None
    assert report.certificate_expires is None


def test_custom_connection_without_connect_instant_times_connect_whole(
    start_server, config_for
):
    class Custom(SMTPTransport):
        def create_connection(self) -> SMTPConnection:
            conn = super().create_connection()
            conn.connected_at = None  # as a connection made some other way
            return conn

    report = Custom(config_for(start_server())).verify()
    assert steps(report) == ["connect", "ehlo", "quit"]
