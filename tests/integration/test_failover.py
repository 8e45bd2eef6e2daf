"""FailoverTransport and RoundRobinTransport against real servers on loopback.

Every test counts what each server really received (by Message-ID): nothing
lost, nothing sent twice, and each result names the server that took it.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading

import pytest

from smtpkit import (
    ConfigurationError,
    ConnectError,
    FailoverConfig,
    FailoverTransport,
    Message,
    PoolLimits,
    ProviderAdaptation,
    QuotaExceededError,
    RecipientsRefusedError,
    RetryPolicy,
    RoundRobinTransport,
    SMTPConfig,
    TransportError,
)
from smtpkit._outcomes import acquire_timeout_of, adaptation_of
from smtpkit.testing import no_wait

from .faults import FaultHandler, fault_servers
from .rawserver import RawServer
from .smtpd import RecordingHandler, Server, free_port

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)\r$", re.MULTILINE | re.IGNORECASE)


def message(i: int, to: str | list[str] = "rcpt@example.com") -> Message:
    return Message(
        sender="sender@example.com",
        to=to,
        subject=f"m{i}",
        text="hi",
        message_id=f"<m{i}@failover>",
    )


def received_ids(server) -> list[str]:
    ids = []
    for received in server.messages:
        match = MESSAGE_ID.search(received.data)
        assert match is not None
        ids.append(match.group(1).decode())
    return ids


def name(server) -> str:
    return f"{server.host}:{server.port}"


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    return free_port()


def plain_url(port: int) -> str:
    """The URL of a server on 127.0.0.1:*port* without TLS."""
    return f"smtp://127.0.0.1:{port}?tls=none"


def dead_config(port: int | None = None) -> SMTPConfig:
    return SMTPConfig(
        host="127.0.0.1", port=port or dead_port(), tls="none", timeout=5.0
    )


def test_dead_port_first_live_second(make_mailer, start_server, config_for):
    live = start_server()
    dead = dead_config()
    transport = FailoverTransport([dead, config_for(live)])
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        first = mailer.send(message(1))
        second = mailer.send(message(2))
    assert first.ok
    assert second.ok
    assert first.server == second.server == name(live)
    assert received_ids(live) == ["<m1@failover>", "<m2@failover>"]
    dead_stats, live_stats = transport.stats()
    # The dead server was tried once, then set aside: the second send went
    # straight to the live one.
    assert (dead_stats.failures, dead_stats.moved, dead_stats.delivered) == (1, 1, 0)
    assert not dead_stats.available
    assert dead_stats.cooldown_left > 0
    assert (live_stats.delivered, live_stats.failures, live_stats.available) == (
        2,
        0,
        True,
    )


def test_url_form(make_mailer, start_server):
    live = start_server()
    url = f"failover({plain_url(dead_port())} {plain_url(live.port)})"
    transport = FailoverTransport.from_url(url)
    assert type(transport) is FailoverTransport
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(message(1))
    assert result.server == name(live)
    assert received_ids(live) == ["<m1@failover>"]


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "EOD"])
def test_421_moves_the_message_on(make_mailer, start_server, config_for, command):
    primary = start_server()
    backup = start_server()
    primary.handler.queue(command, "421 4.3.2 shutting down")
    transport = FailoverTransport([config_for(primary), config_for(backup)])
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(message(1))
    assert result.ok
    assert result.server == name(backup)
    assert result.attempts == 1  # moving on is part of one attempt
    assert received_ids(primary) == []
    assert received_ids(backup) == ["<m1@failover>"]
    assert transport.stats()[0].moved == 1


def test_5xx_never_moves(make_mailer, start_server, config_for):
    primary = start_server()
    backup = start_server()
    primary.handler.rcpt_replies["rcpt@example.com"] = "550 5.1.1 no such user"
    transport = FailoverTransport([config_for(primary), config_for(backup)])
    with (
        make_mailer(transport=transport, retry=no_wait()) as mailer,
        pytest.raises(RecipientsRefusedError) as caught,
    ):
        mailer.send(message(1))
    assert caught.value.server == name(primary)
    assert backup.handler.commands == []  # never even connected to
    stats = transport.stats()
    assert (stats[0].failed, stats[0].failures, stats[0].available) == (1, 0, True)


def test_other_4xx_is_retried_by_the_mailer_not_moved(
    make_mailer, start_server, config_for
):
    primary = start_server()
    backup = start_server()
    primary.handler.queue("MAIL", "451 4.3.0 try again")
    transport = FailoverTransport([config_for(primary), config_for(backup)])
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(message(1))
    assert (result.server, result.attempts) == (name(primary), 2)
    assert received_ids(primary) == ["<m1@failover>"]
    assert backup.handler.commands == []


def test_never_moved_after_the_data_was_sent(make_mailer, config_for):
    with fault_servers() as start:
        primary = start(handler=FaultHandler(drop_next=1))  # queued, then dropped
        backup = start()
        transport = FailoverTransport([config_for(primary), config_for(backup)])
        with (
            make_mailer(transport=transport, retry=no_wait()) as mailer,
            pytest.raises(TransportError) as caught,
        ):
            mailer.send(message(1))
        assert caught.value.delivery_unknown
        assert caught.value.server == name(primary)
        assert received_ids(primary) == ["<m1@failover>"]
        assert received_ids(backup) == []


class StallingHandler(RecordingHandler):
    """Holds the first MAIL reply for *stall* seconds."""

    def __init__(self, stall: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stall = stall

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if self.stall:
            self.stall, stall = 0.0, self.stall
            await asyncio.sleep(stall)
        return await super().handle_MAIL(
            server, session, envelope, address, mail_options
        )


def test_a_server_stalling_before_the_data_moves_on(
    make_mailer, start_server, config_for
):
    primary = start_server(handler=StallingHandler(1.5))
    backup = start_server()
    transport = FailoverTransport(
        [config_for(primary, timeout=0.4), config_for(backup)]
    )
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(message(1))
    assert (result.server, result.attempts) == (name(backup), 1)
    assert received_ids(backup) == ["<m1@failover>"]
    assert received_ids(primary) == []  # its session ended before any DATA


def test_a_server_stalling_after_the_data_keeps_the_message(make_mailer, config_for):
    with fault_servers() as start:
        primary = start(handler=FaultHandler(stall_next=1, stall_for=1.5))
        backup = start()
        transport = FailoverTransport(
            [config_for(primary, timeout=0.4), config_for(backup)]
        )
        with make_mailer(transport=transport, retry=no_wait()) as mailer:
            with pytest.raises(TransportError) as caught:
                mailer.send(message(1))
            assert caught.value.delivery_unknown
            assert caught.value.server == name(primary)
            assert received_ids(backup) == []
            # Not moved, but a server that takes the data and never answers is
            # set aside: the next messages go to the backup.
            stats = transport.stats()[0]
            assert (stats.failures, stats.failed, stats.available) == (1, 1, False)
            later = mailer.send_many([message(i) for i in range(2, 6)])
        assert [(r.ok, r.server) for r in later] == [(True, name(backup))] * 4
        assert set(received_ids(primary)) <= {"<m1@failover>"}
        assert sorted(received_ids(backup)) == [f"<m{i}@failover>" for i in range(2, 6)]


def test_every_server_down(make_mailer):
    first, second = dead_port(), dead_port()
    transport = FailoverTransport([dead_config(first), dead_config(second)])
    with (
        make_mailer(transport=transport, retry=no_wait()) as mailer,
        pytest.raises(ConnectError) as caught,
    ):
        mailer.send(message(1))
    # The last server's error, after every attempt of the retry policy.
    assert caught.value.server == f"127.0.0.1:{second}"
    assert caught.value.attempts == 3
    assert [s.failures for s in transport.stats()] == [3, 3]


def test_cooldown_ends(make_mailer, start_server, config_for):
    primary = start_server()
    backup = start_server()
    now = [0.0]
    primary.handler.queue("MAIL", "421 4.3.2 busy")
    transport = FailoverTransport(
        [config_for(primary), config_for(backup)], cooldown=30.0, clock=lambda: now[0]
    )
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        assert mailer.send(message(1)).server == name(backup)
        now[0] = 29.0
        assert mailer.send(message(2)).server == name(backup)
        now[0] = 30.0
        assert mailer.send(message(3)).server == name(primary)
    assert received_ids(primary) == ["<m3@failover>"]
    assert received_ids(backup) == ["<m1@failover>", "<m2@failover>"]


class DyingHandler(RecordingHandler):
    """Takes *survive* messages, then hangs at the next MAIL until it is stopped."""

    def __init__(self, survive: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.survive = survive
        self.dying = threading.Event()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if len(self.messages) >= self.survive:
            self.dying.set()
            await asyncio.sleep(30)  # cancelled when the server stops
        return await super().handle_MAIL(
            server, session, envelope, address, mail_options
        )


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_server_dies_mid_send_many(make_mailer, start_server, config_for, pipelining):
    primary = Server(DyingHandler(30, pipelining=pipelining))  # stopped here
    backup = start_server(pipelining=pipelining)
    one = PoolLimits(max_connections=1)  # one session on the wire when it dies
    transport = FailoverTransport(
        [config_for(primary, pool=one), config_for(backup, pool=one)]
    )

    def kill() -> None:
        primary.handler.dying.wait(20)
        primary.stop()  # the port closes: the server is gone

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with make_mailer(transport=transport, retry=no_wait()) as mailer:
            results = mailer.send_many([message(i) for i in range(100)])
    finally:
        primary.handler.dying.set()
        killer.join()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    on_primary, on_backup = received_ids(primary), received_ids(backup)
    counted = collections.Counter(on_primary + on_backup)
    assert sorted(counted) == sorted(f"<m{i}@failover>" for i in range(100))
    assert set(counted.values()) == {1}  # nothing duplicated
    assert len(on_primary) == 30
    for result in results:
        took = on_primary if result.server == name(primary) else on_backup
        assert result.server in {name(primary), name(backup)}
        assert result.message_id in took


def test_round_robin_shares_the_mail(make_mailer, start_server, config_for):
    servers = [start_server(pipelining=True) for _ in range(2)]
    transport = RoundRobinTransport([config_for(s) for s in servers])
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        singles = [mailer.send(message(i)) for i in range(4)]
        many = mailer.send_many([message(i) for i in range(4, 200)])
    assert [r.server for r in singles] == [name(s) for s in servers] * 2
    assert all(r.ok for r in many)
    everything = received_ids(servers[0]) + received_ids(servers[1])
    assert sorted(everything) == sorted(f"<m{i}@failover>" for i in range(200))
    assert all(received_ids(s) for s in servers)
    for result in [*singles, *many]:
        owner = next(s for s in servers if name(s) == result.server)
        assert result.message_id in received_ids(owner)
    assert sum(s.delivered for s in transport.stats()) == 200


def test_round_robin_skips_a_dead_server(make_mailer, start_server, config_for):
    live = start_server()
    url = f"roundrobin({plain_url(dead_port())} {plain_url(live.port)})"
    transport = FailoverTransport.from_url(url)
    assert type(transport) is RoundRobinTransport
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        servers = [mailer.send(message(i)).server for i in range(4)]
    assert servers == [name(live)] * 4
    assert len(received_ids(live)) == 4
    assert transport.stats()[0].failures == 1  # then set aside


def test_greeting_421_moves_on(make_mailer, config_for):
    def refuse(conn) -> None:
        conn.send(b"421 4.3.2 not now\r\n")

    with fault_servers() as start, RawServer(refuse) as refusing:
        backup = start()
        transport = FailoverTransport([config_for(refusing), config_for(backup)])
        with make_mailer(transport=transport, retry=no_wait()) as mailer:
            result = mailer.send(message(1))
        assert result.server == name(backup)
        assert received_ids(backup) == ["<m1@failover>"]
        assert transport.stats()[0].failures == 1
        assert refusing.errors == []


class SlowDataHandler(RecordingHandler):
    """Takes each message's data slowly, so a batch holds its connection a while."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("kind", ["roundrobin", "failover"])
