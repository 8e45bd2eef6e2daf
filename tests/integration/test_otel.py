"""OpenTelemetry spans and metrics against aiosmtpd, read back with the SDK's
in-memory exporter and reader."""

from __future__ import annotations

import concurrent.futures
import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from smtpkit import (
    AsyncMailer,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    FailoverTransport,
    Hooks,
    Mailer,
    Message,
    RecipientsRefusedError,
    RetryPolicy,
    SendVetoedError,
    SMTPConfig,
)
from smtpkit.auth import PlainAuth
from smtpkit.contrib.otel import SMTPTelemetry
from smtpkit.testing import FakeTransport, no_wait

from .smtpd import GatedHandler, free_port

pytestmark = pytest.mark.integration


def _message(to="b@example.com"):
    return Message(sender="a@example.com", to=to, subject="Secret plans", text="Hi")


class Telemetry:
    """An SMTPTelemetry wired to in-memory SDK providers."""

    def __init__(self):
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = SMTPTelemetry(
            self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self, name):
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def metrics(self):
        """{metric name: [(attributes, value or histogram count)]}."""
        found = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = [
                        (
                            dict(point.attributes),
                            getattr(point, "value", getattr(point, "count", None)),
                        )
                        for point in metric.data.data_points
                    ]
        return found

    def no_addresses(self):
        """No span attribute or event holds an address or the subject."""
        for span in self.exporter.get_finished_spans():
            values = [*span.attributes.values()]
            for event in span.events:
                values.extend(event.attributes.values())
            values.append(span.status.description or "")
            for value in values:
                assert "@" not in str(value)
                assert "Secret" not in str(value)


@pytest.fixture
def otel():
    return Telemetry()


def _mailer(server, config_for, otel, **fields):
    mailer = Mailer(
        config_for(server, **fields), hooks=otel.telemetry.hooks, retry=no_wait()
    )
    otel.telemetry.watch(mailer.transport)
    return mailer


def test_message_span_is_a_child_of_the_callers_span(server, config_for, otel):
    tracer = otel.tracer_provider.get_tracer("app")
    with _mailer(server, config_for, otel) as mailer:
        with tracer.start_as_current_span("request") as parent:
            result = mailer.send(_message())
        gauge = otel.metrics()["smtp.client.connections.in_use"]
    assert result.accepted
    [span] = otel.spans("smtp send")
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes)
    assert attrs["smtp.recipients.count"] == 1
    assert attrs["smtp.recipients.accepted"] == 1
    assert attrs["smtp.recipients.refused"] == 0
    assert attrs["smtp.attempts"] == 1
    assert attrs["smtp.reply.code"] == 250
    assert attrs["smtp.message.size"] == len(server.messages[0].data)
    assert gauge == [({"server.address": server.host, "server.port": server.port}, 0)]
    [session] = otel.spans("smtp session")  # ended by close()
    assert session.kind is SpanKind.CLIENT
    assert session.parent is None  # a pooled session outlives its send
    assert session.attributes["server.address"] == server.host
    assert session.attributes["server.port"] == server.port
    assert session.attributes["smtp.tls"] is False
    assert "tls.protocol.version" not in session.attributes
    metrics = otel.metrics()
    assert metrics["smtp.client.messages.sent"] == [({}, 1)]
    assert metrics["smtp.client.send.duration"] == [({}, 1)]
    otel.no_addresses()


def test_session_span_over_starttls_and_auth(submission, otel):
    mailer = Mailer(submission(PlainAuth("alice", "wonderland")))
    otel.telemetry.watch(mailer.transport)
    with mailer:
        mailer.send(_message())
    [session] = otel.spans("smtp session")
    assert session.attributes["smtp.tls"] is True
    assert session.attributes["tls.protocol.version"] in {"1.2", "1.3"}
    assert session.attributes["smtp.auth.mechanism"] == "PLAIN"
    assert not otel.spans("smtp send")  # no hooks given: sessions only
    otel.no_addresses()


