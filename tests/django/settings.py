"""The settings module of the minimal Django project the backend is tested in.

``conftest.py`` configures Django from it (``settings.configure`` with its upper-case
names, as ``DJANGO_SETTINGS_MODULE`` would) and calls ``django.setup()``.

On Django >= 6.1 the project uses ``MAILERS`` (``EMAIL_*`` are deprecated there);
before, ``EMAIL_BACKEND``.  Tests of the ``EMAIL_*`` settings get them back on
6.1 (``modes.LEGACY``), and point ``EMAIL_HOST``/``EMAIL_PORT`` (or the
mailer's OPTIONS) at their own server with ``override_settings``.
"""

import django

SECRET_KEY = "smtpkit-tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
DEFAULT_FROM_EMAIL = "webmaster@example.com"
SMTPKIT = {"timeout": 5.0}

# Lower case: not settings (conftest passes the upper-case names to Django).
backend = "smtpkit.contrib.django.EmailBackend"
# Port 9 (discard): no test sends here unless it points the port elsewhere.
legacy_email_settings = {
    "EMAIL_BACKEND": backend,
    "EMAIL_HOST": "127.0.0.1",
    "EMAIL_PORT": 9,
}
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": backend,
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 5.0},
        }
    }
else:
    EMAIL_BACKEND = backend
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = 9
