"""The send task's body in-process, against real Redis and a real aiosmtpd server."""

from __future__ import annotations

import email
import importlib
import subprocess
import sys
import time

import pytest
import redis
from celery import Celery
from celery.exceptions import Reject

from smtpkit import (
    Attachment,
    ConfigurationError,
    Envelope,
    Message,
    ServerDisconnectedError,
    SMTPConfig,
)
from smtpkit.contrib.celery import Delivery, DeliveryState, FleetRateLimit, MailQueue
from smtpkit.contrib.celery._queue import _close_all
from smtpkit.contrib.celery._state import Outcome, StateStore
from smtpkit.testing import FakeTransport

from ..integration.smtpd import Server

pytestmark = pytest.mark.celery


def message(n: int = 0, **fields: object) -> Message:
    fields.setdefault("to", "rcpt@example.com")
    return Message(
        sender="news@example.com",
        subject=f"message {n}",
        text="hello",
        message_id=f"<m{n}@example.com>",
        **fields,  # type: ignore[arg-type]
    )


def ids(server: Server) -> list[str]:
    return [email.message_from_bytes(m.data)["Message-ID"] for m in server.messages]


def test_enqueue_sends_once_and_records_the_replies(make_queue, smtp_server) -> None:
    queue = make_queue()
    attachment = Attachment("data.bin", bytes(range(256)))
    keys = queue.enqueue(
        [message(1, attachments=[attachment]), message(2)], campaign="spring"
    )
    assert keys == ["<m1@example.com>", "<m2@example.com>"]
    assert queue.enqueue([message(1), message(2)], campaign="spring") == keys
    assert sorted(ids(smtp_server)) == keys  # enqueued twice, sent once
    received = next(
        parsed
        for parsed in (email.message_from_bytes(m.data) for m in smtp_server.messages)
        if parsed["Message-ID"] == keys[0]
    )
    part = next(p for p in received.walk() if p.get_filename() == "data.bin")
    assert part.get_payload(decode=True) == bytes(range(256))
    result = queue.result(keys[0])
    assert result.state is DeliveryState.DELIVERED
    assert result.attempts == 1
    assert result.accepted == ("rcpt@example.com",)
    assert result.replies["rcpt@example.com"].startswith("250")
    assert result.reason is None
    assert not result.possibly_duplicated
    assert queue.report(campaign="spring") == {"delivered": 2}
    assert queue.report([*keys, "<nope@x>"]) == {"delivered": 2, "missing": 1}
    assert queue.result("<nope@x>") == Delivery("<nope@x>", None)


def test_a_message_without_id_gets_one_and_raw_bytes_need_a_key(
    make_queue, smtp_server
) -> None:
    queue = make_queue()
    bare = Message(sender="a@example.com", to="b@example.com", text="x")
    [key] = queue.enqueue([bare])
    assert ids(smtp_server) == [key]
    assert key.endswith("@example.com>")
    raw = b"From: a@example.com\r\nSubject: raw\r\n\r\nbody\r\n"
    envelope = Envelope("a@example.com", ["c@example.com"])
    with pytest.raises(ConfigurationError, match="keys="):
        queue.enqueue([(raw, envelope)])
    with pytest.raises(ConfigurationError, match="one key per message"):
        queue.enqueue([(raw, envelope), (raw, envelope)], keys=["only-one"])
    assert queue.enqueue([(raw, envelope)], keys=["raw-1"]) == ["raw-1"]
    assert smtp_server.messages[-1].rcpt_tos == ["c@example.com"]
    assert smtp_server.messages[-1].data.endswith(b"body\r\n")
    assert queue.result("raw-1").state is DeliveryState.DELIVERED


def test_a_duplicate_task_sends_nothing(make_queue, smtp_server) -> None:
    queue = make_queue()
    items = queue.items([message(1)])
    assert queue.run(items).states == {"<m1@example.com>": "delivered"}
    assert queue.run(items).states == {"<m1@example.com>": "delivered"}
    assert len(smtp_server.messages) == 1


