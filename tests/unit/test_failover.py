"""FailoverTransport and RoundRobinTransport without a network: the rules of moving on.

The servers here are in-memory transports with scripted outcomes; the real
servers are in tests/integration/test_failover.py.
"""

from __future__ import annotations

import collections
import json
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import (
    AuthenticationError,
    ClosedError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    DataRefusedError,
    Envelope,
    FailoverConfig,
    FailoverTransport,
    GreetingRefusedError,
    HeloRefusedError,
    Mailer,
    Message,
    NetworkError,
    NotSupportedError,
    PoolTimeoutError,
    ProtocolError,
    ReadTimeoutError,
    RecipientResult,
    RecipientsRefusedError,
    RoundRobinTransport,
    SenderRefusedError,
    SendResult,
    ServerDisconnectedError,
    SMTPConfig,
    SMTPKitError,
    SMTPReply,
    SMTPTransport,
    TLSError,
    Transport,
    TransportError,
)
from smtpkit._transports._failover_parts import moves_on, sets_aside
from smtpkit._transports.base import OnResult
from smtpkit.testing import FakeTransport, no_wait

ENV = Envelope(sender="me@example.com", recipients=["a@example.com"])


def items(count: int) -> list[tuple[Envelope, bytes]]:
    return [(ENV, f"Subject: {i}\r\n\r\nhi\r\n".encode()) for i in range(count)]


def index_of(data: bytes) -> int:
    return int(data.split(b"\r\n", 1)[0].removeprefix(b"Subject: "))


def reply(text: str) -> SMTPReply:
    return SMTPReply.from_string(text)


def lost_after_data() -> TransportError:
    return ServerDisconnectedError("lost", command="end of data", delivery_unknown=True)


KINDS = {
    "ok": lambda: None,
    "connect": lambda: ConnectError("refused"),
    "421": lambda: SenderRefusedError(reply("421 4.3.2 bye"), sender="me@example.com"),
    "550": lambda: RecipientsRefusedError({"a@example.com": reply("550 5.1.1 no")}),
    "451": lambda: DataRefusedError(reply("451 4.3.0 later"), command="end of data"),
    "unknown": lost_after_data,
    "busy": lambda: PoolTimeoutError("no free connection"),
}
MOVES = {"connect", "421", "busy"}


class Scripted(Transport):
    """A server whose outcome for each message (by its index) is scripted."""

    def __init__(self, script: dict[int, str], *, report: bool = True) -> None:
        self.script = script
        self.report = report
        self.seen: list[int] = []

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        index = index_of(data)
        self.seen.append(index)
        error = KINDS[self.script.get(index, "ok")]()
        if error is not None:
            raise error
        return SendResult.delivered(envelope)

    def send_batch(
        self,
        items: Sequence[tuple[Envelope, bytes]],
        *,
        on_result: OnResult | None = None,
    ) -> list[SendResult | SMTPKitError]:
        return super().send_batch(items, on_result=on_result if self.report else None)


