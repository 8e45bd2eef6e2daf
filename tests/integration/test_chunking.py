"""BDAT (RFC 3030 CHUNKING) against a scripted server: one round trip per send,
no dot-stuffing, and every refusal or failure accounted for as with DATA.

The server (``chunksmtp.ChunkSMTP``) answers only when the client has nothing
more to send, so ``flushes`` counts the round trips the client waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from smtpkit import (
    DataRefusedError,
    Envelope,
    PoolLimits,
    ProtocolError,
    RecipientsRefusedError,
    RetryPolicy,
    SenderRefusedError,
    ServerDisconnectedError,
    SMTPReplyError,
)

from .chunksmtp import ChunkSMTP, Faults
from .rawserver import RawServer
from .scriptsmtp import NEVER, config

pytestmark = pytest.mark.integration

ENVELOPE = Envelope(sender="a@example.com", recipients="b@example.com")
TWO_RECIPIENTS = Envelope(
    sender="a@example.com", recipients=["x@example.com", "y@example.com"]
)
# Lines that DATA would have to dot-stuff, a lone ".", 8-bit bytes, a bare LF.
RAW = b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\nnaive caf\xc3\xa9\nend\r\n"
SENT = RAW.replace(b"\xc3\xa9\nend", b"\xc3\xa9\r\nend")  # CRLF-normalised only


@contextlib.contextmanager
def mailer_for(make_mailer, script: ChunkSMTP, **fields: object) -> Iterator[Any]:
    """A mailer that never retries, with a session to a RawServer playing *script*."""
    with (
        RawServer(script) as server,
        make_mailer(config(server, **fields), retry=NEVER) as mailer,
    ):
        yield mailer


def sent_commands(script: ChunkSMTP) -> list[str]:
    return [line.split(":")[0].split()[0].upper() for line in script.log]


def test_proven_session_sends_each_message_in_one_round_trip(make_mailer):
    script = ChunkSMTP()
    with (
        RawServer(script) as server,
        make_mailer(config(server), retry=NEVER) as mailer,
    ):
        first = mailer.send(RAW, envelope=ENVELOPE)
        after_first = script.flushes[0]
        second = mailer.send(RAW, envelope=ENVELOPE)
        third = mailer.send(RAW, envelope=ENVELOPE)
    assert server.errors == []
    assert len(script.flushes) == 1  # one pooled connection
    # New session: MAIL and RCPT answered first (a server may refuse MAIL
    # without reading a chunk), then BDAT.  Afterwards: one write, one reply.
    assert after_first == 2
    assert script.flushes[0] - after_first == 2  # two more sends, one trip each
    assert [r.reply.text for r in (first, second, third)] == [
        "queued as C1",
        "queued as C2",
        "queued as C3",
    ]
    assert script.chunks == [SENT] * 3  # byte-exact, not dot-stuffed
    assert f"BDAT {len(SENT)} LAST" in script.log
    assert "DATA" not in sent_commands(script)


def test_mail_options_size_and_8bitmime_match_the_chunk(make_mailer):
    script = ChunkSMTP(extensions=("PIPELINING", "CHUNKING", "8BITMIME", "SIZE 100000"))
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
    assert f"MAIL FROM:<a@example.com> SIZE={len(SENT)} BODY=8BITMIME" in script.log
    assert script.chunks == [SENT]


def test_bulk_sends_use_bdat_one_round_trip_per_message(make_mailer):
    script = ChunkSMTP()
    items = [(RAW + str(n).encode(), ENVELOPE) for n in range(5)]
    one = PoolLimits(max_connections=1)
    with mailer_for(make_mailer, script, pool=one) as mailer:
        results = mailer.send_many(items)
    assert all(not isinstance(r, Exception) for r in results)
    assert script.chunks == [SENT + str(n).encode() + b"\r\n" for n in range(5)]
    assert script.flushes == [2 + 4]  # the first message proves the session


@pytest.mark.parametrize(
    ("extensions", "fields"),
    [
        (("PIPELINING", "8BITMIME"), {}),  # no CHUNKING
        (("CHUNKING", "8BITMIME"), {}),  # no PIPELINING
        (("PIPELINING", "CHUNKING", "8BITMIME"), {"chunking": False}),
        (("PIPELINING", "CHUNKING", "8BITMIME"), {"pipelining": False}),
    ],
    ids=["no-chunking", "no-pipelining", "chunking-off", "pipelining-off"],
)
def test_falls_back_to_data(make_mailer, extensions, fields):
    script = ChunkSMTP(extensions=extensions)
    with mailer_for(make_mailer, script, **fields) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        mailer.send(RAW, envelope=ENVELOPE)
    assert "BDAT" not in " ".join(script.log)
    assert script.data == [SENT, SENT]  # dot-stuffed on the wire, undone here


def test_mail_refused_on_a_new_session_sends_no_chunk(make_mailer):
    # Postfix refuses MAIL before STARTTLS without reading a following chunk:
    # the message would be read as commands.  So nothing is sent blind.
    script = ChunkSMTP(
        faults=Faults(replies={"MAIL": [b"530 5.7.0 STARTTLS first\r\n"]})
    )
    with mailer_for(make_mailer, script) as mailer:
        with pytest.raises(SMTPReplyError) as info:
            mailer.send(RAW, envelope=ENVELOPE)
        result = mailer.send(RAW, envelope=ENVELOPE)
    assert info.value.reply.code == 530
    assert not info.value.delivery_unknown
    assert sent_commands(script)[:4] == ["EHLO", "MAIL", "RCPT", "RSET"]
    assert script.chunks == [SENT]  # only the second message's
    assert result.reply.code == 250


def test_mail_refused_on_a_proven_session_keeps_the_session_in_step(make_mailer):
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.replies["MAIL"] = [b"450 4.7.1 too much mail\r\n"]
        with pytest.raises(SenderRefusedError) as info:
            mailer.send(RAW, envelope=ENVELOPE)
        last = mailer.send(RAW, envelope=ENVELOPE)
    assert info.value.reply.code == 450
    assert info.value.is_transient
    assert not info.value.delivery_unknown
    # Sent blind; the server read the chunk and refused it, then RSET.
    assert sent_commands(script)[4:9] == ["MAIL", "RCPT", "BDAT", "RSET", "MAIL"]
    assert len(script.flushes) == 1  # the same connection carried on
    assert last.reply.text == "queued as C3"


def test_every_recipient_refused_on_a_proven_session(make_mailer):
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.replies["RCPT"] = [b"550 5.1.1 no\r\n", b"450 4.2.1 busy\r\n"]
        with pytest.raises(RecipientsRefusedError) as info:
            mailer.send(RAW, envelope=TWO_RECIPIENTS)
        last = mailer.send(RAW, envelope=ENVELOPE)
    assert {r: reply.code for r, reply in info.value.refused.items()} == {
        "x@example.com": 550,
        "y@example.com": 450,
    }
    assert "RSET" in sent_commands(script)
    assert len(script.flushes) == 1
    assert last.reply.code == 250


def test_some_recipients_refused_the_rest_get_the_bdat_reply(make_mailer):
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.replies["RCPT"] = [b"550 5.1.1 no\r\n"]
        result = mailer.send(RAW, envelope=TWO_RECIPIENTS)
    assert result.accepted == ("y@example.com",)
    assert [reply.code for reply in result.refused.values()] == [550]
    assert result.reply.text == "queued as C2"


def test_chunk_refused_is_a_data_refusal_at_end_of_data(make_mailer):
    script = ChunkSMTP(faults=Faults(replies={"BDAT": [b"554 5.7.1 spam\r\n"]}))
    with mailer_for(make_mailer, script) as mailer:
        with pytest.raises(DataRefusedError) as info:
            mailer.send(RAW, envelope=ENVELOPE)
        mailer.send(RAW, envelope=ENVELOPE)
    assert info.value.reply.code == 554
    assert info.value.command == "end of data"
    assert not info.value.delivery_unknown
    assert len(script.flushes) == 1


def test_421_after_bdat_is_a_certain_refusal_and_drops_the_session(make_mailer):
    script = ChunkSMTP(
        faults=Faults(replies={"BDAT": [b"421 4.3.2 shutting down\r\n"]})
    )
    with mailer_for(make_mailer, script) as mailer:
        with pytest.raises(DataRefusedError) as info:
            mailer.send(RAW, envelope=ENVELOPE)
        mailer.send(RAW, envelope=ENVELOPE)
    assert info.value.reply.code == 421
    assert info.value.command == "end of data"
    assert info.value.is_transient
    assert not info.value.delivery_unknown
    assert len(script.flushes) == 2  # a new connection for the next message


def test_connection_cut_before_the_last_byte_left_is_certain(make_mailer):
    # A big chunk, a small receive window, and a reset after 1,000 bytes: the
    # client's write fails before the last byte reached its kernel.
    raw = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 20_000
    script = ChunkSMTP()
    with (
        RawServer(script, rcvbuf=4096) as server,
        make_mailer(config(server), retry=NEVER) as mailer,
    ):
        mailer.send(RAW, envelope=ENVELOPE)  # prove the session: next one is blind
        script.faults.cut_after = 1000
        with pytest.raises(ServerDisconnectedError) as info:
            mailer.send(raw, envelope=ENVELOPE)
    assert not info.value.delivery_unknown
    assert info.value.is_transient


def test_connection_lost_after_the_whole_chunk_is_delivery_unknown(make_mailer):
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.silent_after_chunk = True
        with pytest.raises(ServerDisconnectedError) as info:
            mailer.send(RAW, envelope=ENVELOPE)
    assert info.value.delivery_unknown
    assert info.value.command == "end of data"
    assert script.chunks == [SENT, SENT]  # the server does hold it


def test_bdat_answered_twice_is_out_of_step_and_the_session_is_dropped(make_mailer):
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.double_bdat = True
        result = mailer.send(RAW, envelope=ENVELOPE)  # its own reply was fine
        mailer.send(RAW, envelope=ENVELOPE)
    assert result.reply.text == "queued as C2"
    assert len(script.flushes) == 2  # the extra reply: the session was not reused


def test_chunk_accepted_after_mail_was_refused_is_out_of_step(make_mailer):
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.replies["MAIL"] = [b"550 5.7.1 no\r\n"]
        script.faults.replies["BDAT"] = [b"250 2.0.0 queued anyway\r\n"]
        with pytest.raises(ProtocolError) as info:
            mailer.send(RAW, envelope=ENVELOPE)
        mailer.send(RAW, envelope=ENVELOPE)
    assert info.value.delivery_unknown  # the server says it took it
    assert info.value.command == "BDAT"
    assert len(script.flushes) == 2


def test_421_to_mail_on_a_reused_session_is_replayed_free_on_a_new_one(make_mailer):
    # The chunk had left, but a 421 to MAIL means the server took no message:
    # the stale-session rule still applies, without costing an attempt.
    script = ChunkSMTP()
    with mailer_for(make_mailer, script) as mailer:
        mailer.send(RAW, envelope=ENVELOPE)
        script.faults.replies["MAIL"] = [b"421 4.4.2 idle too long\r\n"]
        result = mailer.send(RAW, envelope=ENVELOPE)
    assert result.attempts == 1
    assert len(script.flushes) == 2
    assert script.chunks == [SENT, SENT]  # the refused one was never read


def test_a_refused_rset_before_a_blind_chunk_leaves_that_message_unknown_not_resent(
    make_mailer,
):
    # On a proven session the next message's MAIL, RCPT, BDAT and data share a
    # write with the RSET after a refusal.  A refused RSET ends the session, but
    # the server went on to read that message: it may hold it, so it is neither
    # reported as refused nor sent again.
    script = ChunkSMTP(faults=Faults(replies={"RSET": [b"451 4.3.0 try later\r\n"]}))
    refused = Envelope(sender="a@example.com", recipients="bad@example.com")
    retry = RetryPolicy(wait_initial=0, wait_jitter=0)
    one = PoolLimits(max_connections=1)
    with (
        RawServer(script) as server,
        make_mailer(config(server, pool=one), retry=retry) as mailer,
    ):
        mailer.send(RAW, envelope=ENVELOPE)  # proves the session
        script.faults.replies["RCPT"] = [b"550 5.1.1 no such user\r\n"]
        results = mailer.send_many([(RAW, refused), (RAW, ENVELOPE)])
    assert server.errors == []
    assert isinstance(results[0].error, RecipientsRefusedError)
    third = results[1].error
    assert third is not None
    assert third.delivery_unknown
    assert results[1].attempts == 1
    assert len(script.flushes) == 1  # one session: the RSET shared its write
    # Three chunks read (the refused message's among them), none sent twice.
    assert len(script.chunks) == 3
