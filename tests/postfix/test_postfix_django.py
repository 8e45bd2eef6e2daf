"""Django's mail API through smtpkit's backend into a real Postfix (submission, STARTTLS, AUTH)."""

from __future__ import annotations

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402 - after the importorskip
from django.core.mail import EmailMultiAlternatives, get_connection  # noqa: E402

from smtpkit.contrib.django import (  # noqa: E402
    SMTPKIT_RESULT,
    EmailBackend,
    close_shared_mailers,
)

from ..django import settings as project_settings  # noqa: E402
from .mta_config import TEST_USERS  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

if not settings.configured:
    settings.configure(
        **{k: v for k, v in vars(project_settings).items() if k.isupper()}
    )
    django.setup()


# Django >= 6.1 deprecates get_connection() (the project uses MAILERS there, and
# get_connection's arguments override its default mailer's OPTIONS).
@pytest.mark.filterwarnings(r"ignore:get_connection\(\) is deprecated")
def test_django_mail_through_postfix_submission(postfix, address):
    config = postfix.config("submission")
    user, password = next(iter(TEST_USERS.items()))
    to, bcc = address("to"), address("bcc")
    backend = EmailBackend(
        host=config.host,
        port=config.port,
        use_tls=True,
        username=user,
        password=password,
        ca_file=config.ca_file,
        local_hostname=config.local_hostname,
    )
    messages = []
    for n in range(3):
        message = EmailMultiAlternatives(
            f"Grüße {n}", "Hallo", "app@example.com", [to], bcc=[bcc]
        )
        message.attach_alternative("<p>Hallo</p>", "text/html")
        messages.append(message)
    try:
        assert backend.send_messages(messages) == 3
        assert (
            get_connection(
                host=config.host,
                port=config.port,
                use_tls=True,
                username=user,
                password=password,
                ca_file=config.ca_file,
                local_hostname=config.local_hostname,
            ).mailer
            is backend.mailer
        )
    finally:
        close_shared_mailers()
    deliveries = postfix.wait_for_deliveries(6, recipients=[to, bcc])
    assert sorted(d.recipient for d in deliveries).count(bcc) == 3
    subjects = sorted({d.message()["Subject"] for d in deliveries})
    assert subjects == ["Grüße 0", "Grüße 1", "Grüße 2"]
    assert all(d.message()["Bcc"] is None for d in deliveries)
    assert all(getattr(m, SMTPKIT_RESULT).ok for m in messages)