@pytest.mark.parametrize(
    ("error", "moves", "aside"),
    [
        (ConnectError("refused"), True, True),
        (ConnectTimeoutError("slow"), True, True),
        (ServerDisconnectedError("lost", command="MAIL"), True, True),
        (ReadTimeoutError("slow", command="RCPT"), True, True),
        (TLSError("bad certificate"), True, True),
        (GreetingRefusedError(reply("421 4.3.2 busy"), command="connect"), True, True),
        (GreetingRefusedError(reply("450 4.3.2 busy"), command="connect"), True, True),
        # Set-up is the server's own, whatever the code: decided by phase.
        (
            GreetingRefusedError(reply("554 5.7.1 go away"), command="connect"),
            True,
            True,
        ),
        (GreetingRefusedError(reply("554 5.7.1 go away")), True, True),
        (HeloRefusedError(reply("550 5.7.1 no"), command="HELO"), True, True),
        (HeloRefusedError(reply("550 5.7.1 no")), True, True),
        (ProtocolError("not SMTP", command="connect"), True, True),
        (NotSupportedError("no STARTTLS", command="STARTTLS"), True, True),
        (AuthenticationError(reply("535 5.7.8 no"), command="AUTH"), True, True),
        (AuthenticationError(reply("454 4.7.0 later"), command="AUTH"), True, True),
        (
            SenderRefusedError(reply("421 4.3.2 bye"), sender="me@example.com"),
            True,
            True,
        ),
        (
            SenderRefusedError(reply("451 4.3.0 later"), sender="me@example.com"),
            False,
            False,
        ),
        (
            SenderRefusedError(reply("550 5.7.1 no"), sender="me@example.com"),
            False,
            False,
        ),
        (
            RecipientsRefusedError({"a@example.com": reply("550 5.1.1 no")}),
            False,
            False,
        ),
        (NotSupportedError("no SMTPUTF8", command="MAIL"), False, False),
        # After the data: never moved, but the server is set aside all the same.
        (lost_after_data(), False, True),
        (
            ReadTimeoutError("slow", command="end of data", delivery_unknown=True),
            False,
            True,
        ),
        (DataRefusedError(reply("421 4.3.2 bye"), command="end of data"), True, True),
        # A server breaking the protocol before the data: moved (nothing sent).
        (ProtocolError("stray bytes", command="MAIL"), True, True),
        (ProtocolError("garbled", command="RCPT"), True, True),
        (ProtocolError("garbled"), True, True),
        (ProtocolError("garbled", command="end of data"), False, True),
        (ProtocolError("garbled", command="BDAT"), False, True),
        # A full pool moves the message but does not set a busy server aside.
        (PoolTimeoutError("busy"), True, False),
        (ClosedError("closed"), False, False),
        (SendResult.delivered(ENV), False, False),
    ],
)
def test_what_moves_on_and_what_sets_a_server_aside(error, moves, aside):
    assert moves_on(error) is moves
    assert sets_aside(error) is aside


