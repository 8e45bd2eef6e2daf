"""SMTPConfig: defaults, URLs, environment, providers, validation and secrecy."""

from __future__ import annotations

import ssl

import pydantic
import pytest

from smtpkit import (
    DEFAULT_POOL_LIMITS,
    PROVIDERS,
    ConfigurationError,
    PoolLimits,
    SMTPConfig,
    TLSMode,
)
from smtpkit.auth import CramMD5Auth, LoginAuth, OAuthBearerAuth, PlainAuth, XOAuth2Auth


def test_defaults():
    config = SMTPConfig(host="smtp.example.com")
    assert config.port == 587
    assert config.tls is TLSMode.STARTTLS
    assert config.timeout == 30.0
    assert config.connect_timeout is None
    assert config.username is None
    assert config.password is None
    assert config.auth == ()
    assert not config.wants_auth
    assert config.pool is DEFAULT_POOL_LIMITS
    assert config.pipelining is True
    assert config.chunking is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_chunking_switched_off_in_a_url(value):
    config = SMTPConfig.from_url(f"smtp://mail.example.com?chunking={value}")
    assert config.chunking is False
    assert config.pipelining is True


def test_an_invalid_chunking_value_is_shown():
    with pytest.raises(pydantic.ValidationError) as info:
        SMTPConfig(host="mail.example.com", chunking="maybe")
    assert "maybe" in str(info.value)  # not a secret: the value may be shown


@pytest.mark.parametrize(
    ("tls", "port"),
    [
        (TLSMode.IMPLICIT, 465),
        (TLSMode.STARTTLS, 587),
        (TLSMode.NONE, 25),
        ("none", 25),
    ],
)
def test_port_follows_tls_mode(tls, port):
    assert SMTPConfig(host="h", tls=tls).port == port
    assert SMTPConfig(host="h", tls=tls, port=2525).port == 2525
    assert SMTPConfig(host="h", tls=tls, port=None).port == port


def test_pool_limits_defaults():
    limits = PoolLimits()
    assert limits.max_connections == 4
    assert limits.max_messages_per_connection == 100
    assert limits.idle_timeout == 60.0
    assert limits.max_lifetime is None
    assert limits.acquire_timeout == 10.0
    assert limits.check_after_idle == 5.0


def test_frozen_and_extra_forbidden():
    config = SMTPConfig(host="h")
    with pytest.raises(pydantic.ValidationError):
        config.host = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="hots"):
        SMTPConfig(host="h", hots="typo")  # type: ignore[call-arg]


# -- from_url -------------------------------------------------------------------


def test_from_url_smtp_is_starttls():
    config = SMTPConfig.from_url("smtp://mail.example.com")
    assert (config.host, config.port, config.tls) == (
        "mail.example.com",
        587,
        TLSMode.STARTTLS,
    )


def test_from_url_smtps_is_implicit_tls():
    config = SMTPConfig.from_url("smtps://u:p@smtp.qq.com")
    assert (config.host, config.port, config.tls) == (
        "smtp.qq.com",
        465,
        TLSMode.IMPLICIT,
    )
    assert config.username == "u"
    assert config.password is not None
    assert config.password.get_secret_value() == "p"


def test_from_url_explicit_port():
    assert SMTPConfig.from_url("smtps://h:2465").port == 2465


def test_from_url_percent_decodes_credentials():
    config = SMTPConfig.from_url(
        "smtps://me%40qq.com:p%3Aw%2Fd%40%E5%AF%86%E7%A0%81@smtp.qq.com"
    )
    assert config.username == "me@qq.com"
    assert config.password is not None
    assert config.password.get_secret_value() == "p:w/d@密码"


def test_from_url_non_ascii_username():
    config = SMTPConfig.from_url("smtps://%E5%BC%A0%E4%B8%89%40example.cn:pw@h")
    assert config.username == "张三@example.cn"


def test_from_url_query_params():
    config = SMTPConfig.from_url(
        "smtp://relay.local?timeout=10&tls=none&local_hostname=app.example"
    )
    assert config.timeout == 10.0
    assert config.tls is TLSMode.NONE
    assert config.port == 25
    assert config.local_hostname == "app.example"


def test_from_url_overrides_win():
    config = SMTPConfig.from_url("smtp://h?timeout=10", timeout=3, port=2525)
    assert config.timeout == 3
    assert config.port == 2525


def test_from_url_ipv6_host():
    config = SMTPConfig.from_url("smtp://[::1]:2525")
    assert config.host == "::1"
    assert config.port == 2525


@pytest.mark.parametrize("url", ["http://h", "smtpx://h", "h:25", "lmtp://h"])
def test_from_url_bad_scheme(url):
    with pytest.raises(ConfigurationError, match="smtp:// or smtps://"):
        SMTPConfig.from_url(url)


