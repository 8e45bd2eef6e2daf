"""CachedTokenProvider against aiosmtpd's XOAUTH2 and OAUTHBEARER (STARTTLS first).

The server's authenticator checks the bearer token against ``handler.tokens``;
changing that entry revokes the token a client holds, and the next login is
refused with 535, as Microsoft 365 and Gmail refuse a revoked or expired token.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from smtpkit import (
    AsyncMailer,
    AuthenticationError,
    Mailer,
    Message,
    PoolLimits,
    ProviderAdaptation,
    TokenFetchError,
)
from smtpkit.auth import AccessToken, CachedTokenProvider, OAuthBearerAuth, XOAuth2Auth

from .scripted import wiretap
from .threaded import send_from_threads

pytestmark = pytest.mark.integration

USER = "alice@example.com"


def message(number: int = 0) -> Message:
    return Message(sender=USER, to="b@example.com", subject=f"m{number}", text="x")


class Tokens:
    """A stand-in identity provider: hands out the tokens in *queue*, in order."""

    def __init__(self, *queue: str) -> None:
        self.queue = list(queue)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> AccessToken:
        with self.lock:
            self.calls += 1
            token = self.queue.pop(0) if len(self.queue) > 1 else self.queue[0]
        return AccessToken(token=token, lifetime=3600)


@pytest.mark.parametrize("auth_class", [XOAuth2Auth, OAuthBearerAuth])
def test_fifty_concurrent_sends_fetch_one_token(auth_server, submission, auth_class):
    tokens = Tokens("good-token")
    auth = auth_class(USER, token_provider=CachedTokenProvider(tokens))
    config = submission(auth).model_copy(update={"pool": PoolLimits(max_connections=8)})
    with Mailer(config) as mailer:
        failures = send_from_threads(mailer, [message(n) for n in range(50)])
    assert failures == []
    assert tokens.calls == 1
    assert len(auth_server.messages) == 50
    assert {m.login for m in auth_server.messages} == {USER}


def test_a_refused_token_is_replaced_and_the_login_retried(auth_server, submission):
    log = wiretap(auth_server)
    auth_server.handler.tokens[USER] = "token-2"  # token-1 has been revoked
    tokens = Tokens("token-1", "token-2")
    auth = XOAuth2Auth(USER, token_provider=CachedTokenProvider(tokens))
    with Mailer(submission(auth)) as mailer:
        result = mailer.send(message())
        assert result.accepted == ("b@example.com",)
        assert tokens.calls == 2
        mailer.send(message(1))  # same session, no new login
    assert tokens.calls == 2
    assert [m.login for m in auth_server.messages] == [USER, USER]
    # Refused once, then accepted on the same session.
    assert [line for line in log if line.startswith("AUTH")] == ["AUTH XOAUTH2"] * 2
    assert log.count("EHLO") == 2  # before and after STARTTLS: one session


def test_concurrent_refusals_fetch_one_fresh_token(auth_server, submission):
    tokens = Tokens("good-token")
    provider = CachedTokenProvider(tokens)
    auth = XOAuth2Auth(USER, token_provider=provider)
    config = submission(auth).model_copy(update={"pool": PoolLimits(max_connections=8)})
    with Mailer(config) as mailer:
        mailer.send(message())
    auth_server.handler.tokens[USER] = "rotated-token"  # good-token revoked
    tokens.queue = ["rotated-token"]
    with Mailer(config) as mailer:  # a new pool: every connection logs in
        failures = send_from_threads(mailer, [message(n) for n in range(8)])
    assert failures == []
    assert tokens.calls == 2
    assert len(auth_server.messages) == 9


def test_a_token_refused_twice_is_an_authentication_error(auth_server, submission):
    tokens = Tokens("revoked-token-0123456789")
    provider = CachedTokenProvider(tokens)
    auth = XOAuth2Auth(USER, token_provider=provider)
    with Mailer(submission(auth)) as mailer, pytest.raises(AuthenticationError) as info:
        mailer.send(message())
    assert info.value.reply.code == 535
    assert tokens.calls == 2  # the first and the forced refresh
    assert "revoked-token" not in str(info.value)
    assert auth_server.messages == []
    # The second refused token is dropped too: the next login fetches again.
    auth_server.handler.tokens[USER] = "revoked-token-0123456789"  # consent fixed
    with Mailer(submission(auth)) as mailer:
        mailer.send(message())
    assert tokens.calls == 3


def test_a_failing_fetch_is_a_token_fetch_error_and_not_retried(
    auth_server, submission
):
    calls = []

    def fetch() -> AccessToken:
        calls.append(1)
        msg = "AADSTS7000215: Invalid client secret provided."
        raise RuntimeError(msg)

    auth = XOAuth2Auth(USER, token_provider=CachedTokenProvider(fetch))
    waits: list[float] = []
    with (
        Mailer(submission(auth), sleep=waits.append) as mailer,
        pytest.raises(TokenFetchError) as info,
    ):
        mailer.send(message())
    assert str(info.value) == (
        "CachedTokenProvider fetch raised RuntimeError: "
        "AADSTS7000215: Invalid client secret provided."
    )
    assert info.value.command == "AUTH"
    assert not info.value.is_transient
    assert calls == [1]
    assert waits == []
    assert auth_server.messages == []


@pytest.mark.asyncio
async def test_async_mailer_refreshes_a_refused_token(auth_server, submission):
    auth_server.handler.tokens[USER] = "token-2"  # token-1 has been revoked
    tokens = Tokens("token-1", "token-2")
    auth = XOAuth2Auth(USER, token_provider=CachedTokenProvider(tokens))
    async with AsyncMailer(submission(auth)) as mailer:
        results = await asyncio.gather(*(mailer.send(message(n)) for n in range(8)))
    assert len(results) == 8
    assert tokens.calls == 2
    assert len(auth_server.messages) == 8


def test_after_two_refusals_logins_wait_for_the_pause_then_fetch_anew(
    auth_server, submission
):
    """docs/guide/oauth2.md "Errors": the refusal is held, then a new token is fetched."""
    tokens = Tokens("wrong-scope-token")
    auth = XOAuth2Auth(USER, token_provider=CachedTokenProvider(tokens))
    config = submission(auth).model_copy(
        update={"adapt": ProviderAdaptation(auth_refusal_pause=0.3)}
    )
    with Mailer(config) as mailer:
        with pytest.raises(AuthenticationError):
            mailer.send(message(1))
        assert tokens.calls == 2
        auth_server.handler.tokens[USER] = "wrong-scope-token"  # permission fixed
        with pytest.raises(AuthenticationError, match="not tried again"):
            mailer.send(message(2))  # within the pause: no login, no fetch
        assert tokens.calls == 2
        time.sleep(0.35)
        mailer.send(message(3))
    assert tokens.calls == 3
    assert len(auth_server.messages) == 1
    assert b"Subject: m3" in auth_server.messages[0].data
