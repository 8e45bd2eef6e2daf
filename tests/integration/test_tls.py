"""TLS: STARTTLS and implicit TLS against aiosmtpd, certificate checks, options.

Certificates come from a throw-away trustme CA; ``ca_file`` trusts it, nothing
else does.  Failures must happen before anything of the message is sent.
"""

from __future__ import annotations

import ssl

import pytest
import trustme

from smtpkit import (
    ConfigurationError,
    Message,
    NotSupportedError,
    RetryPolicy,
    SMTPConfig,
    TLSError,
)

from .scripted import wiretap

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="tls", text="x")


@pytest.fixture
def send(make_mailer):
    """Send one message through a new Mailer (or AsyncMailer), without retries."""

    def send_one(config: SMTPConfig, message: Message = MESSAGE):
        with make_mailer(config, retry=RetryPolicy.never()) as mailer:
            return mailer.send(message)

    return send_one


def server_context(
    cert: trustme.LeafCert, **versions: ssl.TLSVersion
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    for name, version in versions.items():
        setattr(context, name, version)
    return context


@pytest.fixture
def starttls_server(start_server, server_tls_context):
    return start_server(tls_context=server_tls_context, require_starttls=True)


@pytest.fixture
def implicit_server(start_server, server_tls_context):
    return start_server(ssl_context=server_tls_context)


def test_starttls_delivers_over_tls(send, starttls_server, config_for, ca_file):
    log = wiretap(starttls_server)
    result = send(config_for(starttls_server, tls="starttls", ca_file=ca_file))
    assert result.ok
    [received] = starttls_server.messages
    assert received.tls
    assert received.rcpt_tos == ["b@example.com"]
    # RFC 3207 §4.2: EHLO again after the handshake, in the same connection.
    assert log[:3] == ["EHLO", "STARTTLS", "EHLO"]
    assert starttls_server.handler.commands.count("EHLO") == 2
    assert received.session_id == 2  # the second EHLO opened the TLS session


def test_implicit_tls_delivers(send, implicit_server, config_for, ca_file):
    log = wiretap(implicit_server)
    result = send(config_for(implicit_server, tls="implicit", ca_file=ca_file))
    assert result.ok
    [received] = implicit_server.messages
    assert received.tls
    assert "STARTTLS" not in log
    assert log.count("EHLO") == 1


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_untrusted_certificate_is_refused(  # noqa: PLR0917 - pytest passes fixtures by position
    send, start_server, untrusted_tls_context, config_for, ca_file, mode
):
    if mode == "starttls":
        server = start_server(tls_context=untrusted_tls_context, require_starttls=True)
    else:
        server = start_server(ssl_context=untrusted_tls_context)
    log = wiretap(server)
    with pytest.raises(TLSError) as info:
        send(config_for(server, tls=mode, ca_file=ca_file))
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert not info.value.is_transient
    assert server.messages == []
    assert "MAIL" not in log


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_system_trust_store_is_the_default(
    send, start_server, server_tls_context, config_for, mode
):
    # Without ca_file the throw-away CA is unknown: verification is on by default.
    if mode == "starttls":
        server = start_server(tls_context=server_tls_context, require_starttls=True)
    else:
        server = start_server(ssl_context=server_tls_context)
    with pytest.raises(TLSError):
        send(config_for(server, tls=mode))
    assert server.messages == []


def test_hostname_mismatch_is_refused(send, start_server, ca, ca_file):
    context = server_context(ca.issue_cert("mail.example.test"))
    server = start_server(tls_context=context, require_starttls=True)
    log = wiretap(server)
    config = SMTPConfig(
        host="localhost", port=server.port, tls="starttls", ca_file=ca_file, timeout=5
    )
    with pytest.raises(TLSError) as info:
        send(config)
    cause = info.value.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert cause.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH: the CA is trusted
    assert server.messages == []
    assert "MAIL" not in log


def test_starttls_required_but_not_offered(send, start_server, config_for):
    # The server would take AUTH in cleartext; the client must not even try.
    server = start_server(authenticator=lambda *args: None, auth_require_tls=False)
    log = wiretap(server)
    config = config_for(server, tls="starttls", username="alice", password="wonderland")
    with pytest.raises(NotSupportedError, match="STARTTLS") as info:
        send(config)
    assert info.value.command == "STARTTLS"
    assert not info.value.is_transient
    assert log == ["EHLO", "QUIT"]  # no STARTTLS, no AUTH, no MAIL: just a clean end
    assert "MAIL" not in server.handler.commands
    assert server.messages == []


def test_user_supplied_ssl_context_is_used(send, starttls_server, config_for, ca_file):
    trusting = ssl.create_default_context(cafile=ca_file)
    assert send(config_for(starttls_server, tls="starttls", ssl_context=trusting)).ok
    [received] = starttls_server.messages
    assert received.tls
    # The context really is the one in use: one that trusts nothing fails.
    distrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(TLSError):
        send(config_for(starttls_server, tls="starttls", ssl_context=distrusting))
    assert len(starttls_server.messages) == 1


def test_tls_min_version_13(send, starttls_server, config_for, ca_file):
    config = config_for(
        starttls_server, tls="starttls", ca_file=ca_file, tls_min_version="1.3"
    )
    assert send(config).ok
    assert starttls_server.messages[0].tls


def test_tls_min_version_13_refuses_a_tls12_server(
    send, start_server, ca, config_for, ca_file
):
    context = server_context(
        ca.issue_cert("127.0.0.1"), maximum_version=ssl.TLSVersion.TLSv1_2
    )
    server = start_server(tls_context=context, require_starttls=True)
    # The same server is fine without the minimum...
    assert send(config_for(server, tls="starttls", ca_file=ca_file)).ok
    # ...and refused with it.
    with pytest.raises(TLSError):
        send(config_for(server, tls="starttls", ca_file=ca_file, tls_min_version="1.3"))
    assert len(server.messages) == 1


def test_client_certificate_is_presented(  # noqa: PLR0917 - pytest passes fixtures by position
    send, start_server, ca, config_for, ca_file, tmp_path
):
    context = server_context(ca.issue_cert("127.0.0.1"))
    context.verify_mode = ssl.CERT_REQUIRED  # the server insists on a client cert
    ca.configure_trust(context)
    server = start_server(ssl_context=context)
    wiretap(server)  # so that implicit TLS shows in Received.tls
    client = ca.issue_cert("client.example.test")
    cert_file = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    config = config_for(
        server, tls="implicit", ca_file=ca_file, client_cert=str(cert_file)
    )
    assert send(config).ok
    assert server.messages[0].tls


@pytest.mark.parametrize("field", ["ca_file", "client_cert"])
def test_missing_tls_files_are_a_configuration_error(
    make_mailer, starttls_server, config_for, tmp_path, field
):
    config = config_for(
        starttls_server, tls="starttls", **{field: str(tmp_path / "missing.pem")}
    )
    with pytest.raises(ConfigurationError, match="certificates"):
        make_mailer(config)
    assert starttls_server.handler.sessions == 0
