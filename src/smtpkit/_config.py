"""Server settings as a frozen pydantic model: `SMTPConfig`, `TLSMode`, `PoolLimits`.

Values only: nothing here opens a socket.  The transport turns these settings into
connections.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import ModelWrapValidatorHandler
from pydantic_core import InitErrorDetails
from typing_extensions import Self, TypedDict, Unpack, override

from ._adaptation import DEFAULT_PROVIDER_ADAPTATION, ProviderAdaptation
from ._address import FORBIDDEN_CHARS, ascii_domain
from ._auth import Auth, has_lone_surrogates, password_strategies
from ._exceptions import ConfigurationError
from ._socket_factory import SocketFactory
from ._tls_mode import TLSMode, TLSModeLike, known_tls_mode
from ._url import smtp_url_fields

__all__ = [
    "DEFAULT_POOL_LIMITS",
    "PROVIDERS",
    "PoolLimits",
    "SMTPConfig",
    "SMTPConfigFields",
    "TLSMode",
    "TLSModeLike",
]


_DEFAULT_PORTS: Final = {TLSMode.IMPLICIT: 465, TLSMode.STARTTLS: 587, TLSMode.NONE: 25}


class PoolLimits(BaseModel):
    """Limits of the connection pool inside ``SMTPTransport``.

    Attributes:
        max_connections: Connections open at once (each one is a server session).
        max_messages_per_connection: Messages sent on one connection before it is
            closed with QUIT and replaced; providers cap this (often at 100).
        idle_timeout: Seconds a connection may sit unused in the pool before it is
            closed; below the 5-minute server timeout of RFC 5321 §4.5.3.2.
        max_lifetime: Seconds a connection may live in total, or None for no limit.
        acquire_timeout: Seconds to wait for a free connection when all are busy,
            after which ``PoolTimeoutError`` is raised.
        check_after_idle: A connection idle for longer than this many seconds is
            checked with NOOP before reuse.
        per_connection_rate: At most this many messages per second on each
            connection, or None for no limit (some providers limit per session).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_connections: int = Field(default=4, ge=1)
    max_messages_per_connection: int = Field(default=100, ge=1)
    idle_timeout: float = Field(default=60.0, gt=0)
    max_lifetime: float | None = Field(default=None, gt=0)
    acquire_timeout: float = Field(default=10.0, ge=0)
    check_after_idle: float = Field(default=5.0, ge=0)
    per_connection_rate: float | None = Field(default=None, gt=0)

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            max_connections: int = 4,
            max_messages_per_connection: int = 100,
            idle_timeout: float = 60.0,
            max_lifetime: float | None = None,
            acquire_timeout: float = 10.0,
            check_after_idle: float = 5.0,
            per_connection_rate: float | None = None,
        ) -> None:
            """Set the pool's limits; see the class docstring for each one."""


DEFAULT_POOL_LIMITS: Final = PoolLimits()

_PresetValue = str | int | TLSMode
PROVIDERS: Final[Mapping[str, Mapping[str, _PresetValue]]] = {
    # Chinese providers want implicit TLS on 465 and an "authorization code"
    # (授权码) generated in the web settings instead of the login password.
    "qq": {"host": "smtp.qq.com", "port": 465, "tls": TLSMode.IMPLICIT},
    "exmail": {"host": "smtp.exmail.qq.com", "port": 465, "tls": TLSMode.IMPLICIT},
    "163": {"host": "smtp.163.com", "port": 465, "tls": TLSMode.IMPLICIT},
    "126": {"host": "smtp.126.com", "port": 465, "tls": TLSMode.IMPLICIT},
    "aliyun": {"host": "smtp.aliyun.com", "port": 465, "tls": TLSMode.IMPLICIT},
    "aliyun_qiye": {
        "host": "smtp.qiye.aliyun.com",
        "port": 465,
        "tls": TLSMode.IMPLICIT,
    },
    "aliyun_directmail": {
        "host": "smtpdm.aliyun.com",
        "port": 465,
        "tls": TLSMode.IMPLICIT,
    },
    "gmail": {"host": "smtp.gmail.com", "port": 587, "tls": TLSMode.STARTTLS},
    "outlook": {"host": "smtp-mail.outlook.com", "port": 587, "tls": TLSMode.STARTTLS},
    "office365": {"host": "smtp.office365.com", "port": 587, "tls": TLSMode.STARTTLS},
    "ses": {
        "host": "email-smtp.{region}.amazonaws.com",
        "port": 587,
        "tls": TLSMode.STARTTLS,
    },
    "sendgrid": {"host": "smtp.sendgrid.net", "port": 587, "tls": TLSMode.STARTTLS},
}
"""Host, port and TLS mode of well-known providers, for :meth:`SMTPConfig.for_provider`."""