def test_a_dead_server_does_not_overload_the_survivor(
    make_mailer, start_server, config_for, kind
):
    # Twelve-message batches hold a connection 0.6 s, longer than acquire_timeout:
    # the workers meant for the dead server wait on the survivor's pool, time
    # out there, and wait again rather than fail with PoolTimeoutError.
    live = start_server(handler=SlowDataHandler())
    small = PoolLimits(max_connections=2, acquire_timeout=0.5)
    if kind == "roundrobin":
        dead = dead_config().model_copy(update={"pool": small})
        transport: FailoverTransport = RoundRobinTransport(
            [dead, config_for(live, pool=small)]
        )
    else:  # the dead primary has more connections than the backup
        big = PoolLimits(max_connections=4, acquire_timeout=0.5)
        dead = dead_config().model_copy(update={"pool": big})
        transport = FailoverTransport([dead, config_for(live, pool=small)])
    assert transport.max_concurrency == 4
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        results = mailer.send_many([message(i) for i in range(48)])
    assert [r.error for r in results if not r.ok] == []
    assert {r.server for r in results} == {name(live)}
    assert sorted(received_ids(live)) == sorted(f"<m{i}@failover>" for i in range(48))
    dead_stats, live_stats = transport.stats()
    assert (live_stats.delivered, live_stats.failures, live_stats.moved) == (48, 0, 0)
    assert dead_stats.failures >= 1