def test_only_pending_recipients_are_retried(make_queue, smtp_server) -> None:
    smtp_server.handler.rcpt_replies["late@example.com"] = ["451 4.7.1 greylisted"]
    queue = make_queue()
    items = queue.items([message(1, to=["now@example.com", "late@example.com"])])
    first = queue.run(items)
    assert first.states == {"<m1@example.com>": "retrying"}
    [(countdown, later)] = first.later
    assert countdown == 1.0
    assert later == items
    state = queue.result("<m1@example.com>")
    assert state.accepted == ("now@example.com",)
    assert state.replies["late@example.com"].startswith("451 4.7.1")
    assert queue.run(later).states == {"<m1@example.com>": "delivered"}
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ["now@example.com"],
        ["late@example.com"],
    ]
    done = queue.result("<m1@example.com>")
    assert done.accepted == ("now@example.com", "late@example.com")
    assert done.attempts == 2


def test_transient_failures_end_failed_when_attempts_run_out(
    make_queue, smtp_server
) -> None:
    smtp_server.handler.queue(
        "MAIL", "421 4.3.2 busy", "421 4.3.2 busy", "421 4.3.2 busy"
    )
    queue = make_queue()
    items = queue.items([message(1)])
    for _ in range(2):
        outcome = queue.run(items)
        assert outcome.states == {"<m1@example.com>": "retrying"}
    assert queue.run(items).states == {"<m1@example.com>": "failed"}
    final = queue.result("<m1@example.com>")
    assert final.attempts == 3
    assert "421" in (final.reason or "")
    assert queue.run(items).states == {"<m1@example.com>": "failed"}
    assert smtp_server.messages == []


def test_permanent_refusal_fails_at_once(make_queue, smtp_server) -> None:
    smtp_server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
    queue = make_queue()
    outcome = queue.run(queue.items([message(1, to="gone@example.com")]))
    assert outcome.states == {"<m1@example.com>": "failed"}
    assert outcome.later == []
    assert "550" in queue.result("<m1@example.com>").replies["gone@example.com"]


def test_partial_permanent_refusal_is_delivered_with_the_refusal(
    make_queue, smtp_server
) -> None:
    smtp_server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
    queue = make_queue()
    items = queue.items([message(1, to=["gone@example.com", "ok@example.com"])])
    assert queue.run(items).states == {"<m1@example.com>": "delivered"}
    result = queue.result("<m1@example.com>")
    assert result.accepted == ("ok@example.com",)
    assert result.replies["gone@example.com"].startswith("550")


def test_a_poisoned_message_fails_alone(make_queue, smtp_server) -> None:
    queue = make_queue()
    good = queue.items([message(1)])
    poisoned = {"key": "bad", "message": {"sender": "not an address"}}
    no_envelope = {"key": "raw", "raw": "aGk="}
    outcome = queue.run([poisoned, no_envelope, *good])
    assert outcome.states == {
        "bad": "failed",
        "raw": "failed",
        "<m1@example.com>": "delivered",
    }
    assert "not a valid message" in (queue.result("bad").reason or "")
    assert "needs an envelope" in (queue.result("raw").reason or "")
    assert len(smtp_server.messages) == 1


def _abandon(queue: MailQueue, key: str, lease: float) -> None:
    [claim] = queue.store.claim(
        [key], "dead-worker", lease=lease, at_least_once=False, attempts=5
    )
    assert claim.verdict == "go"
    # Asking again with the same token (a reply lost to a restart) is the same claim.
    again = queue.store.claim(
        [key], "dead-worker", lease=lease, at_least_once=False, attempts=5
    )
    assert again == [claim]


def test_an_abandoned_send_ends_unknown_and_is_not_resent(
    make_queue, smtp_server
) -> None:
    queue = make_queue()
    items = queue.items([message(1)])
    queue.store.mark_queued(["<m1@example.com>"])
    _abandon(queue, "<m1@example.com>", lease=0.05)
    time.sleep(0.1)
    assert queue.run(items).states == {"<m1@example.com>": "unknown"}
    assert "lease expired" in (queue.result("<m1@example.com>").reason or "")
    assert smtp_server.messages == []


