"""Regressions for the review of smtpkit.contrib.celery: each test counts what a
real aiosmtpd server received, with the states in a real Redis."""

from __future__ import annotations

import pytest

from smtpkit.contrib.celery import DeliveryState

from .test_queue import ids, message

pytestmark = pytest.mark.celery


def test_the_same_key_twice_in_one_chunk_is_sent_once(make_queue, smtp_server):
    queue = make_queue()
    twice = queue.items([message(1), message(1)])
    assert queue.run(twice).states == {"<m1@example.com>": "delivered"}
    assert ids(smtp_server) == ["<m1@example.com>"]
    colliding = queue.items([message(2), message(3)], keys=["k", "k"])
    assert queue.run(colliding).states == {"k": "delivered"}
    assert ids(smtp_server) == ["<m1@example.com>", "<m2@example.com>"]
    assert queue.result("k").state is DeliveryState.DELIVERED
    assert queue.result("k").attempts == 1
    # Through enqueue (one chunk) too.
    assert queue.enqueue([message(4), message(4)]) == ["<m4@example.com>"] * 2
    assert ids(smtp_server).count("<m4@example.com>") == 1
