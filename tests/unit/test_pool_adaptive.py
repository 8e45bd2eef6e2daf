"""The pool's learnt limits and the adapter that sets them, with dummy connections."""

from __future__ import annotations

import threading

import pytest

from smtpkit import (
    DataRefusedError,
    GreetingRefusedError,
    PoolTimeoutError,
    ProviderAdaptation,
    SenderRefusedError,
    SendResult,
    SMTPReplyError,
)
from smtpkit._message import Envelope
from smtpkit._transports._adaptive import (
    MAX_ABSORBED_REFUSALS,
    PoolAdapter,
    Refusals,
    explained,
)
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


def test_established_leaves_out_connections_still_connecting():
    h = Harness(max_connections=4)
    started, go = threading.Event(), threading.Event()
    create = h.create

    def slow_create():
        started.set()
        go.wait(5)
        return create()

    held = h.pool.acquire()
    h.pool._create = slow_create
    thread = threading.Thread(target=h.pool.acquire)
    thread.start()
    started.wait(5)
    assert h.pool.established() == (1, 1)
    go.set()
    thread.join(5)
    assert h.pool.established() == (2, 0)
    h.fail_create = OSError("refused")
    with pytest.raises(OSError):
        h.pool.acquire()
    assert h.pool.established() == (2, 0)  # the failed slot is given back
    h.pool.release(held, reusable=True)


def test_concurrent_refusals_shrink_to_the_accepted_at_once():
    # Six connect at once, the server takes two: the refusals that arrive while
    # others are still connecting must not stop at 5, 4, 3 first.
    h = Harness(max_connections=6)
    adapter = PoolAdapter(h.pool, ProviderAdaptation())
    held = [h.pool.acquire(), h.pool.acquire()]
    h.pool._connecting = 3  # three more on their way (and to be refused)
    h.pool._in_use += 3
    assert adapter.connection_refused(ICC)
    assert h.pool.size == 2
    h.pool._connecting = 0
    h.pool._in_use -= 3
    for pooled in held:
        h.pool.release(pooled, reusable=True)


def test_a_refusal_while_only_others_connect_waits_for_them():
    h = Harness(max_connections=6)
    adapter = PoolAdapter(h.pool, ProviderAdaptation())
    h.pool._connecting = 3
    h.pool._in_use = 3
    assert adapter.connection_refused(ICC)
    assert h.pool.size == 3


def test_a_probe_that_held_makes_the_next_probe_cheap_again():
    h = Harness(max_connections=4)
    adapter = PoolAdapter(h.pool, ProviderAdaptation(grow_after=10))
    held = [h.pool.acquire()]
    assert adapter.connection_refused(ICC)
    assert h.pool.size == 1
    adapter.delivered(10)
    assert h.pool.size == 2
    assert adapter.connection_refused(ICC)  # refused: next probe after 20
    adapter.delivered(20)
    assert h.pool.size == 2
    adapter.delivered(20)  # 3 held for 20: back to every 10
    assert h.pool.size == 3
    adapter.delivered(10)
    assert h.pool.size == 4
    h.pool.release(held[0], reusable=True)


def _item(outcome, *, data_sent: bool = False) -> Item:
    item = Item.prepare(Envelope(sender="a@x.org", recipients=("b@y.org",)), b"x\r\n")
    item.outcome = outcome
    item.data_sent = data_sent
    return item


def test_refused_midway_forgets_only_messages_that_never_started():
    h = Harness(max_connections=4)
    adapter = PoolAdapter(h.pool, ProviderAdaptation())
    held = h.pool.acquire()
    icc = SMTPReplyError(reply("421 HL:ICC 127.0.0.1"), command="MAIL")
    delivered = _item(SendResult(envelope=None))
    refused = _item(icc)
    after_data = _item(DataRefusedError(reply("421 HL:ICC x"), command="end of data"))
    after_data.data_sent = True
    batch = [delivered, refused, after_data]
    assert adapter.refused_midway(batch, icc, Refusals())
    assert refused.outcome is None
    assert delivered.outcome is not None
    assert after_data.outcome is not None  # the server may have it
    assert h.pool.size == 1
    other = SMTPReplyError(reply("421 4.3.2 bye"), command="MAIL")
    assert not adapter.refused_midway([_item(other)], other, Refusals())
    assert not adapter.refused_midway([after_data], icc, Refusals())  # nothing to undo
    off = PoolAdapter(h.pool, ProviderAdaptation(learn_connection_limit=False))
    assert not off.refused_midway([_item(icc)], icc, Refusals())
    h.pool.release(held, reusable=False)
    # Nothing of ours open: the refusal is the message's error.
    alone = _item(icc)
    assert not adapter.refused_midway([alone], icc, Refusals())
    assert alone.outcome is icc


def test_an_interrupt_right_after_connecting_disposes_and_frees_the_slot():
    h = Harness(max_connections=1)
    calls = []

    def clock() -> float:
        calls.append(1)
        if len(calls) == 2:  # the first call sets the deadline, the next stamps
            raise KeyboardInterrupt
        return 0.0

    h.pool._clock = clock
    with pytest.raises(KeyboardInterrupt):
        h.pool.acquire()
    assert h.disposed == [(h.created[0], False)]
    assert h.pool.established() == (0, 0)
    assert h.pool.stats().in_use == 0


def test_a_refusal_at_the_learnt_limit_requeues_without_warning(caplog):
    h = Harness(max_messages_per_connection=3)
    adapter = PoolAdapter(h.pool, ProviderAdaptation())
    pooled = h.pool.acquire()
    pooled.messages = 3
    item = _item(SenderRefusedError(DMC, sender="a@x.org"))
    with caplog.at_level("WARNING", logger="smtpkit"):
        assert adapter.requeue(pooled, [item]) == 1
    assert item.outcome is None
    assert h.pool.max_messages == 3
    assert caplog.records == []
    h.pool.release(pooled, reusable=True)


def test_judged_refusals_are_absorbed_at_most_eight_in_a_row():
    h = Harness(max_connections=3)
    adapter = PoolAdapter(h.pool, ProviderAdaptation())
    held = h.pool.acquire()
    refusals = Refusals()
    assert all(adapter.absorbs(ICC, refusals) for _ in range(MAX_ABSORBED_REFUSALS))
    assert not adapter.absorbs(ICC, refusals)
    refusals.progressed()  # a message delivered: the count starts again
    assert adapter.absorbs(ICC, refusals)
    other = GreetingRefusedError(reply("421 4.3.2 shutting down"), command="connect")
    assert not adapter.absorbs(other, Refusals())
    h.pool.release(held, reusable=True)
