"""Mailer over FakeTransport: retries, partial refusals, bulk sends, lifecycle."""

from __future__ import annotations

import logging
import random
from email.message import EmailMessage

import pytest

from smtpkit import (
    BulkProgress,
    ClosedError,
    ConfigurationError,
    ConnectError,
    DataRefusedError,
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    RateLimit,
    RecipientResult,
    RecipientsRefusedError,
    RetryDetails,
    RetryPolicy,
    SendResult,
    ServerDisconnectedError,
    SMTPConfig,
    SMTPReply,
    SMTPTransport,
    Transport,
)
from smtpkit._bulk import MAX_BATCH as _MAX_BATCH
from smtpkit.testing import FakeTransport, reply

WAITS = [
    0.9222109257625241,
    1.3789772014701511,
]  # backoff(1), backoff(2) with Random(0)
OK = SMTPReply(250, "2.0.0 queued as Q1")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def make_mailer(fake: Transport, time: FakeTime, **kwargs: object) -> Mailer:
    return Mailer(
        transport=fake,
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(0),
        **kwargs,
    )


def msg(n: int = 0, **fields: object) -> Message:
    defaults = {"sender": "me@example.com", "to": "a@example.com", "subject": f"m{n}"}
    return Message(**{**defaults, "text": "hello", **fields})


def test_send_returns_result_with_message_id(time):
    fake = FakeTransport()
    with make_mailer(fake, time) as mailer:
        result = mailer.send(
            msg(subject="你好", cc="c@example.com", bcc="b@example.com")
        )
    assert isinstance(result, SendResult)
    assert result.ok
    assert result.attempts == 1
    assert result.message_id is not None
    assert result.message_id.startswith("<")
    assert result.accepted == ("a@example.com", "c@example.com", "b@example.com")
    [sent] = fake.outbox
    assert sent.subject == "你好"
    assert sent.body().strip() == "hello"
    assert sent.message["Message-ID"] == result.message_id
    assert sent.message["Bcc"] is None
    assert b"b@example.com" not in sent.data
    assert time.sleeps == []


def test_transient_failures_retried_with_exact_waits(time):
    fake = FakeTransport()
    fake.fail_next(2)
    result = make_mailer(fake, time).send(msg())
    assert result.ok
    assert result.attempts == 3
    assert time.sleeps == WAITS
    assert len(fake.attempts) == 3
    assert len(fake.outbox) == 1
    assert result.elapsed == pytest.approx(sum(WAITS))


def test_permanent_failure_not_retried(time):
    fake = FakeTransport()
    fake.fail_next(1, "554 5.7.1 rejected as spam")
    with pytest.raises(DataRefusedError) as info:
        make_mailer(fake, time).send(msg())
    assert info.value.attempts == 1
    assert info.value.reply.code == 554
    assert time.sleeps == []
    assert len(fake.attempts) == 1


def test_gives_up_with_last_error_and_history(time):
    errors = [ConnectError("one"), ConnectError("two"), ConnectError("three")]
    fake = FakeTransport.scripted(*errors)
    with pytest.raises(ConnectError) as info:
        make_mailer(fake, time).send(msg())
    assert info.value is errors[2]
    assert info.value.attempts == 3
    assert info.value.history == (errors[0], errors[1])
    assert time.sleeps == WAITS


def test_only_pending_recipients_are_resent(time):
    calls = []

    def handler(envelope: Envelope, data: bytes) -> SendResult | None:
        calls.append(envelope.recipients)
        if len(calls) > 1:
            return None  # everyone in this envelope accepted
        recipients = {
            "a@example.com": RecipientResult("a@example.com", OK),
            "b@example.com": RecipientResult("b@example.com", reply("451 4.2.1 later")),
            "c@example.com": RecipientResult("c@example.com", OK),
        }
        return SendResult(envelope=envelope, recipients=recipients, reply=OK)

    fake = FakeTransport(handler)
    result = make_mailer(fake, time).send(
        msg(to=["a@example.com", "b@example.com"], bcc="c@example.com")
    )
    assert [e.recipients for e in fake.attempts] == [
        ("a@example.com", "b@example.com", "c@example.com"),
        ("b@example.com",),
    ]
    assert [s.envelope.recipients for s in fake.outbox] == [
        ("a@example.com", "c@example.com"),
        ("b@example.com",),
    ]
    assert result.ok
    assert result.accepted == ("a@example.com", "b@example.com", "c@example.com")
    assert result.recipients["a@example.com"].attempts == 1
    assert result.recipients["b@example.com"].attempts == 2
    assert result.attempts == 2
    assert time.sleeps == WAITS[:1]


