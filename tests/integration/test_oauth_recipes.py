"""The MSAL and google-auth recipes of docs/guide/oauth2.md, run as printed.

Against stand-ins of both libraries (oauth_stubs.py) and aiosmtpd's XOAUTH2,
whose authenticator accepts only the token in ``handler.tokens``: changing it
revokes the token the client holds, as Microsoft 365 and Gmail do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smtpkit import Mailer, Message, PoolLimits, SMTPConfig, TokenFetchError
from smtpkit.auth import AccessToken, CachedTokenProvider, XOAuth2Auth

from .oauth_stubs import (
    ConfidentialClientApplication,
    Credentials,
    IdentityProvider,
    PublicClientApplication,
    Request,
)
from .proxies import load_doc_recipe
from .threaded import send_from_threads

pytestmark = pytest.mark.integration

USER = "alice@example.com"
MESSAGE = Message(sender=USER, to="b@example.com", subject="s", text="x")
msal_app_only_fetch = load_doc_recipe("oauth2.md", "msal_app_only_fetch")
msal_delegated_fetch = load_doc_recipe("oauth2.md", "msal_delegated_fetch")
google_service_account_fetch = load_doc_recipe(
    "oauth2.md", "google_service_account_fetch"
)


def app_only(idp: IdentityProvider) -> Callable[[], AccessToken]:
    app = ConfidentialClientApplication("client-id", "secret", provider=idp)
    return msal_app_only_fetch(app, ["https://outlook.office365.com/.default"])


def delegated(idp: IdentityProvider) -> Callable[[], AccessToken]:
    app = PublicClientApplication("client-id", provider=idp, signed_in=[USER])
    return msal_delegated_fetch(app, USER, ["https://outlook.office.com/SMTP.Send"])


def service_account(idp: IdentityProvider) -> Callable[[], AccessToken]:
    return google_service_account_fetch(Credentials(idp), Request())


RECIPES = [app_only, delegated, service_account]


def send(config: SMTPConfig, **kwargs: Any) -> None:
    with Mailer(config, **kwargs) as mailer:
        mailer.send(MESSAGE)


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_revoked_token_is_replaced_by_the_recipe(auth_server, submission, recipe):
    idp = IdentityProvider("tok")
    tokens = CachedTokenProvider(recipe(idp))
    config = submission(XOAuth2Auth(USER, token_provider=tokens))
    auth_server.handler.tokens[USER] = "tok-1"
    send(config)
    auth_server.handler.tokens[USER] = "tok-2"  # tok-1 revoked
    send(config)  # a new pool: logs in with tok-1, refused, then tok-2
    assert idp.issued == ["tok-1", "tok-2"]
    assert [m.login for m in auth_server.messages] == [USER, USER]


@pytest.mark.parametrize("recipe", RECIPES)
def test_fifty_concurrent_sends_cost_one_token(auth_server, submission, recipe):
    idp = IdentityProvider("tok")
    auth_server.handler.tokens[USER] = "tok-1"
    tokens = CachedTokenProvider(recipe(idp))
    config = submission(XOAuth2Auth(USER, token_provider=tokens)).model_copy(
        update={"pool": PoolLimits(max_connections=8)}
    )
    with Mailer(config) as mailer:
        failures = send_from_threads(mailer, [MESSAGE] * 50)
    assert failures == []
    assert idp.issued == ["tok-1"]
    assert len(auth_server.messages) == 50


def test_msal_app_only_refreshes_ahead_of_expiry_without_forcing(
    auth_server, submission
):
    idp = IdentityProvider("tok")
    app = ConfidentialClientApplication("client-id", provider=idp)
    removed: list[bool] = []
    app.remove_tokens_for_client = lambda: removed.append(True)  # type: ignore[method-assign]
    now = [0.0]
    tokens = CachedTokenProvider(
        msal_app_only_fetch(app, ["https://outlook.office365.com/.default"]),
        clock=lambda: now[0],
    )
    assert tokens() == "tok-1"
    now[0] = app.cache.now = 3600 - 300  # due for both
    assert tokens() == "tok-2"
    assert removed == []


@pytest.mark.parametrize(
    ("recipe", "shown"),
    [
        (
            app_only,
            "RuntimeError: invalid_client: AADSTS7000215: Invalid client secret",
        ),
        (
            delegated,
            "RuntimeError: invalid_client: AADSTS7000215: Invalid client secret",
        ),
        (service_account, "RuntimeError: invalid_client"),
    ],
)
def test_an_identity_provider_error_is_a_token_fetch_error(
    auth_server, submission, recipe, shown
):
    idp = IdentityProvider("tok")
    idp.error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret",
    }
    tokens = CachedTokenProvider(recipe(idp))
    waits: list[float] = []
    with pytest.raises(TokenFetchError) as info:
        send(submission(XOAuth2Auth(USER, token_provider=tokens)), sleep=waits.append)
    assert shown in str(info.value)
    assert waits == []
    assert auth_server.messages == []


def test_msal_delegated_without_a_signed_in_user(auth_server, submission):
    app = PublicClientApplication(
        "client-id", provider=IdentityProvider("tok"), signed_in=[]
    )
    fetch = msal_delegated_fetch(app, USER, ["https://outlook.office.com/SMTP.Send"])
    tokens = CachedTokenProvider(fetch)
    with pytest.raises(
        TokenFetchError, match=r"LookupError: alice@example\.com has not"
    ):
        send(submission(XOAuth2Auth(USER, token_provider=tokens)))


def test_msal_delegated_when_msal_needs_an_interactive_sign_in():
    app = PublicClientApplication(
        "client-id", provider=IdentityProvider("tok"), signed_in=[USER]
    )
    app.acquire_token_silent = lambda *a, **k: None  # type: ignore[method-assign]
    fetch = msal_delegated_fetch(app, USER, ["https://outlook.office.com/SMTP.Send"])
    with pytest.raises(TokenFetchError, match="interaction_required"):
        CachedTokenProvider(fetch)()


def test_google_credentials_without_a_token():
    credentials = Credentials(IdentityProvider("tok"))
    credentials.refresh = lambda request: None  # type: ignore[method-assign]
    fetch = google_service_account_fetch(credentials, Request())
    with pytest.raises(TokenFetchError, match="google-auth returned no token"):
        CachedTokenProvider(fetch)()