@settings(max_examples=150, deadline=None)
@given(
    scripts=st.lists(
        st.lists(st.sampled_from(sorted(KINDS)), min_size=6, max_size=6),
        min_size=1,
        max_size=3,
    ),
    report=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_every_message_reported_once_with_its_first_final_outcome(scripts, report):
    servers = [
        Scripted(dict(enumerate(script)), report=flag)
        for script, flag in zip(scripts, report, strict=False)
    ]
    transport = FailoverTransport(servers, names=[f"s{i}" for i in range(len(servers))])
    reported: list[tuple[int, object]] = []
    outcomes = transport.send_batch(
        items(6), on_result=lambda i, o: reported.append((i, o))
    )
    assert sorted(i for i, _ in reported) == list(range(6))
    assert dict(reported) == dict(enumerate(outcomes))
    for index, outcome in enumerate(outcomes):
        kinds = [script[index] for script in scripts]
        # The first server whose outcome is final decides; when every server
        # failed in a way that moves on, the last one's error stands.
        final = next(
            (n for n, kind in enumerate(kinds) if kind not in MOVES), len(kinds) - 1
        )
        name = outcome.server
        assert name == f"s{final}"
        if kinds[final] == "ok":
            assert isinstance(outcome, SendResult)
        else:
            assert type(outcome) is type(KINDS[kinds[final]]())
        # A server saw the message only if every server before it moved it on.
        for n, server in enumerate(servers):
            assert (index in server.seen) == (n <= final)
    stats = transport.stats()
    assert sum(s.delivered + s.failed for s in stats) == 6
    # Each message moved once per server before the one whose outcome stands.
    finals = [
        next((n for n, kind in enumerate(k) if kind not in MOVES), len(k) - 1)
        for k in zip(*scripts, strict=True)
    ]
    assert sum(s.moved for s in stats) == sum(finals)
    # A busy server is not set aside; a failing one is.
    for n, script in enumerate(scripts):
        fails = any(
            kind in {"connect", "421", "unknown"}
            for kind, final in zip(script, finals, strict=True)
            if n <= final
        )
        assert stats[n].failures == int(fails)


def test_results_and_errors_name_their_server():
    primary = FakeTransport.scripted(ConnectError("refused"))
    backup = FakeTransport()
    transport = FailoverTransport([primary, backup])
    assert repr(transport) == "<FailoverTransport FakeTransport FakeTransport#2>"
    assert transport.transports == (primary, backup)
    with Mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(Message(sender="me@example.com", to="a@example.com"))
        results = mailer.send_many(
            [Message(sender="me@example.com", to="a@example.com")] * 3
        )
    assert result.server == "FakeTransport#2"
    assert [r.server for r in results] == ["FakeTransport#2"] * 3
    assert len(backup.outbox) == 4


def test_partial_delivery_after_a_retry_names_the_server():
    refusing = SendResult(
        envelope=Envelope(sender="me@example.com", recipients=["a@x.org", "b@x.org"]),
        recipients={
            "a@x.org": RecipientResult("a@x.org", reply("250 ok")),
            "b@x.org": RecipientResult("b@x.org", reply("451 4.3.0 later")),
        },
        reply=reply("250 queued"),
    )
    fake = FakeTransport.scripted(refusing, reply("550 5.1.1 no"))
    transport = FailoverTransport([fake], names=["only"])
    with Mailer(transport=transport, retry=no_wait()) as mailer:
        result = mailer.send(
            Message(sender="me@example.com", to=["a@x.org", "b@x.org"])
        )
    assert result.server == "only"
    assert result.accepted == ("a@x.org",)


def test_a_nested_server_name_stays():
    inner = FailoverTransport([FakeTransport()], names=["inner"])
    outer = FailoverTransport([inner], names=["outer"])
    [outcome] = outer.send_batch(items(1))
    assert outcome.server == "inner"


def test_every_server_failing_gives_the_last_error():
    first = FakeTransport.scripted(ConnectError("one"))
    second = FakeTransport.scripted(ConnectError("two"))
    transport = FailoverTransport([first, second], names=["a", "b"])
    with pytest.raises(ConnectError, match="two") as caught:
        transport.send(*items(1)[0])
    assert caught.value.server == "b"
    assert [(s.failures, s.moved, s.failed) for s in transport.stats()] == [
        (1, 1, 0),
        (1, 0, 1),
    ]
    restored = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
    assert restored.server == "b"


def test_cooldown_order_and_stats():
    now = [100.0]
    primary = FakeTransport.scripted(ConnectError("down"))
    backup = FakeTransport()
    transport = FailoverTransport(
        [primary, backup], names=["p", "b"], cooldown=10.0, clock=lambda: now[0]
    )
    assert transport.max_concurrency == 4
    transport.send(*items(1)[0])
    stats = transport.stats()
    assert stats[0].available is False
    assert stats[0].cooldown_left == 10.0
    assert (stats[1].delivered, stats[1].available, stats[1].cooldown_left) == (
        1,
        True,
        0.0,
    )
    transport.send(*items(1)[0])
    assert len(primary.attempts) == 1  # set aside: not tried
    now[0] = 110.0
    transport.send(*items(1)[0])
    assert len(primary.attempts) == 2
    assert [s.delivered for s in transport.stats()] == [1, 2]


def test_max_concurrency_follows_the_preferred_server():
    primary = SMTPTransport(
        SMTPConfig(host="a.example", port=25, tls="none", pool={"max_connections": 2})
    )
    backup = FakeTransport()
    transport = FailoverTransport([primary, backup])
    assert transport.max_concurrency == 2
    robin = RoundRobinTransport([primary, backup])
    assert robin.max_concurrency == 6
    transport.close()


def test_round_robin_rotates():
    servers = [FakeTransport() for _ in range(3)]
    transport = RoundRobinTransport(servers, names=["a", "b", "c"])
    names = [transport.send(*items(1)[0]).server for _ in range(6)]
    assert names == ["a", "b", "c", "a", "b", "c"]


def test_contract_breaches_do_not_move_on():
    class Raising(Transport):
        def send(self, envelope: Envelope, data: bytes) -> SendResult:
            raise NotImplementedError

        def send_batch(self, items, *, on_result=None):
            raise RuntimeError("broken")

    class Short(Transport):
        def send(self, envelope: Envelope, data: bytes) -> SendResult:
            raise NotImplementedError

        def send_batch(self, items, *, on_result=None):
            return ["not an outcome"] * len(items)

    class Wrong(Short):
        def send_batch(self, items, *, on_result=None):
            return ()

    backup = FakeTransport()
    for broken in (Raising(), Short(), Wrong()):
        transport = FailoverTransport([broken, backup])
        outcomes = transport.send_batch(items(2))
        assert all(isinstance(o, TransportError) for o in outcomes)
        assert all(o.delivery_unknown for o in outcomes)
    assert backup.attempts == []


def test_a_server_raising_an_error_for_the_batch_moves_it_on():
    class Unreachable(Transport):
        def send(self, envelope: Envelope, data: bytes) -> SendResult:
            raise NotImplementedError

        def send_batch(self, items, *, on_result=None):
            raise ConnectError("no route")

    backup = FakeTransport()
    transport = FailoverTransport([Unreachable(), backup], names=["u", "b"])
    outcomes = transport.send_batch(items(3))
    assert [o.server for o in outcomes] == ["b"] * 3
    assert len(backup.outbox) == 3


def test_an_older_send_batch_without_on_result():
    class Old(FakeTransport):
        def send_batch(self, items):  # type: ignore[override]
            return [self.send(e, d) for e, d in items]

    class NoSignature:
        __signature__ = "none"  # inspect.signature raises TypeError

        def __call__(self, items):
            return []

    class Opaque(FakeTransport):
        send_batch = NoSignature()  # type: ignore[assignment]

    reported: list[int] = []
    transport = FailoverTransport([Old()])
    transport.send_batch(items(2), on_result=lambda i, _: reported.append(i))
    assert reported == [0, 1]
    assert FailoverTransport([Opaque()])._servers[0].takes_on_result is False


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupted(FakeTransport):
        def send(self, envelope: Envelope, data: bytes) -> SendResult:
            raise KeyboardInterrupt

    transport = FailoverTransport([Interrupted(), FakeTransport()])
    with pytest.raises(KeyboardInterrupt):
        transport.send(*items(1)[0])


def test_lifecycle():
    class Stubborn(FakeTransport):
        opened = 0

        def open(self) -> None:
            self.opened += 1

        def close(self) -> None:
            super().close()
            raise RuntimeError("cannot close")

    first, second = Stubborn(), FakeTransport()
    with FailoverTransport([first, second]) as transport:
        assert first.opened == 1
        assert transport.verify() is not None
    assert second.verifications == 1  # every server verified
    with pytest.raises(ClosedError):
        transport.send(*items(1)[0])
    with pytest.raises(ClosedError):
        transport.verify()
    with pytest.raises(ClosedError):
        second.send(*items(1)[0])  # closed although the first one raised


def test_verify_names_the_failing_server():
    class Broken(FakeTransport):
        def verify(self):
            raise ConnectError("refused")

    transport = FailoverTransport([FakeTransport(), Broken()], names=["a", "b"])
    with pytest.raises(ConnectError) as caught:
        transport.verify()
    assert caught.value.server == "b"


@pytest.mark.parametrize(
    ("servers", "kwargs", "match"),
    [
        ([], {}, "at least one server"),
        ([FakeTransport()], {"cooldown": -1}, "cooldown"),
        ([FakeTransport()], {"cooldown": float("inf")}, "cooldown"),
        ([FakeTransport()], {"cooldown": "5"}, "cooldown"),
        ([FakeTransport()], {"names": ["a", "b"]}, "2 names for 1 servers"),
        ([FakeTransport(), FakeTransport()], {"names": ["a", "a"]}, "distinct"),
        ([FakeTransport()], {"names": [""]}, "distinct"),
    ],
)
def test_bad_arguments(servers, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        FailoverTransport(servers, **kwargs)


def test_wrong_kind_of_server():
    with pytest.raises(TypeError, match="not str"):
        FailoverTransport(["smtp://a.example"])  # type: ignore[list-item]


def test_configs_get_their_own_transports_named_host_port(tmp_path):
    transport = FailoverTransport(
        [
            SMTPConfig(host="a.example", port=25, tls="none"),
            SMTPConfig(host="b.example"),
        ]
    )
    assert [s.name for s in transport.stats()] == ["a.example:25", "b.example:587"]
    assert all(isinstance(t, SMTPTransport) for t in transport.transports)
    transport.close()
    good = SMTPConfig(host="a.example", port=25, tls="none")
    bad = SMTPConfig(host="b.example", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError):
        FailoverTransport([good, bad])


def test_failover_config():
    config = FailoverConfig.from_url(
        " roundrobin( smtp://a.example:25?tls=none  smtps://u:secret@b.example ) ",
        cooldown=5,
    )
    assert config.strategy == "roundrobin"
    assert [s.host for s in config.servers] == ["a.example", "b.example"]
    assert config.cooldown == 5.0
    assert type(FailoverTransport.from_config(config)) is RoundRobinTransport
    plain = FailoverConfig(servers=config.servers)
    built = RoundRobinTransport.from_config(plain)
    assert type(built) is FailoverTransport  # the config decides
    assert "secret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("smtp://a.example", "a failover URL reads"),
        ("failover smtp://a.example", "a failover URL reads"),
        ("failover()", "lists no server URL"),
        ("failover(smtp://u:sec@ret@a.example)", "server URL 1 of failover"),
        ("roundrobin(smtp://a.example ftp://u:secret@b.example)", "server URL 2"),
        (None, "a failover URL reads"),
    ],
)
def test_bad_failover_urls(text, match):
    with pytest.raises(ConfigurationError, match=match) as caught:
        FailoverConfig.from_url(text)
    assert "sec" not in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [{"servers": ()}, {"servers": (SMTPConfig(host="a.example"),), "cooldown": -1}],
)
def test_failover_config_validation(fields):
    with pytest.raises(ValueError, match=r"servers|cooldown"):
        FailoverConfig(**fields)


