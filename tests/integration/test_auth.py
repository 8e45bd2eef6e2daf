"""SMTP AUTH against aiosmtpd: every mechanism, refusals, choice and secrecy.

``auth_server`` requires STARTTLS and offers PLAIN, LOGIN, CRAM-MD5, XOAUTH2 and
OAUTHBEARER; its users and tokens are ``smtpd.USERS`` and ``smtpd.TOKENS``.
``wiretap`` shows which mechanism the server was asked for.
"""

from __future__ import annotations

import base64
import logging
import ssl

import pydantic
import pytest

from smtpkit import (
    AuthenticationError,
    Message,
    NotSupportedError,
    RetryPolicy,
    SMTPConfig,
)
from smtpkit.auth import (
    CramMD5Auth,
    LoginAuth,
    OAuthBearerAuth,
    PlainAuth,
    XOAuth2Auth,
)

from .scripted import wiretap
from .smtpd import check_password

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="auth", text="x")
WRONG = "hunter2-not-the-password"
ALL_MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"]


@pytest.fixture
def send(make_mailer):
    """Send MESSAGE through a new Mailer (or AsyncMailer), without retries."""

    def send_one(config: SMTPConfig):
        with make_mailer(config, retry=RetryPolicy.never()) as mailer:
            return mailer.send(MESSAGE)

    return send_one


@pytest.fixture
def log(auth_server) -> list[str]:
    return wiretap(auth_server)


@pytest.fixture
def submission(auth_server, config_for, ca_file):
    """Build a config for ``auth_server`` over verified STARTTLS."""

    def build(**fields) -> SMTPConfig:
        return config_for(auth_server, tls="starttls", ca_file=ca_file, **fields)

    return build


def auth_lines(log: list[str]) -> list[str]:
    return [line for line in log if line.startswith("AUTH")]


@pytest.mark.parametrize(
    ("auth", "login"),
    [
        (PlainAuth("alice", "wonderland"), "alice"),
        (LoginAuth("alice", "wonderland"), "alice"),
        (CramMD5Auth("alice", "wonderland"), "alice"),
        (XOAuth2Auth("alice@example.com", token="good-token"), "alice@example.com"),
        (OAuthBearerAuth("alice@example.com", token="good-token"), "alice@example.com"),
    ],
    ids=lambda value: getattr(value, "mechanism", None),
)
def test_each_mechanism_delivers(  # noqa: PLR0917 - pytest passes fixtures by position
    send, auth_server, submission, log, auth, login
):
    result = send(submission(auth=auth))
    assert result.ok
    [received] = auth_server.messages
    assert received.login == login
    assert received.tls
    assert auth_lines(log) == [f"AUTH {auth.mechanism}"]
    # AUTH comes after STARTTLS and the second EHLO, before MAIL.
    assert (
        log.index("STARTTLS") < log.index("AUTH " + auth.mechanism) < log.index("MAIL")
    )


@pytest.mark.parametrize("auth_class", [PlainAuth, LoginAuth, CramMD5Auth])
def test_wrong_password(send, auth_server, submission, log, auth_class):
    with pytest.raises(AuthenticationError) as info:
        send(submission(auth=auth_class("alice", WRONG)))
    exc = info.value
    assert exc.reply.code == 535
    assert not exc.is_transient
    assert exc.command == "AUTH"
    assert exc.attempts == 1
    assert auth_server.messages == []
    assert "MAIL" not in log
    assert len(auth_lines(log)) == 1  # a wrong password is not tried twice


@pytest.mark.parametrize("auth_class", [PlainAuth, LoginAuth, CramMD5Auth])
def test_non_ascii_credentials(send, auth_server, submission, auth_class):
    assert send(submission(auth=auth_class("用户", "密码-пароль"))).ok
    [received] = auth_server.messages
    assert received.login == "用户"


def test_over_tls_username_and_password_pick_plain_in_one_round_trip(
    send, auth_server, submission, log
):
    # CRAM-MD5 is offered too, but over TLS it only costs a second round trip.
    assert send(submission(username="alice", password="wonderland")).ok
    assert auth_lines(log) == ["AUTH PLAIN"]  # the wiretap hides its response
    assert auth_server.messages[0].login == "alice"


def test_over_unverified_tls_username_and_password_keep_cram_md5(
    send, auth_server, config_for, log
):
    # TLS without certificate checks hides the password from onlookers, not
    # from whoever answered: that server must not get the password in PLAIN.
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    config = config_for(
        auth_server,
        tls="starttls",
        ssl_context=unverified,
        username="alice",
        password="wonderland",
    )
    assert send(config).ok
    assert auth_lines(log) == ["AUTH CRAM-MD5"]
    assert auth_server.messages[0].tls


def test_over_cleartext_username_and_password_pick_cram_md5(
    send, start_server, config_for, pipelining
):
    server = start_server(
        pipelining=pipelining, authenticator=check_password, auth_require_tls=False
    )
    log = wiretap(server)
    config = config_for(
        server,
        tls="none",
        username="alice",
        password="wonderland",
        allow_insecure_auth=True,
    )
    assert send(config).ok
    assert auth_lines(log) == ["AUTH CRAM-MD5"]  # the password never crosses
    assert "wonderland" not in "\n".join(log)
    assert server.messages[0].login == "alice"


def test_username_and_password_fall_back_to_plain(
    send, start_server, server_tls_context, config_for, ca_file
):
    server = start_server(
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
        auth_exclude_mechanism=["CRAM-MD5"],
    )
    log = wiretap(server)
    config = config_for(
        server, tls="starttls", ca_file=ca_file, username="用户", password="密码-пароль"
    )
    assert send(config).ok
    assert auth_lines(log) == ["AUTH PLAIN"]
    assert server.messages[0].login == "用户"


