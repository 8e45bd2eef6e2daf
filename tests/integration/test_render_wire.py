"""``smtpkit.render`` against what a real server received from a send.

The server's DATA bytes (dot-unstuffed, as it stores them) must equal
``render(message)`` for any message: the rendering users export is the one
that goes out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from smtpkit import Mailer, Message, RetryPolicy, SMTPConfig, render

from ..unit.test_render import messages
from .smtpd import RecordingHandler, Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server(RecordingHandler(pipelining=True), enable_SMTPUTF8=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def mailer(server: Server) -> Iterator[Mailer]:
    config = SMTPConfig(host=server.host, port=server.port, tls="none", timeout=5.0)
    with Mailer(config, retry=RetryPolicy.never()) as running:
        yield running


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages())
def test_server_received_exactly_render(
    server: Server, mailer: Mailer, message: Message
) -> None:
    before = len(server.messages)
    assert mailer.send(message).ok
    received = server.messages[before]
    assert received.data == render(message)
    assert "hidden@example.org" in received.rcpt_tos or not message.bcc