def _answering(replies: dict[bytes, bytes], ehlo: bytes = b"250 relay1\r\n"):
    """A raw server script: a 220 greeting, then *replies* by command."""

    def script(conn) -> None:
        conn.send(b"220 relay1 ESMTP\r\n")
        while not conn.stopping:
            line = conn.readline()
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"QUIT":
                conn.send(b"221 bye\r\n")
                return
            conn.send(ehlo if verb == b"EHLO" else replies.get(verb, b"500 what\r\n"))

    return script


def _greeting(banner: bytes):
    def script(conn) -> None:
        conn.send(banner)
        conn.readline()

    return script


AUTH = {"username": "u", "password": "p", "allow_insecure_auth": True}
SET_UP_FAILURES = {
    "greeting 554": (_greeting(b"554 5.3.2 in maintenance\r\n"), {}),
    "not SMTP": (_greeting(b"HTTP/1.1 400 Bad Request\r\n\r\n"), {}),
    "EHLO and HELO refused": (
        _answering({b"HELO": b"550 5.7.1 go away\r\n"}, ehlo=b"550 5.7.1 no\r\n"),
        {},
    ),
    "no STARTTLS": (_answering({}), {"tls": "starttls"}),
    "AUTH 454": (
        _answering(
            {b"AUTH": b"454 4.7.0 try later\r\n"},
            ehlo=b"250-relay1\r\n250 AUTH PLAIN\r\n",
        ),
        AUTH,
    ),
    "AUTH 535": (
        _answering(
            {b"AUTH": b"535 5.7.8 bad credentials\r\n"},
            ehlo=b"250-relay1\r\n250 AUTH PLAIN\r\n",
        ),
        AUTH,
    ),
    "EHLO answered twice": (
        _answering({}, ehlo=b"250 relay1\r\n250 relay1\r\n"),
        {},
    ),
}


