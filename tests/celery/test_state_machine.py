"""Property test: random claims and finishes by several workers against real Redis.

A small model of the promised state machine runs beside the Lua scripts; after
every step both must agree, final states never change, and a second worker gets a
key only when the first one's lease ran out (then, at-least-once only, flagged);
only that first owner may still record its real outcome over the ``unknown``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpkit.contrib.celery import DeliveryState
from smtpkit.contrib.celery._state import Outcome, StateStore

pytestmark = pytest.mark.celery

FINAL = {"delivered", "failed", "unknown"}
_runs = itertools.count()


@dataclass
class Model:
    state: str = "queued"
    owner: str | None = None
    live: bool = False
    duplicated: bool = False
    expired: bool = False  # ended unknown by a lease expiry: its owner may finish

    def claim(self, token: str, live: bool, at_least_once: bool) -> str:
        if self.state in FINAL:
            return self.state
        if self.state == "sending" and self.owner != token:
            if self.live:
                return "busy"
            if not at_least_once:
                self.state, self.expired = "unknown", True
                return "unknown"
            self.duplicated = True
        self.state, self.owner, self.live = "sending", token, live
        return "go"

    def finish(self, token: str, state: str) -> str:
        if self.owner != token:
            return "stale"
        if self.state != "sending" and not (self.state == "unknown" and self.expired):
            return self.state
        self.state, self.expired = state, False
        return state


claims = st.tuples(
    st.just("claim"), st.sampled_from("ABC"), st.booleans(), st.booleans()
)
finishes = st.tuples(
    st.just("finish"),
    st.sampled_from("ABC"),
    st.sampled_from(["delivered", "failed", "unknown", "retrying"]),
    st.just(False),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(st.one_of(claims, finishes), max_size=12))
def test_the_scripts_follow_the_model(redis_url, steps) -> None:
    client = redis.Redis.from_url(redis_url)
    store = StateStore(client, prefix=f"sm{next(_runs)}:")
    store.mark_queued(["k"])
    model = Model()
    try:
        for op, token, arg, at_least_once in steps:
            before, late = model.state, model.expired
            if op == "claim":
                # A lease of -1 s has run out already: the worker died.
                lease = 300.0 if arg else -1.0
                [claim] = store.claim(
                    ["k"], token, lease=lease, at_least_once=at_least_once, attempts=99
                )
                assert claim.verdict == model.claim(token, bool(arg), at_least_once)
            else:
                [stored] = store.finish([Outcome("k", DeliveryState(arg))], token)
                assert stored == model.finish(token, str(arg))
            if before in FINAL and not (late and op == "finish"):
                assert model.state == before
            delivery = store.get("k")
            assert delivery.state is not None
            assert delivery.state.value == model.state
            assert delivery.possibly_duplicated == model.duplicated
    finally:
        client.close()
