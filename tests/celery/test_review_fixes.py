"""Regressions for the review of smtpkit.contrib.celery: each test counts what a
real aiosmtpd server received, with the states in a real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.exceptions import Reject
from redis.exceptions import NoScriptError

from smtpkit import ConfigurationError, SMTPConfig
from smtpkit.contrib.celery import DeliveryState, FleetRateLimit, MailQueue
from smtpkit.contrib.celery._limiter import Limiter, Reservation
from smtpkit.contrib.celery._queue import _routing_of
from smtpkit.contrib.celery._runner import ChunkOutcome, send_chunk
from smtpkit.contrib.celery._state import Outcome
from smtpkit.testing import FakeTransport

from ..integration.smtpd import RecordingHandler, Server
from .conftest import FAST
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


class _QuotaOnSecondMail(RecordingHandler):
    """Answers the second MAIL FROM with a provider's quota reply."""

    mails = 0
    reply = "454 Throttling failure: Daily message quota exceeded"  # Amazon SES

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        self.mails += 1
        if self.mails == 2:
            return self.reply
        return await super().handle_MAIL(
            server, session, envelope, address, mail_options
        )


@pytest.mark.parametrize(
    ("reply", "resume"),
    [
        ("454 Throttling failure: Daily message quota exceeded", None),
        ("451 MI:SFQ the sender's 15-minute quota is spent", 900.0),  # NetEase
    ],
)
def test_a_quota_reply_mid_chunk_resends_only_the_refused(
    make_queue, reply, resume
) -> None:
    handler = _QuotaOnSecondMail()
    handler.reply = reply
    server = Server(handler)
    try:
        queue = make_queue(
            config=SMTPConfig(host=server.host, port=server.port, tls="none", timeout=5)
        )
        items = queue.items([message(1), message(2), message(3)])
        first = queue.run(items)
        assert first.states == {
            "<m1@example.com>": "delivered",
            "<m2@example.com>": "queued",  # refused for the account: not counted
            "<m3@example.com>": "delivered",  # already on the wire
        }
        [(countdown, later)] = first.later
        assert countdown == (resume or 1.0)  # the provider's word, else the backoff
        assert [i["key"] for i in later] == ["<m2@example.com>"]
        assert queue.result("<m2@example.com>").attempts == 0
        assert "quota" in (queue.result("<m2@example.com>").reason or "")
        assert queue.run(later).states == {"<m2@example.com>": "delivered"}
        assert sorted(ids(server)) == [f"<m{n}@example.com>" for n in (1, 2, 3)]
    finally:
        server.stop()


def test_postpone_keeps_later_countdowns_and_delays_earlier_ones() -> None:
    outcome = ChunkOutcome()
    a, b, c = ({"key": k} for k in "abc")
    outcome.requeue(1, a)  # type: ignore[arg-type]
    outcome.requeue(1, b)  # type: ignore[arg-type]
    outcome.requeue(90, c)  # type: ignore[arg-type]
    outcome.postpone({"a", "c"}, 60)
    assert outcome.later == [(1.0, [b]), (90.0, [c]), (60.0, [a])]


class _SlowData(RecordingHandler):
    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(0.4)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("at_least_once", [False, True])
def test_a_live_worker_keeps_its_keys_past_one_lease(
    app, redis_url, at_least_once
) -> None:
    """A chunk takes 1.2 s, the lease is 0.6 s: renewed after each message, it
    never runs out under the worker, so a duplicate task sends nothing."""
    server = Server(_SlowData())
    config = SMTPConfig(host=server.host, port=server.port, tls="none", timeout=5)
    a = MailQueue(app, redis_url=redis_url, config=config, lease=0.6, name="a")
    b = MailQueue(
        app,
        redis_url=redis_url,
        config=config,
        lease=0.6,
        name="b",
        at_least_once=at_least_once,
    )
    try:
        items = a.items([message(1), message(2), message(3)])
        b.local.mailer  # noqa: B018 - connected before the race
        states: dict[str, dict[str, str]] = {}
        worker = threading.Thread(target=lambda: states.update(a=a.run(items).states))
        worker.start()
        time.sleep(0.9)  # m1 and m2 done, m3 on the wire; claimed 0.9 s ago
        states["b"] = b.run(items).states
        assert b.sweep() == 0
        worker.join()
        assert set(states["a"].values()) == {"delivered"}
        assert "busy" in states["b"].values()
        assert sorted(ids(server)) == [f"<m{n}@example.com>" for n in (1, 2, 3)]
        for item in items:
            result = a.result(item["key"])
            assert result.state is DeliveryState.DELIVERED
            assert not result.possibly_duplicated
    finally:
        a.close()
        b.close()
        server.stop()


