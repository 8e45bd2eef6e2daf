# The little of msal (Microsoft's auth library, untyped) that docs/guide/authentication.md
# uses, so that its example is type-checked without installing msal.
from typing import Any

class ConfidentialClientApplication:
    def __init__(
        self,
        client_id: str,
        client_credential: str | None = None,
        authority: str | None = None,
    ) -> None: ...
    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]: ...
    # docs/guide/oauth2.md: drop the cached token the server refused.
    def remove_tokens_for_client(self) -> None: ...

class PublicClientApplication:
    def __init__(self, client_id: str, authority: str | None = None) -> None: ...
    def get_accounts(self, username: str | None = None) -> list[dict[str, Any]]: ...
    def acquire_token_silent(
        self,
        scopes: list[str],
        account: dict[str, Any] | None,
        force_refresh: bool = False,
    ) -> dict[str, Any] | None: ...
