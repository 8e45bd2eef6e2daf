"""Django settings, ``SMTPKIT`` and constructor arguments -> smtpkit's config."""

from __future__ import annotations

import pickle
import smtplib
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.test.utils import override_settings

import smtpkit
from smtpkit import PoolLimits, RateLimit, RetryPolicy, TLSMode
from smtpkit.auth import XOAuth2Auth
from smtpkit.contrib.django import EmailBackend
from smtpkit.contrib.django._errors import as_django_error

from . import modes

pytestmark = modes.LEGACY

# (settings, constructor arguments, expected SMTPConfig fields)
MAPPING = [
    ({}, {}, {"host": "127.0.0.1", "port": 9, "tls": TLSMode.NONE, "username": None}),
    (
        {"EMAIL_HOST": "mx.test", "EMAIL_PORT": 2525},
        {},
        {"host": "mx.test", "port": 2525},
    ),
    ({"EMAIL_USE_TLS": True, "EMAIL_PORT": 587}, {}, {"tls": TLSMode.STARTTLS}),
    ({"EMAIL_USE_SSL": True, "EMAIL_PORT": 465}, {}, {"tls": TLSMode.IMPLICIT}),
    ({"EMAIL_USE_TLS": True}, {"use_tls": False}, {"tls": TLSMode.NONE}),
    ({}, {"use_ssl": True}, {"tls": TLSMode.IMPLICIT}),
    (
        {"EMAIL_HOST_USER": "u", "EMAIL_HOST_PASSWORD": "p", "EMAIL_USE_TLS": True},
        {},
        {"username": "u"},
    ),
    (  # Like Django: an empty user or password means no login.
        {"EMAIL_HOST_USER": "u", "EMAIL_HOST_PASSWORD": "p", "EMAIL_USE_TLS": True},
        {"username": "", "password": ""},
        {"username": None, "password": None},
    ),
    ({"EMAIL_HOST_USER": "u"}, {}, {"username": None}),
    (  # One credential argument combines with the other's setting, as in Django.
        {"EMAIL_HOST_USER": "u", "EMAIL_HOST_PASSWORD": "p", "EMAIL_USE_TLS": True},
        {"username": "other"},
        {"username": "other"},
    ),
    ({"EMAIL_USE_SSL": True}, {"use_tls": False}, {"tls": TLSMode.IMPLICIT}),
    (
        {"EMAIL_USE_TLS": True},
        {"username": "me", "password": "pw", "host": "h.test", "port": 25},
        {"username": "me", "host": "h.test", "port": 25},
    ),
    ({"EMAIL_TIMEOUT": 7, "SMTPKIT": None}, {}, {"timeout": 7.0}),
    ({"EMAIL_TIMEOUT": 7}, {}, {"timeout": 5.0}),  # SMTPKIT wins over EMAIL_*
    ({"EMAIL_TIMEOUT": 7}, {"timeout": 3}, {"timeout": 3.0}),  # arguments win
    ({"EMAIL_TIMEOUT": None, "SMTPKIT": None}, {}, {"timeout": 30.0}),
    (
        {"EMAIL_SSL_CERTFILE": "c.pem", "EMAIL_SSL_KEYFILE": "k.pem"},
        {},
        {"client_cert": "c.pem", "client_key": "k.pem"},
    ),
    (
        {"EMAIL_SSL_CERTFILE": "c.pem"},
        {"ssl_certfile": "d.pem"},
        {"client_cert": "d.pem"},
    ),
    (  # A URL names the server; EMAIL_HOST & co. yield to it.
        {"SMTPKIT": "smtps://me:s%40cret@smtp.url.test", "EMAIL_HOST": "ignored"},
        {},
        {
            "host": "smtp.url.test",
            "port": 465,
            "tls": TLSMode.IMPLICIT,
            "username": "me",
        },
    ),
    (  # ...but explicit arguments win over it.
        {"SMTPKIT": {"url": "smtps://me:pw@smtp.url.test", "timeout": 4}},
        {"host": "other.test", "use_tls": True, "port": 587},
        {"host": "other.test", "tls": TLSMode.STARTTLS, "port": 587, "timeout": 4.0},
    ),
    (
        {"SMTPKIT": {"pool": {"max_connections": 2}, "local_hostname": "app.test"}},
        {},
        {"pool": PoolLimits(max_connections=2), "local_hostname": "app.test"},
    ),
    (
        {},
        {"pool": PoolLimits(max_connections=3)},
        {"pool": PoolLimits(max_connections=3)},
    ),
    (
        {"SMTPKIT": {"allow_insecure_auth": True}},
        {"username": "u", "password": "p"},
        {"allow_insecure_auth": True, "username": "u"},
    ),
]


