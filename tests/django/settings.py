"""The settings module of the minimal Django project the backend is tested in.

``conftest.py`` configures Django from it (``settings.configure`` with its upper-case
names, as ``DJANGO_SETTINGS_MODULE`` would) and calls ``django.setup()``.  The
tests point ``EMAIL_HOST``/``EMAIL_PORT`` at their own server with
``override_settings``.
"""

SECRET_KEY = "smtpkit-tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
EMAIL_BACKEND = "smtpkit.contrib.django.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = 9  # discard: no test sends here unless it points EMAIL_PORT elsewhere
DEFAULT_FROM_EMAIL = "webmaster@example.com"
SMTPKIT = {"timeout": 5.0}
