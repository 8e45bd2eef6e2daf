"""SMTPTelemetry's message hooks over FakeTransport: replies with and without
enhanced codes, errors without a reply, and events its before_send never saw."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from smtpkit import (
    ConnectError,
    Envelope,
    Mailer,
    Message,
    RetryDetails,
    SendEvent,
    SendResult,
)
from smtpkit.contrib.otel import SMTPTelemetry
from smtpkit.testing import FakeTransport, no_wait, reply

MSG = Message(sender="a@example.com", to="b@example.com", subject="s", text="t")
ENV = Envelope(sender="a@example.com", recipients=("b@example.com",))


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return SMTPTelemetry(provider), exporter


def test_replies_without_an_enhanced_code(traced):
    telemetry, exporter = traced
    fake = FakeTransport.scripted(reply("250 OK"), reply("554 no"))
    with Mailer(transport=fake, hooks=telemetry.hooks, retry=no_wait()) as mailer:
        mailer.send(MSG)
        results = mailer.send_many([MSG])
    assert results[0].error is not None
    sent, failed = exporter.get_finished_spans()
    assert sent.attributes["smtp.reply.code"] == 250
    assert "smtp.reply.enhanced_code" not in sent.attributes
    assert failed.attributes["smtp.reply.code"] == 554
    assert "smtp.reply.enhanced_code" not in failed.attributes


def test_errors_without_a_reply(traced):
    telemetry, exporter = traced
    fake = FakeTransport.scripted(ConnectError("refused"), ConnectError("refused"))
    with Mailer(transport=fake, hooks=telemetry.hooks, retry=no_wait()) as mailer:
        mailer.send(MSG)
    [span] = exporter.get_finished_spans()
    assert [e.attributes["error.type"] for e in span.events] == ["ConnectError"] * 2
    assert "smtp.reply.code" not in span.events[0].attributes
    assert span.attributes["smtp.attempts"] == 3


def test_events_the_before_hook_never_saw_are_ignored(traced):
    telemetry, exporter = traced
    hooks = telemetry.hooks
    event = SendEvent(ENV, None, 10)
    hooks.on_retry[0](event, RetryDetails(1, 0.0, ConnectError("x"), 0.0))
    hooks.after_send[0](event, SendResult(envelope=ENV))
    assert exporter.get_finished_spans() == ()


def test_import_smtpkit_never_imports_opentelemetry():
    code = (
        "import sys, smtpkit, smtpkit.testing\n"
        "mailer = smtpkit.Mailer(transport=smtpkit.testing.FakeTransport(),"
        " hooks=smtpkit.Hooks(after_send=[print]))\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_opentelemetry_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "smtpkit.contrib.otel")
    with pytest.raises(ImportError, match=r"pip install 'pysmtpkit\[otel\]'"):
        importlib.import_module("smtpkit.contrib.otel")