def test_at_least_once_resends_and_says_possibly_duplicated(
    make_queue, smtp_server
) -> None:
    queue = make_queue(at_least_once=True)
    items = queue.items([message(1)])
    _abandon(queue, "<m1@example.com>", lease=0.05)
    time.sleep(0.1)
    assert queue.run(items).states == {"<m1@example.com>": "delivered"}
    result = queue.result("<m1@example.com>")
    assert result.possibly_duplicated
    assert result.attempts == 2
    assert len(smtp_server.messages) == 1


def test_a_key_held_by_a_live_worker_is_looked_at_later(
    make_queue, smtp_server
) -> None:
    queue = make_queue()
    items = queue.items([message(1)])
    _abandon(queue, "<m1@example.com>", lease=30)
    outcome = queue.run(items)
    assert outcome.states == {"<m1@example.com>": "busy"}
    [(countdown, later)] = outcome.later
    assert 30 <= countdown <= 32
    assert later == items
    assert smtp_server.messages == []
    assert queue.sweep() == 0  # the lease is still running


def test_sweep_ends_abandoned_keys(make_queue) -> None:
    queue = make_queue()
    queue.store.mark_queued(["a", "b"])
    _abandon(queue, "a", lease=0.01)
    time.sleep(0.05)
    assert queue.sweep() == 1
    assert queue.result("a").state is DeliveryState.UNKNOWN
    assert queue.result("b").state is DeliveryState.QUEUED


def test_a_finish_by_a_stale_owner_changes_nothing(make_queue) -> None:
    queue = make_queue()
    store = queue.store
    _abandon(queue, "k", lease=30)
    delivered = Outcome("k", DeliveryState.DELIVERED)
    failed = Outcome("k", DeliveryState.FAILED, reason="x")
    assert store.finish([delivered], "intruder") == ["stale"]
    assert store.finish([failed, delivered], "dead-worker") == ["failed", "failed"]
    assert queue.result("k").state is DeliveryState.FAILED


@pytest.mark.parametrize("at_least_once", [False, True])
def test_delivery_unknown_is_surfaced_or_resent(make_queue, at_least_once) -> None:
    lost = ServerDisconnectedError("lost after the final dot", delivery_unknown=True)
    fake = FakeTransport.scripted(lost)
    queue = make_queue(transport=lambda: fake, at_least_once=at_least_once)
    items = queue.items([message(1)])
    first = queue.run(items)
    result = queue.result("<m1@example.com>")
    assert "delivery unknown" in (result.reason or "")
    if not at_least_once:
        assert first.states == {"<m1@example.com>": "unknown"}
        assert first.later == []
        return
    assert first.states == {"<m1@example.com>": "retrying"}
    assert queue.run(first.later[0][1]).states == {"<m1@example.com>": "delivered"}
    assert queue.result("<m1@example.com>").possibly_duplicated


def test_the_mailer_is_per_process_and_closed_at_shutdown(make_queue) -> None:
    queue = make_queue()
    local = queue.local
    mailer = local.mailer
    assert queue.local is local
    assert local.mailer is mailer
    local.pid = -1  # as if this process were a fork of the one that built it
    fresh = queue.local
    assert fresh is not local
    assert fresh.mailer is not mailer
    local.close()  # a real fork leaves the parent's alone; here it is ours
    mailer = fresh.mailer
    _close_all()
    assert queue._local is None
    with pytest.raises(Exception, match="closed"):
        mailer.send(message(9))
    queue.close()  # nothing left to close


def test_arguments_are_checked(app, redis_url) -> None:
    config = SMTPConfig(host="127.0.0.1", port=25, tls="none")
    with pytest.raises(ConfigurationError, match="exactly one"):
        MailQueue(app, redis_url=redis_url)
    with pytest.raises(ConfigurationError, match="chunk_size"):
        MailQueue(app, redis_url=redis_url, config=config, chunk_size=0)
    queue = MailQueue(app, redis_url=redis_url, config=config, name="t.args")
    with pytest.raises(ConfigurationError, match="exactly one"):
        queue.report()


