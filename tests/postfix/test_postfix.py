"""smtpkit against a real Postfix: TLS modes, SASL mechanisms, connection reuse.

Every test checks what Postfix really did: the stored message, the ``Received:``
header Postfix wrote (protocol, TLS), or Postfix's own log.
"""

from __future__ import annotations

import smtplib
import ssl

import pytest
import trustme

from smtpkit import (
    AuthenticationError,
    AuthenticationRequiredError,
    Envelope,
    Message,
    NotSupportedError,
    RecipientsRefusedError,
    RetryPolicy,
    TLSError,
)
from smtpkit.auth import (
    Auth,
    CramMD5Auth,
    LoginAuth,
    OAuthBearerAuth,
    PlainAuth,
    XOAuth2Auth,
)

from .mta import TEST_TOKENS, TEST_USERS, queue_id

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

ALICE, ALICE_PASSWORD = "alice@example.com", TEST_USERS["alice@example.com"]
UNICODE_USER = "用户@example.com"
UNICODE_PASSWORD = TEST_USERS[UNICODE_USER]
OAUTH_USER, TOKEN = next(iter(TEST_TOKENS.items()))
NEVER = RetryPolicy.never()


def _message(to: str, subject: str = "hello") -> Message:
    return Message(sender=ALICE, to=to, subject=subject, text="body\n")


# -- security modes -------------------------------------------------------------


def test_plain_endpoint_stores_raw_bytes_exactly(make_mailer, postfix, address):
    rcpt = address()
    data = (
        b"From: a@example.com\r\nTo: b@example.net\r\nSubject: raw\r\n\r\n"
        b"line one\r\n.starts with a dot\r\n.\r\n..\r\ntrailing space \r\n"
        + b"x" * 998
        + b"\r\n\r\n"
    )
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        result = mailer.send(data, envelope=Envelope(sender=ALICE, recipients=[rcpt]))
    assert result.ok
    [delivery] = postfix.wait_for_deliveries(1, recipients=[rcpt])
    assert (delivery.sender, delivery.recipient) == (ALICE, rcpt)
    # Postfix prepends Received: and the pipe writes LF; nothing else changes.
    assert delivery.original == data.replace(b"\r\n", b"\n")
    assert f"with ESMTP id {queue_id(result)}" in delivery.received
    assert "using TLS" not in delivery.received


def test_starttls_with_ca_file(make_mailer, postfix, address):
    rcpt = address()
    config = postfix.config("submission", username=ALICE, password=ALICE_PASSWORD)
    assert config.ca_file == postfix.ca_file
    with make_mailer(config, retry=NEVER) as mailer:
        mailer.send(_message(rcpt))
    [delivery] = postfix.wait_for_deliveries(1, recipients=[rcpt])
    # ESMTPSA: ESMTP with TLS (S) and authentication (A), RFC 3848.
    assert "with ESMTPSA id" in delivery.received
    assert "using TLSv1." in delivery.received
    assert delivery.message()["Subject"] == "hello"


def test_implicit_tls(make_mailer, postfix, address):
    rcpt = address()
    config = postfix.config("smtps", username=ALICE, password=ALICE_PASSWORD)
    with make_mailer(config, retry=NEVER) as mailer:
        mailer.send(_message(rcpt))
    [delivery] = postfix.wait_for_deliveries(1, recipients=[rcpt])
    assert "with ESMTPSA id" in delivery.received
    assert "using TLSv1." in delivery.received


@pytest.mark.parametrize("endpoint", ["submission", "smtps"])
def test_untrusted_certificate_is_refused(
    make_mailer, postfix, address, tmp_path, endpoint
):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    config = postfix.config(
        endpoint, username=ALICE, password=ALICE_PASSWORD, ca_file=str(other_ca)
    )
    with make_mailer(config, retry=NEVER) as mailer, pytest.raises(TLSError) as info:
        mailer.send(_message(address()))
    assert not info.value.is_transient
    assert "the certificate is not trusted" in str(info.value)
    assert "set ca_file" in str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value.__cause__)


def test_submission_refuses_mail_before_starttls(make_mailer, postfix, address):
    # smtpd_tls_security_level=encrypt: MAIL in cleartext is refused.
    config = postfix.config("submission", tls="none")
    with make_mailer(config, retry=NEVER) as mailer:
        with pytest.raises(AuthenticationRequiredError) as info:
            mailer.send(_message(address()))
    assert info.value.reply.code == 530
    assert "STARTTLS" in info.value.reply.text
    # What a user reads says what to change.
    assert "the server requires TLS before MAIL: use tls='starttls'" in str(info.value)


def test_submission_offers_auth_only_after_starttls(make_mailer, postfix, address):
    # smtpd_tls_auth_only=yes: no AUTH in the cleartext EHLO, so smtpkit refuses
    # to go on rather than send mail unauthenticated.
    config = postfix.config(
        "submission",
        tls="none",
        username=ALICE,
        password=ALICE_PASSWORD,
        allow_insecure_auth=True,
    )
    with make_mailer(config, retry=NEVER) as mailer:
        with pytest.raises(NotSupportedError, match="does not offer AUTH"):
            mailer.send(_message(address()))