def test_failover_config_refuses_infinite_cooldown():
    with pytest.raises(ValueError, match="finite"):
        FailoverConfig(servers=(SMTPConfig(host="a.example"),), cooldown=float("inf"))


SECRET = "Hunter2Secret"
SECRET_URL = f"smtp://alice:{SECRET}@relay1.example.com"


@pytest.mark.parametrize(
    "fields",
    [
        {"servers": SECRET_URL},  # a string, not a list of servers
        {"servers": [SECRET_URL, f"ftp://alice:{SECRET}@b.example"]},
        {"servers": [f"smtp://alice:{SECRET}@a.example:notaport"]},
        {"servers": [{"host": "a.example", "password": SECRET, "port": "x"}]},
        {"servers": [SECRET_URL], "strategy": "sideways"},
        {"servers": [SECRET_URL], "passwrd": SECRET},
        {"servers": 7, "cooldown": -1},
    ],
)
@pytest.mark.parametrize("how", ["init", "json"])
def test_failover_config_errors_never_quote_a_password(fields, how):
    def validate() -> object:
        if how == "init":
            return FailoverConfig(**fields)
        return FailoverConfig.model_validate_json(json.dumps(fields))

    with pytest.raises(ValueError, match="FailoverConfig") as caught:
        validate()
    error = caught.value
    assert SECRET not in str(error)
    assert SECRET not in repr(error.errors())
    assert SECRET not in str(pickle.loads(pickle.dumps(error)))  # noqa: S301
    assert error.__cause__ is None
    assert error.__context__ is None or SECRET not in str(error.__context__)