@pytest.mark.parametrize("case", sorted(SET_UP_FAILURES))
def test_a_failure_before_mail_from_moves_on(
    make_mailer, start_server, config_for, case
):
    # Decided by phase, not by code: a 5xx while setting up the session is the
    # server's own (no message was offered yet), so the message moves on.
    script, settings = SET_UP_FAILURES[case]
    backup = start_server()
    with RawServer(script) as broken:
        transport = FailoverTransport(
            [config_for(broken, **settings), config_for(backup)]
        )
        with make_mailer(transport=transport, retry=no_wait()) as mailer:
            result = mailer.send(message(1))
            second = mailer.send(message(2))
        assert (result.server, result.attempts) == (name(backup), 1)
        assert second.server == name(backup)
        assert received_ids(backup) == ["<m1@failover>", "<m2@failover>"]
        stats = transport.stats()[0]
        assert (stats.failures, stats.moved, stats.available) == (1, 1, False)


def test_result_names_the_server_that_accepted_not_the_last_one_asked(
    make_mailer, start_server, config_for
):
    first, second = start_server(), start_server()
    first.handler.rcpt_replies["y@example.com"] = "450 4.2.1 try later"
    second.handler.rcpt_replies["y@example.com"] = "550 5.1.1 no such user"
    transport = RoundRobinTransport([config_for(first), config_for(second)])
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(message(1, to=["x@example.com", "y@example.com"]))
    assert result.accepted == ("x@example.com",)
    assert list(result.refused) == ["y@example.com"]
    assert result.attempts == 2
    assert received_ids(first) == ["<m1@failover>"]
    assert received_ids(second) == []  # it only refused y
    assert result.server == name(first)


