"""Every message whose before_send hooks ran gets exactly one outcome hook, and its
``smtp send`` span ends, however the send stops (Ctrl-C, cancellation, timeouts),
against aiosmtpd on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from smtpkit import (
    AsyncMailer,
    Hooks,
    InvalidMessageError,
    Mailer,
    Message,
    NotSentError,
    PoolLimits,
    RateLimit,
    SendVetoedError,
    TransportError,
)
from smtpkit.contrib.otel import SMTPTelemetry
from smtpkit.testing import no_wait

from .smtpd import GatedHandler

pytestmark = pytest.mark.integration


def _message(number=0, to="b@example.com"):
    return Message(sender="a@example.com", to=to, subject=f"n{number}", text="Hi")


class Outcomes:
    """Records each before_send and each outcome hook call, with span checks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.before = []
        self.outcomes = []  # (kind, event, result or error)
        self.reported = threading.Event()
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry = SMTPTelemetry(self.provider)

    def hooks(self):
        mine = Hooks(
            before_send=[self._before],
            after_send=[lambda e, r: self._outcome("after", e, r)],
            on_failure=[lambda e, x: self._outcome("failure", e, x)],
        )
        return mine + self.telemetry.hooks

    def _before(self, event):
        with self.lock:
            self.before.append(event)

    def _outcome(self, kind, event, payload):
        with self.lock:
            self.outcomes.append((kind, event, payload))
        self.reported.set()

    def each_once(self):
        """Exactly one outcome per message that was given to before_send; every
        message span ended."""
        with self.lock:
            seen = [id(event) for _, event, _ in self.outcomes]
            assert sorted(seen) == sorted(id(event) for event in self.before)
        spans = [s for s in self.exporter.get_finished_spans() if s.name == "smtp send"]
        assert len(spans) == len(self.before)
        return {kind for kind, _, _ in self.outcomes}


def test_ctrl_c_in_a_retry_wait_is_the_messages_failure(start_server, config_for):
    server = start_server()
    server.handler.rcpt_replies["t@example.com"] = ["451 4.3.0 later"]
    seen = Outcomes()

    def sleep(seconds):
        raise KeyboardInterrupt  # Ctrl-C while waiting to retry

    with Mailer(config_for(server), hooks=seen.hooks(), sleep=sleep) as mailer:
        with pytest.raises(KeyboardInterrupt):
            mailer.send(_message(to="t@example.com"))
    assert seen.each_once() == {"failure"}
    [(_, _, error)] = seen.outcomes
    assert type(error) is TransportError
    assert error.delivery_unknown
    assert isinstance(error.__cause__, KeyboardInterrupt)
    [span] = seen.exporter.get_finished_spans()
    assert span.attributes["error.type"] == "TransportError"
    assert server.messages == []


@pytest.mark.asyncio
async def test_async_send_timed_out_before_its_attempt(start_server, config_for):
    server = start_server()
    seen = Outcomes()
    mailer = AsyncMailer(
        config_for(server), hooks=seen.hooks(), rate_limit=RateLimit(per_second=0.5)
    )
    async with mailer:
        assert (await mailer.send(_message(1))).ok
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mailer.send(_message(2)), 0.2)
    assert seen.each_once() == {"after", "failure"}
    kind, _, error = seen.outcomes[1]
    assert kind == "failure"
    assert isinstance(error, NotSentError)
    assert error.attempts == 0
    assert len(server.messages) == 1


@pytest.mark.asyncio
async def test_async_send_cancelled_on_the_wire_reports_its_late_outcome(
    start_server, config_for
):
    handler = GatedHandler()
    server = start_server(handler=handler)
    seen = Outcomes()
    async with AsyncMailer(config_for(server), hooks=seen.hooks()) as mailer:
        task = asyncio.ensure_future(mailer.send(_message()))
        assert await asyncio.to_thread(handler.entered.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen.outcomes == []  # not yet known
        handler.release.set()
        assert await asyncio.to_thread(seen.reported.wait, 5)
    assert seen.each_once() == {"after"}
    assert len(server.messages) == 1


@pytest.mark.asyncio
async def test_async_send_withdrawn_from_the_queue_is_not_sent(
    start_server, config_for
):
    handler = GatedHandler()
    server = start_server(handler=handler)
    seen = Outcomes()
    config = config_for(server, pool=PoolLimits(max_connections=1))
    async with AsyncMailer(config, hooks=seen.hooks()) as mailer:
        first = asyncio.ensure_future(mailer.send(_message(1)))
        assert await asyncio.to_thread(handler.entered.wait, 5)
        second = asyncio.ensure_future(mailer.send(_message(2)))
        while len(seen.before) < 2:  # queued behind the first, for the one worker
            await asyncio.sleep(0.01)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        [(kind, event, error)] = seen.outcomes
        assert (kind, event) == ("failure", seen.before[1])
        assert isinstance(error, NotSentError)
        handler.release.set()
        assert (await first).ok
    assert seen.each_once() == {"after", "failure"}
    assert len(server.messages) == 1


@pytest.mark.asyncio
async def test_async_send_many_cancelled_reports_every_message(
    start_server, config_for
):
    server = start_server()
    seen = Outcomes()
    mailer = AsyncMailer(
        config_for(server), hooks=seen.hooks(), rate_limit=RateLimit(per_second=4)
    )
    async with mailer:
        messages = [_message(n) for n in range(6)]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mailer.send_many(messages), 0.4)
    assert seen.each_once() == {"after", "failure"}
    failures = [error for kind, _, error in seen.outcomes if kind == "failure"]
    assert all(isinstance(error, NotSentError) for error in failures)
    assert len(server.messages) == len(seen.outcomes) - len(failures)


