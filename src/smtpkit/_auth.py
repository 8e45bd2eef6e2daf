"""SASL mechanisms for SMTP AUTH (RFC 4954), as pure encoders.

An :class:`Auth` object is an immutable, shareable description of how to log in.  Each
login asks it for a fresh :data:`Responder`, a single-use callable that the transport
feeds with the server's challenges.  No I/O happens here; the transport sends the
bytes, base64-encodes them and bounds the exchange.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeVar

from pydantic import SecretStr
from typing_extensions import override

from ._exceptions import SMTPKitError, TransportError
from ._redaction import SecretForms

__all__ = [
    "Auth",
    "CramMD5Auth",
    "LoginAuth",
    "OAuthBearerAuth",
    "PlainAuth",
    "Responder",
    "TokenProvider",
    "XOAuth2Auth",
    "auth_secrets",
    "has_lone_surrogates",
    "password_strategies",
    "raised",
    "run_auth_code",
]

_T = TypeVar("_T")
# PEP 383: os.environ and os.fsdecode turn bytes that are not UTF-8 into these.
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_LONE_SURROGATES: Final = "characters that are not valid Unicode (lone surrogates)"
# Attribute names of a custom Auth whose plain str values are secrets too.
_SECRET_NAMES: Final = ("password", "passwd", "secret", "token", "api_key")

Responder = Callable[[bytes | None], bytes | None]
"""Answers one SASL step.

Called first with ``None``: return the initial response, or ``None`` to send none.
Then called with each decoded server challenge: return the answer (``b""`` allowed).
"""

TokenProvider = Callable[[], str]
"""Returns a currently valid OAuth2 access token.

Called at every login, and once more after a refused login, so a provider that caches
tokens should refresh when it is called again shortly after a failure or when its
token is close to expiry.  A provider with a ``token_refused()`` method is told of
the refusal first (``smtpkit.auth.CachedTokenProvider`` is such a provider).
"""


def raised(source: str, exc: Exception, *, forms: SecretForms) -> str:
    """Say that the caller's code *source* raised *exc* (its text, if any).

    A ``UnicodeError``'s text quotes a character of the string it failed on,
    which may be a secret: only its codec and reason are shown.  Any piece of
    the known *secrets* in the text (as written, or escaped as ``repr``, JSON
    or URL encoding write it) reads ``***``.
    """
    if isinstance(exc, UnicodeError):
        codec = getattr(exc, "encoding", None)
        reason = getattr(exc, "reason", None)
        text = f"{codec!r} codec: {reason}" if codec and reason else reason or ""
    else:
        text = _text(exc, str)
    text = forms.redact(text)
    return f"{source} raised {type(exc).__name__}" + (f": {text}" if text else "")


def has_lone_surrogates(text: str) -> bool:
    """True when *text* holds a lone surrogate, which no UTF-8 encoder accepts."""
    return _LONE_SURROGATE.search(text) is not None


def auth_secrets(auth: object) -> tuple[str, ...]:
    """The secrets an ``Auth`` holds, so that its errors never quote them.

    Every ``SecretStr`` attribute, and every non-empty ``str`` attribute whose
    name says secret (``password``, ``token``, ``client_secret``...).
    """
    names = set(getattr(auth, "__dict__", {}))
    for cls in type(auth).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    found: list[str] = []
    for name in sorted(names):
        value = getattr(auth, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, str) and any(
            word in name.lower() for word in _SECRET_NAMES
        ):
            found.append(value)
    return tuple(secret for secret in found if secret)


def run_auth_code(
    source: str,
    call: Callable[[], _T],
    *,
    secrets: Iterable[str] = (),
    error: type[TransportError] = TransportError,
) -> _T:
    """Run the caller's SASL code *call*, its errors made ``TransportError``.

    Any other error is chained as the cause, unless that would show a secret:
    a ``UnicodeError`` anywhere in what was raised (its cause and context
    chain, an exception group's members) holds in its ``object`` (shown by
    ``repr()``, tracebacks and pickles) the whole string that failed, a SASL
    payload with the secret; and the text or repr of any of them may quote one
    of the known *secrets* (``int(password)`` does).  Then the error is raised
    with neither cause nor context.  Its message never quotes a UnicodeError's
    text, nor a known secret (``***`` instead).  Permanent: the same
    credentials fail again.  smtpkit errors pass through, with their chain
    dropped and their text redacted in the same two cases.

    Args:
        source: Who runs, as messages name it (``"PlainAuth (PLAIN)"``).
        call: What to run.
        secrets: Credentials the code may quote in its errors.
        error: The class of the error raised for any other exception.
    """
    forms = SecretForms(secrets)
    try:
        return call()
    except SMTPKitError as exc:
        if _shows_secrets(_linked(exc), forms):
            exc.__cause__ = exc.__context__ = None
            exc.__suppress_context__ = True
        exc.args = tuple(
            forms.redact(arg) if isinstance(arg, str) else arg for arg in exc.args
        )
        raise
    except Exception as exc:
        reason = getattr(exc, "reason", None)
        if isinstance(exc, UnicodeEncodeError) and "surrogate" in str(reason):
            msg = (
                f"the credentials of {source} cannot be encoded: they contain "
                f"{_LONE_SURROGATES}"
            )
        else:
            msg = raised(source, exc, forms=forms)
        if not _shows_secrets([exc, *_linked(exc)], forms):
            raise error(msg, command="AUTH") from exc
    raise error(msg, command="AUTH")  # outside the handler: no __context__


def _linked(exc: BaseException) -> list[BaseException]:
    """Every exception *exc* carries: causes, contexts, exception groups' members."""
    seen: dict[int, BaseException] = {id(exc): exc}
    todo = _carried(exc)
    while todo:
        link = todo.pop()
        if id(link) not in seen:
            seen[id(link)] = link
            todo += _carried(link)
    return [link for link in seen.values() if link is not exc]


