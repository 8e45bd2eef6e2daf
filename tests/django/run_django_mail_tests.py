"""Run Django's own SMTP-backend tests (tests/mail in its sdist) against smtpkit's backend.

Not part of the pytest suite: it needs Django's source distribution, which is not
vendored here and which the tests may not download.  Fetch the sdist that matches
the installed Django once, then point this script at it::

    python -m pip download --no-deps --no-binary :all: \\
        "django==$(python -c 'import django; print(django.__version__)')" -d /tmp/dj
    python tests/django/run_django_mail_tests.py /tmp/dj/django-*.tar.gz

It extracts ``tests/mail`` into a temporary directory, configures Django as its
test runner would (the default settings, locale-independent), replaces
``django.core.mail.backends.smtp.EmailBackend`` with
``smtpkit.contrib.django.EmailBackend`` (the tests use it through that name and
through ``EMAIL_BACKEND``), and runs ``SMTPBackendTests`` and
``SMTPBackendStoppedServerTests`` with unittest.  It prints every test's outcome
and a summary; the exit status is 0 when nothing outside ``EXPECTED_TO_DIFFER``
failed.
"""

# A command-line script: it imports Django only after configuring it.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

# Tests that cannot pass against a pooled backend, with the reason.  Every one of
# them inspects a private attribute of Django's class, mocks smtplib, or expects
# smtplib's own exception classes and messages, or a connection made by open().
EXPECTED_TO_DIFFER = {
    "test_auth_attempted": (
        "expects smtplib's 'SMTP AUTH extension not supported' from open(); "
        "smtpkit refuses credentials over cleartext at construction "
        "(ImproperlyConfigured) and connects lazily"
    ),
    "test_server_open": "reads backend.connection / _partial_connection (smtplib objects)",
    "test_reopen_connection": "sets backend.connection to a mock (private state)",
    "test_reopen_replaces_partial_connection": "reads _partial_connection and its socket",
    "test_email_tls_attempts_starttls": (
        "expects open() to connect and raise smtplib's STARTTLS error; the pool "
        "connects at the first send"
    ),
    "test_email_ssl_attempts_ssl_connection": (
        "expects open() to connect and raise ssl.SSLError; the pool connects at "
        "the first send (which raises smtpkit.TLSError)"
    ),
    "test_connection_timeout_custom": "reads backend.connection.timeout (an smtplib.SMTP)",
    "test_email_msg_uses_crlf": "patches smtplib.SMTP.send, which smtpkit does not call",
    "test_send_messages_after_open_failed": "sets backend.connection to a mock",
    "test_email_authentication_use_settings": (
        "credentials without EMAIL_USE_TLS/SSL: smtpkit refuses to send them in "
        "cleartext (ImproperlyConfigured unless SMTPKIT allow_insecure_auth)"
    ),
    "test_email_authentication_override_settings": "the same: cleartext credentials",
    "test_email_ssl_keyfile_use_settings": (
        "a key file without a certificate file: smtpkit refuses it at "
        "construction, Django only when connecting"
    ),
    "test_email_ssl_keyfile_override_settings": "the same: key file without certificate",
    "test_lazy_addresses": (
        "sends to 'tester' and 'django', addresses without a domain, which "
        "smtpkit refuses (RFC 5321 §4.1.2); lazy addresses are tested in "
        "tests/django/test_messages.py"
    ),
    "test_recipient_without_domain": "the same: an address without a domain",
    "test_fail_silently_on_connection_error": (
        "expects open() to connect (and fail); open() makes no connection here"
    ),
}


def extract(sdist: Path, into: Path) -> Path:
    """Extract tests/mail from the sdist; return the directory holding ``mail``."""
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/tests/mail/" in m.name]
        archive.extractall(into, members=members, filter="data")
    [mail_dir] = into.glob("*/tests/mail")
    return mail_dir.parent


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="django-mail-tests",
        USE_TZ=True,
        INSTALLED_APPS=[],
        DATABASES={},
    )
    django.setup()
    import django.core.mail.backends.smtp as django_smtp

    from smtpkit.contrib.django import EmailBackend, close_shared_mailers

    django_smtp.EmailBackend = EmailBackend  # what the tests construct and name

    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(extract(Path(argv[1]), Path(tmp))))
        from mail import tests  # Django's tests/mail/tests.py

        tests.smtp.EmailBackend = EmailBackend
        loader = unittest.defaultTestLoader
        suite = unittest.TestSuite(
            [
                loader.loadTestsFromTestCase(tests.SMTPBackendTests),
                loader.loadTestsFromTestCase(tests.SMTPBackendStoppedServerTests),
            ]
        )
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
        close_shared_mailers()
    failed = {
        test.id().rpartition(".")[2]: text
        for test, text in [*result.failures, *result.errors]
    }
    unexpected = sorted(set(failed) - set(EXPECTED_TO_DIFFER))
    differing = sorted(set(failed) & set(EXPECTED_TO_DIFFER))
    passed_anyway = sorted(set(EXPECTED_TO_DIFFER) - set(failed))
    print(
        f"\nran {result.testsRun}, passed {result.testsRun - len(failed)}, "
        f"failed {len(failed)} ({len(differing)} expected, {len(unexpected)} not), "
        f"skipped {len(result.skipped)}"
    )
    for name in differing:
        print(f"  differs by design: {name}: {EXPECTED_TO_DIFFER[name]}")
    for name in passed_anyway:
        print(f"  listed as differing but passed: {name}")
    for name in unexpected:
        print(f"  UNEXPECTED FAILURE: {name}\n{failed[name]}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
