"""Django integration: ``EMAIL_BACKEND = "smtpkit.contrib.django.EmailBackend"``.

Install it with the ``django`` extra (``pip install "pysmtpkit[django]"``).  The
backend reads Django's ``EMAIL_*`` settings and, for what they cannot express
(pool limits, retry policy, rate limit, OAuth2), the ``SMTPKIT`` setting; every
backend instance in a process shares one pooled ``smtpkit.Mailer`` per distinct
configuration.  See docs/guide/django.md.
"""

from __future__ import annotations

try:
    import django  # noqa: F401 - only to say which extra is missing
except ImportError as exc:  # pragma: no cover - the test extra installs Django
    msg = 'smtpkit.contrib.django needs Django: pip install "pysmtpkit[django]"'
    raise ImportError(msg) from exc

from ._backend import SMTPKIT_RESULT, EmailBackend
from ._shared import close_shared_mailers

__all__ = ["SMTPKIT_RESULT", "EmailBackend", "close_shared_mailers"]