@pytest.mark.parametrize("url", ["smtp://", "smtp://u:p@"])
def test_from_url_needs_host(url):
    with pytest.raises(ConfigurationError, match="no host"):
        SMTPConfig.from_url(url)


@pytest.mark.parametrize("url", ["smtp://h:99999", "smtp://h:abc", "smtp://[::1"])
def test_from_url_unparsable(url):
    with pytest.raises(ConfigurationError, match="invalid SMTP URL"):
        SMTPConfig.from_url(url)


def test_from_url_unknown_query_param_is_named():
    with pytest.raises(pydantic.ValidationError) as info:
        SMTPConfig.from_url("smtp://h?bogus=1")
    assert info.value.errors()[0]["loc"] == ("bogus",)
    assert "bogus" in str(info.value)


# -- from_env -------------------------------------------------------------------


def test_from_env_url():
    config = SMTPConfig.from_env(environ={"SMTP_URL": "smtps://u:p@smtp.163.com"})
    assert (config.host, config.port, config.username) == ("smtp.163.com", 465, "u")


def test_from_env_separate_vars():
    environ = {
        "SMTP_HOST": "relay.local",
        "SMTP_PORT": "2525",
        "SMTP_TLS": "none",
        "SMTP_USERNAME": "app",
        "SMTP_PASSWORD": "s3cret",
        "SMTP_ALLOW_INSECURE_AUTH": "true",
        "SMTP_TIMEOUT": "5",
        "SMTP_TLS_MIN_VERSION": "",  # empty values are ignored
    }
    config = SMTPConfig.from_env(environ=environ)
    assert config.host == "relay.local"
    assert config.port == 2525
    assert config.tls is TLSMode.NONE
    assert config.username == "app"
    assert config.allow_insecure_auth is True
    assert config.timeout == 5.0
    assert config.tls_min_version is None


def test_from_env_separate_vars_override_url():
    environ = {
        "SMTP_URL": "smtps://u:p@smtp.qq.com?timeout=10",
        "SMTP_HOST": "smtp.exmail.qq.com",
        "SMTP_PASSWORD": "newpass",
        "SMTP_TIMEOUT": "20",
    }
    config = SMTPConfig.from_env(environ=environ)
    assert config.host == "smtp.exmail.qq.com"
    assert config.username == "u"
    assert config.password is not None
    assert config.password.get_secret_value() == "newpass"
    assert config.timeout == 20.0


def test_from_env_overrides_win():
    config = SMTPConfig.from_env(environ={"SMTP_HOST": "h", "SMTP_PORT": "25"}, port=26)
    assert config.port == 26


def test_from_env_missing():
    with pytest.raises(ConfigurationError, match="SMTP_URL or SMTP_HOST"):
        SMTPConfig.from_env(environ={"OTHER": "x"})


def test_from_env_custom_prefix():
    environ = {"MAIL_HOST": "h", "SMTP_HOST": "ignored"}
    assert SMTPConfig.from_env("MAIL_", environ=environ).host == "h"
    with pytest.raises(ConfigurationError, match="APP_URL or APP_HOST"):
        SMTPConfig.from_env("APP_", environ=environ)


def test_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv("SMTPKIT_TEST_HOST", "env.example.com")
    assert SMTPConfig.from_env("SMTPKIT_TEST_").host == "env.example.com"


# -- for_provider ---------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_provider_builds(provider):
    config = SMTPConfig.for_provider(provider, username="me", password="code")
    preset = PROVIDERS[provider]
    assert config.port == preset["port"]
    assert config.tls is preset["tls"]
    assert "{" not in config.host
    assert config.tls is not TLSMode.NONE


def test_provider_values():
    qq = SMTPConfig.for_provider("QQ", username="me@qq.com", password="code")
    assert (qq.host, qq.port, qq.tls) == ("smtp.qq.com", 465, TLSMode.IMPLICIT)
    gmail = SMTPConfig.for_provider("gmail", timeout=5)
    assert (gmail.host, gmail.port, gmail.timeout) == ("smtp.gmail.com", 587, 5)


def test_ses_region():
    assert SMTPConfig.for_provider("ses").host == "email-smtp.us-east-1.amazonaws.com"
    config = SMTPConfig.for_provider("ses", region="eu-west-1")
    assert config.host == "email-smtp.eu-west-1.amazonaws.com"