def test_failover_config_from_url_strings(make_mailer, start_server):
    live = start_server()
    config = FailoverConfig(servers=[plain_url(dead_port()), plain_url(live.port)])
    transport = FailoverTransport.from_config(config)
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        assert mailer.send(message(1)).server == name(live)
    assert received_ids(live) == ["<m1@failover>"]


@pytest.mark.parametrize("stop_on_quota", [False, True])
def test_the_mailer_reads_the_first_servers_adapt_and_acquire_timeout(
    make_mailer, start_server, config_for, stop_on_quota
):
    live = start_server()
    live.handler.queue("MAIL", "451 MI:SFQ http://mail.163.com/help/help_spam_16.htm")
    adapt = ProviderAdaptation(stop_on_quota=stop_on_quota)
    pool = PoolLimits(acquire_timeout=2.5)
    transport = RoundRobinTransport(
        [config_for(live, adapt=adapt, pool=pool), config_for(start_server())]
    )
    assert acquire_timeout_of(transport) == 2.5
    assert adaptation_of(FailoverTransport([transport])) == adapt
    with make_mailer(transport=transport, retry=RetryPolicy(attempts=1)) as mailer:
        messages = [message(i) for i in range(5)]
        if stop_on_quota:
            with pytest.raises(QuotaExceededError):
                mailer.send_many(messages, concurrency=1)
        else:
            results = mailer.send_many(messages, concurrency=1)
            assert sum(r.ok for r in results) == 4


def test_servers_from_a_generator(make_mailer, start_server, config_for):
    servers = [start_server(), start_server()]
    transport = RoundRobinTransport(config_for(s) for s in servers)
    assert len(transport.transports) == 2
    with make_mailer(transport=transport, retry=no_wait()) as mailer:
        results = [mailer.send(message(i)) for i in range(2)]
    assert [r.server for r in results] == [name(s) for s in servers]
    assert [received_ids(s) for s in servers] == [["<m0@failover>"], ["<m1@failover>"]]
    with pytest.raises(ConfigurationError, match="at least one server"):
        FailoverTransport(config_for(s) for s in [])


def test_an_error_names_the_server_that_refused_last(
    make_mailer, start_server, config_for
):
    first, second = start_server(), start_server()
    first.handler.rcpt_replies["rcpt@example.com"] = "450 4.2.1 try later"
    second.handler.rcpt_replies["rcpt@example.com"] = "451 4.3.0 later"
    transport = RoundRobinTransport([config_for(first), config_for(second)])
    with (
        make_mailer(transport=transport, retry=no_wait()) as mailer,
        pytest.raises(RecipientsRefusedError) as caught,
    ):
        mailer.send(message(1))
    assert caught.value.attempts == 3
    assert caught.value.server == name(first)  # attempts 1 and 3 went to the first
    assert [e.server for e in caught.value.history] == [name(first), name(second)]
    assert received_ids(first) == received_ids(second) == []
