"""SMTP AUTH strategies (RFC 4954): the :class:`Auth` protocol and built-in mechanisms.

Pass one or more to ``SMTPConfig(auth=...)``.  With only ``username`` and
``password`` configured, smtpkit picks the strongest of CRAM-MD5, PLAIN and LOGIN
that the server offers.
"""

from __future__ import annotations

from ._auth import (
    Auth,
    CramMD5Auth,
    LoginAuth,
    OAuthBearerAuth,
    PlainAuth,
    Responder,
    TokenProvider,
    XOAuth2Auth,
)
from ._token_cache import DEFAULT_REFRESH_AHEAD, AccessToken, CachedTokenProvider

__all__ = [
    "DEFAULT_REFRESH_AHEAD",
    "AccessToken",
    "Auth",
    "CachedTokenProvider",
    "CramMD5Auth",
    "LoginAuth",
    "OAuthBearerAuth",
    "PlainAuth",
    "Responder",
    "TokenProvider",
    "XOAuth2Auth",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("smtpkit._"):
        _obj.__module__ = "smtpkit.auth"
del _name, _obj
