"""Django 6.1's ``MAILERS``: the backend built from a mailer's alias and OPTIONS.

Django creates a ``MAILERS`` backend as ``backend_class(alias=alias, **OPTIONS)``.
The backend then reads nothing but those options.  Constructing it that way
directly runs on every Django; going through ``django.core.mail.mailers`` and
``send_mail`` needs Django >= 6.1 (``modes.MAILERS``).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, send_mail
from django.test.utils import override_settings

from smtpkit import PoolLimits, RateLimit, RetryPolicy, TLSMode
from smtpkit.contrib.django import EmailBackend

from ..integration.smtpd import check_password
from . import modes
from .conftest import mailers_setting

# (OPTIONS, expected SMTPConfig fields, expected stock-backend attributes)
MAPPING: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (  # Django's defaults for MAILERS: no TLS, port 25, no login
        {"host": "mx.test"},
        {"host": "mx.test", "port": 25, "tls": TLSMode.NONE, "username": None},
        {"host": "mx.test", "port": 25, "use_tls": False, "use_ssl": False},
    ),
    (
        {"host": "mx.test", "use_tls": True},
        {"port": 587, "tls": TLSMode.STARTTLS},
        {"port": 587, "use_tls": True, "use_ssl": False},
    ),
    (
        {"host": "mx.test", "use_ssl": True, "use_tls": False},
        {"port": 465, "tls": TLSMode.IMPLICIT},
        {"port": 465, "use_tls": False, "use_ssl": True},
    ),
    (
        {"host": "mx.test", "port": 2525, "use_tls": True},
        {"port": 2525},
        {"port": 2525},
    ),
    (
        {"host": "mx.test", "username": "u", "password": "p", "use_tls": True},
        {"username": "u"},
        {"username": "u", "password": "p"},
    ),
    (  # Like Django: log in only with both
        {"host": "mx.test", "username": "u"},
        {"username": None, "password": None},
        {"username": None, "password": None},
    ),
    (
        {
            "host": "mx.test",
            "timeout": 3,
            "ssl_certfile": "c.pem",
            "ssl_keyfile": "k.pem",
        },
        {"timeout": 3.0, "client_cert": "c.pem", "client_key": "k.pem"},
        {"timeout": 3.0, "ssl_certfile": "c.pem", "ssl_keyfile": "k.pem"},
    ),
    (  # smtpkit's url names the server instead of host
        {"url": "smtps://me:s%40cret@smtp.url.test"},
        {
            "host": "smtp.url.test",
            "port": 465,
            "tls": TLSMode.IMPLICIT,
            "username": "me",
        },
        {"host": "smtp.url.test", "port": 465, "use_ssl": True, "password": "s@cret"},
    ),
    (  # Django's names override the URL's, but never drop its TLS
        {"url": "smtps://smtp.url.test", "host": "other.test", "use_tls": False},
        {"host": "other.test", "tls": TLSMode.IMPLICIT},
        {"host": "other.test", "use_ssl": True},
    ),
    (
        {"host": "mx.test", "pool": {"max_connections": 2}, "tls": "starttls"},
        {"pool": PoolLimits(max_connections=2), "tls": TLSMode.STARTTLS},
        {"use_tls": True},
    ),
]


@pytest.mark.parametrize(("options", "fields", "attributes"), MAPPING)
def test_options_map_to_the_config_and_the_stock_attributes(
    options: dict[str, Any], fields: dict[str, Any], attributes: dict[str, Any]
):
    backend = EmailBackend(alias="default", **options)
    assert backend.alias == "default"
    for name, value in fields.items():
        assert getattr(backend.config, name) == value, name
    for name, value in attributes.items():
        assert getattr(backend, name) == value, name


def test_smtpkit_mailer_options():
    retry = {"attempts": 2}
    backend = EmailBackend(
        alias="default",
        host="mx.test",
        retry=retry,
        rate_limit=5,
        message_id_domain="mail.example.com",
    )
    assert (
        backend.mailer
        is EmailBackend(
            alias="other",
            host="mx.test",
            retry=RetryPolicy(**retry),
            rate_limit=RateLimit(5),
            message_id_domain="mail.example.com",
        ).mailer
    )  # equal options share one pool, whatever the alias
    assert EmailBackend(alias="default", host="mx.test").mailer is not backend.mailer
    assert backend.config.timeout == 30.0  # smtpkit's default, not SMTPKIT's 5.0


@pytest.mark.usefixtures("legacy_email_settings")
@pytest.mark.filterwarnings(r"ignore:The EMAIL_\w+ setting is deprecated")
def test_email_settings_and_smtpkit_are_not_read():
    tls_login = {
        "EMAIL_HOST": "settings.test",
        "EMAIL_PORT": 2525,
        "EMAIL_USE_SSL": True,
        "EMAIL_HOST_USER": "u",
        "EMAIL_HOST_PASSWORD": "p",
        "EMAIL_TIMEOUT": 7,
        "SMTPKIT": {"url": "smtps://smtpkit.test", "pool": {"max_connections": 1}},
    }
    with override_settings(**tls_login):
        config = EmailBackend(alias="default", host="mx.test").config
        legacy = EmailBackend(host="mx.test").config
    assert (config.host, config.port, config.tls) == ("mx.test", 25, TLSMode.NONE)
    assert (config.username, config.timeout) == (None, 30.0)
    assert config.pool == PoolLimits()
    assert legacy.pool == PoolLimits(max_connections=1)  # without an alias: read


INVALID = [
    ({}, "OPTIONS must define 'host' (or smtpkit's 'url'). The SMTPKIT setting"),
    ({"port": 25}, "OPTIONS must define 'host'"),
    (
        {"host": "h", "use_tls": True, "use_ssl": True},
        "The 'use_ssl' and 'use_tls' OPTIONS are incompatible",
    ),
    ({"host": "h", "bogus": 1}, "unknown smtpkit option(s) bogus; known: "),
    ({"host": "h", "port": "x"}, "port"),
    ({"url": 25}, "url must be a str"),
    (
        {
            "host": "h",
            "use_tls": True,
            "username": "u",
            "password": "hunter2",
            "retry": {"x": 1},
        },
        "RetryPolicy",
    ),
    ({"host": "h", "message_id_domain": "not a domain"}, "message_id_domain"),
]


@pytest.mark.parametrize(("options", "expected"), INVALID)
def test_bad_options_are_django_invalid_mailer(options: dict[str, Any], expected: str):
    with pytest.raises(ImproperlyConfigured) as caught:
        EmailBackend(alias="transactional", **options)
    text = str(caught.value)
    assert text.startswith("MAILERS['transactional']: ")
    assert expected in text
    assert "hunter2" not in text
    if modes.HAS_MAILERS:
        from django.core.mail import InvalidMailer  # noqa: PLC0415 - Django >= 6.1

        assert isinstance(caught.value, InvalidMailer)


def test_without_smtpkit_setting_the_missing_host_message_has_no_hint():
    with override_settings(SMTPKIT=None), pytest.raises(ImproperlyConfigured) as caught:
        EmailBackend(alias="default")
    assert str(caught.value) == (
        "MAILERS['default']: OPTIONS must define 'host' (or smtpkit's 'url')."
    )


def test_unknown_arguments_django_asks_to_ignore_are_dropped():
    backend = EmailBackend(
        alias="default",
        host="mx.test",
        auth_user="ignored",
        timeout=4,
        _ignore_unknown_kwargs={"auth_user", "timeout"},
    )
    assert backend.config.timeout == 4.0  # known: kept even when "ignorable"
    with pytest.raises(ImproperlyConfigured, match="bogus"):
        EmailBackend(alias="default", host="h", bogus=1, _ignore_unknown_kwargs={"x"})


def test_fail_silently_is_the_backends_own_attribute():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django 6.1 deprecates passing it on
        backend = EmailBackend(alias="default", host="mx.test", fail_silently=True)
        legacy = EmailBackend(host="mx.test")
    assert backend.fail_silently is True
    assert legacy.fail_silently is False
    assert legacy.alias is None


# Through Django's own MAILERS machinery (Django >= 6.1 only).


@modes.MAILERS[0]
def test_mailers_default_sends_through_the_shared_pool(start_server):
    from django.core.mail import mailers  # noqa: PLC0415 - Django >= 6.1

    server = start_server(authenticator=check_password, auth_require_tls=False)
    options = {
        "host": server.host,
        "port": server.port,
        "username": "alice",
        "password": "wonderland",
        "allow_insecure_auth": True,
    }
    with override_settings(MAILERS=mailers_setting(**options)):
        backend = mailers["default"]
        assert isinstance(backend, EmailBackend)
        assert backend.alias == "default"
        message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
        assert backend.send_messages([message]) == 1
        assert send_mail("S2", "B", "from@example.com", ["to@example.com"]) == 1
        assert mailers["default"].mailer is backend.mailer
    received = server.messages
    assert [m.rcpt_tos for m in received] == [["to@example.com"]] * 2
    assert {m.login for m in received} == {"alice"}
    assert {m.session_id for m in received} == {1}  # one pooled session


@modes.MAILERS[0]
def test_send_mail_using_an_alias(start_server):
    server = start_server()
    setting = mailers_setting(host="127.0.0.1", port=9)
    setting["bulk"] = mailers_setting(host=server.host, port=server.port)["default"]
    with override_settings(MAILERS=setting):
        sent = send_mail("S", "B", "f@example.com", ["t@example.com"], using="bulk")
    assert sent == 1
    assert len(server.messages) == 1


@modes.MAILERS[0]
def test_mailers_refuse_bad_options_with_invalid_mailer():
    from django.core.mail import InvalidMailer, mailers  # noqa: PLC0415 - Django >= 6.1

    with override_settings(MAILERS=mailers_setting(port=25)):
        with pytest.raises(InvalidMailer, match=r"^MAILERS\['default'\]: OPTIONS must"):
            mailers["default"]
        with pytest.raises(InvalidMailer, match="OPTIONS must define 'host'"):
            send_mail("S", "B", "f@example.com", ["t@example.com"])


@modes.MAILERS[0]
@pytest.mark.filterwarnings(r"ignore:get_connection\(\) is deprecated")
def test_deprecated_get_connection_arguments_over_mailers(start_server):
    from django.core.mail import get_connection  # noqa: PLC0415

    server = start_server()
    with override_settings(MAILERS=mailers_setting(host=server.host, port=9)):
        # Django adds its deprecated keyword arguments to the OPTIONS.
        backend = get_connection(fail_silently=True, port=server.port)
        assert backend.fail_silently is True
        message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
        assert backend.send_messages([message]) == 1
        failing = get_connection(fail_silently=True)  # port 9: nothing listens
        assert failing.send_messages([message]) == 0
    assert len(server.messages) == 1
