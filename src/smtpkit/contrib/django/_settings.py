"""Django's ``EMAIL_*`` settings, ``SMTPKIT`` and constructor arguments into smtpkit values.

Precedence, lowest first: the ``EMAIL_*`` settings; ``SMTPKIT`` (a URL replaces
the server fields of ``EMAIL_*`` as a group: host, port, TLS mode, credentials;
a dict's fields replace one field each); the backend's keyword arguments, which
win as they do for Django's own backend (``None`` means "use the settings").
One exception: when ``SMTPKIT`` sets the TLS mode (a URL always does), the
``use_tls``/``use_ssl`` arguments may only ask for TLS (STARTTLS or implicit),
never drop it, so that ``use_tls=False`` cannot turn ``smtps://`` into a
cleartext session.

In Django 6.1's ``MAILERS`` mode (the backend is given an ``alias``) the
backend's ``OPTIONS`` are everything: neither ``EMAIL_*`` (which Django no
longer lets anyone read then) nor ``SMTPKIT`` is consulted, and the options are
checked as Django checks its own SMTP backend's (``host``, or smtpkit's ``url``,
is required; errors are ``InvalidMailer``).

The mailer these settings describe is built (and shared, see ``_shared``) when
they are resolved, so that whatever ``Mailer`` refuses (a ``message_id_domain``
that is not a domain, a certificate file that cannot be loaded) is an
``ImproperlyConfigured`` when the backend is made, not an error at every send.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import ValidationError

from smtpkit import (
    DEFAULT_RETRY_POLICY,
    ConfigurationError,
    Mailer,
    MessageSigner,
    RateLimit,
    RetryPolicy,
    SMTPConfig,
    SMTPKitError,
    TLSMode,
)
from smtpkit._url import smtp_url_fields

from ._shared import shared_mailer

try:  # Django >= 6.1
    from django.core.mail import InvalidMailer as _InvalidMailerBase
except ImportError:  # Django < 6.1 has no MAILERS (nor an alias to pass)

    class _InvalidMailerBase(ImproperlyConfigured):  # type: ignore[no-redef]
        """Stands in for Django 6.1's ``InvalidMailer``."""


__all__ = [
    "DJANGO_SETTINGS",
    "KNOWN_OPTIONS",
    "BackendSettings",
    "InvalidMailerError",
    "SettingsError",
    "resolve_settings",
]

# Constructor argument -> the Django setting it overrides.
DJANGO_SETTINGS: Final = {
    "host": "EMAIL_HOST",
    "port": "EMAIL_PORT",
    "username": "EMAIL_HOST_USER",
    "password": "EMAIL_HOST_PASSWORD",
    "use_tls": "EMAIL_USE_TLS",
    "use_ssl": "EMAIL_USE_SSL",
    "timeout": "EMAIL_TIMEOUT",
    "ssl_certfile": "EMAIL_SSL_CERTFILE",
    "ssl_keyfile": "EMAIL_SSL_KEYFILE",
}
_SERVER_ARGUMENTS: Final = frozenset({"host", "port", "username", "password"})
_MAILER_OPTIONS: Final = frozenset(
    {"retry", "rate_limit", "message_id_domain", "signer"}
)
_CONFIG_FIELDS: Final = frozenset(SMTPConfig.model_fields)
KNOWN_OPTIONS: Final = frozenset(
    DJANGO_SETTINGS.keys() | _CONFIG_FIELDS | _MAILER_OPTIONS | {"url"}
)
"""Every option the backend takes (besides ``fail_silently`` and ``alias``)."""
# Django's own wording (6.1's for MAILERS), so that code matching the stock
# backend's errors still does.
_BOTH_TLS_OPTIONS: Final = (
    "The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
    "Set at most one of them to True."
)
_BOTH_TLS_FLAGS: Final = (
    "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set "
    "one of those settings to True."
)


class SettingsError(ImproperlyConfigured, ValueError):
    """Settings the backend cannot use.

    ``ImproperlyConfigured`` for Django, and a ``ValueError`` because Django's
    own SMTP backend raises that for conflicting TLS flags.
    """


class InvalidMailerError(_InvalidMailerBase, SettingsError):
    """A ``MAILERS`` entry's ``OPTIONS`` the backend cannot use.

    Django's ``InvalidMailer`` (on Django >= 6.1, which raises it for its own
    backend's bad options), hence an ``ImproperlyConfigured``; also a
    ``SettingsError``.  The message starts with ``MAILERS['alias']:``, as
    Django's does.
    """

    def __init__(self, message: str, *, alias: str) -> None:
        super().__init__(f"MAILERS[{alias!r}]: {message}")


