"""CachedTokenProvider at its edges: never an expired token, no self-wait, invalidate().

Regression tests for a review: a fetch slower than the token's lifetime, a failed
refresh ahead of expiry that outlasts the cached token, a ``fetch`` that asks the
same provider again, and ``invalidate()`` while a fetch is running.
"""

from __future__ import annotations

import threading

import pytest

from smtpkit import TokenFetchError
from smtpkit.auth import AccessToken, CachedTokenProvider


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_token_that_expired_during_a_slow_fetch_is_not_handed_out():
    clock = Clock()
    calls: list[int] = []

    def slow() -> AccessToken:
        calls.append(1)
        clock.now += 10.0  # the identity provider took 10 s
        return AccessToken(token="tok-expired-on-arrival", lifetime=5)

    provider = CachedTokenProvider(slow, clock=clock)
    with pytest.raises(TokenFetchError, match=r"took 10 s.*valid for 5 s") as info:
        provider()
    assert "tok-expired" not in str(info.value)
    with pytest.raises(TokenFetchError):
        provider()  # nothing was cached: it fetches again
    assert len(calls) == 2


def test_a_token_with_time_left_after_a_slow_fetch_is_used():
    clock = Clock()

    def slow() -> AccessToken:
        clock.now += 10.0
        return AccessToken(token="tok", lifetime=60)

    provider = CachedTokenProvider(slow, clock=clock)
    assert provider() == "tok"


def test_a_failed_refresh_that_outlasts_the_cached_token_raises():
    clock = Clock()
    calls: list[int] = []

    def fetch() -> AccessToken:
        calls.append(1)
        if len(calls) == 1:
            return AccessToken(token="tok-1", lifetime=600)
        clock.now += 250.0  # the identity provider hangs, then fails
        raise RuntimeError("identity provider unavailable")

    provider = CachedTokenProvider(fetch, clock=clock)
    assert provider() == "tok-1"
    clock.now = 400.0  # due for a refresh; tok-1 expires at 600
    with pytest.raises(TokenFetchError, match="RuntimeError"):
        provider()  # at 650 the cached token has expired: no fallback


def test_a_failed_refresh_while_the_token_is_valid_falls_back():
    clock = Clock()
    calls: list[int] = []

    def fetch() -> AccessToken:
        calls.append(1)
        if len(calls) == 1:
            return AccessToken(token="tok-1", lifetime=600)
        clock.now += 50.0
        raise RuntimeError("identity provider unavailable")

    provider = CachedTokenProvider(fetch, clock=clock)
    provider()
    clock.now = 400.0
    assert provider() == "tok-1"  # expires at 600, it is 450


def test_a_fetch_that_asks_the_same_provider_fails_instead_of_hanging():
    provider: CachedTokenProvider

    def reentrant() -> AccessToken:
        return AccessToken(token=provider() + "x", lifetime=60)

    provider = CachedTokenProvider(reentrant)
    outcome: list[BaseException | str] = []

    def call() -> None:
        try:
            outcome.append(provider())
        except TokenFetchError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], TokenFetchError)
    assert "while fetching one" in str(outcome[0])
    assert provider._flight is None  # usable again


def test_a_fetch_asking_again_during_a_refresh_ahead_gets_the_valid_token():
    clock = Clock()
    provider: CachedTokenProvider
    seen: list[str] = []

    def fetch() -> AccessToken:
        if seen or clock.now:
            seen.append(provider())  # the cached token, still valid
        else:
            seen.append("first")
        return AccessToken(token=f"tok-{len(seen)}", lifetime=600)

    provider = CachedTokenProvider(fetch, clock=clock)
    assert provider() == "tok-1"
    clock.now = 400.0
    assert provider() == "tok-2"
    assert seen == ["first", "tok-1"]


def test_invalidate_during_a_fetch_keeps_its_token_out_of_the_cache():
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []
    inflight: list[int] = []

    def fetch() -> AccessToken:
        calls.append(1)
        inflight.append(1)
        assert len(inflight) == 1  # one fetch at a time, invalidate() or not
        try:
            if len(calls) == 1:
                started.set()
                release.wait(5)
                return AccessToken(token="issued-with-old-secret", lifetime=3600)
            return AccessToken(token="issued-with-new-secret", lifetime=3600)
        finally:
            inflight.pop()

    provider = CachedTokenProvider(fetch)
    early: list[str] = []
    late: list[str] = []
    first = threading.Thread(target=lambda: early.append(provider()))
    first.start()
    assert started.wait(5)
    provider.invalidate()  # the app's secret was rotated
    second = threading.Thread(target=lambda: late.append(provider()))
    second.start()
    second.join(0.1)
    assert second.is_alive()  # it waits for the stale fetch to end...
    release.set()
    first.join(5)
    second.join(5)
    assert early == ["issued-with-old-secret"]  # asked before invalidate()
    assert late == ["issued-with-new-secret"]  # ...then fetches anew
    assert provider() == "issued-with-new-secret"
    assert len(calls) == 2


def test_invalidate_during_a_failing_fetch_leaves_no_retry_pause():
    clock = Clock()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def fetch() -> AccessToken:
        calls.append(1)
        if len(calls) == 1:
            return AccessToken(token="tok-1", lifetime=600)
        if len(calls) == 2:
            started.set()
            release.wait(5)
            raise RuntimeError("identity provider unavailable")
        return AccessToken(token="tok-3", lifetime=600)

    provider = CachedTokenProvider(fetch, clock=clock)
    provider()
    clock.now = 400.0  # due: a refresh ahead of expiry starts and hangs
    thread = threading.Thread(target=provider)
    thread.start()
    assert started.wait(5)
    provider.invalidate()
    release.set()
    thread.join(5)
    assert provider() == "tok-3"  # not held back by the stale fetch's failure