def test_refused_and_retried_messages(start_server, config_for, otel):
    server = start_server()
    server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
    server.handler.queue("EOD", "451 4.3.0 try again")
    with _mailer(server, config_for, otel) as mailer:
        with pytest.raises(RecipientsRefusedError):
            mailer.send(_message("gone@example.com"))
        mailer.send(_message())
    refused, retried = otel.spans("smtp send")
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.status.description == "RecipientsRefusedError"
    assert refused.attributes["error.type"] == "RecipientsRefusedError"
    assert refused.attributes["smtp.reply.code"] == 550
    assert refused.attributes["smtp.reply.enhanced_code"] == "5.1.1"
    [event] = retried.events
    assert event.name == "smtp.retry"
    assert event.attributes["smtp.attempt"] == 1
    assert event.attributes["smtp.reply.code"] == 451
    assert event.attributes["error.type"] == "DataRefusedError"
    assert retried.attributes["smtp.attempts"] == 2
    metrics = otel.metrics()
    assert metrics["smtp.client.messages.failed"] == [
        ({"error.type": "RecipientsRefusedError"}, 1)
    ]
    assert metrics["smtp.client.messages.sent"] == [({}, 1)]
    # As HTTP's request duration: error.type on failures only.
    assert sorted(metrics["smtp.client.send.duration"], key=lambda p: len(p[0])) == [
        ({}, 1),
        ({"error.type": "RecipientsRefusedError"}, 1),
    ]
    otel.no_addresses()


def test_send_many_spans_are_children_of_the_callers_span(server, config_for, otel):
    tracer = otel.tracer_provider.get_tracer("app")
    with _mailer(server, config_for, otel) as mailer:
        with tracer.start_as_current_span("campaign") as parent:
            results = mailer.send_many([_message() for _ in range(40)], concurrency=2)
    assert all(r.accepted for r in results)
    spans = otel.spans("smtp send")
    assert len(spans) == 40
    assert {s.parent.span_id for s in spans} == {parent.get_span_context().span_id}
    assert len(server.messages) == 40


def test_a_session_that_cannot_connect(otel):
    config = SMTPConfig(host="127.0.0.1", port=free_port(), tls="none", timeout=5.0)
    mailer = Mailer(config, hooks=otel.telemetry.hooks, retry=RetryPolicy.never())
    otel.telemetry.watch(mailer.transport)
    with mailer, pytest.raises(ConnectError):
        mailer.send(_message())
    [session] = otel.spans("smtp session")
    assert session.status.status_code is StatusCode.ERROR
    assert session.attributes["error.type"] == "ConnectError"
    [send] = otel.spans("smtp send")
    assert send.attributes["error.type"] == "ConnectError"
    assert send.attributes["smtp.attempts"] == 1


def test_hooks_add_headers_and_veto_on_the_wire(server, config_for, otel):
    def tag(event):
        if event.recipient_count > 1:
            raise SendVetoedError("one recipient per message")
        return {"X-Campaign": "spring"}

    hooks = Hooks(before_send=[tag]) + otel.telemetry.hooks
    with Mailer(config_for(server), hooks=hooks) as mailer:
        mailer.send(_message())
        with pytest.raises(SendVetoedError):
            mailer.send(_message(["b@example.com", "c@example.com"]))
    [received] = server.messages
    assert received.data.startswith(b"X-Campaign: spring\r\n")
    # The veto came before the telemetry's before_send: no span, but counted.
    assert len(otel.spans("smtp send")) == 1
    assert otel.metrics()["smtp.client.messages.failed"] == [
        ({"error.type": "SendVetoedError"}, 1)
    ]


@pytest.mark.asyncio
async def test_async_send_span_is_a_child_of_the_current_span(server, config_for, otel):
    tracer = otel.tracer_provider.get_tracer("app")
    mailer = AsyncMailer(config_for(server), hooks=otel.telemetry.hooks)
    otel.telemetry.watch(mailer.transport)
    async with mailer:
        with tracer.start_as_current_span("handler") as parent:
            await mailer.send(_message())
            await mailer.send_many([_message(), _message()])
    spans = otel.spans("smtp send")
    assert len(spans) == 3
    assert {s.parent.span_id for s in spans} == {parent.get_span_context().span_id}
    assert otel.spans("smtp session")  # every session ended with aclose()