@pytest.mark.parametrize(
    "name",
    [
        "Content-Type",
        "content-transfer-encoding",
        "MIME-Version",
        "Return-Path",
        "TO",
        "Bcc",
    ],
)
def test_once_only_fields_cannot_be_added(start_server, config_for, name):
    server = start_server()
    seen = Outcomes()
    headers = iter([{"X-Ok": "1", name: "text/html"}, {"X-Ok": "1"}])
    extra = Hooks(before_send=[lambda event: next(headers)])
    html = Message(
        sender="a@example.com", to="b@example.com", subject="s", text="t", html="<p/>"
    )
    with Mailer(config_for(server), hooks=extra + seen.hooks()) as mailer:
        with pytest.raises(InvalidMessageError, match=f"may not add a {name} header"):
            mailer.send(html)
        assert mailer.send(_message()).ok  # a hook without such fields is fine
    [(kind, _, error)] = seen.outcomes[:1]
    assert (kind, type(error)) == ("failure", InvalidMessageError)
    [received] = server.messages  # only the second message
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["X-Ok"] == "1"
    assert len(parsed.get_all("Content-Type")) == 1
    assert len(parsed.get_all("MIME-Version")) == 1


def _raise(exc):
    def hook(*args):
        raise exc

    return hook


def _stops_cases():
    ki, bye = KeyboardInterrupt(), SystemExit(3)
    return {
        "after_send, user hooks first": (Hooks(after_send=[_raise(ki)]), ki, "after"),
        "two stops: the first wins": (
            Hooks(after_send=[_raise(ki), _raise(bye)]),
            ki,
            "after",
        ),
        "before_send, telemetry first": (
            None,
            ki,
            "failure",
        ),
        "before_send, then a veto": (Hooks(before_send=[_raise(ki)]), ki, "failure"),
        "on_failure, user hooks first": (
            Hooks(on_failure=[_raise(bye)]),
            bye,
            "failure",
        ),
        "on_retry, user hooks first": (Hooks(on_retry=[_raise(bye)]), bye, "failure"),
    }


@pytest.mark.parametrize("case", list(_stops_cases()))
def test_a_stop_from_one_hook_lets_the_others_run(start_server, config_for, case):
    user, stop, outcome = _stops_cases()[case]
    server = start_server()
    seen = Outcomes()
    retried = []
    if user is None:  # the documented order reversed: ours after the user's
        hooks = seen.hooks() + Hooks(before_send=[_raise(stop)])
    else:
        hooks = user + seen.hooks() + Hooks(on_retry=[lambda e, d: retried.append(d)])
    if "veto" in case:
        hooks += Hooks(before_send=[_raise(SendVetoedError("no"))])
    to = "b@example.com"
    if "on_failure" in case:
        server.handler.rcpt_replies[to] = "550 5.1.1 no such user"
    if "on_retry" in case:
        server.handler.rcpt_replies[to] = ["451 4.3.0 later"]
    mailer = Mailer(config_for(server), hooks=hooks, retry=no_wait())
    with mailer, pytest.raises(type(stop)) as raised:
        mailer.send(_message(to=to))
    assert raised.value is stop
    assert seen.each_once() == {outcome}
    assert len(retried) == ("on_retry" in case)
    [(_, _, error)] = seen.outcomes
    if "before_send" in case:
        assert isinstance(error, NotSentError)
        assert error.__cause__ is stop
        assert server.messages == []
    if "on_retry" in case:  # stopped in the wait: the send is the failure
        assert error.delivery_unknown
        assert error.__cause__ is stop


def test_send_iter_spans_are_children_of_the_span_it_is_iterated_in(
    start_server, config_for
):
    server = start_server(pipelining=True)
    seen = Outcomes()
    tracer = seen.provider.get_tracer("app")
    with Mailer(config_for(server), hooks=seen.hooks()) as mailer:
        stream = mailer.send_iter([_message(n) for n in range(3)], concurrency=2)
        with tracer.start_as_current_span("request") as request:
            assert all(result.ok for result in stream)
    assert seen.each_once() == {"after"}
    spans = [s for s in seen.exporter.get_finished_spans() if s.name == "smtp send"]
    parent = request.get_span_context().span_id
    assert [span.parent.span_id for span in spans] == [parent] * 3


def test_message_size_is_as_rendered_before_the_hooks_headers(start_server, config_for):
    server = start_server()
    seen = Outcomes()
    tag = Hooks(before_send=[lambda event: {"X-Big": "y" * 500}])
    with Mailer(config_for(server), hooks=tag + seen.hooks()) as mailer:
        assert mailer.send(_message()).ok
    [event] = seen.before
    [span] = seen.exporter.get_finished_spans()
    assert span.attributes["smtp.message.size"] == event.size
    data = server.messages[0].data
    added = data.index(b"\r\n", data.index(b"yyy")) + 2  # the folded X-Big line
    assert data.startswith(b"X-Big:")
    assert len(data) == event.size + added