def test_state_survives_a_bytes_client(redis_url) -> None:
    store = StateStore(redis.Redis.from_url(redis_url, decode_responses=True))
    store.mark_queued(["x"], campaign="c")
    assert store.report(campaign="c") == {"queued": 1}
    assert store.get("x").state is DeliveryState.QUEUED
    store.client.close()


def test_the_task_requeues_deferred_recipients(make_queue, smtp_server) -> None:
    # Eager mode runs the re-queued task at once (Celery ignores the countdown).
    smtp_server.handler.rcpt_replies["late@example.com"] = ["450 4.2.0 greylisted"]
    queue = make_queue()
    [key] = queue.enqueue([message(1, to=["now@example.com", "late@example.com"])])
    assert queue.result(key).state is DeliveryState.DELIVERED
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ["now@example.com"],
        ["late@example.com"],
    ]


def test_keys_held_elsewhere_come_back_together(make_queue, smtp_server) -> None:
    queue = make_queue()
    items = queue.items([message(1), message(2)])
    for item in items:
        _abandon(queue, item["key"], lease=30)
    [(_countdown, later)] = queue.run(items).later
    assert later == items


def test_a_key_with_every_recipient_done_is_delivered_without_sending(
    make_queue, smtp_server
) -> None:
    queue = make_queue()
    items = queue.items([message(1)])
    _abandon(queue, "<m1@example.com>", lease=30)
    queue.store.finish(
        [
            Outcome(
                "<m1@example.com>",
                DeliveryState.RETRYING,
                accepted=["rcpt@example.com"],
            )
        ],
        "dead-worker",
    )
    assert queue.run(items).states == {"<m1@example.com>": "delivered"}
    assert smtp_server.messages == []


def test_the_rate_limit_sends_what_it_may_and_requeues_the_rest(
    make_queue, smtp_server
) -> None:
    limit = FleetRateLimit(account="t-day", per_second=1000, per_day=2)
    queue = make_queue(rate_limit=limit)
    items = queue.items([message(1), message(2), message(3)])
    outcome = queue.run(items)
    assert outcome.states == {
        "<m1@example.com>": "delivered",
        "<m2@example.com>": "delivered",
        "<m3@example.com>": "rate_limited",
    }
    [(countdown, later)] = outcome.later
    assert 0 < countdown <= 86400
    assert later == items[2:]
    assert len(smtp_server.messages) == 2


def test_final_states() -> None:
    assert {s for s in DeliveryState if s.is_final} == {
        DeliveryState.DELIVERED,
        DeliveryState.FAILED,
        DeliveryState.UNKNOWN,
    }


def test_a_recipient_deferred_to_the_end_leaves_the_others_delivered(
    make_queue, smtp_server
) -> None:
    smtp_server.handler.rcpt_replies["late@example.com"] = "451 4.7.1 greylisted"
    queue = make_queue()
    items = queue.items([message(1, to=["now@example.com", "late@example.com"])])
    _abandon(queue, "held", lease=30)
    held = queue.items([message(2)])
    held[0]["key"] = "held"
    first = queue.run([*items, *held])
    assert sorted(len(later) for _, later in first.later) == [1, 1]  # 1 s and 31 s
    assert queue.run(items).states == {"<m1@example.com>": "retrying"}
    assert queue.run(items).states == {"<m1@example.com>": "delivered"}
    result = queue.result("<m1@example.com>")
    assert result.accepted == ("now@example.com",)
    assert result.replies["late@example.com"].startswith("451")
    assert "451" in (result.reason or "")
    assert len(smtp_server.messages) == 1


def test_a_worker_that_cannot_build_its_mailer_leaves_the_keys_queued(
    make_queue, smtp_server, caplog
) -> None:
    calls: list[int] = []

    def flaky() -> FakeTransport:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the transport factory failed")
        return FakeTransport()

    queue = make_queue(transport=flaky)
    [key] = queue.enqueue([message(1)])  # eager: the retry runs at once
    assert len(calls) == 2
    assert queue.result(key).state is DeliveryState.DELIVERED
    assert "cannot build its mailer" in caplog.text


