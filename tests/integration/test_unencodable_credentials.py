"""Credentials that cannot be encoded fail without quoting them.

A secret with a lone surrogate (os.environ decodes bytes that are not UTF-8 that
way, PEP 383; a token provider may return one) cannot be encoded for SASL.  Before
the fix the ``UnicodeEncodeError`` was chained as the ``__cause__``: its repr holds
the whole SASL payload, secret included (also in a pickle and in
``traceback.format_exception``), and the message showed one character of it.

Against ``auth_server`` (aiosmtpd, STARTTLS, then PLAIN/LOGIN/CRAM-MD5/XOAUTH2/
OAUTHBEARER), with the default retry policy, checking what the server was sent.
"""

from __future__ import annotations

import pickle
import traceback

import pytest
from typing_extensions import override

from smtpkit import Mailer, Message, SMTPConfig, TransportError
from smtpkit.auth import (
    Auth,
    CramMD5Auth,
    LoginAuth,
    OAuthBearerAuth,
    PlainAuth,
    Responder,
    XOAuth2Auth,
)

from ..chains import linked
from .scripted import wiretap

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")
SECRET = "ya29.SECRET-TOKEN"  # what must never show; "\udcff" follows it
LONE = "they contain characters that are not valid Unicode (lone surrogates)"


def assert_hidden(error: BaseException, secret: str = SECRET) -> None:
    """No text, repr, traceback or pickle of *error* or its chain holds *secret*."""
    assert error.__cause__ is None
    assert error.__context__ is None
    report = "".join(traceback.format_exception(error))
    assert secret not in report
    assert "\udcff" not in report
    for link in linked(error):
        for text in (str(link), repr(link), repr(link.args), repr(vars(link))):
            assert secret not in text
            assert "\udcff" not in text
        blob = pickle.dumps(link)
        assert secret.encode() not in blob
        copy = pickle.loads(blob)  # noqa: S301 - our own bytes
        assert str(copy) == str(link)


def send(config: SMTPConfig) -> list[float]:
    waits: list[float] = []
    with Mailer(config, sleep=waits.append) as mailer:
        mailer.send(MESSAGE)
    return waits


BAD = f"{SECRET}\udcff"
AUTHS = {
    "XOAUTH2 token": XOAuth2Auth("u@example.com", token=BAD),
    "OAUTHBEARER token": OAuthBearerAuth("u@example.com", token=BAD),
    "PLAIN password": PlainAuth("u", BAD),
    "PLAIN username": PlainAuth(BAD, "pw"),
    "LOGIN password": LoginAuth("u", BAD),
    "CRAM-MD5 password": CramMD5Auth("u", BAD),
}


@pytest.mark.parametrize("case", AUTHS)
def test_credentials_with_a_lone_surrogate_are_refused_without_quoting_them(
    auth_server, submission, case
):
    auth = AUTHS[case]
    log = wiretap(auth_server)
    with pytest.raises(TransportError) as info:
        send(submission(auth))
    error = info.value
    assert str(error) == (
        f"the credentials of {type(auth).__name__} ({auth.mechanism}) cannot be "
        f"encoded: {LONE}"
    )
    assert type(error) is TransportError
    assert error.command == "AUTH"
    assert not error.is_transient
    assert error.attempts == 1
    assert_hidden(error)
    assert not any(SECRET in line for line in log)
    assert auth_server.messages == []


def test_a_provider_returning_such_a_token_is_named(auth_server, submission):
    auth = XOAuth2Auth("u@example.com", token_provider=lambda: BAD)
    with pytest.raises(TransportError) as info:
        send(submission(auth))
    assert str(info.value) == (
        "XOAUTH2 token_provider returned a token that cannot be sent: it contains "
        "characters that are not valid Unicode (lone surrogates)"
    )
    assert info.value.attempts == 1
    assert_hidden(info.value)


def test_a_unicode_error_from_a_provider_is_named_without_its_object(
    auth_server, submission
):
    def provider() -> str:
        return f"{SECRET}\xff".encode("latin-1").decode("utf-8")  # raises

    auth = OAuthBearerAuth("u@example.com", token_provider=provider)
    with pytest.raises(TransportError) as info:
        send(submission(auth))
    assert str(info.value) == (
        "OAUTHBEARER token_provider raised UnicodeDecodeError: 'utf-8' codec: "
        "invalid start byte"
    )
    assert_hidden(info.value)


class AsciiOnlyAuth(Auth):
    """A custom mechanism that encodes as ASCII (a UnicodeError, no surrogate)."""

    mechanism = "PLAIN"

    @override
    def responder(self) -> Responder:
        def respond(challenge: bytes | None) -> bytes | None:
            return f"\0u\0{SECRET}\u00e9".encode("ascii")

        return respond


def test_any_unicode_error_of_a_custom_auth_is_named_without_its_object(
    auth_server, submission
):
    with pytest.raises(TransportError) as info:
        send(submission(AsciiOnlyAuth()))
    assert str(info.value) == (
        "AsciiOnlyAuth (PLAIN) raised UnicodeEncodeError: 'ascii' codec: "
        "ordinal not in range(128)"
    )
    assert info.value.attempts == 1
    assert_hidden(info.value)
