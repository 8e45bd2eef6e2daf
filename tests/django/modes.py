"""Django 6.1's two ways to configure mail, as marks for the test modules.

Django 6.1 deprecates ``EMAIL_BACKEND``/``EMAIL_*`` (RemovedInDjango2028Warning)
for ``MAILERS``, and refuses to read ``EMAIL_*`` once ``MAILERS`` is defined.
The test project (``settings.py``) uses ``MAILERS`` there and ``EMAIL_BACKEND``
before.  Tests of the ``EMAIL_*`` settings carry ``LEGACY``: on Django >= 6.1
they run with ``MAILERS`` removed and the ``EMAIL_*`` settings back (the
``legacy_email_settings`` fixture), with Django's deprecation warnings for
exactly that ignored.  Tests of ``MAILERS`` carry ``MAILERS``: skipped below 6.1.
"""

from __future__ import annotations

from typing import Final

import django
import pytest

HAS_MAILERS: Final = django.VERSION >= (6, 1)

MODERN_MESSAGES: Final = django.VERSION >= (6, 0)
"""Django 6 builds stdlib ``email.message.EmailMessage`` objects (policy default).

Before 6.0 ``message()`` returns Django's compat32 ``SafeMIME*`` classes.  The
modern message is rendered by smtpkit in UTF-8 when it goes with SMTPUTF8, takes
``MIMEPart`` attachments (``MIMEBase`` ones are deprecated) and folds long
fields itself; tests assert the bytes each version legitimately sends.
"""

DEPRECATION_FILTERS: Final = [
    # Django 6.1's RemovedInDjango2028Warning, by message (the class does not
    # exist before 6.1, so a filter cannot name it).
    pytest.mark.filterwarnings(r"ignore:The EMAIL_\w+ setting is deprecated"),
    pytest.mark.filterwarnings(r"ignore:get_connection\(\) is deprecated"),
    pytest.mark.filterwarnings(r"ignore:The 'fail_silently' argument is deprecated"),
    pytest.mark.filterwarnings(r"ignore:The 'connection' argument is deprecated"),
]

LEGACY: Final = [
    pytest.mark.usefixtures("legacy_email_settings"),
    *DEPRECATION_FILTERS,
]
"""Marks for tests of ``EMAIL_BACKEND`` and the ``EMAIL_*`` settings."""

MAILERS: Final = [
    pytest.mark.skipif(not HAS_MAILERS, reason="MAILERS is new in Django 6.1"),
]
"""Marks for tests of Django 6.1's ``MAILERS``."""