def test_token_provider_is_asked_again_after_a_refused_token(
    send, auth_server, submission, log
):
    tokens = ["expired-token", "good-token"]
    calls = []

    def provider() -> str:
        calls.append(tokens[len(calls)])
        return calls[-1]

    auth = XOAuth2Auth("alice@example.com", token_provider=provider)
    assert send(submission(auth=auth)).ok
    assert calls == ["expired-token", "good-token"]
    assert auth_lines(log) == ["AUTH XOAUTH2", "AUTH XOAUTH2"]
    assert auth_server.messages[0].login == "alice@example.com"


@pytest.mark.parametrize("auth_class", [XOAuth2Auth, OAuthBearerAuth])
def test_static_bad_token(send, auth_server, submission, log, auth_class):
    with pytest.raises(AuthenticationError) as info:
        send(submission(auth=auth_class("alice@example.com", token="bad-token")))
    assert info.value.reply.code == 535
    assert not info.value.is_transient
    assert len(auth_lines(log)) == 1  # a fixed token cannot get better
    assert auth_server.messages == []


def test_cleartext_auth_needs_explicit_consent(
    send, start_server, config_for, pipelining
):
    server = start_server(
        pipelining=pipelining, authenticator=check_password, auth_require_tls=False
    )
    with pytest.raises(pydantic.ValidationError, match="cleartext"):
        config_for(server, tls="none", username="alice", password="wonderland")
    config = config_for(
        server,
        tls="none",
        username="alice",
        password="wonderland",
        auth=PlainAuth("alice", "wonderland"),
        allow_insecure_auth=True,
    )
    assert send(config).ok
    [received] = server.messages
    assert received.login == "alice"
    assert not received.tls


@pytest.mark.parametrize("tls", [False, True], ids=["no-AUTH-line", "empty-AUTH-list"])
def test_server_without_auth(  # noqa: PLR0917 - pytest passes fixtures by position
    send, start_server, server_tls_context, config_for, ca_file, tls
):
    if tls:
        # aiosmtpd always lists AUTH after TLS, here with no mechanism in it.
        server = start_server(
            tls_context=server_tls_context,
            require_starttls=True,
            auth_exclude_mechanism=ALL_MECHANISMS,
        )
        fields = {"tls": "starttls", "ca_file": ca_file}
    else:
        server = start_server()  # says nothing about AUTH in cleartext
        fields = {"tls": "none", "allow_insecure_auth": True}
    log = wiretap(server)
    config = config_for(server, username="alice", password="wonderland", **fields)
    with pytest.raises(NotSupportedError, match="AUTH") as info:
        send(config)
    assert info.value.command == "AUTH"
    assert not info.value.is_transient
    assert auth_lines(log) == []
    assert "MAIL" not in log
    assert server.messages == []


def test_configured_mechanism_not_offered(
    send, start_server, server_tls_context, config_for, ca_file
):
    server = start_server(
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
        auth_exclude_mechanism=["XOAUTH2"],
    )
    log = wiretap(server)
    auth = XOAuth2Auth("alice@example.com", token="good-token")
    config = config_for(server, tls="starttls", ca_file=ca_file, auth=auth)
    with pytest.raises(NotSupportedError, match="XOAUTH2"):
        send(config)
    assert auth_lines(log) == []
    assert server.messages == []


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_credentials_never_logged_or_shown(send, auth_server, submission, caplog):
    secrets = ["wonderland", "good-token", WRONG]
    forms = [
        *secrets,
        *map(_b64, secrets),
        _b64("\0alice\0wonderland"),
        _b64("user=alice@example.com\x01auth=Bearer good-token\x01\x01"),
    ]
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    assert send(submission(auth=PlainAuth("alice", "wonderland"))).ok
    assert send(submission(auth=LoginAuth("alice", "wonderland"))).ok
    token_auth = XOAuth2Auth("alice@example.com", token="good-token")
    assert send(submission(auth=token_auth)).ok
    config = submission(
        username="alice", password=WRONG, auth=PlainAuth("alice", WRONG)
    )
    with pytest.raises(AuthenticationError) as info:
        send(config)
    records = [r for r in caplog.records if r.name.startswith("smtpkit")]
    messages = [r.getMessage() for r in records]
    assert any(m.startswith(">>> AUTH PLAIN") for m in messages)  # not vacuous
    assert any("SASL" in m for m in messages)  # LOGIN's answers were logged, masked
    shown = [
        *messages,
        *(str(r.args) for r in records),
        str(info.value),
        repr(info.value),
        repr(info.value.reply),
        repr(config),
        str(config),
        repr(token_auth),
        repr(PlainAuth("alice", WRONG)),
    ]
    for text in shown:
        for secret in forms:
            assert secret not in text


class _PreferredLogin(LoginAuth):
    """LOGIN ranked above PLAIN by a property, as a configurable subclass may."""

    @property
    def strength(self) -> int:  # type: ignore[override]
        return 99


def test_a_strength_read_from_the_instance_picks_the_mechanism(
    send, auth_server, submission, log
):
    # Before, the ranking read the class attribute: a property object, which
    # cannot be compared, and the send failed with "transport raised TypeError".
    config = submission(
        auth=[PlainAuth("alice", "wonderland"), _PreferredLogin("alice", "wonderland")]
    )
    assert send(config).ok
    assert auth_lines(log) == ["AUTH LOGIN"]
    assert auth_server.messages[0].login == "alice"