_ENV_FIELDS: Final = (
    "host",
    "port",
    "tls",
    "username",
    "password",
    "timeout",
    "connect_timeout",
    "local_hostname",
    "allow_insecure_auth",
    "ca_file",
    "ca_path",
    "client_cert",
    "client_key",
    "tls_min_version",
)


# Fields whose rejected value an error may show.  Every other input is replaced by
# _REDACTED: password, username and auth (secrets, or part of a URL's userinfo),
# source_address (a proxy URL pasted there), unknown keys (a misspelt "passwrd"),
# and the whole input dict that pydantic attaches to cross-field errors, because
# pydantic prints and pickles the input.
_SHOWN_FIELDS: Final = frozenset(
    {
        "host", "port", "tls", "timeout", "connect_timeout", "local_hostname",
        "allow_insecure_auth", "ca_file", "ca_path", "client_cert", "client_key",
        "tls_min_version", "pool", "pipelining", "chunking", "adapt",
    }
)  # fmt: skip
_REDACTED: Final = "<redacted>"


class SMTPConfigFields(TypedDict, total=False):
    """The keyword arguments of ``SMTPConfig``, all optional.

    The type of ``**overrides`` in :meth:`SMTPConfig.from_url`, :meth:`~SMTPConfig.from_env`
    and :meth:`~SMTPConfig.for_provider`, so a misspelt field fails the type checker
    (and validation, at run time).  Use it to pass settings through your own code:
    ``def make_config(**fields: Unpack[SMTPConfigFields])``.
    """

    host: str
    port: int | None
    tls: TLSModeLike
    username: str | None
    password: str | SecretStr | None
    auth: Auth | Sequence[Auth]
    allow_insecure_auth: bool
    timeout: float
    connect_timeout: float | None
    local_hostname: str | None
    ca_file: str | None
    ca_path: str | None
    client_cert: str | None
    client_key: str | None
    tls_min_version: Literal["1.2", "1.3"] | None
    ssl_context: ssl.SSLContext | None
    pool: PoolLimits
    pipelining: bool
    chunking: bool
    adapt: ProviderAdaptation
    socket_factory: SocketFactory | None
    source_address: str | tuple[str, int] | None