def test_permanently_refused_recipients_reported_not_retried(time):
    fake = FakeTransport(
        refuse={
            "bad@example.com": "550 5.1.1 no such user",
            "busy@example.com": "450 4.2.1 busy",
        }
    )
    result = make_mailer(fake, time).send(
        msg(to=["a@example.com", "bad@example.com", "busy@example.com"])
    )
    assert result.accepted == ("a@example.com",)
    assert result.refused == {
        "bad@example.com": reply("550 5.1.1 no such user"),
        "busy@example.com": reply("450 4.2.1 busy"),
    }
    assert not result.ok
    assert result.error is None
    # Only the 4xx recipient went round again (and was refused each time).
    assert [e.recipients for e in fake.attempts] == [
        ("a@example.com", "bad@example.com", "busy@example.com"),
        ("busy@example.com",),
        ("busy@example.com",),
    ]
    assert result.recipients["bad@example.com"].attempts == 1
    assert result.recipients["busy@example.com"].attempts == 3


def test_all_refused_permanently(time):
    fake = FakeTransport(refuse={"a@example.com": "550 5.1.1 no"})
    with pytest.raises(RecipientsRefusedError) as info:
        make_mailer(fake, time).send(msg())
    assert info.value.attempts == 1
    assert info.value.refused == {"a@example.com": reply("550 5.1.1 no")}
    assert time.sleeps == []


def test_all_refused_transiently_every_time(time):
    fake = FakeTransport(refuse={"a@example.com": "451 4.3.0 later"})
    with pytest.raises(RecipientsRefusedError) as info:
        make_mailer(fake, time).send(msg())
    assert info.value.attempts == 3
    assert len(info.value.history) == 2
    assert info.value.refused == {"a@example.com": reply("451 4.3.0 later")}
    assert time.sleeps == WAITS


def test_error_after_partial_delivery_is_on_the_result(time):
    partial = SendResult(
        envelope=None,
        recipients={
            "a@example.com": RecipientResult("a@example.com", OK),
            "b@example.com": RecipientResult("b@example.com", reply("451 4.3.0 x")),
        },
        reply=OK,
    )
    lost = [ServerDisconnectedError("lost 1"), ServerDisconnectedError("lost 2")]
    fake = FakeTransport.scripted(partial, *lost)
    result = make_mailer(fake, time).send(msg(to=["a@example.com", "b@example.com"]))
    assert result.error is lost[1]
    assert result.accepted == ("a@example.com",)
    assert result.refused == {"b@example.com": reply("451 4.3.0 x")}
    assert result.reply == OK
    assert not result.ok
    assert result.attempts == 3


def test_network_error_after_permanent_refusals_is_raised(time):
    refusals = SendResult(
        envelope=None,
        recipients={
            "a@example.com": RecipientResult("a@example.com", reply("550 5.1.1 no")),
            "b@example.com": RecipientResult("b@example.com", reply("451 4.3.0 x")),
        },
    )
    lost = [ConnectError("down 1"), ConnectError("down 2")]
    fake = FakeTransport.scripted(refusals, *lost)
    with pytest.raises(ConnectError) as info:
        make_mailer(fake, time).send(msg(to=["a@example.com", "b@example.com"]))
    assert info.value is lost[1]
    assert info.value.attempts == 3


def test_raise_for_error(time):
    fake = FakeTransport.scripted("554 5.7.1 no")
    failed, ok = make_mailer(fake, time).send_many([msg(0), msg(1)], concurrency=1)
    assert ok.raise_for_error() is ok
    with pytest.raises(DataRefusedError) as info:
        failed.raise_for_error()
    assert info.value is failed.error


def test_delivery_unknown_not_retried_by_default(time):
    fake = FakeTransport()
    error = ServerDisconnectedError("x", delivery_unknown=True)
    fake.fail_next(1, error)
    with pytest.raises(ServerDisconnectedError) as info:
        make_mailer(fake, time).send(msg())
    assert info.value is error
    assert len(fake.attempts) == 1
    assert fake.outbox == []


def test_delivery_unknown_retried_when_ambiguous_allowed(time):
    fake = FakeTransport()
    fake.fail_next(1, ServerDisconnectedError("x", delivery_unknown=True))
    mailer = make_mailer(fake, time, retry=RetryPolicy(retry_ambiguous=True))
    result = mailer.send(msg())
    assert result.ok
    assert result.possibly_duplicated
    assert result.attempts == 2
    assert not make_mailer(FakeTransport(), time).send(msg()).possibly_duplicated


def test_retry_never(time):
    fake = FakeTransport()
    fake.fail_next(1)
    with pytest.raises(DataRefusedError):
        make_mailer(fake, time, retry=RetryPolicy.never()).send(msg())
    assert len(fake.attempts) == 1


def test_on_retry_hook(time):
    details: list[RetryDetails] = []
    fake = FakeTransport()
    fake.fail_next(2, "421 4.4.2 closing")
    make_mailer(fake, time, on_retry=details.append).send(msg())
    assert [d.attempt for d in details] == [1, 2]
    assert [d.wait for d in details] == WAITS
    assert all(isinstance(d.error, DataRefusedError) for d in details)
    assert details[0].error.reply.code == 421
    assert details[1].elapsed == pytest.approx(WAITS[0])


