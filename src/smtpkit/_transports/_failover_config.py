"""`FailoverConfig`: several servers and how to share the mail between them."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import ModelWrapValidatorHandler
from typing_extensions import Self

from .._config import RedactingModel, SMTPConfig, redacted
from .._exceptions import ConfigurationError

__all__ = ["DEFAULT_COOLDOWN", "FailoverConfig", "Strategy"]

DEFAULT_COOLDOWN: Final = 60.0  # seconds a failed server is set aside

Strategy = Literal["failover", "roundrobin"]

_FORM: Final = re.compile(r"\s*(failover|roundrobin)\s*\((.*)\)\s*", re.DOTALL)

# Only these inputs are quoted in errors: the servers may hold passwords (a URL's
# userinfo), and an unknown key may be a misspelt secret.
_SHOWN_FIELDS: Final = frozenset({"strategy", "cooldown"})


class FailoverConfig(RedactingModel):
    """Several SMTP servers behind one transport (``FailoverTransport.from_config``).

    Validation errors never quote the servers (a URL's password): their inputs
    read ``<redacted>``.

    Attributes:
        servers: The servers, in order of preference for ``"failover"``; each an
            ``SMTPConfig``, or a URL as ``SMTPConfig.from_url`` reads it.
        strategy: ``"failover"`` sends to the first server that works;
            ``"roundrobin"`` starts each send at the next server in turn.
        cooldown: Seconds a server that failed on its own (set-up, network
            error, timeout, 421) is set aside before it is tried first again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    _shown_in_errors: ClassVar[frozenset[str]] = _SHOWN_FIELDS

    servers: tuple[SMTPConfig, ...] = Field(min_length=1)
    strategy: Strategy = "failover"
    cooldown: float = Field(default=DEFAULT_COOLDOWN, ge=0.0)

    if TYPE_CHECKING:  # any sequence of configs; validation makes it a tuple

        def __init__(
            self,
            *,
            servers: Sequence[SMTPConfig | str],
            strategy: Strategy = "failover",
            cooldown: float = DEFAULT_COOLDOWN,
        ) -> None:
            """Pass the servers in order of preference."""

    @model_validator(mode="wrap")
    @classmethod
    def _validate(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Keep the servers' inputs (passwords) out of every error."""
        try:
            return handler(data)
        except ValidationError as exc:
            error = redacted(exc, _SHOWN_FIELDS)
        raise error from None  # outside the except block: no chained original

    @field_validator("servers", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        """Read each URL string among the servers (``SMTPConfig.from_url``)."""
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return value  # pydantic refuses it (the error is redacted)
        return tuple(
            SMTPConfig.from_url(item) if isinstance(item, str) else item
            for item in value
        )

    @field_validator("cooldown")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            msg = "cooldown must be a finite number of seconds"
            raise ValueError(msg)
        return value

    @classmethod
    def from_url(cls, url: str, *, cooldown: float = DEFAULT_COOLDOWN) -> Self:
        """Read ``failover(smtp://a smtp://b)`` or ``roundrobin(smtp://a smtp://b)``.

        The server URLs inside the parentheses are separated by spaces, each one
        as ``SMTPConfig.from_url`` reads it.  No error quotes the text, which may
        hold passwords.

        Args:
            url: The text.
            cooldown: See the attribute.

        Raises:
            ConfigurationError: The text is not of that form, or a server URL
                cannot be read.
        """
        text: object = url  # untyped callers
        match = _FORM.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            msg = (
                "a failover URL reads 'failover(smtp://a smtp://b)' or "
                "'roundrobin(smtp://a smtp://b)': a strategy, then server URLs "
                "in parentheses, separated by spaces"
            )
            raise ConfigurationError(msg)
        strategy: Strategy = "roundrobin" if match[1] == "roundrobin" else "failover"
        parts = match[2].split()
        if not parts:
            msg = f"{strategy}(...) lists no server URL"
            raise ConfigurationError(msg)
        servers = []
        for number, part in enumerate(parts, 1):
            try:
                servers.append(SMTPConfig.from_url(part))
            except ValueError as exc:  # ConfigurationError or pydantic's
                msg = f"server URL {number} of {strategy}(...) is invalid: {exc}"
                raise ConfigurationError(msg) from None
        return cls(servers=tuple(servers), strategy=strategy, cooldown=cooldown)