def _carried(exc: BaseException) -> list[BaseException]:
    members = getattr(exc, "exceptions", ())  # an ExceptionGroup's (or backport's)
    carried = [exc.__cause__, exc.__context__]
    if isinstance(members, tuple | list):
        carried += members
    return [link for link in carried if isinstance(link, BaseException)]


def _shows_secrets(links: Iterable[BaseException], forms: SecretForms) -> bool:
    """True when any of *links* is a UnicodeError, or shows one of the *forms*."""
    for link in links:
        if isinstance(link, UnicodeError):
            return True
        # vars() too: attributes such as JSONDecodeError.doc hold what failed.
        shown = "\n".join(_text(link, show) for show in (str, repr, _attributes))
        if forms.shown_in(shown):
            return True
    return False


def _text(exc: BaseException, show: Callable[[object], str]) -> str:
    try:
        return show(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        return ""


def _attributes(exc: object) -> str:
    return repr(vars(exc))


def _secret(value: str | SecretStr) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


class Auth(abc.ABC):
    """A SASL mechanism: subclass it to add one smtpkit does not ship.

    Attributes:
        mechanism: The SASL name the server advertises (``"PLAIN"``).
        strength: Rank used to pick among configured strategies: when several are
            advertised, the highest wins.
        strength_over_tls: The rank once the session is encrypted, for a
            mechanism whose strength is only that it keeps the password off a
            cleartext channel; None: ``strength``.  ``CramMD5Auth`` sets it
            (15, below PLAIN's 20), so a subclass of it that raises
            ``strength`` should set ``strength_over_tls`` too.
    """

    mechanism: ClassVar[str]
    strength: ClassVar[int] = 0
    strength_over_tls: ClassVar[int | None] = None

    def rank(self, *, over_tls: bool) -> int:
        """The rank to pick this strategy by, on an encrypted session or not.

        Read from the instance, so a value an instance or a subclass sets (an
        attribute or a property) wins over the class's.
        """
        if over_tls and self.strength_over_tls is not None:
            return self.strength_over_tls
        return self.strength

    def retries_after_failure(self) -> bool:
        """Return True to get a new :meth:`responder` and log in once more after a 535.

        Token providers use this to hand out a fresh token.
        """
        return False

    def login_refused(self) -> None:
        """Hear that the server refused (535) the login this thread just made.

        Called after every 535 to a login with this strategy (before
        :meth:`retries_after_failure` is asked, and after the retry's own 535),
        in the thread that ran the login, so a token provider can drop the
        token it handed out and fetch a fresh one.  Does nothing by default.
        """
        return  # a hook with nothing to do by default (not abstract: B027)

    @abc.abstractmethod
    def responder(self) -> Responder:
        """Return a fresh, single-use callable that answers this login's challenges."""


@dataclass(frozen=True)
class PlainAuth(Auth):
    """SASL PLAIN (RFC 4616): username and password in one UTF-8 initial response."""

    username: str
    password: SecretStr
    mechanism: ClassVar[str] = "PLAIN"
    strength: ClassVar[int] = 20

    def __init__(self, username: str, password: str | SecretStr) -> None:
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", _secret(password))

    def responder(self) -> Responder:
        """Send ``\\0user\\0password`` as the initial response."""
        payload = b"\0" + self.username.encode() + b"\0"
        payload += self.password.get_secret_value().encode()

        def respond(challenge: bytes | None) -> bytes | None:
            # A server that ignores the initial response asks with an empty 334.
            return payload

        return respond


@dataclass(frozen=True)
class LoginAuth(Auth):
    """The legacy LOGIN mechanism: username, then password, each on request."""

    username: str
    password: SecretStr
    mechanism: ClassVar[str] = "LOGIN"
    strength: ClassVar[int] = 10

    def __init__(self, username: str, password: str | SecretStr) -> None:
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", _secret(password))

    def responder(self) -> Responder:
        """Answer the first challenge with the username, the next with the password."""
        answers = [self.username.encode(), self.password.get_secret_value().encode()]

        def respond(challenge: bytes | None) -> bytes | None:
            if challenge is None:
                return None
            # Servers word the prompts differently; the order is what is fixed.
            return answers.pop(0) if answers else b""

        return respond


@dataclass(frozen=True)
class CramMD5Auth(Auth):
    """CRAM-MD5 (RFC 2195): the password never crosses the wire."""

    username: str
    password: SecretStr
    mechanism: ClassVar[str] = "CRAM-MD5"
    strength: ClassVar[int] = 30
    # Over TLS the password is safe in PLAIN, which logs in with one round trip
    # (its initial response) where CRAM-MD5 takes two, and which also works with
    # servers that keep only password hashes.
    strength_over_tls: ClassVar[int | None] = 15

    def __init__(self, username: str, password: str | SecretStr) -> None:
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", _secret(password))

    def responder(self) -> Responder:
        """Answer the challenge with ``user HMAC-MD5(password, challenge)``."""
        key = self.password.get_secret_value().encode()
        user = self.username.encode()

        def respond(challenge: bytes | None) -> bytes | None:
            if challenge is None:
                return None
            digest = hmac.new(key, challenge, hashlib.md5).hexdigest()
            return user + b" " + digest.encode("ascii")

        return respond


@dataclass(frozen=True)
class _TokenAuth(Auth):
    username: str
    token: SecretStr | None = None
    token_provider: TokenProvider | None = field(default=None, repr=False)

    strength: ClassVar[int] = 40

    def __init__(
        self,
        username: str,
        token: str | SecretStr | None = None,
        *,
        token_provider: TokenProvider | None = None,
    ) -> None:
        if (token is None) == (token_provider is None):
            msg = (
                f"{type(self).__name__} needs exactly one of token= or token_provider="
            )
            raise ValueError(msg)
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "token", None if token is None else _secret(token))
        object.__setattr__(self, "token_provider", token_provider)

    @override
    def retries_after_failure(self) -> bool:
        """Retry once when a provider can hand out a fresh token."""
        return self.token_provider is not None

    @override
    def login_refused(self) -> None:
        """Tell a provider with a ``token_refused()`` method that its token failed.

        ``CachedTokenProvider`` has one: the retry then logs in with a fresh token.
        """
        notify = getattr(self.token_provider, "token_refused", None)
        if callable(notify):
            run_auth_code(f"{self.mechanism} token_provider.token_refused", notify)

    def current_token(self) -> str:
        """Return the configured token, or ask the provider for one.

        Raises:
            TransportError: The provider raised (the cause is chained) or
                returned no token.  Permanent: the provider is the caller's code,
                which retries its own token endpoint if it wants to; to have
                smtpkit retry instead, raise a transient smtpkit error such as
                ``NetworkError``, which passes through unchanged.
        """
        if self.token_provider is None:
            assert self.token is not None  # noqa: S101 - guaranteed by __init__
            return self.token.get_secret_value()
        source = f"{self.mechanism} token_provider"
        # Typed as str, but an untyped provider may return None or bytes.
        token: object = run_auth_code(source, self.token_provider)
        if not isinstance(token, str) or not token:
            got = "an empty str" if token == "" else type(token).__name__
            msg = f"{source} returned {got}, not an access token"
            raise TransportError(msg, command="AUTH")
        if has_lone_surrogates(token):
            msg = (
                f"{source} returned a token that cannot be sent: it contains "
                f"{_LONE_SURROGATES}"
            )
            raise TransportError(msg, command="AUTH")
        return token


