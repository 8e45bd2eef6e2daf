"""The ``smtpkit_async_mailer`` fixture, under pytest-asyncio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smtpkit import AsyncMailer, DataRefusedError, Message


def signup_message() -> Message:
    return Message(
        sender="app@example.com", to=["ada@example.com"], subject="Your code", text="42"
    )


@pytest.mark.asyncio
async def test_async_fixture_shares_the_fake_and_the_outbox(
    smtpkit_async_mailer, smtpkit_outbox, smtpkit_fake_transport
):
    assert isinstance(smtpkit_async_mailer, AsyncMailer)
    assert smtpkit_async_mailer.transport is smtpkit_fake_transport
    await smtpkit_async_mailer.send(signup_message())
    assert [m.subject for m in smtpkit_outbox] == ["Your code"]


@pytest.mark.asyncio
async def test_async_fixture_retries_without_waiting(
    smtpkit_async_mailer, smtpkit_fake_transport
):
    smtpkit_fake_transport.fail_next(2)
    result = await smtpkit_async_mailer.send(signup_message())
    assert result.attempts == 3
    assert smtpkit_async_mailer.retry.wait_max == 0


@pytest.mark.asyncio
async def test_async_fixture_surfaces_permanent_errors(
    smtpkit_async_mailer, smtpkit_fake_transport
):
    smtpkit_fake_transport.fail_next(1, "550 5.7.1 no")
    with pytest.raises(DataRefusedError):
        await smtpkit_async_mailer.send(signup_message())


@pytest.mark.asyncio
async def test_async_fixture_closed_by_the_test_itself(smtpkit_async_mailer):
    await smtpkit_async_mailer.send(signup_message())
    await smtpkit_async_mailer.aclose()  # the fixture's teardown then does nothing


def test_the_plugin_imports_no_async_test_framework() -> None:
    code = (
        "import sys, smtpkit.pytest_plugin; "
        "print(sorted(m for m in ('pytest_asyncio', 'anyio', 'trio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