@pytest.mark.parametrize(("django_settings", "arguments", "expected"), MAPPING)
def test_settings_mapping(django_settings, arguments, expected):
    with override_settings(**django_settings):
        backend = EmailBackend(**arguments)
    fields = {name: getattr(backend.config, name) for name in expected}
    assert fields == expected


def test_password_comes_through_as_a_secret():
    with override_settings(
        EMAIL_HOST_USER="u", EMAIL_HOST_PASSWORD="hunter2", EMAIL_USE_TLS=True
    ):
        backend = EmailBackend()
    assert backend.config.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(backend.config)
    # The stock backend's attributes, as Django's own tests read them.
    assert (backend.username, backend.password, backend.use_tls) == (
        "u",
        "hunter2",
        True,
    )


def test_mailer_options():
    token = XOAuth2Auth(username="me@example.com", token_provider=lambda: "tok")
    backend = EmailBackend(
        use_tls=True,
        retry={"attempts": 5},
        rate_limit=2,
        message_id_domain="mail.example.com",
        auth=token,
    )
    assert backend.mailer.retry == RetryPolicy(attempts=5)
    assert backend._settings.rate_limit == RateLimit(2)
    assert backend.config.auth == (token,)
    other = EmailBackend(rate_limit={"per_second": 3, "burst": 2})
    assert other._settings.rate_limit == RateLimit(3, burst=2)
    assert EmailBackend(rate_limit=RateLimit(1))._settings.rate_limit == RateLimit(1)
    assert EmailBackend(retry=RetryPolicy.never()).mailer.retry == RetryPolicy.never()


def test_both_tls_flags_are_refused_like_django():
    message = "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive"
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        EmailBackend(use_ssl=True, use_tls=True)
    assert isinstance(caught.value, ValueError)
    with override_settings(EMAIL_USE_SSL=True, EMAIL_USE_TLS=True):
        with pytest.raises(ImproperlyConfigured, match=message):
            EmailBackend()


@pytest.mark.parametrize(
    ("django_settings", "arguments", "match"),
    [
        ({}, {"pool_size": 3}, "unknown smtpkit option.*pool_size"),
        ({"SMTPKIT": {"retries": 3}}, {}, "unknown smtpkit option.*retries"),
        ({"SMTPKIT": 5}, {}, "SMTPKIT must be a URL or a dict"),
        ({"SMTPKIT": {"url": 5}}, {}, "url must be a str"),
        ({"SMTPKIT": "http://x"}, {}, "smtp:// or smtps://"),
        ({}, {"timeout": -1}, "timeout"),
        ({}, {"retry": {"attempts": 0}}, "attempts"),
        # Credentials over cleartext: refused unless allow_insecure_auth.
        ({"EMAIL_HOST_USER": "u", "EMAIL_HOST_PASSWORD": "sekrit"}, {}, "cleartext"),
        ({"EMAIL_SSL_KEYFILE": "k.pem"}, {}, "client_key needs client_cert"),
    ],
)
def test_invalid_settings(django_settings, arguments, match):
    with override_settings(**django_settings):
        with pytest.raises(ImproperlyConfigured, match=match) as caught:
            EmailBackend(**arguments)
    assert "sekrit" not in str(caught.value)