def test_an_owner_finishing_late_records_its_real_outcome(make_queue) -> None:
    queue = make_queue()
    store = queue.store
    store.mark_queued(["k"])
    store.claim(["k"], "slow", lease=0.01, at_least_once=False, attempts=3)
    time.sleep(0.05)
    assert queue.sweep() == 1
    assert queue.result("k").state is DeliveryState.UNKNOWN
    done = Outcome("k", DeliveryState.DELIVERED, accepted=["a@example.org"])
    assert store.finish([done], "intruder") == ["stale"]
    assert store.finish([done], "slow") == ["delivered"]
    assert store.finish([done], "slow") == ["delivered"]  # twice changes nothing
    assert queue.result("k").accepted == ("a@example.org",)
    assert queue.result("k").reason is None


def test_the_day_quota_is_spent_only_on_messages_sent(make_queue, smtp_server):
    limit = FleetRateLimit(account="t-quota", per_second=1000, per_day=4)
    queue = make_queue(rate_limit=limit)
    items = queue.items([message(1), message(2), message(3)])
    assert set(queue.run(items).states.values()) == {"delivered"}
    # A duplicate task sends nothing and spends nothing.
    assert set(queue.run(items).states.values()) == {"delivered"}
    fresh = queue.items([message(4), message(5)])
    outcome = queue.run(fresh)
    assert outcome.states == {
        "<m4@example.com>": "delivered",
        "<m5@example.com>": "rate_limited",
    }
    held = queue.result("<m5@example.com>")
    assert held.state is DeliveryState.QUEUED  # the claim was given back
    assert held.attempts == 0
    assert held.reason == "daily quota spent"
    assert len(smtp_server.messages) == 4


def test_a_retry_not_yet_due_is_not_flagged(make_queue) -> None:
    store = make_queue().store
    store.mark_queued(["k", "old"])
    store.claim(["k", "old"], "w", lease=30, at_least_once=False, attempts=5)
    store.finish([Outcome("k", DeliveryState.RETRYING, retry_in=60)], "w")
    store.client.hset(store._key("old"), mapping={"state": "retrying"})  # no due
    assert store.sweep(grace=0) == 0


def test_a_released_claim_after_attempts_is_retrying(make_queue) -> None:
    store = make_queue().store
    store.mark_queued(["k"])
    for token in ("one", "two"):
        store.claim(["k"], token, lease=30, at_least_once=False, attempts=5)
        if token == "one":
            store.finish([Outcome("k", DeliveryState.RETRYING)], token)
    assert store.release(["k"], "other", "x") == ["stale"]
    assert store.release(["k"], "two", "rate limited") == ["retrying"]
    assert store.release(["k"], "two", "rate limited") == ["retrying"]  # same answer
    assert store.get("k").attempts == 1


def _take(broker: redis.Redis, queue: str) -> tuple[list[Any], dict[str, Any]]:
    """Pop one task from a Redis broker queue: its (args, kwargs)."""
    raw = broker.lpop(queue)
    assert raw is not None, f"nothing on {queue}"
    body = json.loads(base64.b64decode(json.loads(raw)["body"]))
    return body[0], body[1]


def test_requeues_go_where_the_task_was_enqueued(
    redis_url, broker_redis, smtp_server
) -> None:
    smtp_server.handler.rcpt_replies["rcpt@example.com"] = ["451 4.7.1 greylisted"]
    app = Celery("rq", broker=broker_redis.url, backend=None, set_as_current=False)
    config = SMTPConfig(
        host=smtp_server.host, port=smtp_server.port, tls="none", timeout=5
    )
    queue = MailQueue(app, redis_url=redis_url, config=config)
    broker = redis.Redis.from_url(broker_redis.url)
    try:
        broker.delete("mail", "celery")
        [key] = queue.enqueue([message(1)], queue="mail", countdown=0)
        args, kwargs = _take(broker, "mail")
        assert kwargs == {"routing": {"queue": "mail"}}
        queue.task.apply(args=args, kwargs=kwargs)  # a worker on -Q mail runs it
        assert queue.result(key).state is DeliveryState.RETRYING
        assert broker.llen("celery") == 0
        args, kwargs = _take(broker, "mail")  # the retry, on the same queue
        queue.task.apply(args=args, kwargs=kwargs)
        assert queue.result(key).state is DeliveryState.DELIVERED
        assert ids(smtp_server) == [key]
    finally:
        broker.close()
        queue.close()
        app.close()