def test_watch_takes_an_smtp_transport_only(otel):
    with pytest.raises(TypeError, match="SMTPTransport"):
        otel.telemetry.watch(FakeTransport())
    with pytest.raises(TypeError, match="SMTPTransport"):
        otel.telemetry.watch(FailoverTransport([FakeTransport()]))
    assert repr(otel.telemetry) == "<SMTPTelemetry watching 0 transport(s)>"


def test_watch_a_failover_transport_watches_each_server(server, config_for, otel):
    dead = SMTPConfig(host="127.0.0.1", port=free_port(), tls="none", timeout=5.0)
    inner = FailoverTransport([config_for(server), FakeTransport()])
    transport = FailoverTransport([dead, inner])
    otel.telemetry.watch(transport)
    assert repr(otel.telemetry) == "<SMTPTelemetry watching 2 transport(s)>"
    with Mailer(transport=transport, retry=no_wait(), hooks=otel.telemetry.hooks) as m:
        assert m.send(_message()).ok
        gauge = otel.metrics()["smtp.client.connections.in_use"]
    transport.close()
    assert sorted(attrs["server.port"] for attrs, _ in gauge) == sorted(
        [dead.port, server.port]
    )
    ports = [s.attributes["server.port"] for s in otel.spans("smtp session")]
    assert sorted(set(ports)) == sorted([dead.port, server.port])
    assert len(server.messages) == 1


def test_a_broken_observer_never_breaks_a_send(server, config_for, caplog):
    class Broken:
        def session_started(self, host, port):
            raise RuntimeError("started")

        def session_ready(self, token, conn):
            raise RuntimeError("ready")

        def session_ended(self, token, error):
            raise RuntimeError("ended")

    caplog.set_level(logging.ERROR, "smtpkit")
    mailer = Mailer(config_for(server))
    mailer.transport.session_observer = Broken()
    assert isinstance(mailer.transport.session_observer, Broken)
    with mailer:
        assert mailer.send(_message()).accepted
    logged = " ".join(r.getMessage() for r in caplog.records)
    for method in ("session_started", "session_ready", "session_ended"):
        assert f"session observer's {method} raised RuntimeError" in logged
    mailer.transport.session_observer = None
    assert mailer.transport.session_observer is None


def test_a_session_refused_at_auth_ends_once(submission, otel):
    mailer = Mailer(submission(PlainAuth("alice", "wrong")), retry=RetryPolicy.never())
    otel.telemetry.watch(mailer.transport)
    with mailer, pytest.raises(AuthenticationError):
        mailer.send(_message())
    [session] = otel.spans("smtp session")
    assert session.attributes["error.type"] == "AuthenticationError"
    assert "smtp.tls" not in session.attributes  # never set up
    otel.no_addresses()


def test_a_session_thrown_away_after_421_ends(start_server, config_for, otel):
    server = start_server()
    server.handler.queue("MAIL", "421 4.3.2 shutting down")
    with _mailer(server, config_for, otel) as mailer:
        mailer.send(_message())
        [first] = otel.spans("smtp session")  # ended when thrown away
        assert first.status.status_code is StatusCode.UNSET
    assert len(otel.spans("smtp session")) == 2
    [send] = otel.spans("smtp send")
    [event] = send.events
    assert event.attributes["smtp.reply.code"] == 421


def test_the_in_use_gauge_counts_a_connection_lent_to_a_send(
    start_server, config_for, otel
):
    handler = GatedHandler()
    server = start_server(handler=handler)
    mailer = _mailer(server, config_for, otel)
    with mailer, concurrent.futures.ThreadPoolExecutor(1) as pool:
        sending = pool.submit(mailer.send, _message())
        assert handler.entered.wait(5)
        during = otel.metrics()["smtp.client.connections.in_use"]
        handler.release.set()
        assert sending.result(5).accepted
        after = otel.metrics()["smtp.client.connections.in_use"]
    assert [value for _, value in during] == [1]
    assert [value for _, value in after] == [0]


