"""CachedTokenProvider: caching, refresh ahead of expiry, single flight, refusals."""

from __future__ import annotations

import datetime as dt
import logging
import math
import pickle
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from smtpkit import NetworkError, TokenFetchError, TransportError
from smtpkit.auth import (
    DEFAULT_REFRESH_AHEAD,
    AccessToken,
    CachedTokenProvider,
    XOAuth2Auth,
)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """Hands out token-1, token-2, ... each valid for *lifetime* seconds."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> AccessToken:
        with self.lock:
            self.calls += 1
            number = self.calls
        return AccessToken(token=f"token-{number}", lifetime=self.lifetime)


def test_the_token_is_fetched_once_and_reused():
    fetch, clock = Fetcher(), Clock()
    provider = CachedTokenProvider(fetch, clock=clock)
    assert [provider() for _ in range(5)] == ["token-1"] * 5
    clock.now += 3600 - DEFAULT_REFRESH_AHEAD - 1
    assert provider() == "token-1"
    assert fetch.calls == 1


def test_the_token_is_replaced_ahead_of_expiry():
    fetch, clock = Fetcher(), Clock()
    provider = CachedTokenProvider(fetch, refresh_ahead=60, clock=clock)
    assert provider() == "token-1"
    clock.now += 3600 - 60
    assert provider() == "token-2"
    assert provider() == "token-2"
    assert fetch.calls == 2


def test_a_short_lived_token_is_kept_for_half_its_lifetime():
    fetch, clock = Fetcher(lifetime=100), Clock()
    provider = CachedTokenProvider(fetch, clock=clock)  # 300 s ahead > lifetime
    assert provider() == "token-1"
    clock.now += 49.9
    assert provider() == "token-1"
    clock.now += 0.1
    assert provider() == "token-2"


def test_an_expired_token_is_never_returned():
    fetch, clock = Fetcher(), Clock()
    provider = CachedTokenProvider(fetch, refresh_ahead=0, clock=clock)
    provider()
    clock.now += 3600
    assert provider() == "token-2"


def test_the_lifetime_runs_from_before_the_fetch():
    clock = Clock()

    def slow_fetch() -> AccessToken:
        clock.now += 30  # the identity provider took 30 s to answer
        return AccessToken(token="t", lifetime=100)

    provider = CachedTokenProvider(slow_fetch, refresh_ahead=0, clock=clock)
    provider()
    clock.now += 69.9  # 99.9 s after the request
    calls = []
    provider._fetch = lambda: calls.append(1) or AccessToken(token="u", lifetime=100)
    assert provider() == "t"
    clock.now += 0.1
    assert provider() == "u"


def test_fifty_threads_cause_one_fetch():
    release = threading.Event()
    fetch = Fetcher()

    def slow_fetch() -> AccessToken:
        release.wait(5)
        return fetch()

    provider = CachedTokenProvider(slow_fetch)
    barrier = threading.Barrier(50)
    results: list[str] = []

    def call() -> None:
        barrier.wait()
        results.append(provider())

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # let every thread reach the provider
    release.set()
    for thread in threads:
        thread.join(5)
    assert results == ["token-1"] * 50
    assert fetch.calls == 1


def test_while_one_thread_refreshes_ahead_the_others_keep_the_valid_token():
    clock = Clock()
    started, release = threading.Event(), threading.Event()
    fetch = Fetcher()
    provider = CachedTokenProvider(fetch, refresh_ahead=60, clock=clock)
    assert provider() == "token-1"

    def slow_fetch() -> AccessToken:
        started.set()
        release.wait(5)
        return fetch()

    provider._fetch = slow_fetch
    clock.now += 3600 - 30  # due for refresh, still valid
    results: list[str] = []
    leader = threading.Thread(target=lambda: results.append(provider()))
    leader.start()
    assert started.wait(5)
    assert provider() == "token-1"  # does not wait for the refresh
    release.set()
    leader.join(5)
    assert results == ["token-2"]
    assert provider() == "token-2"


def test_threads_waiting_on_a_failed_fetch_share_its_error():
    release = threading.Event()
    calls = []

    def failing_fetch() -> AccessToken:
        calls.append(1)
        release.wait(5)
        msg = "invalid_client"
        raise RuntimeError(msg)

    provider = CachedTokenProvider(failing_fetch)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            provider()
        except TokenFetchError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1
    assert len(errors) == 10
    assert len({id(error) for error in errors}) == 10  # one object per thread
    for error in errors:
        assert str(error) == (
            "CachedTokenProvider fetch raised RuntimeError: invalid_client"
        )
        assert error.command == "AUTH"
        assert not error.is_transient
        assert isinstance(error, TransportError)


def test_an_interrupted_fetch_releases_the_waiting_threads():
    started, release = threading.Event(), threading.Event()

    def interrupted() -> AccessToken:
        started.set()
        release.wait(5)
        raise KeyboardInterrupt

    provider = CachedTokenProvider(interrupted)
    leader_saw: list[BaseException] = []

    def lead() -> None:
        try:
            provider()
        except BaseException as exc:  # the test collects it
            leader_saw.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert started.wait(5)
    follower_saw: list[BaseException] = []

    def follow() -> None:
        try:
            provider()
        except TokenFetchError as exc:
            follower_saw.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.1)
    release.set()
    leader.join(5)
    follower.join(5)
    assert [type(exc) for exc in leader_saw] == [KeyboardInterrupt]
    assert [str(exc) for exc in follower_saw] == [
        "CachedTokenProvider fetch raised KeyboardInterrupt"
    ]
    provider._fetch = Fetcher()
    assert provider() == "token-1"  # nothing is stuck


def test_a_failed_refresh_ahead_keeps_the_valid_token_and_waits(caplog):
    clock, fetch = Clock(), Fetcher()
    provider = CachedTokenProvider(fetch, refresh_ahead=60, clock=clock)
    provider()
    calls = []

    def down() -> AccessToken:
        calls.append(1)
        raise ConnectionError("token endpoint down")

    provider._fetch = down
    clock.now += 3600 - 50
    with caplog.at_level(logging.WARNING, logger="smtpkit"):
        assert provider() == "token-1"
    assert "refreshing the OAuth2 token failed" in caplog.text
    assert "token-1" not in caplog.text
    assert provider() == "token-1"  # not tried again at once
    assert len(calls) == 1
    clock.now += 5
    assert provider() == "token-1"
    assert len(calls) == 2
    provider._fetch = fetch
    clock.now += 5
    assert provider() == "token-2"
    clock.now += 50  # token-1 would have expired; token-2 is fresh
    assert provider() == "token-2"


def test_a_failed_fetch_without_a_valid_token_raises():
    clock, fetch = Clock(), Fetcher(lifetime=100)
    provider = CachedTokenProvider(fetch, clock=clock)
    provider()

    def down() -> AccessToken:
        raise ConnectionError("token endpoint down")

    provider._fetch = down
    clock.now += 100
    with pytest.raises(TokenFetchError, match="raised ConnectionError"):
        provider()
    with pytest.raises(TokenFetchError):  # tried again: no token to fall back on
        provider()


def test_a_transient_smtpkit_error_from_fetch_passes_through():
    def down() -> AccessToken:
        raise NetworkError("identity provider unreachable")

    provider = CachedTokenProvider(down)
    with pytest.raises(NetworkError) as info:
        provider()
    assert info.value.is_transient


@pytest.mark.parametrize(
    ("result", "name"),
    [(None, "NoneType"), ("a-token", "str"), ({"access_token": "x"}, "dict")],
)
def test_fetch_must_return_an_access_token(result, name):
    provider = CachedTokenProvider(lambda: result)
    with pytest.raises(TokenFetchError) as info:
        provider()
    assert str(info.value) == (
        f"CachedTokenProvider fetch returned {name}, not an AccessToken"
    )
    assert "a-token" not in repr(info.value)


def test_an_error_quoting_the_cached_token_hides_it():
    clock = Clock()
    provider = CachedTokenProvider(
        lambda: AccessToken(token="secret-token-0123456789", lifetime=10), clock=clock
    )
    provider()

    def quoting() -> AccessToken:
        msg = "refresh refused for secret-token-0123456789"
        raise ValueError(msg)

    provider._fetch = quoting
    clock.now += 10
    with pytest.raises(TokenFetchError) as info:
        provider()
    assert "secret-token" not in str(info.value)
    assert info.value.__cause__ is None
    assert "secret-token" not in repr(pickle.loads(pickle.dumps(info.value)))  # noqa: S301 - our own bytes


def test_token_refused_drops_only_the_token_this_thread_was_given():
    fetch = Fetcher()
    provider = CachedTokenProvider(fetch)
    given, refused = threading.Barrier(50), threading.Barrier(50)
    results: list[tuple[str, str]] = []

    def login_refused_then_retried() -> None:
        first = provider()
        given.wait(5)  # all fifty logins use token-1...
        provider.token_refused()  # ...and are refused
        refused.wait(5)
        results.append((first, provider()))

    threads = [threading.Thread(target=login_refused_then_retried) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert results == [("token-1", "token-2")] * 50
    assert fetch.calls == 2
    provider.token_refused()  # this thread was never given a token
    assert provider() == "token-2"
    provider.token_refused()
    assert provider() == "token-3"


def test_token_refused_in_another_thread_drops_nothing():
    fetch = Fetcher()
    provider = CachedTokenProvider(fetch)
    provider()
    other = threading.Thread(target=provider.token_refused)  # was given nothing
    other.start()
    other.join(5)
    assert provider() == "token-1"
    provider.token_refused()
    provider.token_refused()
    assert provider() == "token-2"


def test_invalidate_forces_a_fetch():
    fetch = Fetcher()
    provider = CachedTokenProvider(fetch)
    provider()
    provider.invalidate()
    assert provider() == "token-2"


def test_xoauth2_tells_the_provider_about_a_refusal():
    fetch = Fetcher()
    provider = CachedTokenProvider(fetch)
    auth = XOAuth2Auth("alice@example.com", token_provider=provider)
    assert b"token-1" in (auth.responder()(None) or b"")
    auth.login_refused()
    assert b"token-2" in (auth.responder()(None) or b"")
    XOAuth2Auth("a@example.com", token="fixed").login_refused()  # no provider: no-op
    XOAuth2Auth("a@example.com", token_provider=lambda: "x").login_refused()


@pytest.mark.parametrize("ahead", [-1.0, math.inf, math.nan])
def test_refresh_ahead_must_be_finite_and_not_negative(ahead):
    with pytest.raises(ValueError, match="refresh_ahead"):
        CachedTokenProvider(Fetcher(), refresh_ahead=ahead)


def test_repr_shows_no_token():
    provider = CachedTokenProvider(lambda: AccessToken(token="tok-123", lifetime=9))
    provider()
    assert "tok-123" not in repr(provider)
    assert repr(provider) == "<CachedTokenProvider refresh_ahead=300.0>"
    assert "tok-123" not in repr(provider._current)


def test_access_token_hides_its_token():
    token = AccessToken(token="tok-123", lifetime=60)
    assert "tok-123" not in repr(token)
    assert token.token.get_secret_value() == "tok-123"


@pytest.mark.parametrize(
    "fields",
    [
        {"token": "", "lifetime": 60},
        {"token": "t", "lifetime": 0},
        {"token": "t", "lifetime": -5},
        {"token": "t", "lifetime": math.nan},
        {"token": "t", "lifetime": math.inf},
        {"token": 9876543210123, "lifetime": 60},
    ],
)
def test_access_token_refuses_bad_values_without_showing_them(fields):
    with pytest.raises(ValidationError) as info:
        AccessToken(**fields)
    assert "9876543210123" not in str(info.value)


def test_access_token_from_an_expiry_instant():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    naive_utc = dt.datetime(2026, 1, 1, 13, 0)  # google-auth's Credentials.expiry
    token = AccessToken.expiring_at("t", naive_utc, now=now)
    assert token.lifetime == 3600
    aware = dt.datetime(2026, 1, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert AccessToken.expiring_at(SecretStr("t"), aware, now=now).lifetime == 3600
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert 3590 < AccessToken.expiring_at("t", later).lifetime <= 3600
    with pytest.raises(ValidationError):
        AccessToken.expiring_at("t", now, now=now)


@given(
    lifetime=st.floats(min_value=1e-3, max_value=1e7),
    ahead=st.floats(min_value=0, max_value=1e5),
    steps=st.lists(st.floats(min_value=0, max_value=1e6), max_size=20),
)
def test_property_never_expired_and_fetched_only_when_due(lifetime, ahead, steps):
    clock, fetch = Clock(), Fetcher(lifetime=lifetime)
    provider = CachedTokenProvider(fetch, refresh_ahead=ahead, clock=clock)
    fetched_at: dict[str, float] = {}
    last = None
    for step in [0.0, *steps]:
        clock.now += step
        before = fetch.calls
        token = provider()
        if fetch.calls != before:
            assert fetch.calls == before + 1
            fetched_at[token] = clock.now
        else:
            # Reused: it was fetched earlier and is not yet due for refresh.
            assert token == last
            age = clock.now - fetched_at[token]
            assert age < lifetime - min(ahead, lifetime / 2)
        assert clock.now - fetched_at[token] < lifetime  # never expired
        last = token


def test_an_error_quoting_a_refused_token_hides_it():
    provider = CachedTokenProvider(
        lambda: AccessToken(token="refused-token-0123456789", lifetime=3600)
    )
    provider()
    provider.token_refused()  # dropped from the cache, still a secret

    def quoting() -> AccessToken:
        msg = "cannot refresh refused-token-0123456789"
        raise ValueError(msg)

    provider._fetch = quoting
    with pytest.raises(TokenFetchError) as info:
        provider()
    assert "refused-token" not in str(info.value)
    assert info.value.__cause__ is None
