"""Stand-ins with the interfaces of MSAL and google-auth, for docs/guide/oauth2.md.

Neither library is a dependency.  These model the behaviour the recipes rely on:
MSAL caches an access token and hands it out until it is close to expiry (its
5-minute margin), ``remove_tokens_for_client()`` drops it, and
``acquire_token_silent(force_refresh=True)`` skips it; google-auth's
``Credentials.refresh()`` fetches a new token each time and sets ``expiry`` as a
naive UTC datetime.  Each issues tokens from ``IdentityProvider``, whose
``issued`` list the tests compare with what the SMTP server accepts.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

__all__ = [
    "ConfidentialClientApplication",
    "Credentials",
    "IdentityProvider",
    "PublicClientApplication",
    "Request",
]

_MSAL_MARGIN = 300  # seconds: MSAL treats a token this close to expiry as expired


class IdentityProvider:
    """Issues numbered tokens (``prefix-1``, ``prefix-2``...) valid for *lifetime* s."""

    def __init__(self, prefix: str, lifetime: int = 3600) -> None:
        self.prefix = prefix
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.error: dict[str, str] | None = None  # answer this instead of a token
        self._lock = threading.Lock()

    def issue(self) -> str:
        with self._lock:
            token = f"{self.prefix}-{len(self.issued) + 1}"
            self.issued.append(token)
            return token


class _MSALCache:
    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider
        self.token: str | None = None
        self.expires = 0.0
        self.now = 0.0  # seconds; the tests move it

    def get(self, *, force: bool) -> dict[str, Any]:
        if self.provider.error is not None:
            return dict(self.provider.error)
        if force or self.token is None or self.expires - self.now <= _MSAL_MARGIN:
            self.token = self.provider.issue()
            self.expires = self.now + self.provider.lifetime
        return {
            "token_type": "Bearer",
            "access_token": self.token,
            "expires_in": int(self.expires - self.now),
        }


class ConfidentialClientApplication:
    """msal.ConfidentialClientApplication: client credentials, with MSAL's cache."""

    def __init__(
        self,
        client_id: str,
        client_credential: str | None = None,
        authority: str | None = None,
        *,
        provider: IdentityProvider,
    ) -> None:
        self.cache = _MSALCache(provider)

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        return self.cache.get(force=False)

    def remove_tokens_for_client(self) -> None:
        self.cache.token = None


class PublicClientApplication:
    """msal.PublicClientApplication after a user signed in (accounts in the cache)."""

    def __init__(
        self,
        client_id: str,
        authority: str | None = None,
        *,
        provider: IdentityProvider,
        signed_in: list[str],
    ) -> None:
        self.cache = _MSALCache(provider)
        self.signed_in = signed_in

    def get_accounts(self, username: str | None = None) -> list[dict[str, Any]]:
        return [
            {"username": name}
            for name in self.signed_in
            if username is None or name == username
        ]

    def acquire_token_silent(
        self,
        scopes: list[str],
        account: dict[str, Any] | None,
        force_refresh: bool = False,
    ) -> dict[str, Any] | None:
        if account is None or account["username"] not in self.signed_in:
            return None
        return self.cache.get(force=force_refresh)


class Request:
    """google.auth.transport.requests.Request: an HTTP transport (unused here)."""


class Credentials:
    """google.oauth2.service_account.Credentials (with domain-wide delegation)."""

    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider
        self.token: str | None = None
        self.expiry: dt.datetime | None = None
        self.refreshing = 0  # refresh() calls running now: must never exceed 1

    def refresh(self, request: Request) -> None:
        assert isinstance(request, Request)
        self.refreshing += 1
        try:
            assert self.refreshing == 1, "refresh() called from two threads at once"
            if self.provider.error is not None:
                raise RuntimeError(self.provider.error["error"])  # RefreshError-like
            self.token = self.provider.issue()
            now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            self.expiry = now + dt.timedelta(seconds=self.provider.lifetime)
        finally:
            self.refreshing -= 1