def test_failover_config_json_syntax_error_does_not_quote_the_document():
    with pytest.raises(ValueError, match="json") as caught:
        FailoverConfig.model_validate_json(f'{{"servers": ["{SECRET_URL}"')
    assert SECRET not in str(caught.value)


def test_failover_config_takes_server_urls():
    config = FailoverConfig(
        servers=[SECRET_URL, SMTPConfig(host="b.example")], strategy="roundrobin"
    )
    assert [s.host for s in config.servers] == ["relay1.example.com", "b.example"]
    assert config.servers[0].password is not None
    assert SECRET not in repr(config)
    assert FailoverConfig.model_validate_json(json.dumps({"servers": [SECRET_URL]}))


def test_network_error_from_a_fake_moves_on():
    primary = FakeTransport.scripted(NetworkError("gone"))
    transport = FailoverTransport([primary, FakeTransport()], names=["p", "b"])
    assert transport.send(*items(1)[0]).server == "b"


def test_concurrent_sends_share_the_turns_exactly():
    servers = [FakeTransport() for _ in range(3)]
    transport = RoundRobinTransport(servers, names=["a", "b", "c"])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: transport.send(*items(1)[0]), range(300)))
    assert collections.Counter(r.server for r in results) == {
        "a": 100,
        "b": 100,
        "c": 100,
    }
    assert [s.delivered for s in transport.stats()] == [100, 100, 100]
    assert [len(s.outbox) for s in servers] == [100, 100, 100]