def test_two_telemetries_on_one_mailer_keep_their_own_spans(server, config_for):
    first, second = Telemetry(), Telemetry()
    hooks = first.telemetry.hooks + second.telemetry.hooks
    with Mailer(config_for(server), hooks=hooks) as mailer:
        assert mailer.send(_message()).ok
    for otel in (first, second):
        [span] = otel.spans("smtp send")
        assert span.attributes["smtp.reply.code"] == 250
        [(attributes, count)] = otel.metrics()["smtp.client.send.duration"]
        assert (attributes, count) == ({}, 1)


def test_one_observer_per_transport_so_no_session_span_is_orphaned(
    server, config_for, otel
):
    other = Telemetry()
    with _mailer(server, config_for, otel) as mailer:
        assert mailer.send(_message()).ok  # a pooled session is open
        otel.telemetry.watch(mailer.transport)  # again: changes nothing
        with pytest.raises(ConfigurationError, match="another SMTPTelemetry"):
            other.telemetry.watch(mailer.transport)
        with pytest.raises(ConfigurationError, match="already has a session observer"):
            mailer.transport.session_observer = object()
        assert mailer.send(_message()).ok
    assert len(otel.spans("smtp session")) == 1  # ended by close(), not orphaned
    assert other.spans("smtp session") == []
    mailer.transport.session_observer = None  # then another may watch it
    other.telemetry.watch(mailer.transport)


class _Stray(BaseException):
    """Not an Exception: what a careless observer might still raise."""


class _Observer:
    def __init__(self, raises=None, where=()):
        self.raises = raises
        self.where = where
        self.conns = []
        self.ended = []

    def _maybe(self, method):
        if method in self.where:
            raise self.raises

    def session_started(self, host, port):
        self._maybe("started")
        return len(self.conns)

    def session_ready(self, token, conn):
        self.conns.append(conn)
        self._maybe("ready")

    def session_ended(self, token, error):
        self.ended.append(token)
        self._maybe("ended")


def test_an_observer_raising_a_base_exception_never_breaks_a_send(
    server, config_for, caplog
):
    caplog.set_level(logging.ERROR, "smtpkit")
    observer = _Observer(_Stray("observer"), where=("started", "ready", "ended"))
    mailer = Mailer(config_for(server))
    mailer.transport.session_observer = observer
    mailer.transport.session_observer = observer  # the same one again: kept
    with mailer:
        assert mailer.send(_message()).ok
    assert "session observer's session_ready raised _Stray" in caplog.text
    assert "session observer's session_ended raised _Stray" in caplog.text
    assert all(conn.sock is None for conn in observer.conns)


@pytest.mark.parametrize("stop", [_Stray("observer"), KeyboardInterrupt()])
def test_close_closes_every_connection_when_the_observer_raises(
    start_server, config_for, stop, caplog
):
    server = start_server(pipelining=True)
    observer = _Observer(stop, where=("ended",))
    mailer = Mailer(config_for(server))
    mailer.transport.session_observer = observer
    messages = [_message() for _ in range(120)]
    assert all(result.ok for result in mailer.send_many(messages, concurrency=3))
    assert len(observer.conns) >= 2
    if isinstance(stop, KeyboardInterrupt):  # raised once all are closed
        with pytest.raises(KeyboardInterrupt):
            mailer.close()
    else:
        mailer.close()
    assert all(conn.sock is None for conn in observer.conns)
    assert len(observer.ended) == len(observer.conns)  # each session reported


@pytest.mark.parametrize("where", ["started", "ready"])
def test_ctrl_c_from_the_observer_stops_the_send_and_leaks_no_socket(
    server, config_for, where
):
    observer = _Observer(KeyboardInterrupt(), where=(where,))
    mailer = Mailer(config_for(server), retry=RetryPolicy.never())
    mailer.transport.session_observer = observer
    with mailer, pytest.raises(KeyboardInterrupt):
        mailer.send(_message())
    assert all(conn.sock is None for conn in observer.conns)
    assert len(observer.ended) == len(observer.conns)
    assert server.messages == []
