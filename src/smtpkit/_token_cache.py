"""`CachedTokenProvider`: OAuth2 access tokens fetched once, reused, refreshed in time.

A token provider is asked at every login.  Fetching a token at each one costs a
round trip to the identity provider per connection, and 50 threads opening
connections at once would fetch 50 tokens.  ``CachedTokenProvider`` keeps the
token it fetched until shortly before it expires, lets one thread fetch while the
others wait for that one result (single flight), and drops a token the server
refused so that the login is retried with a fresh one.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ._auth import run_auth_code
from ._exceptions import TransportError

__all__ = [
    "DEFAULT_REFRESH_AHEAD",
    "AccessToken",
    "CachedTokenProvider",
    "TokenFetchError",
]

logger = logging.getLogger("smtpkit")

DEFAULT_REFRESH_AHEAD: Final = 300.0
"""Seconds before expiry at which a cached token is replaced (MSAL's margin too)."""

# After a refresh ahead of expiry failed, the still valid token is used for this
# many seconds before the next fetch is tried: not one fetch per login.
_RETRY_AHEAD_AFTER: Final = 5.0
_SOURCE: Final = "CachedTokenProvider fetch"


class TokenFetchError(TransportError):
    """The ``fetch`` of a ``CachedTokenProvider`` raised or returned no token.

    Its message names what went wrong and never shows a token.  Not transient,
    unless ``fetch`` raised a transient smtpkit error (say ``NetworkError``), so
    a broken identity provider setup fails at once instead of being retried.
    """


class AccessToken(BaseModel):
    """An OAuth2 access token and how long it stays valid, as ``fetch`` returns it.

    Attributes:
        token: The access token (a ``SecretStr``: never shown in reprs or errors).
        lifetime: Seconds the token stays valid from when it was fetched (the
            ``expires_in`` of an OAuth2 token response, RFC 6749 §5.1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    token: SecretStr = Field(min_length=1)
    lifetime: float = Field(gt=0, allow_inf_nan=False)

    if TYPE_CHECKING:

        def __init__(self, *, token: str | SecretStr, lifetime: float) -> None:
            """Hold *token*, valid for *lifetime* seconds from when it was fetched."""

    @classmethod
    def expiring_at(
        cls,
        token: str | SecretStr,
        expires_at: _dt.datetime,
        *,
        now: _dt.datetime | None = None,
    ) -> AccessToken:
        """Build a token from the instant it expires instead of its lifetime.

        Args:
            token: The access token.
            expires_at: When it expires.  A naive datetime is read as UTC, as
                google-auth's ``Credentials.expiry`` is.
            now: The current time (default: the system clock, in UTC).

        Raises:
            pydantic.ValidationError: The token has expired already.
        """
        current = now or _dt.datetime.now(_dt.timezone.utc)
        lifetime = (_aware(expires_at) - _aware(current)).total_seconds()
        return cls(token=token, lifetime=lifetime)


def _aware(instant: _dt.datetime) -> _dt.datetime:
    if instant.tzinfo is None:
        return instant.replace(tzinfo=_dt.timezone.utc)
    return instant


@dataclass(frozen=True, slots=True)
class _Entry:
    """A cached token, with its instants on the provider's clock."""

    token: str = field(repr=False)
    expires_at: float
    refresh_at: float


class _Flight:
    """One fetch in progress, whose result every waiting thread shares."""

    __slots__ = ("done", "entry", "error", "generation", "leader")

    def __init__(self, generation: int) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None
        self.error: TransportError | None = None
        # The thread that fetches: if it asks again, waiting would never end.
        self.leader = threading.get_ident()
        # invalidate() calls before it began: one since means its token is stale.
        self.generation = generation

    def finish(self, entry: _Entry | None, error: TransportError | None) -> None:
        self.entry, self.error = entry, error
        self.done.set()

    def wait(self) -> _Entry:
        self.done.wait()
        if self.entry is not None:
            return self.entry
        error = self.error
        assert error is not None  # noqa: S101 - finish() sets one of the two
        # A new error per waiting thread: one exception object raised in many
        # threads at once would collect all their tracebacks.
        raise TokenFetchError(
            str(error), command="AUTH", transient=error.is_transient
        ) from error


class CachedTokenProvider:
    """A token provider that caches the token ``fetch`` returns until it is due.

    Pass it as ``XOAuth2Auth(user, token_provider=CachedTokenProvider(fetch))``
    (or to ``OAuthBearerAuth``).  It returns the cached token while that has more
    than *refresh_ahead* seconds left (at most half its lifetime), and otherwise
    fetches a new one:

    - **Single flight.**  One thread fetches; the others wait for its result,
      or keep using the cached token while it is still valid.  Fifty threads
      opening connections at once cause one fetch.
    - **Ahead of expiry.**  If a refresh fails while the cached token is still
      valid, that token is used on (the failure is logged as a warning) and the
      fetch is tried again 5 seconds later.
    - **After a refusal.**  When the server refuses a login (535) made with the
      cached token, the transport calls :meth:`token_refused`: the token is
      dropped and the login is retried once with a fresh one.

    Thread-safe.  ``fetch`` runs without any lock held by other callers' threads
    blocked on anything but its result.

    Args:
        fetch: Returns a new :class:`AccessToken`.  Any exception it raises, or
            a result that is not an ``AccessToken``, becomes a
            :class:`TokenFetchError` (the exception is its cause, unless its
            text shows the cached token).
        refresh_ahead: Seconds before expiry at which the token is replaced.
        clock: Monotonic clock in seconds (injectable for tests).

    Raises:
        ValueError: *refresh_ahead* is negative or not finite.
    """

    def __init__(
        self,
        fetch: Callable[[], AccessToken],
        *,
        refresh_ahead: float = DEFAULT_REFRESH_AHEAD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(refresh_ahead) and refresh_ahead >= 0):
            msg = f"refresh_ahead must be finite seconds >= 0, not {refresh_ahead!r}"
            raise ValueError(msg)
        self._fetch = fetch
        self._refresh_ahead = float(refresh_ahead)
        self._clock = clock
        self._lock = threading.Lock()  # guards the three fields below
        self._current: _Entry | None = None
        # The last tokens fetched, dropped ones too: fetch errors never show them.
        self._recent: tuple[str, ...] = ()
        self._flight: _Flight | None = None
        self._retry_at = -math.inf
        self._generation = 0  # invalidate() calls so far
        self._handed = threading.local()  # the entry each thread last returned

    def __repr__(self) -> str:
        return f"<CachedTokenProvider refresh_ahead={self._refresh_ahead}>"

    def __call__(self) -> str:
        """Return a valid access token, fetching one when the cached one is due.

        Raises:
            TokenFetchError: ``fetch`` failed and no valid token is cached.
        """
        entry = self._entry()
        self._handed.entry = entry
        return entry.token

    def token_refused(self) -> None:
        """Drop the token this thread was last given: the server refused it.

        Only that token: after 50 threads' logins are refused with the same
        token, the first call drops it and the other 49 do nothing, so one
        fresh token is fetched, not 50.
        """
        entry = getattr(self._handed, "entry", None)
        with self._lock:
            if entry is not None and self._current is entry:
                self._current = None

    def invalidate(self) -> None:
        """Drop the cached token, so that the next call fetches a new one.

        A fetch already running when this is called (started, say, before the
        app's secret was rotated) is not cached: later calls wait for it to end
        (one fetch at a time) and then fetch anew.
        """
        with self._lock:
            self._current = None
            self._generation += 1
            self._retry_at = -math.inf

    def _entry(self) -> _Entry:
        while True:
            decided = self._decide()
            if isinstance(decided, _Entry):
                return decided
            flight, valid, role = decided
            if role == "lead":
                return self._refresh(flight, valid)
            if role == "wait":
                return flight.wait()
            # A fetch begun before invalidate(): its token will not be cached.
            # Wait for it to end (one fetch at a time), then ask again.
            flight.done.wait()

    def _decide(self) -> _Entry | tuple[_Flight, _Entry | None, str]:
        """Under the lock: a token to return, or a flight to lead, wait for or outwait."""
        now = self._clock()
        with self._lock:
            entry = self._current
            if entry is not None and now < entry.refresh_at:
                return entry
            valid = entry if entry is not None and now < entry.expires_at else None
            flight = self._flight
            if flight is not None:
                if valid is not None:
                    return valid  # another thread refreshes it ahead of expiry
                if flight.leader == threading.get_ident():
                    msg = (
                        f"{_SOURCE} asked the same CachedTokenProvider for a "
                        "token while fetching one: it would wait for itself"
                    )
                    raise TokenFetchError(msg, command="AUTH")
                stale = flight.generation != self._generation
                return flight, None, "outwait" if stale else "wait"
            if valid is not None and now < self._retry_at:
                return valid  # a refresh ahead of expiry failed a moment ago
            flight = self._flight = _Flight(self._generation)
            return flight, valid, "lead"

    def _refresh(self, flight: _Flight, valid: _Entry | None) -> _Entry:
        """Fetch a token for *flight*; on failure fall back to *valid*, if any."""
        entry: _Entry | None = None
        error: TransportError | None = None
        try:
            entry = self._fetched()
        except TransportError as exc:
            error = exc
        except BaseException as exc:  # KeyboardInterrupt...: waiters must not hang
            msg = f"{_SOURCE} raised {type(exc).__name__}"
            self._land(flight, None, TokenFetchError(msg, command="AUTH"))
            raise
        self._land(flight, entry, error)
        if entry is not None:
            return entry
        assert error is not None  # noqa: S101 - one of the two is set
        if valid is None or self._clock() >= valid.expires_at:
            raise error  # nothing to fall back on: the fetch outlasted the token
        logger.warning(
            "refreshing the OAuth2 token failed, the current one is used for "
            "%.0f s more: %s",
            valid.expires_at - self._clock(),
            error,
        )
        return valid

    def _land(
        self, flight: _Flight, entry: _Entry | None, error: TransportError | None
    ) -> None:
        with self._lock:
            if entry is not None:  # fetch errors never show it, cached or not
                self._recent = (entry.token, *self._recent[:1])
            self._flight = None
            # After invalidate(), a fetch begun before it leaves no trace.
            if flight.generation == self._generation:
                if entry is not None:
                    self._current = entry
                    self._retry_at = -math.inf
                else:
                    self._retry_at = self._clock() + _RETRY_AHEAD_AFTER
        flight.finish(entry, error)

    def _fetched(self) -> _Entry:
        """Call ``fetch`` and check what it returned.

        Raises:
            TokenFetchError: It raised, or returned something else than a token.
        """
        known = self._recent
        started = self._clock()  # the lifetime runs from the request at the latest
        # Typed, but an untyped fetch may return anything.
        result: object = run_auth_code(
            _SOURCE, self._fetch, secrets=known, error=TokenFetchError
        )
        if not isinstance(result, AccessToken):
            msg = f"{_SOURCE} returned {type(result).__name__}, not an AccessToken"
            raise TokenFetchError(msg, command="AUTH")
        lifetime = result.lifetime
        expires_at = started + lifetime
        took = self._clock() - started
        if took >= lifetime:
            msg = (
                f"{_SOURCE} took {took:.3g} s, and the token it returned was valid "
                f"for {lifetime:.3g} s from the request: it has expired"
            )
            raise TokenFetchError(msg, command="AUTH")
        refresh_at = expires_at - min(self._refresh_ahead, lifetime / 2)
        return _Entry(result.token.get_secret_value(), expires_at, refresh_at)
