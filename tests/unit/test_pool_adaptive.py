"""The pool's learnt limits and the adapter that sets them, with dummy connections."""

from __future__ import annotations

import pytest

from smtpkit import GreetingRefusedError, PoolTimeoutError, ProviderAdaptation
from smtpkit._transports._adaptive import PoolAdapter, explained
from smtpkit._transports._session import Item
from smtpkit.testing import reply

from .test_pool import Harness

ICC = GreetingRefusedError(reply("421 HL:ICC 127.0.0.1"), command="connect")
DMC = reply("450 MI:DMC 4.3.2 too many messages")


def test_resize_stays_between_one_and_the_configured_size():
    h = Harness(max_connections=3)
    h.pool.resize(0)
    assert h.pool.size == 1
    h.pool.resize(10)
    assert h.pool.size == 3
    assert h.pool.max_connections == 3


def test_a_smaller_size_makes_acquire_wait_and_closes_extras_on_release():
    h = Harness(max_connections=2, acquire_timeout=0.01)
    first, second = h.pool.acquire(), h.pool.acquire()
    h.pool.resize(1)
    h.pool.release(first, reusable=True)  # two open, size 1: QUIT this one
    assert h.disposed == [(first.conn, True)]
    with pytest.raises(PoolTimeoutError, match="all 1 connections"):
        h.pool.acquire()
    h.pool.release(second, reusable=True)
    assert h.pool.acquire() is second


def test_message_limit_only_goes_down_and_never_below_one():
    h = Harness(max_messages_per_connection=10)
    h.pool.limit_messages(20)
    assert h.pool.max_messages == 10
    h.pool.limit_messages(0)
    assert h.pool.max_messages == 1


def test_connection_refusals_shrink_to_what_was_accepted_then_grow_back_slower():
    h = Harness(max_connections=4)
    adapter = PoolAdapter(h.pool, ProviderAdaptation(grow_after=10))
    held = [h.pool.acquire(), h.pool.acquire()]
    assert adapter.connection_refused(ICC)
    assert h.pool.size == 2
    adapter.delivered(9)
    assert h.pool.size == 2
    adapter.delivered(1)
    assert h.pool.size == 3  # additive increase
    assert adapter.connection_refused(ICC)  # the probe was refused
    assert h.pool.size == 2
    adapter.delivered(10)
    assert h.pool.size == 2  # now it takes 20
    adapter.delivered(10)
    assert h.pool.size == 3
    for pooled in held:
        h.pool.release(pooled, reusable=True)


def test_no_open_connection_or_another_reply_or_switched_off_is_not_absorbed():
    h = Harness(max_connections=4)
    adapter = PoolAdapter(h.pool, ProviderAdaptation())
    assert not adapter.connection_refused(ICC)  # nothing of ours to wait for
    held = h.pool.acquire()
    other = GreetingRefusedError(reply("421 4.3.2 shutting down"), command="connect")
    assert not adapter.connection_refused(other)
    off = PoolAdapter(h.pool, ProviderAdaptation.off())
    assert not off.connection_refused(ICC)
    off.delivered(1000)
    adapter.delivered(0)
    assert h.pool.size == 4
    h.pool.release(held, reusable=True)


def test_explained_reads_replies_of_refusals_only():
    from smtpkit import RecipientsRefusedError  # noqa: PLC0415

    assert explained(ValueError("x")) is None
    unknown = RecipientsRefusedError({"a@x": reply("450 4.2.1 busy")})
    assert explained(unknown) is None
    known = RecipientsRefusedError({"a@x": reply("450 4.2.1 busy"), "b@x": DMC})
    explanation = explained(known)
    assert explanation is not None
    assert explanation.reason == "too_many_messages_per_connection"


def test_requeue_switched_off_leaves_refusals_alone():
    h = Harness()
    adapter = PoolAdapter(h.pool, ProviderAdaptation(reconnect_on_message_limit=False))
    pooled = h.pool.acquire()
    pooled.messages = 5
    from smtpkit import SenderRefusedError  # noqa: PLC0415
    from smtpkit._message import Envelope  # noqa: PLC0415

    item = Item.prepare(Envelope(sender="a@x.org", recipients=("b@y.org",)), b"x\r\n")
    item.outcome = SenderRefusedError(DMC, sender="a@x.org")
    assert not adapter.holds(item)
    assert adapter.requeue(pooled, [item]) == 0
    assert item.outcome is not None
