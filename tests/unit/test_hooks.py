"""Send hooks over FakeTransport: order, headers, vetoes, and hooks that raise."""

from __future__ import annotations

import asyncio
import email
import hashlib
import logging
import pickle
import random
import threading
from email.policy import default

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import (
    AsyncMailer,
    Envelope,
    Hooks,
    InvalidMessageError,
    Mailer,
    Message,
    RecipientsRefusedError,
    RetryDetails,
    SendEvent,
    SendVetoedError,
    SigningError,
    SMTPKitError,
)
from smtpkit.testing import FakeTransport, no_wait

MSG = Message(sender="a@example.com", to=["b@example.com"], subject="Hi", text="Hi")
ENV = Envelope(sender="a@example.com", recipients=("b@example.com",))
UNSAFE = {chr(c) for c in [*range(9), *range(10, 32), *range(127, 160)]} | {
    "\u2028",
    "\u2029",
}
RAW = b"Subject: raw\r\n\r\nbody\r\n"


class Recorder:
    """Hooks that record every call as (kind, event, payload)."""

    def __init__(self, headers=None):
        self.calls = []
        self.headers = headers

    def hooks(self):
        return Hooks(
            before_send=[self.before],
            after_send=[lambda e, r: self.calls.append(("after", e, r))],
            on_retry=[lambda e, d: self.calls.append(("retry", e, d))],
            on_failure=[lambda e, x: self.calls.append(("failure", e, x))],
        )

    def before(self, event):
        self.calls.append(("before", event, None))
        return self.headers

    def kinds(self):
        return [kind for kind, _, _ in self.calls]


def _mailer(fake, hooks, **kwargs):
    return Mailer(
        transport=fake, hooks=hooks, retry=no_wait(), rng=random.Random(0), **kwargs
    )


def test_hooks_run_in_order_around_one_send():
    fake = FakeTransport()
    fake.fail_next(1)
    rec = Recorder()
    with _mailer(fake, rec.hooks()) as mailer:
        result = mailer.send(MSG)
    assert rec.kinds() == ["before", "retry", "after"]
    event = rec.calls[0][1]
    assert all(e is event for _, e, _ in rec.calls)  # one event per message
    assert event.recipient_count == 1
    assert event.message_id == result.message_id
    assert event.size == len(fake.outbox[0].data)
    assert isinstance(rec.calls[1][2], RetryDetails)
    assert rec.calls[2][2] is result


def test_failure_hook_gets_the_error_that_is_raised():
    fake = FakeTransport(refuse={"b@example.com": "550 5.1.1 no such user"})
    rec = Recorder()
    with _mailer(fake, rec.hooks()) as mailer, pytest.raises(RecipientsRefusedError):
        mailer.send(MSG)
    assert rec.kinds() == ["before", "failure"]
    assert isinstance(rec.calls[1][2], RecipientsRefusedError)


def test_mailer_on_retry_and_hooks_on_retry_both_run():
    fake = FakeTransport()
    fake.fail_next(2)
    seen = []
    rec = Recorder()
    with _mailer(fake, rec.hooks(), on_retry=seen.append) as mailer:
        mailer.send(MSG)
    assert len(seen) == 2
    assert rec.kinds() == ["before", "retry", "retry", "after"]


@pytest.mark.parametrize(
    ("message", "envelope"),
    [
        (MSG, None),
        (email.message_from_bytes(MSG.as_bytes(), policy=default), None),
        (RAW, ENV),
    ],
    ids=["Message", "EmailMessage", "bytes"],
)
def test_before_send_adds_header_lines_on_top(message, envelope):
    fake = FakeTransport()
    rec = Recorder({"X-Campaign": "spring", "X-Note": "café au lait"})
    with _mailer(fake, rec.hooks()) as mailer:
        mailer.send(message, envelope=envelope)
    sent = fake.outbox[0]
    assert sent.data.startswith(b"X-Campaign: spring\r\nX-Note: =?utf-8?")
    assert sent.message["X-Note"] == "café au lait"
    assert sent.message["X-Campaign"] == "spring"
    assert rec.calls[0][1].size == len(sent.data) - sent.data.index(b"\r\n", 20) - 2