@dataclass(frozen=True, init=False)  # keep _TokenAuth's validating __init__
class XOAuth2Auth(_TokenAuth):
    """Google's and Microsoft's XOAUTH2 with an OAuth2 access token.

    Args:
        username: The mailbox address the token was issued for.
        token: A fixed access token.
        token_provider: A callable returning a valid token; asked at each login.
    """

    mechanism: ClassVar[str] = "XOAUTH2"

    def responder(self) -> Responder:
        """Send ``user=...^Aauth=Bearer ...^A^A``; answer an error challenge with nothing."""
        payload = f"user={self.username}\x01auth=Bearer {self.current_token()}\x01\x01"

        def respond(challenge: bytes | None) -> bytes | None:
            # On failure the server sends a JSON error as a 334 challenge and expects
            # an empty line before its final 535.
            return payload.encode() if challenge is None else b""

        return respond


@dataclass(frozen=True, init=False)  # keep _TokenAuth's validating __init__
class OAuthBearerAuth(_TokenAuth):
    """OAUTHBEARER (RFC 7628) with an OAuth2 access token."""

    mechanism: ClassVar[str] = "OAUTHBEARER"
    strength: ClassVar[int] = 41

    def responder(self) -> Responder:
        """Send the GS2 header and bearer token; answer an error challenge with ^A."""
        user = self.username.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 §5.1
        payload = f"n,a={user},\x01auth=Bearer {self.current_token()}\x01\x01"

        def respond(challenge: bytes | None) -> bytes | None:
            # RFC 7628 §3.2.3: the client answers an error challenge with a lone %x01.
            return payload.encode() if challenge is None else b"\x01"

        return respond


_PASSWORD_MECHANISMS: Final = (CramMD5Auth, PlainAuth, LoginAuth)


def password_strategies(username: str, password: SecretStr) -> tuple[Auth, ...]:
    """Return every password mechanism for these credentials, strongest first."""
    return tuple(cls(username, password) for cls in _PASSWORD_MECHANISMS)