def test_without_enqueue_options_a_requeue_follows_the_delivery_info() -> None:
    delivered = SimpleNamespace(
        delivery_info={"exchange": "", "routing_key": "mail", "priority": None}
    )
    task = SimpleNamespace(request=delivered)
    assert _routing_of(task, None) == {"routing_key": "mail"}
    assert _routing_of(task, {"queue": "q"}) == {"queue": "q"}
    assert _routing_of(SimpleNamespace(request=SimpleNamespace()), None) == {}


def test_a_lost_retry_gives_the_task_back_and_is_flagged_by_sweep(
    redis_url, smtp_server
) -> None:
    smtp_server.handler.rcpt_replies["rcpt@example.com"] = ["451 4.7.1 greylisted"]
    with socket.socket() as probe:  # a port nobody listens on: the broker is down
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    app = Celery("lost", broker=f"redis://127.0.0.1:{dead}/0", set_as_current=False)
    app.conf.task_publish_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_connection_timeout = 0.5
    config = SMTPConfig(
        host=smtp_server.host, port=smtp_server.port, tls="none", timeout=5
    )
    queue = MailQueue(app, redis_url=redis_url, config=config, lease=0.3, retry=FAST)
    try:
        items = queue.items([message(1)])
        queue.store.mark_queued(["<m1@example.com>"])
        given_back = queue.task.apply(args=(items,))
        assert given_back.state == "REJECTED"
        assert isinstance(given_back.result, Reject)
        assert given_back.result.requeue
        assert queue.result("<m1@example.com>").state is DeliveryState.RETRYING
        time.sleep(1.5)  # its countdown (1 s) and the grace (the lease)
        assert queue.sweep() == 1
        flagged = queue.result("<m1@example.com>")
        assert flagged.state is DeliveryState.RETRYING
        assert "overdue" in (flagged.reason or "")
        # Enqueueing it again (here: running its task) sends it.
        assert queue.run(items).states == {"<m1@example.com>": "delivered"}
        assert ids(smtp_server) == ["<m1@example.com>"]
    finally:
        queue.close()
        app.close()


def test_scripts_lost_to_a_redis_restart_are_reloaded(make_queue, monkeypatch):
    store = make_queue().store
    store.mark_queued(["k"])
    loads: list[int] = []
    real = redis.client.Pipeline.load_scripts

    def first_load_misses(pipe: Any) -> None:
        loads.append(1)
        if len(loads) > 1:
            real(pipe)
        else:  # Redis restarted after the scripts were loaded: they are gone
            store.client.script_flush()

    monkeypatch.setattr(redis.client.Pipeline, "load_scripts", first_load_misses)
    [claim] = store.claim(["k"], "w", lease=30, at_least_once=False, attempts=3)
    assert claim.verdict == "go"
    assert len(loads) == 2
    monkeypatch.setattr(redis.client.Pipeline, "load_scripts", lambda pipe: None)
    store.client.script_flush()
    with pytest.raises(NoScriptError):
        store.finish([Outcome("k", DeliveryState.DELIVERED)], "w")


@pytest.mark.parametrize("rate", [30, 100, 3000, 7000, 15000])
def test_the_rate_limit_is_exact_at_high_rates(make_queue, rate: int) -> None:
    """Slots booked 100 s ahead (so the clock plays no part) are spaced exactly
    one interval apart: no float rounding of a 1.7e9 s timestamp."""
    client = make_queue().store.client
    limiter = Limiter(
        client, FleetRateLimit(account=f"exact{rate}", per_second=rate, max_wait=1e6)
    )
    seconds, micros = client.time()
    start = (seconds + 100) * 1_000_000 + micros + 12345
    client.set(limiter._keys[0], start)
    for _ in range(1000):
        assert limiter.reserve().reserved
    span = (int(client.get(limiter._keys[0])) - start) / 1e6
    interval = math.ceil(1e6 / rate) / 1e6
    assert span == pytest.approx(1000 * interval, abs=1e-9)
    assert 0.995 * rate <= 1000 / span <= rate  # never faster than the limit


