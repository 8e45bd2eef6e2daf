"""A failing token_provider (or a custom Auth that raises) is reported as what it is.

The provider runs inside the session, after EHLO and before AUTH is sent.  Before
the fix its exception was read as the session's: a RuntimeError became "transport
raised RuntimeError" with ``delivery_unknown=True``, a ConnectionError a transient
"connection lost during EHLO" retried three times, a ValueError "EHLO failed".

Against ``auth_server`` (aiosmtpd, STARTTLS, XOAUTH2 and OAUTHBEARER offered), with
the default retry policy, checking what the server was sent.
"""

from __future__ import annotations

import pytest
from typing_extensions import override

from smtpkit import (
    Mailer,
    Message,
    NetworkError,
    NotSupportedError,
    SMTPConfig,
    TransportError,
)
from smtpkit.auth import Auth, OAuthBearerAuth, Responder, XOAuth2Auth

from .scripted import wiretap

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")


def send(config: SMTPConfig) -> list[float]:
    """Send MESSAGE with the default retry policy; return the waits it slept."""
    waits: list[float] = []
    with Mailer(config, sleep=waits.append) as mailer:
        mailer.send(MESSAGE)
    return waits


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (RuntimeError("token service down"), "RuntimeError: token service down"),
        (
            ConnectionError("token endpoint unreachable"),
            "ConnectionError: token endpoint unreachable",
        ),
        (ValueError("bad refresh token"), "ValueError: bad refresh token"),
        (
            TimeoutError("token endpoint timed out"),
            "TimeoutError: token endpoint timed out",
        ),
        (KeyError("x"), "KeyError: 'x'"),
        (RuntimeError(), "RuntimeError"),
    ],
)
@pytest.mark.parametrize("auth_class", [XOAuth2Auth, OAuthBearerAuth])
def test_a_failing_token_provider_is_named_and_not_retried(
    auth_server, submission, exc, shown, auth_class
):
    log = wiretap(auth_server)

    def provider() -> str:
        raise exc

    auth = auth_class("alice@example.com", token_provider=provider)
    waits: list[float] = []
    with pytest.raises(TransportError) as info:
        waits = send(submission(auth))
    error = info.value
    assert type(error) is TransportError
    assert str(error) == f"{auth_class.mechanism} token_provider raised {shown}"
    assert error.command == "AUTH"
    assert not error.delivery_unknown
    assert not error.is_transient
    assert error.attempts == 1
    assert waits == []
    assert error.__cause__ is exc
    assert not [line for line in log if line.startswith("AUTH")]  # nothing sent
    assert auth_server.messages == []


def test_a_provider_failing_on_the_second_ask_shows_no_token(auth_server, submission):
    # After a refused token the provider is asked again (see test_auth.py).
    calls: list[str] = []

    def provider() -> str:
        if calls:
            msg = "refresh failed"
            raise RuntimeError(msg)
        calls.append("expired-token")
        return "expired-token"

    with pytest.raises(TransportError) as info:
        send(submission(XOAuth2Auth("alice@example.com", token_provider=provider)))
    assert (
        str(info.value) == "XOAUTH2 token_provider raised RuntimeError: refresh failed"
    )
    assert "expired-token" not in repr(info.value)


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "returned NoneType"), ("", "returned an empty str")]
)
def test_a_provider_returning_no_token_is_named(auth_server, submission, value, shown):
    auth = XOAuth2Auth("alice@example.com", token_provider=lambda: value)
    with pytest.raises(TransportError) as info:
        send(submission(auth))
    assert str(info.value) == (f"XOAUTH2 token_provider {shown}, not an access token")
    assert info.value.command == "AUTH"
    assert info.value.attempts == 1


def test_a_provider_may_ask_for_a_retry_with_an_smtpkit_error(auth_server, submission):
    # The way to say "this may heal": raise a transient smtpkit error yourself.
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        if len(asked) < 3:
            msg = "token endpoint unreachable"
            raise NetworkError(msg)
        return "good-token"

    waits = send(submission(XOAuth2Auth("alice@example.com", token_provider=provider)))
    assert len(asked) == 3
    assert len(waits) == 2
    assert len(auth_server.messages) == 1


class BrokenAuth(Auth):
    """A custom mechanism with a bug in its responder (or in making one)."""

    mechanism = "PLAIN"

    def __init__(self, *, at_start: bool) -> None:
        self.at_start = at_start

    @override
    def responder(self) -> Responder:
        if self.at_start:
            msg = "no credentials in the vault"
            raise LookupError(msg)

        def respond(challenge: bytes | None) -> bytes | None:
            msg = "bug in the encoder"
            raise ValueError(msg)

        return respond


@pytest.mark.parametrize(
    ("at_start", "shown"),
    [
        (True, "LookupError: no credentials in the vault"),
        (False, "ValueError: bug in the encoder"),
    ],
)
def test_a_custom_auth_that_raises_is_named(auth_server, submission, at_start, shown):
    with pytest.raises(TransportError) as info:
        send(submission(BrokenAuth(at_start=at_start)))
    assert str(info.value) == f"BrokenAuth (PLAIN) raised {shown}"
    assert info.value.command == "AUTH"
    assert not info.value.delivery_unknown
    assert info.value.attempts == 1
    assert isinstance(info.value.__cause__, LookupError | ValueError)


class VaultAuth(Auth):
    """A custom mechanism whose responder reports a failure as an smtpkit error."""

    mechanism = "PLAIN"

    @override
    def responder(self) -> Responder:
        def respond(challenge: bytes | None) -> bytes | None:
            msg = "vault sealed"
            raise NotSupportedError(msg, command="AUTH")

        return respond


def test_an_smtpkit_error_from_a_custom_auth_passes_through(auth_server, submission):
    with pytest.raises(NotSupportedError, match=r"^vault sealed$") as info:
        send(submission(VaultAuth()))
    assert info.value.attempts == 1
