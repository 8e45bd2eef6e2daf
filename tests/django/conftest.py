"""A real, minimal Django project (tests/django/settings.py), and SMTP servers for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.test.utils import override_settings

from smtpkit.contrib.django import close_shared_mailers

from ..integration.smtpd import RecordingHandler, Server
from . import modes
from . import settings as project_settings

pytestmark = pytest.mark.integration

if not settings.configured:
    settings.configure(
        **{k: v for k, v in vars(project_settings).items() if k.isupper()}
    )
    django.setup()


@pytest.fixture
def legacy_email_settings() -> Iterator[None]:
    """``EMAIL_BACKEND`` and ``EMAIL_*`` as the project's mail settings.

    They are already before Django 6.1; on 6.1 ``MAILERS`` is removed for the
    test (Django reads no ``EMAIL_*`` while it is defined).  Used by
    ``modes.LEGACY``, which also ignores Django's deprecation warnings.
    """
    if not modes.HAS_MAILERS:
        yield
        return
    with override_settings(**project_settings.legacy_email_settings):
        del settings.MAILERS
        yield


def mailers_setting(**options: Any) -> dict[str, Any]:
    """A ``MAILERS`` setting: the default mailer is smtpkit's with *options*."""
    return {"default": {"BACKEND": project_settings.backend, "OPTIONS": options}}


@pytest.fixture(autouse=True)
def _fresh_shared_mailers() -> Iterator[None]:
    """Every test starts without shared mailers and leaves none open."""
    close_shared_mailers()
    yield
    close_shared_mailers()


class QuitRecordingHandler(RecordingHandler):
    """Also records QUIT, to see pools being closed."""

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.commands.append("QUIT")
        return "221 Bye"


@pytest.fixture
def start_server() -> Iterator[Any]:
    """Start aiosmtpd servers on 127.0.0.1; each stops when the test ends."""
    servers: list[Server] = []

    def start(*, pipelining: bool = True, **kwargs: Any) -> Server:
        server = Server(QuitRecordingHandler(pipelining=pipelining), **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Any) -> Iterator[Server]:
    """A plain server with PIPELINING and SMTPUTF8, set as EMAIL_HOST/EMAIL_PORT.

    For ``modes.LEGACY`` tests; ``MAILERS`` tests set their own OPTIONS.
    """
    started = start_server(enable_SMTPUTF8=True)
    with override_settings(EMAIL_HOST=started.host, EMAIL_PORT=started.port):
        yield started