@dataclass(frozen=True)
class BackendSettings:
    """Everything one shared mailer is built from; equal settings share a mailer.

    Attributes:
        django: The Django-level values (constructor argument, else setting),
            kept as the stock backend's attributes (``backend.host``...).
        config: The server settings.
        retry: The retry policy.
        rate_limit: Messages per second across the process, or None.
        message_id_domain: See ``Mailer(message_id_domain=...)``.
        signer: See ``Mailer(signer=...)`` (a ``DKIMSigner``), or None.
    """

    django: Mapping[str, Any]
    config: SMTPConfig
    retry: RetryPolicy
    rate_limit: RateLimit | None
    message_id_domain: str | None
    signer: MessageSigner | None = None

    @property
    def key(self) -> tuple[object, ...]:
        """What identifies the shared mailer: equal settings, one pool."""
        return (
            self.config,
            self.retry,
            self.rate_limit,
            self.message_id_domain,
            self.signer,  # the same signer object (signers compare by identity)
        )

    def make_mailer(self) -> Mailer:
        """Build the mailer these settings describe."""
        return Mailer(
            self.config,
            retry=self.retry,
            rate_limit=self.rate_limit,
            message_id_domain=self.message_id_domain,
            signer=self.signer,
        )

    def shared_mailer(self) -> Mailer:
        """This process's mailer for these settings, built on first use.

        Raises:
            SettingsError: ``Mailer`` refused the settings.
        """
        try:
            return shared_mailer(self.key, self.make_mailer)
        except (SMTPKitError, ValueError, TypeError) as exc:
            msg = f"smtpkit cannot use the email settings: {exc}"
            raise SettingsError(msg) from exc


def resolve_settings(
    arguments: Mapping[str, Any], *, alias: str | None = None
) -> BackendSettings:
    """Combine the settings with the backend's keyword *arguments*.

    With an *alias* (Django's ``MAILERS`` mode) the *arguments* are the
    mailer's ``OPTIONS`` and nothing else is read.

    Raises:
        SettingsError: Both TLS flags are set, an option is unknown, or a value
            is invalid (the message names it; secrets are never quoted).
            With an *alias*, an ``InvalidMailerError`` (Django's
            ``InvalidMailer``), also when neither ``host`` nor ``url`` is set.
    """
    if alias is None:
        return _resolve(arguments, mailers=False)
    try:
        return _resolve(arguments, mailers=True)
    except SettingsError as exc:
        raise InvalidMailerError(str(exc), alias=alias) from exc


def _resolve(arguments: Mapping[str, Any], *, mailers: bool) -> BackendSettings:
    """``resolve_settings``; with *mailers*, from the *arguments* alone."""
    explicit = {
        name: value
        for name, value in arguments.items()
        if name in DJANGO_SETTINGS and value is not None
    }
    django_values = {
        name: explicit.get(name, None if mailers else getattr(settings, setting, None))
        for name, setting in DJANGO_SETTINGS.items()
    }
    smtpkit_setting = {} if mailers else _smtpkit_setting()
    options = {**smtpkit_setting, **_smtpkit_arguments(arguments)}
    url = options.pop("url", None)
    if mailers and url is None and django_values["host"] is None:
        raise SettingsError(_missing_host_message())
    if mailers and django_values["use_tls"] and django_values["use_ssl"]:
        raise SettingsError(_BOTH_TLS_OPTIONS)
    mailer_options = {k: options.pop(k) for k in _MAILER_OPTIONS & options.keys()}
    unknown = sorted(options.keys() - _CONFIG_FIELDS)
    if unknown:
        known = ", ".join(sorted(KNOWN_OPTIONS))
        msg = f"unknown smtpkit option(s) {', '.join(unknown)}; known: {known}"
        raise SettingsError(msg)
    # The URL names the server; EMAIL_HOST & co. (which always have Django's
    # defaults) yield to it.  Explicit arguments win over everything, except
    # that they never lower a TLS mode SMTPKIT set.
    chosen_tls = _smtpkit_tls(url, options)
    fields = _config_fields(django_values, server=url is None)
    fields.update(options)
    fields.update(_explicit_fields(django_values, explicit, chosen_tls))
    try:
        if url is None:
            config = SMTPConfig(**fields)
        elif isinstance(url, str):
            config = SMTPConfig.from_url(url, **fields)
        else:
            msg = f"SMTPKIT's url must be a str, not {type(url).__name__}"
            raise SettingsError(msg)
        retry, rate_limit = _mailer_values(mailer_options)
    except (ValidationError, ConfigurationError, TypeError) as exc:
        msg = f"smtpkit cannot use the email settings: {exc}"
        raise SettingsError(msg) from exc
    domain = mailer_options.get("message_id_domain")
    if mailers:  # the stock backend's attributes show what is used
        django_values.update(_used_values(config))
    signer = mailer_options.get("signer")
    resolved = BackendSettings(django_values, config, retry, rate_limit, domain, signer)
    resolved.shared_mailer()  # what Mailer refuses is refused now
    return resolved


def _missing_host_message() -> str:
    """Django's words for OPTIONS without a host, and where an SMTPKIT went."""
    message = "OPTIONS must define 'host' (or smtpkit's 'url')."
    if getattr(settings, "SMTPKIT", None) is not None:
        message += (
            " The SMTPKIT setting is not read for MAILERS: move its url and"
            " options into OPTIONS."
        )
    return message


