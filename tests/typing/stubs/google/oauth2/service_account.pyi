import datetime
from collections.abc import Sequence

from google.auth.transport.requests import Request

class Credentials:
    token: str | None
    expiry: datetime.datetime | None
    @classmethod
    def from_service_account_file(
        cls,
        filename: str,
        *,
        scopes: Sequence[str] | None = None,
        subject: str | None = None,
    ) -> Credentials: ...
    def refresh(self, request: Request) -> None: ...