def test_a_long_header_value_is_folded():
    fake = FakeTransport()
    value = " ".join(["word"] * 400)
    with _mailer(fake, Hooks(before_send=[lambda e: {"X-Long": value}])) as mailer:
        mailer.send(MSG)
    sent = fake.outbox[0]
    head = sent.data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert sent.message["X-Long"] == value


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nBcc: victim@example.com"},
        {"X-Evil": "a\nb"},
        {"X-Nul": "a\0b"},
        {"Bad Name": "x"},
        {"Bad:Name": "x"},
        {"": "x"},
        {"Subject": "second subject"},
        {"bcc": "victim@example.com"},
        {"X-Num": 3},
        {4: "x"},
        {"X-Huge": "x" * 1200},
        ["X-List", "x"],
    ],
)
def test_invalid_headers_fail_the_message_unsent(headers):
    fake = FakeTransport()
    rec = Recorder(headers)
    with _mailer(fake, rec.hooks()) as mailer, pytest.raises(InvalidMessageError):
        mailer.send(MSG)
    assert fake.attempts == []
    assert rec.kinds() == ["before", "failure"]


@given(st.text(min_size=1, max_size=60))
def test_header_values_never_inject_lines(value):
    fake = FakeTransport()
    hooks = Hooks(before_send=[lambda e: {"X-Value": value}])
    with _mailer(fake, hooks) as mailer:
        try:
            mailer.send(MSG)
        except InvalidMessageError:
            assert any(c in value for c in UNSAFE)
            return
    sent = fake.outbox[0]
    assert str(sent.message["X-Value"]).split() == value.split()
    assert len(sent.message.get_all("Subject")) == 1
    assert sent.message.get_all("Bcc") is None


@given(st.text(min_size=1, max_size=20))
def test_header_names_are_checked(name):
    fake = FakeTransport()
    hooks = Hooks(before_send=[lambda e: {name: "v"}])
    with _mailer(fake, hooks) as mailer:
        try:
            mailer.send(MSG)
        except InvalidMessageError:
            assert not all(
                "!" <= c <= "~" and c != ":" for c in name
            ) or name.lower() in {
                "subject",
                "to",
                "from",
                "date",
                "message-id",
                "cc",
                "bcc",
                "sender",
                "reply-to",
                "in-reply-to",
                "references",
            }
            return
    assert fake.outbox[0].message[name] == "v"
    assert fake.outbox[0].data.startswith(name.encode() + b": v\r\n")


def test_hooks_refuse_unknown_fields():
    with pytest.raises(ValueError, match="extra"):
        Hooks(after=[print])


def test_veto_fails_the_message_and_nothing_is_sent():
    fake = FakeTransport()
    rec = Recorder()

    def veto(event):
        raise SendVetoedError("unsubscribed")

    hooks = Hooks(before_send=[veto]) + rec.hooks()
    with _mailer(fake, hooks) as mailer:
        with pytest.raises(SendVetoedError, match="unsubscribed") as info:
            mailer.send(MSG)
        results = mailer.send_many([MSG, MSG])
    assert info.value.reason == "unsubscribed"
    assert fake.attempts == []
    assert rec.kinds() == ["failure"] * 3  # the recorder's before never ran
    assert [type(r.error) for r in results] == [SendVetoedError] * 2
    assert all(r.attempts == 0 for r in results)


def test_veto_error_pickles():
    error = pickle.loads(pickle.dumps(SendVetoedError("no")))  # noqa: S301 - our own bytes
    assert isinstance(error, SMTPKitError)
    assert error.reason == "no"
    assert str(SendVetoedError()) == "vetoed by a before_send hook"


def _raise(exc):
    def hook(*args):
        raise exc

    hook.__qualname__ = "broken"
    return hook


