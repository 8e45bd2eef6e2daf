"""Postfix's limits and refusals reach the caller as typed smtpkit results and errors.

Covers SIZE, smtpd_recipient_limit, check_recipient_access 450/550 replies with the
retry policy, anvil rate limits, and PIPELINING under reject_unauth_pipelining.
"""

from __future__ import annotations

import socket
import time

import pytest

from smtpkit import (
    Attachment,
    DataRefusedError,
    Envelope,
    Message,
    NotSupportedError,
    RecipientsRefusedError,
    RetryPolicy,
    SenderRefusedError,
)

from ..mailers import AnyMailer
from .mta import BUSY_PREFIX, UNKNOWN_PREFIX, queue_id

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

NEVER = RetryPolicy.never()
TWICE = RetryPolicy(attempts=2, wait_initial=0, wait_jitter=0)
SENDER = "sender@example.com"


def _no_sleep(seconds: float) -> None:
    pass


def _message(*to: str, size: int = 0) -> Message:
    files = [Attachment(filename="blob.bin", content=b"\x00" * size)] if size else []
    return Message(
        sender=SENDER, to=to, subject="limits", text="x\n", attachments=files
    )


def _count_by_recipient(postfix, recipients: list[str]) -> dict[str, int]:
    postfix.wait_until_idle()  # every accepted copy has reached the mail dir
    counts = dict.fromkeys(recipients, 0)
    for delivery in postfix.deliveries(recipients):
        counts[delivery.recipient] += 1
    return counts


# -- message size ---------------------------------------------------------------


def test_size_limit_is_checked_before_sending(make_mailer, postfix, address):
    big, small = address(), address()
    mark = postfix.log_offset()
    with make_mailer(postfix.config("small"), retry=NEVER) as mailer:
        with pytest.raises(NotSupportedError, match="at most 20000") as info:
            mailer.send(_message(big, size=30_000))
        assert not info.value.is_transient
        # Nothing was sent, so the same session carries the next message.
        result = mailer.send(_message(small))
    postfix.wait_for_deliveries(1, recipients=[small])
    summary = postfix.session_summary(queue_id(result))
    assert " mail=1 rcpt=1 bdat=1 " in summary
    assert big not in postfix.log(mark)


def test_size_limit_without_size_extension_is_a_552(make_mailer, postfix, address):
    big, small = address(), address()
    with make_mailer(postfix.config("small_nosize"), retry=RetryPolicy()) as mailer:
        with pytest.raises(DataRefusedError) as info:
            mailer.send(_message(big, size=30_000))
        error = info.value
        assert (error.reply.code, str(error.reply.enhanced)) == (552, "5.3.4")
        assert error.command == "end of data"
        assert not error.is_transient
        assert error.attempts == 1
        mailer.send(_message(small))  # the session survived the refusal
    postfix.wait_for_deliveries(1, recipients=[small])
    assert postfix.deliveries([big]) == []


# -- recipients -----------------------------------------------------------------


def test_recipient_limit_reported_per_recipient(make_mailer, postfix, address):
    rcpts = [address() for _ in range(5)]
    with make_mailer(postfix.config("limits"), retry=NEVER) as mailer:
        result = mailer.send(_message(*rcpts))
    assert result.accepted == tuple(rcpts[:3])
    assert set(result.refused) == set(rcpts[3:])
    for reply in result.refused.values():
        assert (reply.code, str(reply.enhanced)) == (452, "4.5.3")
        assert reply.is_transient
    assert not result.ok
    assert _count_by_recipient(postfix, rcpts) == dict.fromkeys(rcpts[:3], 1) | {
        r: 0 for r in rcpts[3:]
    }


def test_recipient_limit_overflow_goes_in_a_second_transaction(
    make_mailer, postfix, address
):
    rcpts = [address() for _ in range(5)]
    with make_mailer(postfix.config("limits"), retry=TWICE, sleep=_no_sleep) as mailer:
        result = mailer.send(_message(*rcpts))
    assert result.ok
    assert result.attempts == 2
    assert [result.recipients[r].attempts for r in rcpts] == [1, 1, 1, 2, 2]
    assert _count_by_recipient(postfix, rcpts) == dict.fromkeys(rcpts, 1)