def _used_values(config: SMTPConfig) -> dict[str, Any]:
    """Django-level values of what *config* uses (its port default, a URL's server)."""
    password = config.password.get_secret_value() if config.password else None
    return {
        "host": config.host,
        "port": config.port,
        "username": config.username,
        "password": password,
        "use_tls": config.tls is TLSMode.STARTTLS,
        "use_ssl": config.tls is TLSMode.IMPLICIT,
        "timeout": config.timeout,
    }


def _smtpkit_tls(url: object, options: Mapping[str, Any]) -> TLSMode | None:
    """The TLS mode ``SMTPKIT`` sets (its ``tls``, else its URL's), or None.

    Raises:
        SettingsError: The mode is not one of ``TLSMode``'s.
    """
    value = options.get("tls")
    if value is None and isinstance(url, str):
        try:
            value = smtp_url_fields(url).get("tls")
        except ConfigurationError:
            return None  # building the config reports it, without the userinfo
    if value is None:
        return None
    try:
        return TLSMode(value)
    except ValueError:
        modes = ", ".join(mode.value for mode in TLSMode)
        msg = f"smtpkit cannot use the email settings: tls must be one of {modes}"
        raise SettingsError(msg) from None


def _explicit_fields(
    values: Mapping[str, Any], explicit: Mapping[str, Any], chosen_tls: TLSMode | None
) -> dict[str, Any]:
    """The ``SMTPConfig`` fields the explicit constructor arguments set.

    Where ``SMTPKIT`` chose the TLS mode (*chosen_tls*), the TLS flags come from
    the arguments alone (the ``EMAIL_USE_*`` settings yielded to ``SMTPKIT``) and
    may only ask for TLS, never drop it: ``use_ssl=True`` means implicit TLS,
    ``use_tls=True`` STARTTLS (required, as smtpkit always does it), and a
    ``False`` flag keeps ``SMTPKIT``'s mode.
    """
    if chosen_tls is None:
        return _config_fields(values, server=True, only=explicit.keys())
    flags = {"use_tls": explicit.get("use_tls"), "use_ssl": explicit.get("use_ssl")}
    fields = _config_fields({**values, **flags}, server=True, only=explicit.keys())
    if fields.get("tls") == TLSMode.NONE.value:
        fields["tls"] = chosen_tls  # no flag asked for TLS: nothing to change
    return fields


def _smtpkit_setting() -> dict[str, Any]:
    """The ``SMTPKIT`` setting as a dict (a URL becomes ``{"url": ...}``)."""
    value = getattr(settings, "SMTPKIT", None)
    if value is None:
        return {}
    if isinstance(value, str):
        return {"url": value}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    msg = f"SMTPKIT must be a URL or a dict, not {type(value).__name__}"
    raise SettingsError(msg)


def _smtpkit_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments that are smtpkit options (not Django's names)."""
    return {k: v for k, v in arguments.items() if k not in DJANGO_SETTINGS}


def _config_fields(
    values: Mapping[str, Any], *, server: bool, only: Collection[str] | None = None
) -> dict[str, Any]:
    """Map Django-level *values* to ``SMTPConfig`` fields.

    With *server*, host, port, TLS mode and credentials are included.  With
    *only* (the explicit arguments), just the fields those arguments touch,
    each computed from all of *values* as Django would (``use_tls=False`` with
    ``EMAIL_USE_SSL`` still means implicit TLS).
    """

    def wanted(*names: str) -> bool:
        return only is None or any(name in only for name in names)

    fields: dict[str, Any] = {}
    if server:
        use_tls, use_ssl = values.get("use_tls"), values.get("use_ssl")
        if use_tls and use_ssl:
            raise SettingsError(_BOTH_TLS_FLAGS)
        if wanted("use_tls", "use_ssl"):
            # Like Django: no flag means a cleartext session (no STARTTLS).
            fields["tls"] = "implicit" if use_ssl else "starttls" if use_tls else "none"
        if wanted("host"):
            fields["host"] = values.get("host")
        if wanted("port"):
            fields["port"] = values.get("port") or None
        if wanted("username", "password"):
            username, password = values.get("username"), values.get("password")
            # Like Django: log in only when both are non-empty.
            both = bool(username) and bool(password)
            fields["username"] = str(username) if both else None
            fields["password"] = str(password) if both else None
    if wanted("timeout") and values.get("timeout") is not None:
        fields["timeout"] = values["timeout"]
    if wanted("ssl_certfile") and values.get("ssl_certfile"):
        fields["client_cert"] = str(values["ssl_certfile"])
    if wanted("ssl_keyfile") and values.get("ssl_keyfile"):
        fields["client_key"] = str(values["ssl_keyfile"])
    return fields


def _mailer_values(options: Mapping[str, Any]) -> tuple[RetryPolicy, RateLimit | None]:
    """The retry policy and rate limit, from values or dicts (a number for a rate)."""
    retry = options.get("retry", DEFAULT_RETRY_POLICY)
    if not isinstance(retry, RetryPolicy):
        retry = RetryPolicy.model_validate(retry)
    rate = options.get("rate_limit")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        rate = RateLimit(rate)
    elif rate is not None and not isinstance(rate, RateLimit):
        rate = RateLimit.model_validate(rate)
    return retry, rate