RAISED = [
    ValueError("boom"),
    RuntimeError("x"),
    GeneratorExit(),
    asyncio.CancelledError(),
    SendVetoedError("a veto outside before_send"),
]


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_a_hook_that_raises_never_breaks_a_send(exc, caplog):
    fake = FakeTransport()
    fake.fail_next(1)
    bad = _raise(exc)
    rec = Recorder({"X-Ok": "1"})
    hooks = (
        Hooks(before_send=[bad], after_send=[bad], on_retry=[bad], on_failure=[bad])
        + rec.hooks()
    )
    caplog.set_level(logging.ERROR, "smtpkit")
    with _mailer(fake, hooks) as mailer:
        if isinstance(exc, SendVetoedError):  # raised from before_send: a veto
            with pytest.raises(SendVetoedError):
                mailer.send(MSG)
            return
        result = mailer.send(MSG)
        results = mailer.send_many([MSG, (RAW, ENV)])
    assert result.accepted
    assert all(r.accepted for r in results)
    assert rec.kinds().count("after") == 3  # later hooks still run
    assert all(m.message["X-Ok"] == "1" for m in fake.outbox)
    logged = [r.getMessage() for r in caplog.records]
    assert any("hook broken raised" in text for text in logged)
    assert not any("b@example.com" in text for text in logged)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_ctrl_c_and_exit_from_a_hook_propagate(exc):
    fake = FakeTransport()
    with _mailer(fake, Hooks(after_send=[_raise(exc())])) as mailer:
        with pytest.raises(exc):
            mailer.send(MSG)
    assert len(fake.outbox) == 1  # it was sent; the hook stopped the caller


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_ctrl_c_from_a_hook_in_a_bulk_worker_loses_no_outcome(exc, caplog):
    """In a worker thread it cannot stop the caller: logged, every result kept."""
    fake = FakeTransport()
    fake.fail_next(1)
    bad = _raise(exc())
    hooks = Hooks(before_send=[bad], after_send=[bad], on_retry=[bad], on_failure=[bad])
    caplog.set_level(logging.ERROR, "smtpkit")
    with _mailer(fake, hooks) as mailer:
        results = mailer.send_many([MSG] * 5 + [(RAW, ENV)], concurrency=2)
        with mailer.send_iter([MSG, MSG]) as stream:
            streamed = list(stream)
    assert all(r.accepted for r in [*results, *streamed])
    assert len(fake.outbox) == 8
    assert any(f"raised {exc.__name__}" in r.getMessage() for r in caplog.records)


def test_send_many_and_send_iter_report_every_message():
    fake = FakeTransport(refuse={"x@example.com": "550 5.1.1 no"})
    fake.fail_next(1)
    rec = Recorder()
    bad = Message(sender="a@example.com", to="x@example.com", subject="s", text="t")
    with _mailer(fake, rec.hooks()) as mailer:
        results = mailer.send_many([MSG, bad, (RAW, ENV), b"no envelope"])
        with mailer.send_iter([MSG, bad]) as stream:
            streamed = list(stream)
    assert [r.error is None for r in results] == [True, False, True, False]
    assert len(streamed) == 2
    kinds = rec.kinds()
    assert kinds.count("before") == 5  # not the unpreparable one
    assert kinds.count("after") == 3
    assert kinds.count("failure") == 2
    assert kinds.count("retry") == 1
    events = {id(e) for kind, e, _ in rec.calls if kind == "before"}
    assert {id(e) for kind, e, _ in rec.calls if kind != "before"} <= events


def test_hooks_value():
    hook = Recorder().before
    assert not Hooks()
    assert Hooks(before_send=[hook])
    both = Hooks(before_send=[hook]) + Hooks(after_send=[print])
    assert both.before_send == (hook,)
    assert both.after_send == (print,)
    assert Hooks().__add__(3) is NotImplemented
    with pytest.raises(ValueError, match="callable"):
        Hooks(before_send=[3])
    event = SendEvent(ENV, None, 10)
    event.state["k"] = 1
    assert "state" not in repr(event)


def test_no_hooks_means_no_event():
    fake = FakeTransport()
    with Mailer(transport=fake, hooks=Hooks()) as mailer:
        assert mailer.send(MSG).accepted


