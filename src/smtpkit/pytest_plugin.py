"""pytest fixtures for applications that send mail with smtpkit.

Registered through the ``pytest11`` entry point, so they exist as soon as smtpkit is
installed::

    def test_signup_sends_code(smtpkit_mailer, smtpkit_outbox):
        signup("ada@example.com", mailer=smtpkit_mailer)
        assert smtpkit_outbox[0].subject == "Your code"

    async def test_signup_async(smtpkit_async_mailer, smtpkit_outbox):
        await signup_async("ada@example.com", mailer=smtpkit_async_mailer)
        assert smtpkit_outbox[0].subject == "Your code"

``smtpkit_async_mailer`` is a plain fixture: it works under pytest-asyncio and
anyio's pytest plugin alike (this module imports neither).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._async_mailer import AsyncMailer
from ._mailer import Mailer
from ._transports.fake import FakeTransport, SentMessage
from .testing import no_wait

__all__ = [
    "smtpkit_async_mailer",
    "smtpkit_fake_transport",
    "smtpkit_mailer",
    "smtpkit_outbox",
]


@pytest.fixture
def smtpkit_fake_transport() -> FakeTransport:
    """A fresh ``FakeTransport`` (script failures with ``fail_next``)."""
    return FakeTransport()


@pytest.fixture
def smtpkit_mailer(smtpkit_fake_transport: FakeTransport) -> Iterator[Mailer]:
    """A ``Mailer`` on the fake transport that retries without sleeping."""
    with Mailer(transport=smtpkit_fake_transport, retry=no_wait()) as mailer:
        yield mailer


@pytest.fixture
def smtpkit_async_mailer(
    smtpkit_fake_transport: FakeTransport,
) -> Iterator[AsyncMailer]:
    """An ``AsyncMailer`` on the same fake transport, retrying without waiting.

    It opens on its first use, in the test's event loop, and is closed after
    the test (also when the test never awaited ``aclose()``).
    """
    mailer = AsyncMailer(transport=smtpkit_fake_transport, retry=no_wait())
    yield mailer
    mailer._close_after_loop()


@pytest.fixture
def smtpkit_outbox(smtpkit_fake_transport: FakeTransport) -> list[SentMessage]:
    """The messages the ``smtpkit_mailer`` and ``smtpkit_async_mailer`` fixtures delivered."""
    return smtpkit_fake_transport.outbox