def test_a_result_subclass_keeps_its_class_and_every_field():
    class Tagged(SendResult):
        __slots__ = ()

    tagged = Tagged(
        envelope=ENV, reply=reply("250 ok"), message_id="<x@y>", elapsed=2.0
    )
    plain = SendResult(envelope=ENV, reply=reply("250 ok"), attempts=3, elapsed=1.5)
    transport = FailoverTransport(
        [FakeTransport.scripted(tagged, plain)], names=["only"]
    )
    first = transport.send(*items(1)[0])
    second = transport.send(*items(1)[0])
    assert type(first) is Tagged
    assert first == Tagged(
        envelope=ENV,
        reply=reply("250 ok"),
        message_id="<x@y>",
        elapsed=2.0,
        server="only",
    )
    assert second == plain.with_updates(server="only")


@pytest.mark.parametrize("kind", [RuntimeError, KeyboardInterrupt])
def test_a_raising_clock_is_a_typed_error_or_propagates(kind):
    def clock() -> float:
        raise kind("clock broke")

    transport = FailoverTransport([FakeTransport()], clock=clock)
    message = Message(sender="me@example.com", to="a@example.com")
    with Mailer(transport=transport, retry=no_wait()) as mailer:
        if kind is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                mailer.send(message)
            return
        with pytest.raises(TransportError, match="clock broke"):
            mailer.send(message)
        with pytest.raises(ConfigurationError, match="clock broke"):
            mailer.send_many([message])


def test_a_server_reporting_twice_is_reported_once():
    class Stutter(FakeTransport):
        def send_batch(self, items, *, on_result=None):
            outcomes = [self.send(e, d) for e, d in items]
            for _ in range(2):
                for index, outcome in enumerate(outcomes):
                    on_result(index, outcome)
            return outcomes

    reported: list[int] = []
    transport = FailoverTransport([Stutter()])
    transport.send_batch(items(3), on_result=lambda i, _: reported.append(i))
    assert reported == [0, 1, 2]
    assert transport.stats()[0].delivered == 3
