"""The per-message shortcuts of the transport path change nothing the server sees.

RCPT lines are kept while the same recipients tuple comes back, MAIL parameters
are worked out once per session, a delivered first attempt becomes its result
directly, and commands are logged only when DEBUG is on: each is checked here
against what a real server received.
"""

from __future__ import annotations

import logging

import pytest

from smtpkit import Envelope, Message, RetryPolicy

SENDER = "sender@example.com"


def raw(i: int) -> bytes:
    return f"Subject: m{i}\r\nMessage-ID: <m{i}@lean>\r\n\r\nbody {i}\r\n".encode()


def test_one_envelope_object_for_every_message(make_mailer, server, config_for):
    envelope = Envelope(SENDER, ["a@example.com", "b@example.com"])
    with make_mailer(config_for(server)) as mailer:
        results = mailer.send_many([(raw(i), envelope) for i in range(40)])
    assert all(r.ok for r in results)
    assert [r.message_id for r in results] == [f"<m{i}@lean>" for i in range(40)]
    assert all(r.envelope is envelope for r in results)
    assert all(r.accepted == ("a@example.com", "b@example.com") for r in results)
    assert len(server.messages) == 40
    for received in server.messages:
        assert received.mail_from == SENDER
        assert received.rcpt_tos == ["a@example.com", "b@example.com"]


def test_envelopes_that_change_in_between_never_get_stale_rcpt_lines(
    make_mailer, server, config_for
):
    first = Envelope(SENDER, ["a@example.com", "b@example.com"])
    # An equal tuple that is another object, a copy with other recipients, and
    # another sender with the first one's very tuple.
    equal = Envelope(SENDER, ["a@example.com", "b@example.com"])
    other = first.model_copy(update={"recipients": ("c@example.com",)})
    resent = Envelope("other@example.com", first.recipients)
    flagged = Envelope(SENDER, first.recipients, smtputf8=True)
    order = [first, other, first, equal, other, resent, flagged, first]
    with make_mailer(config_for(server)) as mailer:
        results = mailer.send_many(
            [(raw(i), e) for i, e in enumerate(order)], concurrency=1
        )
    assert all(r.ok for r in results)
    got = [(m.mail_from, m.rcpt_tos) for m in server.messages]
    assert got == [(e.sender, list(e.recipients)) for e in order]
    utf8 = ["SMTPUTF8" in m.mail_options for m in server.messages]
    assert utf8 == [e is flagged for e in order]


def test_an_envelope_mutated_behind_pydantics_back_is_sent_as_it_is_now(
    make_mailer, server, config_for
):
    envelope = Envelope(SENDER, ["a@example.com"])
    with make_mailer(config_for(server)) as mailer:
        mailer.send_many([(raw(0), envelope), (raw(1), envelope)])
        # Frozen models can still be changed with object.__setattr__; the new
        # tuple is another object, so nothing derived from the old one is used.
        object.__setattr__(envelope, "recipients", ("z@example.com",))
        mailer.send_many([(raw(2), envelope), (raw(3), envelope)])
    assert [m.rcpt_tos for m in server.messages] == [
        ["a@example.com"],
        ["a@example.com"],
        ["z@example.com"],
        ["z@example.com"],
    ]


def test_smtputf8_is_asked_per_message_on_one_session(
    make_mailer, start_server, config_for
):
    server = start_server(pipelining=True)
    ascii_envelope = Envelope(SENDER, ["a@example.com"])
    utf8_envelope = Envelope(SENDER, ["用户@example.com"])
    order = [ascii_envelope, utf8_envelope, ascii_envelope, utf8_envelope]
    with make_mailer(config_for(server)) as mailer:
        results = mailer.send_many(
            [(raw(i), e) for i, e in enumerate(order)], concurrency=1
        )
    assert all(r.ok for r in results), [r.error for r in results]
    assert [m.rcpt_tos for m in server.messages] == [list(e.recipients) for e in order]
    assert ["SMTPUTF8" in m.mail_options for m in server.messages] == [
        False,
        True,
        False,
        True,
    ]
    assert all(f"SIZE={len(m.data)}" in m.mail_options for m in server.messages)


