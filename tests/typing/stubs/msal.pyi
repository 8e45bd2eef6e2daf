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