def test_busy_recipient_retried_unknown_not(make_mailer, postfix, address):
    ok = [address(), address()]
    busy, unknown = address(BUSY_PREFIX), address(UNKNOWN_PREFIX)
    mark = postfix.log_offset()
    config = postfix.config("plain")
    with make_mailer(config, retry=TWICE, sleep=_no_sleep) as mailer:
        result = mailer.send(_message(ok[0], busy, unknown, ok[1]))
    assert result.accepted == tuple(ok)
    assert {
        r: (reply.code, str(reply.enhanced)) for r, reply in result.refused.items()
    } == {
        busy: (450, "4.2.1"),
        unknown: (550, "5.1.1"),
    }
    assert "mailbox busy" in result.refused[busy].text
    assert "no such user" in result.refused[unknown].text
    assert result.recipients[busy].attempts == 2
    assert result.recipients[unknown].attempts == 1
    assert [result.recipients[r].attempts for r in ok] == [1, 1]
    assert result.attempts == 2
    # What Postfix saw: the busy address twice, the unknown one once.
    log = postfix.wait_for_log(
        f"<{busy}>: Recipient address rejected", since=mark, count=2
    )
    assert log.count(f"<{unknown}>: Recipient address rejected") == 1
    assert _count_by_recipient(postfix, [*ok, busy, unknown]) == {
        ok[0]: 1,
        ok[1]: 1,
        busy: 0,
        unknown: 0,
    }


def test_all_recipients_refused_raises_after_retries(make_mailer, postfix, address):
    busy, unknown = address(BUSY_PREFIX), address(UNKNOWN_PREFIX)
    with make_mailer(postfix.config("plain"), retry=TWICE, sleep=_no_sleep) as mailer:
        with pytest.raises(RecipientsRefusedError) as info:
            mailer.send(_message(busy, unknown))
        error = info.value
        assert error.attempts == 2
        assert error.refused[busy].code == 450
        assert error.refused[unknown].code == 550
        with pytest.raises(RecipientsRefusedError) as info:
            mailer.send(_message(unknown))
        assert info.value.attempts == 1  # a 550 alone is not worth a retry
        assert not info.value.is_transient


# -- rate limits (anvil) --------------------------------------------------------


def test_rate_limit_waited_out_by_retries(make_mailer, postfix, address):
    rcpts = [address() for _ in range(4)]
    waits: list[float] = []  # anvil's window is real time: really sleep
    policy = RetryPolicy(
        attempts=20, wait_initial=0.25, wait_exp_base=1, wait_jitter=0, timeout=None
    )

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with make_mailer(postfix.config("ratelimit"), retry=policy, sleep=sleep) as mailer:
        results = [mailer.send(_message(rcpt)) for rcpt in rcpts]
    assert all(r.ok for r in results)
    assert waits, "four messages at two per window must have hit the limit"
    assert max(r.attempts for r in results) > 1
    assert _count_by_recipient(postfix, rcpts) == dict.fromkeys(rcpts, 1)


def test_rate_limit_reported_when_retries_run_out(make_mailer, postfix, address):
    # smtpd_client_message_rate_limit=2 per anvil_rate_time_unit (1 s).
    sent = []

    def send_six(mailer: AnyMailer) -> None:
        for _ in range(6):
            sent.append(mailer.send(_message(address())))

    with make_mailer(
        postfix.config("ratelimit"), retry=TWICE, sleep=_no_sleep
    ) as mailer:
        with pytest.raises(SenderRefusedError) as info:
            send_six(mailer)
    error = info.value
    assert all(result.ok for result in sent)
    assert (error.reply.code, str(error.reply.enhanced)) == (450, "4.7.1")
    assert "too much mail" in error.reply.text
    assert error.is_transient
    assert error.attempts == 2


# -- pipelining -----------------------------------------------------------------