def test_a_result_from_send_many_equals_the_one_from_send(
    make_mailer, server, config_for
):
    envelope = Envelope(SENDER, ["a@example.com", "b@example.com"])
    with make_mailer(config_for(server)) as mailer:
        single = mailer.send(raw(0), envelope=envelope)
        [bulk] = mailer.send_many([(raw(0), envelope)])
    for name in ("envelope", "message_id", "attempts", "error", "accepted"):
        assert getattr(bulk, name) == getattr(single, name), name
    assert bulk.possibly_duplicated is single.possibly_duplicated is False
    assert list(bulk.recipients) == list(single.recipients) == list(envelope.recipients)
    assert bulk.reply is not None
    assert single.reply is not None
    assert bulk.reply.code == single.reply.code == 250
    assert bulk.elapsed >= 0


def test_partly_refused_messages_still_take_the_long_way(
    make_mailer, start_server, config_for
):
    server = start_server(pipelining=True)
    server.handler.rcpt_replies["busy@example.com"] = "450 4.2.1 try later"
    envelope = Envelope(SENDER, ["a@example.com", "busy@example.com"])
    with make_mailer(config_for(server), retry=RetryPolicy.never()) as mailer:
        [result] = mailer.send_many([(raw(0), envelope)])
    assert result.accepted == ("a@example.com",)
    assert result.refused["busy@example.com"].code == 450
    assert result.message_id == "<m0@lean>"


@pytest.mark.parametrize("pipelining", [True])
def test_commands_and_replies_are_logged_only_at_debug(
    make_mailer, server, config_for, caplog
):
    envelope = Envelope(SENDER, ["a@example.com", "b@example.com"])
    with make_mailer(config_for(server)) as mailer:
        caplog.set_level(logging.INFO, logger="smtpkit")
        mailer.send_many([(raw(0), envelope)])
        assert not [r for r in caplog.records if r.levelno == logging.DEBUG]
        caplog.clear()
        caplog.set_level(logging.DEBUG, logger="smtpkit")
        mailer.send_many([(raw(1), envelope)])
    lines = [r.getMessage() for r in caplog.records]
    for command in (
        f">>> MAIL FROM:<{SENDER}>",
        ">>> RCPT TO:<a@example.com>",
        ">>> RCPT TO:<b@example.com>",
        ">>> DATA",
    ):
        assert any(line.startswith(command) for line in lines), (command, lines)
    assert any(line.startswith("<<< 354") for line in lines), lines
    assert any(line.startswith("<<< 250") for line in lines), lines
    assert any(line.startswith("sent <m1@lean>") for line in lines), lines


def test_message_objects_with_dot_lines_arrive_intact(make_mailer, server, config_for):
    text = ".leading dot\n..two dots\n.\nend\n"
    message = Message(sender=SENDER, to="a@example.com", subject="dots", text=text)
    with make_mailer(config_for(server)) as mailer:
        mailer.send_many([message, message])
    assert len(server.messages) == 2
    for received in server.messages:
        body = received.data.split(b"\r\n\r\n", 1)[1]
        assert body == text.replace("\n", "\r\n").encode()


@pytest.mark.parametrize("pipelining", [True])
def test_a_message_larger_than_the_socket_buffers_arrives_whole(
    make_mailer, server, config_for
):
    # The data and the commands after it leave in one gathered write; the
    # socket takes only a part of it at first, and the rest follows.
    line = b".dot line, then text to fill the buffers of the connection\r\n"
    body = line * (6 * 1024 * 1024 // len(line))
    envelope = Envelope(SENDER, ["a@example.com"])
    with make_mailer(config_for(server, timeout=30.0)) as mailer:
        results = mailer.send_many(
            [(raw(0) + body, envelope), (raw(1), envelope)], concurrency=1
        )
    assert all(r.ok for r in results)
    assert [m.data for m in server.messages] == [raw(0) + body, raw(1)]
