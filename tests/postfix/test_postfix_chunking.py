"""BDAT (RFC 3030 CHUNKING) against Postfix, which offers it with PIPELINING.

What Postfix stores is compared byte for byte (BDAT data is not dot-stuffed), and
its refusals on a session that sends blind (MAIL, RCPT and the chunk in one
write) are checked to leave the session in step: Postfix reads the chunk and
answers it, and the next message goes through on the same connection.  The
autouse fixture also fails any test here that Postfix finds pipelining improperly.
"""

from __future__ import annotations

import ssl
import time

import pytest

from smtpkit import (
    AuthenticationRequiredError,
    Envelope,
    PoolLimits,
    RecipientsRefusedError,
    RetryPolicy,
    SenderRefusedError,
    SMTPConfig,
    SMTPConnection,
    SMTPTransport,
)

from .mta import TEST_USERS, UNKNOWN_PREFIX, queue_id

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

NEVER = RetryPolicy.never()
ONE = PoolLimits(max_connections=1)
SENDER = "sender@example.com"
DOTS = (
    b"From: a@example.com\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n.\r\n..\r\n...three\r\nlast line\r\n"
)
EIGHT_BIT = (
    "From: a@example.com\r\nSubject: 8bit\r\n\r\nnaïve café 你好\r\n.\r\n".encode()
)


def _envelope(rcpt: str) -> Envelope:
    return Envelope(sender=SENDER, recipients=[rcpt])


@pytest.mark.parametrize("data", [DOTS, EIGHT_BIT], ids=["dot-lines", "8bit"])
def test_bdat_stores_the_bytes_exactly_on_a_new_and_a_proven_session(
    make_mailer, postfix, address, data
):
    first, second = address(), address()
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        results = [mailer.send(data, envelope=_envelope(r)) for r in (first, second)]
    deliveries = postfix.wait_for_deliveries(2, recipients=[first, second])
    for delivery in deliveries:
        assert delivery.original == data.replace(b"\r\n", b"\n")
    summary = postfix.session_summary(queue_id(results[0]))
    assert " mail=2 rcpt=2 bdat=2 quit=1 " in summary
    assert "data=" not in summary


def test_chunking_false_sends_data(make_mailer, postfix, address):
    rcpt = address()
    config = postfix.config("plain", chunking=False)
    with make_mailer(config, retry=NEVER) as mailer:
        result = mailer.send(DOTS, envelope=_envelope(rcpt))
    [delivery] = postfix.wait_for_deliveries(1, recipients=[rcpt])
    assert delivery.original == DOTS.replace(b"\r\n", b"\n")
    assert " mail=1 rcpt=1 data=1 quit=1 " in postfix.session_summary(queue_id(result))


def test_mail_refused_before_starttls_sends_no_chunk(make_mailer, postfix, address):
    # Postfix refuses MAIL, RCPT and BDAT here without reading the chunk: sent
    # blind, the message would be read as commands ("non-SMTP command").
    mark = postfix.log_offset()
    config = postfix.config("submission", tls="none")
    with make_mailer(config, retry=NEVER) as mailer:
        with pytest.raises(AuthenticationRequiredError):
            mailer.send(DOTS, envelope=_envelope(address()))
    log = postfix.wait_for_log("disconnect from", since=mark)
    assert "non-SMTP command" not in log
    assert "bdat=" not in log
    assert " mail=0/1 rcpt=0/1 " in log


def test_blind_mail_refusal_is_read_past_and_the_session_carries_on(
    make_mailer, postfix, address
):
    # smtpd_client_message_rate_limit=2 per second: the third MAIL gets 450
    # while its chunk is already on the way.  Postfix reads the chunk, answers
    # BDAT with 503, and the fourth message goes through on the same session
    # once the window has passed (anvil's window is real time: really sleep).
    time.sleep(1.1)  # a fresh rate window
    rcpts = [address() for _ in range(4)]
    mark = postfix.log_offset()
    config = postfix.config("ratelimit", pool=ONE)
    with make_mailer(config, retry=NEVER) as mailer:
        results = mailer.send_many([(DOTS, _envelope(r)) for r in rcpts[:3]])
        for _ in range(20):  # each refusal here is another blind chunk read past
            try:
                last = mailer.send(DOTS, envelope=_envelope(rcpts[3]))
                break
            except SenderRefusedError:
                time.sleep(0.25)
    assert [r.error for r in results[:2]] == [None, None]
    error = results[2].error
    assert isinstance(error, SenderRefusedError)
    assert error.reply.code == 450
    assert not error.delivery_unknown
    postfix.wait_for_deliveries(3, recipients=[rcpts[0], rcpts[1], rcpts[3]])
    summary = postfix.session_summary(queue_id(last))
    assert summary == postfix.session_summary(queue_id(results[0]))  # one session
    assert " bdat=3/" in summary  # the refused chunks were answered, not obeyed
    assert "unknown=" not in summary
    assert "non-SMTP command" not in postfix.log(mark)


def test_blind_recipient_refusals_are_read_past(make_mailer, postfix, address):
    good, gone = address(), address(UNKNOWN_PREFIX)
    with make_mailer(postfix.config("plain", pool=ONE), retry=NEVER) as mailer:
        mailer.send(DOTS, envelope=_envelope(good))  # proves the session
        with pytest.raises(RecipientsRefusedError) as info:
            mailer.send(DOTS, envelope=_envelope(gone))
        last = mailer.send(DOTS, envelope=_envelope(good))
    assert info.value.refused[gone].code == 550
    postfix.wait_for_deliveries(2, recipients=[good])
    summary = postfix.session_summary(queue_id(last))
    assert " mail=3 rcpt=2/3 bdat=2/3 rset=1 quit=1 " in summary


# -- TLS session resumption ------------------------------------------------------


class _ResumptionProbe(SMTPTransport):
    """Notes, for each new connection, whether its TLS session was resumed."""

    def __init__(self, config: SMTPConfig) -> None:
        super().__init__(config)
        self.reused: list[bool] = []

    def handshake(self, conn: SMTPConnection) -> None:
        super().handshake(conn)
        assert isinstance(conn.sock, ssl.SSLSocket)
        self.reused.append(conn.sock.session_reused)


@pytest.mark.parametrize("endpoint", ["submission", "smtps"])
def test_pooled_connections_resume_postfix_tls_sessions(
    make_mailer, postfix, address, endpoint
):
    user = "alice@example.com"
    config = postfix.config(
        endpoint,
        username=user,
        password=TEST_USERS[user],
        pool=PoolLimits(max_connections=1, max_messages_per_connection=1),
    )
    transport = _ResumptionProbe(config)
    rcpts = [address() for _ in range(3)]
    with make_mailer(transport=transport, retry=NEVER) as mailer:
        for rcpt in rcpts:
            mailer.send(DOTS, envelope=_envelope(rcpt))
    postfix.wait_for_deliveries(3, recipients=rcpts)
    assert transport.reused == [False, True, True]