def test_rate_limit_uses_injected_sleep(time):
    fake = FakeTransport()
    mailer = make_mailer(fake, time, rate_limit=RateLimit(per_second=2))
    for n in range(3):
        mailer.send(msg(n))
    assert time.sleeps == [0.5, 0.5]


# -- what can be sent --------------------------------------------------------------


def test_explicit_envelope_wins(time):
    fake = FakeTransport()
    envelope = Envelope(sender="bounce@example.com", recipients=["z@example.com"])
    make_mailer(fake, time).send(msg(), envelope=envelope)
    assert fake.attempts == [envelope]


def test_smtputf8_set_on_envelope(time):
    fake = FakeTransport()
    make_mailer(fake, time).send(msg(to="用户@example.com"))
    assert fake.attempts[0].smtputf8
    envelope = Envelope(sender="me@example.com", recipients=["x@example.com"])
    make_mailer(fake, time).send(msg(to="用户@example.com"), envelope=envelope)
    assert fake.attempts[1].smtputf8


def test_send_email_message(time):
    built = EmailMessage()
    built["From"] = "Me <me@example.com>"
    built["To"] = "a@example.com"
    built["Bcc"] = "hidden@example.com"
    built["Message-ID"] = "<fwd.1@example.com>"
    built["Subject"] = "fwd"
    built.set_content("forwarded")
    fake = FakeTransport()
    result = make_mailer(fake, time).send(built)
    assert result.message_id == "<fwd.1@example.com>"
    assert fake.attempts[0].sender == "me@example.com"
    assert fake.attempts[0].recipients == ("a@example.com", "hidden@example.com")
    assert b"hidden@example.com" not in fake.outbox[0].data
    assert built["Bcc"] == "hidden@example.com"


def test_send_raw_bytes(time):
    data = b"Message-ID: <raw.1@example.com>\r\nSubject: raw\r\n\r\nbody\r\n"
    fake = FakeTransport()
    mailer = make_mailer(fake, time)
    with pytest.raises(InvalidMessageError, match="explicit envelope"):
        mailer.send(data)
    envelope = Envelope(sender="me@example.com", recipients=["a@example.com"])
    result = mailer.send(bytearray(data), envelope=envelope)
    assert result.message_id == "<raw.1@example.com>"
    assert fake.outbox[0].data == data
    assert fake.attempts == [envelope]


def test_unsendable_type(time):
    with pytest.raises(InvalidMessageError, match="cannot send str"):
        make_mailer(FakeTransport(), time).send("hello")  # type: ignore[arg-type]


def test_message_without_recipients(time):
    with pytest.raises(InvalidMessageError, match="no recipients"):
        make_mailer(FakeTransport(), time).send(msg(to=()))


# -- send_many ---------------------------------------------------------------------


def _fail_on_subject(envelope: Envelope, data: bytes) -> str | None:
    return "554 5.7.1 no" if b"Subject: bad" in data else None


def test_send_many_in_order_with_errors_captured(time):
    fake = FakeTransport(_fail_on_subject)
    messages = [msg(n) for n in range(10)]
    messages[3] = msg(subject="bad")
    messages[6] = msg(to=())
    progress: list[BulkProgress] = []
    with make_mailer(fake, time) as mailer:
        results = mailer.send_many(messages, concurrency=3, on_progress=progress.append)
    assert len(results) == 10
    for n, result in enumerate(results):
        if n == 3:
            assert isinstance(result.error, DataRefusedError)
            assert result.message_id is not None
            assert result.attempts == 1
        elif n == 6:
            assert isinstance(result.error, InvalidMessageError)
            assert result.envelope is None
        else:
            assert result.ok
    subjects = sorted(s.subject for s in fake.outbox)
    assert subjects == sorted(f"m{n}" for n in range(10) if n not in (3, 6))
    ids = [r.message_id for r in results if r.ok]
    assert ids == [
        next(s.message["Message-ID"] for s in fake.outbox if s.subject == f"m{n}")
        for n in range(10)
        if n not in (3, 6)
    ]
    assert [p.done for p in progress] == list(range(1, 11))
    assert progress[-1] == BulkProgress(done=10, failed=2, total=10)
    assert [p.failed for p in progress][:4] == [0, 0, 0, 1]


def test_send_many_retries_per_message(time):
    fake = FakeTransport()
    fake.fail_next(1)
    results = make_mailer(fake, time).send_many([msg(0), msg(1)], concurrency=1)
    assert all(r.ok for r in results)
    assert sorted(r.attempts for r in results) == [1, 2]
    assert len(fake.outbox) == 2