def test_pipelining_accepted_under_reject_unauth_pipelining(
    make_mailer, postfix, address
):
    rcpts = [[address(), address()] for _ in range(3)]
    mark = postfix.log_offset()
    config = postfix.config("pipelining")
    assert config.pipelining
    with make_mailer(config, retry=NEVER) as mailer:
        results = [mailer.send(_message(*group)) for group in rcpts]
    assert all(r.ok for r in results)
    flat = [r for group in rcpts for r in group]
    assert _count_by_recipient(postfix, flat) == dict.fromkeys(flat, 1)
    summary = postfix.session_summary(queue_id(results[0]))
    assert " mail=3 rcpt=6 bdat=3 quit=1 " in summary
    assert "improper command pipelining" not in postfix.log(mark)


def test_send_many_pipelines_messages_back_to_back(make_mailer, postfix, address):
    # One batch on one connection: each message's data, its final dot and the
    # next message's MAIL/RCPT/DATA share a write (RFC 2920 §3.1).  Postfix,
    # with reject_unauth_pipelining and smtpd_forbid_unauth_pipelining, agrees.
    groups = [[address(), address()] for _ in range(6)]
    messages = [_message(*group) for group in groups]
    config = postfix.config("pipelining")
    with make_mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many(messages, concurrency=1)
    assert [r.error for r in results] == [None] * 6
    assert all(r.ok for r in results)
    flat = [r for group in groups for r in group]
    assert _count_by_recipient(postfix, flat) == dict.fromkeys(flat, 1)
    summary = postfix.session_summary(queue_id(results[0]))
    assert " mail=6 rcpt=12 bdat=6 quit=1 " in summary
    assert len({queue_id(r) for r in results}) == 6


def test_send_many_refusals_inside_a_pipelined_batch(make_mailer, postfix, address):
    ok = [address() for _ in range(4)]
    busy, unknown = address(BUSY_PREFIX), address(UNKNOWN_PREFIX)
    messages = [
        _message(ok[0]),
        _message(unknown),  # refused outright: RSET inside the batch
        _message(ok[1], busy),  # partly refused: the busy one is retried alone
        _message(ok[2], ok[3]),
    ]
    config = postfix.config("pipelining")
    with make_mailer(config, retry=TWICE, sleep=_no_sleep) as mailer:
        results = mailer.send_many(messages, concurrency=1)
    assert results[0].ok
    assert results[3].ok
    assert isinstance(results[1].error, RecipientsRefusedError)
    assert results[1].error.refused[unknown].code == 550
    assert results[1].attempts == 1
    assert results[2].accepted == (ok[1],)
    assert results[2].refused[busy].code == 450
    assert results[2].recipients[busy].attempts == 2
    counts = _count_by_recipient(postfix, [*ok, busy, unknown])
    assert counts == dict.fromkeys(ok, 1) | {busy: 0, unknown: 0}


def test_reject_unauth_pipelining_guard_is_active(
    postfix, address, improper_pipelining_expected
):
    # The control for the test above: a client that sends the message right
    # behind DATA, without waiting for 354, is refused and logged.
    mark = postfix.log_offset()
    port = postfix.ports["pipelining"]
    with socket.create_connection((postfix.host, port), 10) as sock:
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"220 ")
        stream.write(b"EHLO eager.test\r\n")
        stream.flush()
        while stream.readline()[3:4] == b"-":
            pass
        rcpt = address()
        stream.write(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
            "Subject: eager\r\n\r\nhi\r\n.\r\n".encode()
        )
        stream.flush()
        replies = [stream.readline() for _ in range(3)]
        stream.close()
    assert replies[2].startswith(b"554 5.5.0 Error: SMTP protocol synchronization")
    postfix.wait_for_log("improper command pipelining after DATA", since=mark)


def test_size_counts_crlf_line_endings(make_mailer, postfix, address):
    # RFC 1870 §4: the size includes CR-LF pairs.  Raw LF-only input of 19,912
    # bytes is 21,904 bytes on the wire, over the server's 20,000.
    rcpt = address()
    data = b"Subject: x\n\n" + b"123456789\n" * 1990
    assert len(data) < 20_000 < len(data.replace(b"\n", b"\r\n"))
    envelope = Envelope(sender=SENDER, recipients=[rcpt])
    mark = postfix.log_offset()
    with make_mailer(postfix.config("small"), retry=NEVER) as mailer:
        with pytest.raises(NotSupportedError, match="21904 bytes"):
            mailer.send(data, envelope=envelope)
    assert rcpt not in postfix.log(mark)
