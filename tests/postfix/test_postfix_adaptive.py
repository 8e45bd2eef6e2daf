"""Postfix's anvil connection limit is learnt by the pool, not fought.

The ``anvil`` endpoint allows two simultaneous sessions from 127.0.0.1
(``smtpd_client_connection_count_limit = 2``, no exemption for mynetworks); a
third gets ``421 4.7.0 <host> Error: too many connections from <addr>`` as its
greeting.  ``send_many`` on a pool of 6 must deliver every message exactly once
and settle at 2 connections.
"""

from __future__ import annotations

import socket
import time

import pytest

from smtpkit import Message, PoolLimits, RetryPolicy
from smtpkit._provider_replies import ReplyReason, explain_reply
from smtpkit._reply import parse_reply

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

SENDER = "bulk@example.com"


def _greeting(postfix) -> bytes:
    sock = socket.create_connection((postfix.host, postfix.ports["anvil"]), 10)
    with sock, sock.makefile("rb") as stream:
        return stream.readline()


def _session_ended(sock: socket.socket) -> bytes:
    """QUIT and read to the end: smtpd reports the disconnect to anvil first."""
    sock.sendall(b"QUIT\r\n")
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def _anvil_forgot_us(postfix) -> None:
    """Wait until anvil allows our two sessions again.

    The sessions of the test before (another pool, closed a moment ago) count
    until their smtpd has reported the disconnect to anvil: a mailer starting
    then is refused on every connection, with none of its own to wait for.
    """
    deadline = time.monotonic() + 30
    while True:
        socks = [
            socket.create_connection((postfix.host, postfix.ports["anvil"]), 10)
            for _ in range(2)
        ]
        try:
            greetings = [sock.recv(512) for sock in socks]
            for sock in socks:
                _session_ended(sock)
        finally:
            for sock in socks:
                sock.close()
        if all(greeting.startswith(b"220 ") for greeting in greetings):
            return
        assert time.monotonic() < deadline, greetings
        time.sleep(0.1)


def test_anvil_reply_is_explained_as_too_many_connections(postfix):
    held = [
        socket.create_connection((postfix.host, postfix.ports["anvil"]), 10)
        for _ in range(2)
    ]
    try:
        for sock in held:
            assert sock.recv(512).startswith(b"220 ")
        line = _greeting(postfix)
    finally:
        for sock in held:
            sock.close()
    # The exact text of the real server, as the reply table must match it.
    assert line == (
        b"421 4.7.0 mta.smtpkit.test Error: too many connections from 127.0.0.1\r\n"
    )
    reply = parse_reply(421, line[4:].rstrip(b"\r\n"))
    explanation = explain_reply(reply)
    assert explanation is not None
    assert explanation.reason is ReplyReason.TOO_MANY_CONNECTIONS
    assert explanation.provider == "Postfix"


@pytest.mark.timeout(180)
def test_send_many_learns_the_anvil_connection_limit(make_mailer, postfix, address):
    rcpts = [address() for _ in range(300)]
    messages = [
        Message(sender=SENDER, to=rcpt, subject=f"n{i}", text="hello\n")
        for i, rcpt in enumerate(rcpts)
    ]
    _anvil_forgot_us(postfix)
    mark = postfix.log_offset()
    config = postfix.config("anvil", pool=PoolLimits(max_connections=6))
    with make_mailer(config, retry=RetryPolicy.never()) as mailer:
        results = mailer.send_many(messages)
        pool_size = mailer.transport._pool.size
        created = mailer.transport.stats().created
    assert [r.error for r in results if r.error is not None] == []
    assert all(r.ok and r.attempts == 1 for r in results)
    assert pool_size <= 2
    postfix.wait_until_idle(timeout=60)
    counts: dict[str, int] = dict.fromkeys(rcpts, 0)
    for delivery in postfix.deliveries(rcpts):
        counts[delivery.recipient] += 1
    assert counts == dict.fromkeys(rcpts, 1)  # every message exactly once
    log = postfix.log(mark)
    refused = log.count("Connection concurrency limit exceeded")
    assert refused >= 1  # the limit was really hit, and learnt...
    assert refused <= 8, refused  # ...not fought
    assert created - refused <= 10, (created, refused)


@pytest.mark.timeout(180)
def test_connections_replaced_at_the_message_limit_are_not_refused_for_good(
    make_mailer, postfix, address
):
    # anvil counts a session until smtpd reports the disconnect, a moment after
    # our QUIT: with both allowed connections replaced every 10 messages, a new
    # one is now and then refused while none of ours is open.  That refusal is
    # waited out; no message fails for it.
    rcpts = [address() for _ in range(120)]
    messages = [
        Message(sender=SENDER, to=rcpt, subject=f"r{i}", text="hello\n")
        for i, rcpt in enumerate(rcpts)
    ]
    _anvil_forgot_us(postfix)
    config = postfix.config(
        "anvil", pool=PoolLimits(max_connections=2, max_messages_per_connection=10)
    )
    with make_mailer(config, retry=RetryPolicy.never()) as mailer:
        results = mailer.send_many(messages)
    assert [r.error for r in results if r.error is not None] == []
    assert all(r.ok and r.attempts == 1 for r in results)
    postfix.wait_until_idle(timeout=60)
    counts: dict[str, int] = dict.fromkeys(rcpts, 0)
    for delivery in postfix.deliveries(rcpts):
        counts[delivery.recipient] += 1
    assert counts == dict.fromkeys(rcpts, 1)