def test_send_many_empty(time):
    assert make_mailer(FakeTransport(), time).send_many([]) == []


def test_send_many_with_closed_transport_reports_errors(time):
    fake = FakeTransport()
    mailer = make_mailer(fake, time)
    fake.close()
    results = mailer.send_many([msg(0), msg(1)])
    assert [type(r.error) for r in results] == [ClosedError, ClosedError]


def _recording(count: int, pulled: list[int]):
    for n in range(count):
        pulled.append(n)
        yield msg(n)


def test_send_many_consumes_lazily(time):
    pulled: list[int] = []
    at_first_result: list[int] = []

    def progress(p: BulkProgress) -> None:
        if not at_first_result:
            at_first_result.append(len(pulled))

    concurrency, total = 2, 400
    results = make_mailer(FakeTransport(), time).send_many(
        _recording(total, pulled), concurrency=concurrency, on_progress=progress
    )
    assert len(results) == total
    # Messages go out in batches of up to _MAX_BATCH; 2 * concurrency batches ahead.
    assert at_first_result[0] <= 2 * concurrency * _MAX_BATCH < total


def test_send_many_rate_limited_reads_at_most_two_per_worker(time):
    pulled: list[int] = []
    at_first_result: list[int] = []

    def progress(p: BulkProgress) -> None:
        if not at_first_result:
            at_first_result.append(len(pulled))

    concurrency = 2
    mailer = make_mailer(
        FakeTransport(), time, rate_limit=RateLimit(per_second=1000, burst=1000)
    )
    results = mailer.send_many(
        _recording(20, pulled), concurrency=concurrency, on_progress=progress
    )
    assert [r.ok for r in results] == [True] * 20
    assert at_first_result[0] <= 2 * concurrency


# -- lifecycle ---------------------------------------------------------------------


class CountingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1
        super().close()


def test_first_send_opens_once(time):
    transport = CountingTransport()
    mailer = make_mailer(transport, time)
    assert "unopened" in repr(mailer)
    mailer.send(msg())
    mailer.send(msg())
    mailer.open()
    assert transport.opened == 1
    assert "opened" in repr(mailer)
    assert mailer.transport is transport


def test_closed_mailer(time):
    transport = CountingTransport()
    with make_mailer(transport, time) as mailer:
        mailer.send(msg())
    mailer.close()
    assert transport.closed == 1
    assert "closed" in repr(mailer)
    with pytest.raises(ClosedError):
        mailer.send(msg())
    with pytest.raises(ClosedError):
        mailer.send_many([msg()])
    with pytest.raises(ClosedError):
        mailer.open()


def test_needs_exactly_one_of_config_and_transport():
    with pytest.raises(ConfigurationError, match="exactly one"):
        Mailer()
    with pytest.raises(ConfigurationError, match="exactly one"):
        Mailer(SMTPConfig(host="localhost"), transport=FakeTransport())


def test_config_builds_smtp_transport():
    config = SMTPConfig(host="localhost", tls="none", username="u", password="hunter2",
                        allow_insecure_auth=True)  # fmt: skip
    mailer = Mailer(config)
    assert isinstance(mailer.transport, SMTPTransport)
    assert "hunter2" not in repr(mailer)
    mailer.close()


def test_logging(time, caplog):
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    fake = FakeTransport(lambda envelope, data: "250 2.0.0 Ok: queued as 4ZQ1")
    fake.fail_next(2, "454 4.7.0 temporary failure")
    config = SMTPConfig.from_url("smtps://user:hunter2@smtp.example.com")
    Mailer(config).close()
    with make_mailer(fake, time) as mailer:
        result = mailer.send(msg())
        mailer.send(msg(1))
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(infos) == 2
    assert result.message_id in infos[0].getMessage()
    assert "queued as 4ZQ1" in infos[0].getMessage()
    assert len(warnings) == 2
    # STYLE §12: addresses only at DEBUG; a retry line names class and code only.
    assert (
        warnings[0].getMessage().startswith("attempt 1 failed (DataRefusedError 454)")
    )
    shown = " ".join(
        r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG
    )
    assert "me@example.com" not in shown
    assert "a@example.com" not in shown
    assert all(r.name == "smtpkit" for r in caplog.records)
    assert "hunter2" not in caplog.text


def test_send_many_takes_message_and_envelope_pairs(time):
    fake = FakeTransport()
    raw = b"Subject: raw\r\n\r\nbody\r\n"
    envelope = Envelope(sender="a@example.com", recipients=["r@example.com"])
    with make_mailer(fake, time) as mailer:
        results = mailer.send_many([(raw, envelope), msg(), raw])
    assert results[0].ok
    assert fake.outbox[0].envelope.recipients == ("r@example.com",)
    assert results[1].ok
    assert isinstance(results[2].error, InvalidMessageError)  # bytes need an envelope