@pytest.mark.asyncio
class TestAsync:
    async def test_hooks_around_async_send_and_send_many(self):
        fake = FakeTransport(refuse={"x@example.com": "550 5.1.1 no"})
        fake.fail_next(1)
        rec = Recorder({"X-Async": "yes"})
        bad = Message(sender="a@example.com", to="x@example.com", subject="s", text="t")
        async with AsyncMailer(
            transport=fake, hooks=rec.hooks(), retry=no_wait()
        ) as mailer:
            result = await mailer.send(MSG)
            with pytest.raises(RecipientsRefusedError):
                await mailer.send(bad)
            results = await mailer.send_many([MSG, bad])
        assert result.accepted
        assert [r.error is None for r in results] == [True, False]
        assert rec.kinds().count("after") == 2
        assert rec.kinds().count("failure") == 2
        assert rec.kinds().count("retry") == 1
        assert all(m.message["X-Async"] == "yes" for m in fake.outbox)

    async def test_async_veto(self):
        fake = FakeTransport()
        failures = []

        def veto(event):
            raise SendVetoedError

        hooks = Hooks(before_send=[veto], on_failure=[lambda e, x: failures.append(x)])
        async with AsyncMailer(transport=fake, hooks=hooks) as mailer:
            with pytest.raises(SendVetoedError):
                await mailer.send(MSG)
            results = await mailer.send_many([MSG])
        assert isinstance(results[0].error, SendVetoedError)
        assert len(failures) == 2
        assert fake.attempts == []

    async def test_cancelled_between_attempts_reports_the_failure(self):
        started = asyncio.Event()
        calls = []
        detached = []

        async def sleep(seconds):
            started.set()
            await asyncio.sleep(3600)

        fake = FakeTransport()
        fake.fail_next(1)
        hooks = Hooks(
            after_send=[lambda e, r: calls.append(("after", r))],
            on_failure=[lambda e, x: calls.append(("failure", x))],
        )
        async with AsyncMailer(
            transport=fake, hooks=hooks, sleep=sleep, on_detached=detached.append
        ) as mailer:
            task = asyncio.ensure_future(mailer.send(MSG))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        [(kind, error)] = calls
        assert kind == "failure"
        assert error is detached[0].error  # the outcome on_detached got

    async def test_cancelled_in_flight_reports_the_late_outcome(self):
        on_wire = threading.Event()
        release = threading.Event()
        calls = []

        def handler(envelope, data):
            on_wire.set()
            release.wait(5)

        hooks = Hooks(
            after_send=[lambda e, r: calls.append(("after", r))],
            on_failure=[lambda e, x: calls.append(("failure", x))],
        )
        async with AsyncMailer(transport=FakeTransport(handler), hooks=hooks) as mailer:
            task = asyncio.ensure_future(mailer.send(MSG))
            await asyncio.get_running_loop().run_in_executor(None, on_wire.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert calls == []
            release.set()
        [(kind, result)] = calls
        assert kind == "after"
        assert result.accepted == ("b@example.com",)


class _Signer:
    """Signs by prepending a digest of everything it was given."""

    def __init__(self, fail=False):
        self.fail = fail

    def sign(self, message):
        if self.fail:
            raise RuntimeError("no key")
        return b"X-Digest: " + hashlib.sha256(message).hexdigest().encode() + b"\r\n"


def test_hooks_run_before_the_signer_so_it_covers_their_headers():
    fake = FakeTransport()
    hooks = Hooks(before_send=[lambda e: {"X-Campaign": "spring"}])
    mailer = Mailer(transport=fake, hooks=hooks, signer=_Signer())
    with mailer:
        mailer.send(MSG)
        mailer.send_many([MSG])
    for sent in fake.outbox:
        digest, rest = sent.data.split(b"\r\n", 1)
        assert rest.startswith(b"X-Campaign: spring\r\n")
        assert digest == b"X-Digest: " + hashlib.sha256(rest).hexdigest().encode()


def test_a_failing_signer_is_the_message_failure_for_the_hooks():
    fake = FakeTransport()
    rec = Recorder()
    with Mailer(transport=fake, hooks=rec.hooks(), signer=_Signer(fail=True)) as m:
        with pytest.raises(SigningError):
            m.send(MSG)
        [result] = m.send_many([MSG])
    assert isinstance(result.error, SigningError)
    assert rec.kinds() == ["before", "failure"] * 2
    assert fake.attempts == []


@pytest.mark.asyncio
async def test_async_hooks_run_before_the_signer_and_see_its_failure():
    fake = FakeTransport()
    rec = Recorder({"X-Campaign": "spring"})
    async with AsyncMailer(transport=fake, hooks=rec.hooks(), signer=_Signer()) as m:
        await m.send(MSG)
    digest, rest = fake.outbox[0].data.split(b"\r\n", 1)
    assert rest.startswith(b"X-Campaign: spring\r\n")
    assert digest == b"X-Digest: " + hashlib.sha256(rest).hexdigest().encode()
    rec = Recorder()
    failing = AsyncMailer(transport=fake, hooks=rec.hooks(), signer=_Signer(fail=True))
    async with failing:
        with pytest.raises(SigningError):
            await failing.send(MSG)
    assert rec.kinds() == ["before", "failure"]
