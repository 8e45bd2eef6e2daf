"""The pytest plugin (registered by the pytest11 entry point) and its fixtures."""

from __future__ import annotations

import pytest

from smtpkit import DataRefusedError, Mailer, Message
from smtpkit.testing import FakeTransport


def test_fixtures_share_one_fake(
    smtpkit_mailer, smtpkit_outbox, smtpkit_fake_transport
):
    assert isinstance(smtpkit_mailer, Mailer)
    assert isinstance(smtpkit_fake_transport, FakeTransport)
    assert smtpkit_mailer.transport is smtpkit_fake_transport
    assert smtpkit_outbox is smtpkit_fake_transport.outbox
    assert smtpkit_outbox == []


def test_mailer_fixture_records_sends(smtpkit_mailer, smtpkit_outbox):
    smtpkit_mailer.send(
        Message(
            sender="app@example.com",
            to="ada@example.com",
            subject="Your code",
            text="1234",
        )
    )
    [sent] = smtpkit_outbox
    assert sent.subject == "Your code"
    assert sent.body().strip() == "1234"
    assert sent.recipients == ("ada@example.com",)


def test_mailer_fixture_retries_without_waiting(smtpkit_mailer, smtpkit_fake_transport):
    smtpkit_fake_transport.fail_next(2)
    result = smtpkit_mailer.send(
        Message(sender="app@example.com", to="ada@example.com", text="x")
    )
    assert result.attempts == 3
    assert smtpkit_mailer.retry.wait_max == 0


def test_mailer_fixture_surfaces_permanent_errors(
    smtpkit_mailer, smtpkit_fake_transport
):
    smtpkit_fake_transport.fail_next(1, "550 5.7.1 no")
    with pytest.raises(DataRefusedError) as info:
        smtpkit_mailer.send(Message(sender="app@example.com", to="ada@example.com"))
    assert info.value.attempts == 1


def test_each_test_gets_a_fresh_outbox(smtpkit_outbox):
    assert smtpkit_outbox == []
