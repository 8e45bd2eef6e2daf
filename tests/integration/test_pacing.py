"""Per-connection pacing (PoolLimits.per_connection_rate) against a real server."""

from __future__ import annotations

import time

import pytest

from smtpkit import Mailer, Message, PoolLimits

pytestmark = pytest.mark.integration


def test_per_connection_rate_spaces_messages_on_one_connection(server, config_for):
    pool = PoolLimits(max_connections=1, per_connection_rate=10.0)
    messages = [
        Message(sender="a@example.com", to=f"u{n}@example.com", text="x")
        for n in range(4)
    ]
    started = time.monotonic()
    with Mailer(config_for(server, pool=pool)) as mailer:
        results = mailer.send_many(messages, concurrency=1)
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    # Three gaps of 1/10 s between four messages on the single connection.
    assert elapsed >= 0.3
    assert {m.session_id for m in server.messages} == {server.messages[0].session_id}