def test_submission_requires_auth_to_relay(make_mailer, postfix, address):
    rcpt = address()
    with make_mailer(postfix.config("submission"), retry=NEVER) as mailer:
        with pytest.raises(RecipientsRefusedError) as info:
            mailer.send(_message(rcpt))
    reply = info.value.refused[rcpt]
    assert (reply.code, str(reply.enhanced)) == (554, "5.7.1")
    assert "Relay access denied" in reply.text
    assert not info.value.is_transient


# -- SASL -----------------------------------------------------------------------


def _advertised_auth(postfix) -> set[str]:
    with smtplib.SMTP(postfix.host, postfix.ports["submission"], timeout=10) as smtp:
        smtp.ehlo("probe.smtpkit.test")
        assert not smtp.has_extn("auth")  # smtpd_tls_auth_only
        smtp.starttls(context=ssl.create_default_context(cafile=postfix.ca_file))
        smtp.ehlo("probe.smtpkit.test")
        return set(smtp.esmtp_features["auth"].split())


def test_postfix_offers_every_mechanism_smtpkit_ships(postfix):
    offered = _advertised_auth(postfix)
    ours = {a.mechanism for a in (PlainAuth, LoginAuth, CramMD5Auth)}
    ours |= {XOAuth2Auth.mechanism, OAuthBearerAuth.mechanism}
    assert ours <= offered


PASSWORD_MECHANISMS = [PlainAuth, LoginAuth, CramMD5Auth]


@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS, ids=lambda m: m.mechanism)
@pytest.mark.parametrize(
    ("user", "password"),
    [(ALICE, ALICE_PASSWORD), (UNICODE_USER, UNICODE_PASSWORD)],
    ids=["ascii", "unicode"],
)
def test_password_mechanism_logs_in(  # noqa: PLR0917 - pytest passes fixtures by position
    make_mailer, postfix, address, mechanism, user, password
):
    rcpt = address()
    mark = postfix.log_offset()
    config = postfix.config("submission", auth=mechanism(user, password))
    with make_mailer(config, retry=NEVER) as mailer:
        mailer.send(_message(rcpt))
    [delivery] = postfix.wait_for_deliveries(1, recipients=[rcpt])
    assert "with ESMTPSA" in delivery.received
    postfix.wait_for_log(
        f"sasl_method={mechanism.mechanism}, sasl_username={user}", since=mark
    )


@pytest.mark.parametrize(
    "auth",
    [XOAuth2Auth(OAUTH_USER, TOKEN), OAuthBearerAuth(OAUTH_USER, TOKEN)],
    ids=lambda a: a.mechanism,
)
def test_token_mechanism_logs_in(make_mailer, postfix, address, auth):
    rcpt = address()
    mark = postfix.log_offset()
    with make_mailer(postfix.config("smtps", auth=auth), retry=NEVER) as mailer:
        mailer.send(_message(rcpt))
    postfix.wait_for_deliveries(1, recipients=[rcpt])
    postfix.wait_for_log(
        f"sasl_method={auth.mechanism}, sasl_username={OAUTH_USER}", since=mark
    )


WRONG: list[Auth] = [
    PlainAuth(ALICE, "wrong password"),
    LoginAuth(UNICODE_USER, "неверный"),
    CramMD5Auth(ALICE, "wrong password"),
    XOAuth2Auth(OAUTH_USER, "expired-token"),
    OAuthBearerAuth(OAUTH_USER, "expired-token"),
]


@pytest.mark.parametrize("auth", WRONG, ids=lambda a: a.mechanism)
def test_wrong_credentials_raise_authentication_error(
    make_mailer, postfix, address, auth
):
    rcpt = address()
    mark = postfix.log_offset()
    # Default retry policy: a 535 is permanent, so exactly one attempt is made.
    with make_mailer(postfix.config("submission", auth=auth)) as mailer:
        with pytest.raises(AuthenticationError) as info:
            mailer.send(_message(rcpt))
    error = info.value
    assert (error.reply.code, str(error.reply.enhanced)) == (535, "5.7.8")
    assert not error.is_transient
    assert error.attempts == 1
    postfix.wait_for_log(f"SASL {auth.mechanism} authentication failed", since=mark)
    # RFC 5321 §4.1.1.10: the refused session still ends with QUIT.
    log = postfix.wait_for_log(" auth=0/1 ", since=mark)
    [summary] = [line for line in log.splitlines() if " auth=0/1 " in line]
    assert " quit=1 " in summary
    assert "lost connection" not in log
    assert log.count("authentication failed") == 1
    assert postfix.deliveries([rcpt]) == []


# -- sessions -------------------------------------------------------------------


def test_pooled_connection_carries_several_messages(make_mailer, postfix, address):
    rcpts = [address() for _ in range(3)]
    config = postfix.config("smtps", username=ALICE, password=ALICE_PASSWORD)
    with make_mailer(config, retry=NEVER) as mailer:
        results = [mailer.send(_message(rcpt)) for rcpt in rcpts]
    postfix.wait_for_deliveries(3, recipients=rcpts)
    # One TLS session, one login, three transactions, then a polite QUIT.
    summary = postfix.session_summary(queue_id(results[0]))
    # Postfix offers CHUNKING: each message goes as BDAT, not DATA.
    assert "auth=1 mail=3 rcpt=3 bdat=3 quit=1" in summary