def redacted(
    error: ValidationError, shown_fields: frozenset[str] = _SHOWN_FIELDS
) -> ValidationError:
    """Return *error* again, with every input that might hold a secret replaced:
    only the inputs of *shown_fields* are quoted (``FailoverConfig`` shares this)."""
    details: list[InitErrorDetails] = []
    for item in error.errors(include_url=False):
        loc = item["loc"]
        shown = bool(loc) and loc[0] in shown_fields
        detail = InitErrorDetails(
            type=item["type"], loc=loc, input=item["input"] if shown else _REDACTED
        )
        if "ctx" in item:
            detail["ctx"] = item["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data(error.title, details)


class RedactingModel(BaseModel):
    """A model whose validation errors quote the inputs of ``_shown_in_errors`` only.

    The models that hold passwords (``SMTPConfig``, ``FailoverConfig``) derive
    from it; their own validators redact the errors of validation proper.
    """

    _shown_in_errors: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @override
    def model_validate_json(
        cls,
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        context: Any | None = None,
        **kwargs: Any,
    ) -> Self:
        """Validate JSON; a JSON syntax error does not quote the document.

        pydantic reports invalid JSON before any validator runs, with the whole
        document (password included) as the error's input.
        """
        try:
            return super().model_validate_json(
                json_data, strict=strict, context=context, **kwargs
            )
        except ValidationError as exc:
            error = redacted(exc, cls._shown_in_errors)
        raise error from None  # outside the except block: no chained original


def _model_error(message: str) -> ValidationError:
    """Build the error of a cross-field check, without the input dict pydantic adds."""
    detail = InitErrorDetails(
        type="value_error", loc=(), input=_REDACTED, ctx={"error": ValueError(message)}
    )
    return ValidationError.from_exception_data("SMTPConfig", [detail])


def _with_default_port(data: Any) -> Any:
    """Fill in the port of the TLS mode when none is given.

    An invalid ``tls`` is left for its field to report (with the bad value only);
    raising here would make pydantic attach the whole input, password included.
    """
    if not isinstance(data, dict) or data.get("port") not in (None, 0):
        return data
    try:
        tls = TLSMode(data.get("tls", TLSMode.STARTTLS))
    except (ValueError, TypeError):
        return {key: value for key, value in data.items() if key != "port"}
    return {**data, "port": _DEFAULT_PORTS[tls]}


def _no_line_breaks(value: str | None, what: str) -> str | None:
    # The value goes into EHLO or AUTH: no control character may end the line.
    if value is not None and not FORBIDDEN_CHARS.isdisjoint(value):
        msg = f"{what} must not contain control characters or line breaks"
        raise ValueError(msg)
    return value


class SMTPConfig(RedactingModel):
    """Everything needed to reach and log in to one SMTP server.

    Secrets are ``SecretStr``: they never appear in ``repr()``, ``str()``, logs,
    exceptions or ``model_dump()`` (use ``model_dump(mode="python")`` and
    ``get_secret_value()`` to reveal them on purpose).  A ``pydantic.ValidationError``
    from this model shows the rejected value only for fields that cannot hold a
    secret; for ``password``, ``username``, ``auth``, unknown keys and cross-field
    checks the input reads ``<redacted>``, in ``str()``, ``errors()`` and pickles.

    Attributes:
        host: Server name or IP address.
        port: TCP port; 0 or None (the default) means the usual port of ``tls``
            (465, 587 or 25).
        tls: ``TLSMode`` (default ``STARTTLS``, required, never downgraded).
        username: Login name (UTF-8 allowed); needs ``password``.
        password: Password or provider "authorization code".
        auth: Explicit SASL strategies.  When empty and a username is set, the
            strongest of CRAM-MD5, PLAIN and LOGIN that the server offers is used.
        allow_insecure_auth: Permit AUTH on a connection without TLS.
        timeout: Seconds allowed for each server reply.
        connect_timeout: Seconds allowed to connect and read the greeting;
            defaults to ``timeout``.
        local_hostname: Name sent with EHLO; defaults to the local FQDN.
        ca_file: PEM bundle of CAs to trust instead of the system ones.
        ca_path: Directory of hashed CA certificates to trust.
        client_cert: PEM client certificate (and key, unless ``client_key``).
        client_key: PEM private key for ``client_cert``.
        tls_min_version: Lowest TLS version accepted, ``"1.2"`` or ``"1.3"``.
        ssl_context: A ready ``ssl.SSLContext``; excludes the other TLS fields.
        pool: Connection pool limits.
        pipelining: Use RFC 2920 PIPELINING when the server offers it.
        chunking: Send the message with RFC 3030 BDAT instead of DATA when the
            server offers CHUNKING (and PIPELINING is in use): MAIL, RCPT and
            the message then go out together, one round trip per message.
        adapt: Which provider replies to adapt to (a message limit per
            connection, a connection limit, a spent quota); all on by default.
        socket_factory: Opens the TCP connection instead of
            ``socket.create_connection`` (a SOCKS5 or HTTP CONNECT proxy); see
            ``SocketFactory``.  TLS still wraps its socket and verifies ``host``.
        source_address: Local address to connect from: an IP address (any
            port) or an ``(address, port)`` tuple, as ``socket.create_connection``
            takes it; passed on to a ``socket_factory``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    _shown_in_errors: ClassVar[frozenset[str]] = _SHOWN_FIELDS

    host: str = Field(min_length=1)
    port: int = Field(default=0, ge=1, le=65535, validate_default=False)
    tls: TLSMode = TLSMode.STARTTLS
    username: str | None = None
    password: SecretStr | None = None
    auth: tuple[Auth, ...] = ()
    allow_insecure_auth: bool = False
    timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float | None = Field(default=None, gt=0)
    local_hostname: str | None = None
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_min_version: Literal["1.2", "1.3"] | None = None
    ssl_context: ssl.SSLContext | None = None
    pool: PoolLimits = DEFAULT_POOL_LIMITS
    pipelining: bool = True
    chunking: bool = True
    adapt: ProviderAdaptation = DEFAULT_PROVIDER_ADAPTATION
    # A proxy client often holds its URL and credentials: not in reprs or dumps.
    socket_factory: SocketFactory | None = Field(default=None, repr=False, exclude=True)
    source_address: tuple[str, int] | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            host: str,
            port: int | None = 0,
            tls: TLSModeLike = TLSMode.STARTTLS,
            username: str | None = None,
            password: str | SecretStr | None = None,
            auth: Auth | Sequence[Auth] = (),
            allow_insecure_auth: bool = False,
            timeout: float = 30.0,
            connect_timeout: float | None = None,
            local_hostname: str | None = None,
            ca_file: str | None = None,
            ca_path: str | None = None,
            client_cert: str | None = None,
            client_key: str | None = None,
            tls_min_version: Literal["1.2", "1.3"] | None = None,
            ssl_context: ssl.SSLContext | None = None,
            pool: PoolLimits = DEFAULT_POOL_LIMITS,
            pipelining: bool = True,
            chunking: bool = True,
            adapt: ProviderAdaptation = DEFAULT_PROVIDER_ADAPTATION,
            socket_factory: SocketFactory | None = None,
            source_address: str | tuple[str, int] | None = None,
        ) -> None:
            """Describe one server; see the class docstring for each field."""

    @model_validator(mode="wrap")
    @classmethod
    def _validate(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Fill in the port, check the fields together, and keep secrets out of errors.

        pydantic attaches the whole input dict (password included) to a model-level
        error, and prints and pickles every error's input.  So every error is rebuilt
        here without inputs that may hold a secret, and the cross-field checks raise
        that rebuilt error themselves.  A ``ValidationError`` raised in a validator
        keeps its line errors, so this covers ``SMTPConfig(...)``, ``model_validate*``
        and an ``SMTPConfig`` nested in another model alike.
        """
        try:
            config = handler(_with_default_port(data))
        except ValidationError as exc:
            error = redacted(exc)
        else:
            conflict = config._conflict()
            if conflict is None:
                return config
            error = _model_error(conflict)
        raise error from None  # outside the except block: no chained original

    @field_validator("tls", mode="before")
    @classmethod
    def _known_tls_mode(cls, value: Any) -> Any:
        """Refuse an unknown TLS mode with the valid values and the likely one."""
        return known_tls_mode(value)

    @field_validator("auth", mode="before")
    @classmethod
    def _one_auth_is_a_tuple(cls, value: Any) -> Any:
        return (value,) if isinstance(value, Auth) else value

    @field_validator("host", "local_hostname", "username")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return _no_line_breaks(value, "value")

    @field_validator("username", "password")
    @classmethod
    def _encodable(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        # os.environ decodes bytes that are not UTF-8 to lone surrogates (PEP 383),
        # which no SASL mechanism can send; a UnicodeError would quote the value.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and has_lone_surrogates(text):
            msg = (
                "value contains characters that are not valid Unicode (lone "
                "surrogates, as os.environ gives for bytes that are not UTF-8)"
            )
            raise ValueError(msg)
        return value

    @field_validator("host")
    @classmethod
    def _resolvable_host(cls, value: str) -> str:
        # A Unicode host is stored as its A-labels, encoded as addresses' domains
        # are: the socket and ssl modules would use IDNA 2003, which connects
        # "faß.de" to fass.de, someone else's server.  A name the codec cannot
        # encode (an empty label, "smtp..example.com") would fail at connect.
        try:
            if not value.isascii():
                # An absolute name keeps its root dot, as "mail.example.com." does;
                # the encoder sees the labels alone (an empty last label is refused).
                root = "." if value.endswith(".") else ""
                return ascii_domain(value.removesuffix(".")) + root
            value.encode("idna")
        except ValueError as exc:  # UnicodeError included
            msg = f"host {value!r} is not a valid host name or address"
            if not isinstance(exc, UnicodeError):
                msg = f"{msg}: {exc}"
            raise ValueError(msg) from None
        return value

    @field_validator("source_address", mode="before")
    @classmethod
    def _address_and_any_port(cls, value: Any) -> Any:
        return (value, 0) if isinstance(value, str) else value

    @field_validator("source_address")
    @classmethod
    def _valid_source_address(
        cls, value: tuple[str, int] | None
    ) -> tuple[str, int] | None:
        if value is None:
            return value
        msg = "source_address must be an IP address, or an (IP address, port 0-65535) pair"
        if not 0 <= value[1] <= 65535:
            raise ValueError(msg)
        try:  # a scoped IPv6 address keeps its %zone: the kernel needs it
            ipaddress.ip_address(value[0])
        except ValueError:
            raise ValueError(msg) from None
        return value

    @field_validator("local_hostname")
    @classmethod
    def _ehlo_name(cls, value: str | None) -> str | None:
        # RFC 5321 §4.1.1.1: EHLO takes a domain or an address literal, in ASCII.
        if value is not None and (
            not value.isascii() or not value.isprintable() or " " in value
        ):
            msg = f"local_hostname must be an ASCII host name or [address literal]: {value!r}"
            raise ValueError(msg)
        return value

    def _conflict(self) -> str | None:
        """Return why the fields cannot work together, or None when they can."""
        if (self.username is None) != (self.password is None):
            return "username and password must be given together"
        if (
            self.tls is TLSMode.NONE
            and self.wants_auth
            and not self.allow_insecure_auth
        ):
            return (
                "credentials would be sent in cleartext with tls='none'; use TLS, or "
                "set allow_insecure_auth=True for a trusted local server"
            )
        tls_files = (self.ca_file, self.ca_path, self.client_cert, self.client_key)
        if self.ssl_context is not None and (
            any(tls_files) or self.tls_min_version is not None
        ):
            return "ssl_context excludes ca_file, ca_path, client_cert, client_key, tls_min_version"
        if self.client_key is not None and self.client_cert is None:
            return "client_key needs client_cert"
        return None

    @override
    def __setattr__(self, name: str, value: Any) -> None:
        """Refuse assignment, as every frozen model does, without quoting the value."""
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            error = redacted(exc)
        else:  # pragma: no cover - the model is frozen, so assignment always fails
            return
        raise error from None  # outside the except block: no chained original

    @property
    def wants_auth(self) -> bool:
        """True when the transport must log in."""
        return bool(self.auth) or self.username is not None

    def auth_strategies(self, *, over_tls: bool = False) -> tuple[Auth, ...]:
        """Return the configured strategies, strongest first.

        Args:
            over_tls: Rank them for an encrypted session, where PLAIN comes
                before CRAM-MD5 (see ``Auth.strength_over_tls``).
        """
        strategies = self.auth
        if not strategies and self.username is not None and self.password is not None:
            strategies = password_strategies(self.username, self.password)
        ranked = sorted(
            strategies, key=lambda a: a.rank(over_tls=over_tls), reverse=True
        )
        return tuple(ranked)

    @classmethod
    def from_url(cls, url: str, **overrides: Unpack[SMTPConfigFields]) -> SMTPConfig:
        """Build a config from a URL such as ``smtps://user:pass@smtp.qq.com``.

        ``smtp://`` means STARTTLS (required) on port 587 and ``smtps://`` implicit
        TLS on 465; ``?tls=none`` opts into cleartext.  Other options go in the
        query (``?timeout=10&local_hostname=app.example``).  User and password are
        percent-decoded as UTF-8, so ``@ : / ? # [ ] %`` and non-ASCII characters
        must be percent-encoded in the URL (``urllib.parse.quote(password,
        safe='')``), and an ``@`` in a query value as ``%40``.  A URL where that
        was forgotten is refused rather than read with part of the password as the
        host, and no error quotes any part of the user name or password.

        Args:
            url: The URL.
            **overrides: Fields that win over the URL.

        Raises:
            ConfigurationError: The URL cannot be parsed, or its user name or
                password is not percent-encoded.
            pydantic.ValidationError: A value is invalid; the error names the field.
        """
        fields: dict[str, Any] = smtp_url_fields(url)
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_env(
        cls,
        prefix: str = "SMTP_",
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Unpack[SMTPConfigFields],
    ) -> SMTPConfig:
        """Build a config from environment variables.

        ``{prefix}URL`` gives a whole URL (see :meth:`from_url`); the separate
        variables ``{prefix}HOST``, ``PORT``, ``TLS``, ``USERNAME``, ``PASSWORD``,
        ``TIMEOUT``, ``CONNECT_TIMEOUT``, ``LOCAL_HOSTNAME``, ``ALLOW_INSECURE_AUTH``,
        ``CA_FILE``, ``CA_PATH``, ``CLIENT_CERT``, ``CLIENT_KEY`` and
        ``TLS_MIN_VERSION`` set one field each and win over the URL.

        Raises:
            ConfigurationError: Neither ``{prefix}URL`` nor ``{prefix}HOST`` is set.
        """
        env = os.environ if environ is None else environ
        fields: dict[str, Any] = {
            name: env[prefix + name.upper()]
            for name in _ENV_FIELDS
            if env.get(prefix + name.upper())
        }
        fields.update(overrides)
        url = env.get(prefix + "URL")
        if url:
            return cls.from_url(url, **fields)
        if "host" not in fields:
            msg = f"set {prefix}URL or {prefix}HOST to configure SMTP"
            raise ConfigurationError(msg)
        return cls(**fields)

    @classmethod
    def for_provider(
        cls,
        provider: str,
        *,
        region: str = "us-east-1",
        **fields: Unpack[SMTPConfigFields],
    ) -> SMTPConfig:
        """Build a config for a well-known provider; credentials come from you.

        Args:
            provider: A key of :data:`PROVIDERS` (``"qq"``, ``"gmail"``, ``"ses"``...).
            region: The AWS region, for ``"ses"`` only.
            **fields: Credentials and any field to override.

        Raises:
            ConfigurationError: The provider is unknown.
        """
        try:
            preset: dict[str, Any] = dict(PROVIDERS[provider.lower()])
        except KeyError:
            known = ", ".join(sorted(PROVIDERS))
            msg = f"unknown provider {provider!r}; known: {known}"
            raise ConfigurationError(msg) from None
        preset["host"] = str(preset["host"]).format(region=region)
        return cls(**{**preset, **fields})
