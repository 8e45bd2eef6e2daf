"""Setting up a session costs no more round trips than the RFCs require, and a
pool's later TLS connections resume the first one's TLS session.

Against aiosmtpd with trustme certificates.  Round trips are counted from the
client's DEBUG log (one ``<<<`` line per reply read: setup runs in lockstep, so
each is one round trip) and the commands from the server's wiretap.
"""

from __future__ import annotations

import logging

import pytest

from smtpkit import (
    Message,
    PoolLimits,
    RetryPolicy,
    SMTPConnection,
    SMTPTransport,
)
from smtpkit.auth import LoginAuth, PlainAuth

from .scripted import wiretap
from .smtpd import check_password

pytestmark = pytest.mark.integration

NEVER = RetryPolicy.never()
ONE_EACH = PoolLimits(max_messages_per_connection=1, max_connections=1)


def message(n: int = 0) -> Message:
    return Message(
        sender="a@example.com", to="b@example.com", subject=f"m{n}", text="x"
    )


class ResumptionProbe(SMTPTransport):
    """Notes, for each new connection, whether its TLS session was resumed."""

    reused: list[bool]

    def handshake(self, conn: SMTPConnection) -> None:
        super().handshake(conn)
        sock = conn.sock
        assert sock is not None
        self.reused.append(sock.session_reused)  # type: ignore[union-attr]


def probe(config) -> ResumptionProbe:
    transport = ResumptionProbe(config)
    transport.reused = []
    return transport


@pytest.fixture
def tls_server(request, start_server, server_tls_context):
    if request.param == "starttls":
        return "starttls", start_server(tls_context=server_tls_context)
    return "implicit", start_server(ssl_context=server_tls_context)


@pytest.mark.parametrize("tls_server", ["starttls", "implicit"], indirect=True)
def test_later_pooled_connections_resume_the_tls_session(
    make_mailer, tls_server, config_for, ca_file
):
    mode, server = tls_server
    config = config_for(server, tls=mode, ca_file=ca_file, pool=ONE_EACH)
    transport = probe(config)
    with make_mailer(transport=transport, retry=NEVER) as mailer:
        for n in range(3):
            assert mailer.send(message(n)).ok
    assert transport.reused == [False, True, True]
    assert len(server.messages) == 3


@pytest.mark.parametrize("tls_server", ["starttls", "implicit"], indirect=True)
def test_a_session_is_never_offered_by_another_transport(
    make_mailer, tls_server, config_for, ca_file
):
    mode, server = tls_server
    config = config_for(server, tls=mode, ca_file=ca_file, pool=ONE_EACH)
    first, second = probe(config), probe(config)
    for transport in (first, second):
        with make_mailer(transport=transport, retry=NEVER) as mailer:
            mailer.send(message())
    assert first.reused == second.reused == [False]


def reads_before_mail(caplog) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "smtpkit"]
    first_mail = next(i for i, line in enumerate(lines) if line.startswith(">>> MAIL"))
    return [line for line in lines[:first_mail] if line.startswith("<<<")]


@pytest.fixture
def auth_tls_server(start_server, server_tls_context):
    return start_server(
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
        auth_required=True,
    )


def test_starttls_and_plain_login_take_four_round_trips(
    make_mailer, auth_tls_server, config_for, ca_file, caplog
):
    # EHLO, STARTTLS, EHLO (RFC 3207 §4.2 requires it) and AUTH PLAIN with its
    # initial response (RFC 4954 §4): no 334 round trip, no extra EHLO.
    log = wiretap(auth_tls_server)
    config = config_for(
        auth_tls_server,
        tls="starttls",
        ca_file=ca_file,
        auth=PlainAuth("alice", "wonderland"),
    )
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    with make_mailer(config, retry=NEVER) as mailer:
        assert mailer.send(message()).ok
    assert log[:5] == ["EHLO", "STARTTLS", "EHLO", "AUTH PLAIN", "MAIL"]
    replies = reads_before_mail(caplog)
    assert [line.split()[1] for line in replies] == ["220", "250", "220", "250", "235"]


def test_username_and_password_over_starttls_log_in_with_one_round_trip(
    make_mailer, auth_tls_server, config_for, ca_file, caplog
):
    # CRAM-MD5 is offered too; over TLS it would only cost a 334 round trip.
    config = config_for(
        auth_tls_server,
        tls="starttls",
        ca_file=ca_file,
        username="alice",
        password="wonderland",
    )
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    with make_mailer(config, retry=NEVER) as mailer:
        assert mailer.send(message()).ok
    codes = [line.split()[1] for line in reads_before_mail(caplog)]
    assert codes == ["220", "250", "220", "250", "235"]


def test_login_answers_its_two_challenges(
    make_mailer, auth_tls_server, config_for, ca_file, caplog
):
    # LOGIN has no initial response smtpkit can rely on: two 334s, as before.
    config = config_for(
        auth_tls_server,
        tls="starttls",
        ca_file=ca_file,
        auth=LoginAuth("alice", "wonderland"),
    )
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    with make_mailer(config, retry=NEVER) as mailer:
        assert mailer.send(message()).ok
    codes = [line.split()[1] for line in reads_before_mail(caplog)]
    assert codes == ["220", "250", "220", "250", "334", "334", "235"]


def test_plain_session_takes_one_round_trip_after_the_greeting(
    make_mailer, start_server, config_for, caplog
):
    server = start_server()
    log = wiretap(server)
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    with make_mailer(config_for(server), retry=NEVER) as mailer:
        assert mailer.send(message()).ok
    assert log[:2] == ["EHLO", "MAIL"]
    assert [line.split()[1] for line in reads_before_mail(caplog)] == ["220", "250"]