def test_a_second_queue_with_the_same_name_on_one_app_is_refused(
    app, make_queue
) -> None:
    make_queue()
    with pytest.raises(ConfigurationError, match=r"'smtpkit\.send' exists"):
        make_queue()
    other = Celery("other", broker="memory://", set_as_current=False)
    assert MailQueue(other, redis_url="redis://127.0.0.1:1/0", transport=FakeTransport)
    assert make_queue(name="second").task is not app.tasks["smtpkit.send"]
    other.close()


@pytest.mark.parametrize(
    ("flag", "on"),
    [("True", True), ("YES", True), ("1", True), (" on ", True), ("False", False)],
)
def test_at_least_once_from_the_environment(redis_url, flag, on) -> None:
    environ = {
        "SMTPKIT_REDIS_URL": redis_url,
        "SMTP_URL": "smtp://127.0.0.1:25",
        "SMTPKIT_AT_LEAST_ONCE": flag,
    }
    queue = MailQueue.from_env(environ=environ)
    assert queue.settings.at_least_once is on
    queue.app.close()


def test_a_malformed_smtp_url_is_a_configuration_error(redis_url) -> None:
    environ = {
        "SMTPKIT_REDIS_URL": redis_url,
        "SMTP_URL": "smtp://127.0.0.1:25?timeout=abc",
    }
    with pytest.raises(ConfigurationError, match="SMTP_") as raised:
        MailQueue.from_env(environ=environ)
    assert "timeout" in str(raised.value)
    assert "abc" not in str(raised.value)  # values stay out: one may be a password
    assert raised.value.__cause__ is None
    environ["SMTP_URL"] = "smtp://127.0.0.1:25"
    environ["SMTPKIT_RATE_ACCOUNT"] = "acct"
    environ["SMTPKIT_RATE_PER_SECOND"] = "S3cret"
    with pytest.raises(ConfigurationError, match="per_second") as raised:
        MailQueue.from_env(environ=environ)
    assert "S3cret" not in str(raised.value)


def test_at_least_once_whose_last_attempt_died_ends_unknown(make_queue) -> None:
    store = make_queue().store
    store.mark_queued(["k"])

    def claim(token: str, lease: float) -> list[str]:
        claims = store.claim(["k"], token, lease=lease, at_least_once=True, attempts=2)
        return [c.verdict for c in claims]

    assert claim("A", 30) == ["go"]
    deferred = Outcome(
        "k", DeliveryState.RETRYING, accepted=["a@example.org"], reason="b deferred"
    )
    store.finish([deferred], "A")
    assert claim("B", 0.01) == ["go"]
    time.sleep(0.05)  # B, on the last attempt, died after the final dot
    assert claim("C", 30) == ["unknown"]
    result = store.get("k")
    assert result.state is DeliveryState.UNKNOWN
    assert "may have been accepted" in (result.reason or "")
    assert result.accepted == ("a@example.org",)
    # B finishing late records what really happened.
    done = Outcome("k", DeliveryState.DELIVERED, accepted=["b@example.org"])
    assert store.finish([done], "B") == ["delivered"]


class _StolenBeforeRelease:
    """A limiter that refuses the slot after another worker took the key."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def acquire(self) -> Reservation:
        self.store.client.hset(self.store._key("<m1@example.com>"), "owner", "thief")
        return Reservation(False, 5.0)


def test_a_claim_taken_meanwhile_is_not_requeued_by_the_loser(make_queue, smtp_server):
    queue = make_queue()
    items = queue.items([message(1)])
    outcome = send_chunk(
        items,
        mailer=queue.local.mailer,
        store=queue.store,
        settings=queue.settings,
        limiter=_StolenBeforeRelease(queue.store),  # type: ignore[arg-type]
    )
    assert outcome.states == {"<m1@example.com>": "stale"}
    assert outcome.later == []  # the thief sends it, not us
    assert smtp_server.messages == []