def test_a_closed_mailer_sends_nothing_and_requeues(make_queue, smtp_server) -> None:
    queue = make_queue()
    items = queue.items([message(1)])
    queue.local.mailer.close()
    outcome = queue.run(items)
    assert outcome.states == {"<m1@example.com>": "queued"}  # no attempt counted
    assert "closed" in (queue.result("<m1@example.com>").reason or "")
    assert outcome.later[0][1] == items
    assert smtp_server.messages == []


def _environ(redis_url: str, server: Server, **extra: str) -> dict[str, str]:
    return {
        "SMTPKIT_REDIS_URL": redis_url,
        "SMTP_HOST": server.host,
        "SMTP_PORT": str(server.port),
        "SMTP_TLS": "none",
        **extra,
    }


def test_the_ready_queue_is_configured_by_the_environment(
    redis_url, smtp_server
) -> None:
    queue = MailQueue.from_env(environ=_environ(redis_url, smtp_server))
    queue.app.conf.task_always_eager = True
    try:
        [key] = queue.enqueue([message(1)])
        assert queue.result(key).state is DeliveryState.DELIVERED
        assert queue.rate_limit is None
        assert not queue.settings.at_least_once
    finally:
        queue.close()
        queue.app.close()
    given = Celery("given", broker="memory://", set_as_current=False)
    limited = MailQueue.from_env(
        given,
        environ=_environ(
            redis_url,
            smtp_server,
            SMTPKIT_RATE_ACCOUNT="acct",
            SMTPKIT_RATE_PER_SECOND="2.5",
            SMTPKIT_RATE_PER_DAY="1000",
            SMTPKIT_AT_LEAST_ONCE="1",
        ),
    )
    assert limited.rate_limit == FleetRateLimit(
        account="acct", per_second=2.5, per_day=1000
    )
    assert limited.settings.at_least_once
    assert limited.app is given
    given.close()


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"SMTPKIT_REDIS_URL": ""}, "SMTPKIT_REDIS_URL"),
        ({"SMTPKIT_RATE_ACCOUNT": "a", "SMTPKIT_RATE_PER_SECOND": "x"}, "SMTPKIT_RATE"),
        ({"SMTPKIT_RATE_ACCOUNT": "a"}, "SMTPKIT_RATE"),
        ({"SMTPKIT_RATE_PER_SECOND": "10"}, "need SMTPKIT_RATE_ACCOUNT"),
        ({"SMTPKIT_RATE_PER_DAY": "1000"}, "need SMTPKIT_RATE_ACCOUNT"),
        ({"SMTPKIT_AT_LEAST_ONCE": "maybe"}, "SMTPKIT_AT_LEAST_ONCE"),
    ],
)
def test_the_ready_queue_refuses_bad_settings(redis_url, smtp_server, extra, text):
    with pytest.raises(ConfigurationError, match=text):
        MailQueue.from_env(environ=_environ(redis_url, smtp_server, **extra))


def test_the_ready_worker_module(redis_url, smtp_server, monkeypatch) -> None:
    for name, value in _environ(redis_url, smtp_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "smtpkit.contrib.celery.worker", raising=False)
    worker = importlib.import_module("smtpkit.contrib.celery.worker")
    try:
        assert worker.app is worker.queue.app
        assert worker.app.conf.broker_url == redis_url
        assert "smtpkit.send" in worker.app.tasks
    finally:
        worker.app.close()
        monkeypatch.delitem(sys.modules, "smtpkit.contrib.celery.worker")


def test_import_smtpkit_imports_neither_celery_nor_redis() -> None:
    code = (
        "import sys, smtpkit, smtpkit.testing; "
        "assert not {'celery', 'redis'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_task_that_loses_redis_goes_back_to_the_broker(make_queue, monkeypatch):
    queue = make_queue()
    queue.local.mailer  # noqa: B018 - built, as a worker would have
    lost = redis.ConnectionError("Redis is restarting")

    def run(items: object) -> None:
        raise lost

    monkeypatch.setattr(queue, "run", run)
    with pytest.raises(Reject) as raised:
        queue.task.run(queue.items([message(1)]))
    assert raised.value.requeue
    assert raised.value.reason is lost