def test_unknown_provider_lists_known():
    with pytest.raises(ConfigurationError, match="unknown provider 'yahoo'") as info:
        SMTPConfig.for_provider("yahoo")
    for name in PROVIDERS:
        assert name in str(info.value)


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"port": -1}, "port"),
        ({"port": 65536}, "port"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"tls_min_version": "1.1"}, "tls_min_version"),
        ({"host": ""}, "host"),
        ({"host": "h\r\nRCPT TO:<x@y>"}, "host"),
        ({"local_hostname": "me\nx"}, "local_hostname"),
        ({"pool": {"max_connections": 0}}, "max_connections"),
    ],
)
def test_validation_errors_name_the_field(fields, name):
    with pytest.raises(pydantic.ValidationError) as info:
        SMTPConfig(**{"host": "h", **fields})
    assert name in str(info.value)
    assert info.value.errors()[0]["loc"][-1] == name


def test_bad_tls_mode():
    with pytest.raises(pydantic.ValidationError):
        SMTPConfig(host="h", tls="ssl")


def test_pool_limits_validation():
    with pytest.raises(pydantic.ValidationError, match="idle_timeout"):
        PoolLimits(idle_timeout=0)
    with pytest.raises(pydantic.ValidationError, match="acquire_timeout"):
        PoolLimits(acquire_timeout=-1)


def test_username_needs_password():
    with pytest.raises(pydantic.ValidationError, match="together"):
        SMTPConfig(host="h", username="u")
    with pytest.raises(pydantic.ValidationError, match="together"):
        SMTPConfig(host="h", password="p")


def test_cleartext_credentials_refused():
    with pytest.raises(ValueError, match="cleartext"):
        SMTPConfig(host="h", tls="none", username="u", password="p")
    with pytest.raises(ValueError, match="cleartext"):
        SMTPConfig(host="h", tls="none", auth=PlainAuth("u", "p"))
    allowed = SMTPConfig(
        host="h", tls="none", username="u", password="p", allow_insecure_auth=True
    )
    assert allowed.wants_auth


def test_ssl_context_excludes_tls_files():
    context = ssl.create_default_context()
    assert SMTPConfig(host="h", ssl_context=context).ssl_context is context
    for field in ("ca_file", "ca_path", "client_cert"):
        with pytest.raises(pydantic.ValidationError, match="ssl_context excludes"):
            SMTPConfig(host="h", ssl_context=context, **{field: "/x.pem"})
    with pytest.raises(pydantic.ValidationError, match="ssl_context excludes"):
        SMTPConfig(host="h", ssl_context=context, tls_min_version="1.3")


def test_client_key_needs_client_cert():
    with pytest.raises(pydantic.ValidationError, match="client_key needs client_cert"):
        SMTPConfig(host="h", client_key="/key.pem")
    config = SMTPConfig(host="h", client_cert="/c.pem", client_key="/k.pem")
    assert config.client_key == "/k.pem"


# -- secrets --------------------------------------------------------------------


def test_secrets_never_shown():
    config = SMTPConfig.from_url(
        "smtps://me:hunter2-pw@h",
        auth=(XOAuth2Auth("me", token="tok-abc"), LoginAuth("me", "login-pw")),
    )
    for text in (
        repr(config),
        str(config),
        config.model_dump_json(),
        str(config.model_dump()),
    ):
        assert "hunter2-pw" not in text
        assert "tok-abc" not in text
        assert "login-pw" not in text
    assert "**" in repr(config)


# -- auth strategies ------------------------------------------------------------


def test_password_strategies_strongest_first():
    config = SMTPConfig(host="h", username="u", password="p")
    strategies = config.auth_strategies()
    assert [type(a) for a in strategies] == [CramMD5Auth, PlainAuth, LoginAuth]
    assert all(a.username == "u" for a in strategies)
    assert strategies[0].responder()(b"<1@h>") is not None


def test_explicit_strategies_sorted_by_strength():
    config = SMTPConfig(
        host="h",
        auth=(
            LoginAuth("u", "p"),
            XOAuth2Auth("u", token="t"),
            OAuthBearerAuth("u", token="t"),
            PlainAuth("u", "p"),
        ),
    )
    assert [type(a) for a in config.auth_strategies()] == [
        OAuthBearerAuth,
        XOAuth2Auth,
        PlainAuth,
        LoginAuth,
    ]
    assert config.wants_auth


def test_single_auth_becomes_tuple():
    auth = PlainAuth("u", "p")
    config = SMTPConfig(host="h", auth=auth)
    assert config.auth == (auth,)
    assert config.auth_strategies() == (auth,)


def test_explicit_auth_beats_username_password():
    auth = XOAuth2Auth("u", token="t")
    config = SMTPConfig(host="h", username="u", password="p", auth=[auth])
    assert config.auth_strategies() == (auth,)


def test_no_credentials_no_strategies():
    assert SMTPConfig(host="h").auth_strategies() == ()