def test_compatible_errors_pickle_and_keep_their_attributes():
    original = smtpkit.SenderRefusedError(
        smtpkit.SMTPReply(550, "5.7.1 no"), sender="a@example.com"
    )
    error = as_django_error(original)
    assert isinstance(error, smtpkit.SenderRefusedError)
    assert isinstance(error, smtplib.SMTPException)
    assert as_django_error(error) is error
    assert str(error) == str(original)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(again) is type(error)
    assert again.reply == original.reply
    assert again.sender == "a@example.com"


def test_import_smtpkit_never_imports_django():
    code = "import sys, smtpkit, smtpkit.testing; print('django' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


URL_MODES = {
    "smtp://smtp.url.test": TLSMode.STARTTLS,
    "smtps://smtp.url.test": TLSMode.IMPLICIT,
    "smtp://smtp.url.test/?tls=none": TLSMode.NONE,
}
FLAG_VALUES = (None, False, True)


def asked_mode(url_mode: TLSMode, use_tls: bool | None, use_ssl: bool | None):
    """The documented table: a True flag picks its mode, nothing else changes it."""
    if use_ssl:
        return TLSMode.IMPLICIT
    if use_tls:
        return TLSMode.STARTTLS
    return url_mode


@pytest.mark.parametrize("url", URL_MODES)
@pytest.mark.parametrize("use_tls", FLAG_VALUES)
@pytest.mark.parametrize("use_ssl", FLAG_VALUES)
# SMTPKIT as a URL or a dict with a url; the EMAIL_USE_* settings yield to it.
@pytest.mark.parametrize(("as_dict", "email_use_tls"), [(False, True), (True, False)])
def test_tls_flags_never_drop_the_tls_smtpkit_sets(
    url, use_tls, use_ssl, as_dict, email_use_tls
):
    setting = {"url": url} if as_dict else url
    with override_settings(SMTPKIT=setting, EMAIL_USE_TLS=email_use_tls):
        if use_tls and use_ssl:
            with pytest.raises(ImproperlyConfigured, match="mutually exclusive"):
                EmailBackend(use_tls=use_tls, use_ssl=use_ssl)
            return
        backend = EmailBackend(use_tls=use_tls, use_ssl=use_ssl)
    assert backend.config.tls is asked_mode(URL_MODES[url], use_tls, use_ssl)


@pytest.mark.parametrize("mode", list(TLSMode))
@pytest.mark.parametrize("use_tls", FLAG_VALUES)
@pytest.mark.parametrize("use_ssl", FLAG_VALUES)
def test_tls_flags_never_drop_a_tls_option_in_smtpkit(mode, use_tls, use_ssl):
    if use_tls and use_ssl:
        pytest.skip("both flags: refused, tested above")
    with override_settings(SMTPKIT={"tls": mode.value, "timeout": 5.0}):
        backend = EmailBackend(use_tls=use_tls, use_ssl=use_ssl)
    assert backend.config.tls is asked_mode(mode, use_tls, use_ssl)


def test_an_invalid_tls_option_is_improperly_configured():
    with override_settings(SMTPKIT={"tls": "sometimes"}):
        with pytest.raises(ImproperlyConfigured, match="tls must be one of"):
            EmailBackend(use_tls=False)


def test_use_tls_false_does_not_send_credentials_in_cleartext(server):
    # smtp:// is required STARTTLS; this server offers none.  use_tls=False once
    # made it a cleartext session that logged in and sent.
    url = f"smtp://bob:secret@{server.host}:{server.port}"
    options = {"url": url, "allow_insecure_auth": True, "retry": {"attempts": 1}}
    with override_settings(SMTPKIT=options):
        backend = EmailBackend(use_tls=False, use_ssl=False)
    assert backend.config.tls is TLSMode.STARTTLS
    message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    with pytest.raises(smtpkit.NotSupportedError, match="STARTTLS"):
        backend.send_messages([message])
    assert server.messages == []
    assert "AUTH" not in " ".join(server.handler.commands)
