"""The one exception hierarchy of smtpkit.

::

    SMTPKitError
    ├── ConfigurationError (ValueError)        settings that cannot work together
    ├── InvalidMessageError (ValueError)       a message that cannot be sent as given
    ├── ClosedError (RuntimeError)             Mailer or transport used after close()
    ├── SendManyAbortedError (in _bulk)        send_many's input or on_progress raised
    ├── SigningError (in _signing)             the mailer's signer= failed; nothing sent
    └── TransportError                         .is_transient .command .delivery_unknown .attempts
        ├── NetworkError (ConnectionError)             transient
        │   ├── ConnectError                           could not connect
        │   └── ServerDisconnectedError                connection lost mid-session
        ├── SMTPTimeoutError (TimeoutError)            transient
        │   ├── ConnectTimeoutError (+ ConnectError)
        │   └── ReadTimeoutError
        ├── PoolTimeoutError                           no connection free in time
        ├── NotSentError (in _bulk)                    a stopped bulk send never sent it
        ├── TokenFetchError (in _token_cache)          a CachedTokenProvider's fetch failed
        ├── TLSError                                   handshake or certificate failure
        ├── ProtocolError                              malformed or oversize reply
        ├── NotSupportedError                          STARTTLS, AUTH, SMTPUTF8 or SIZE missing
        └── SMTPReplyError                             .reply .reason .hint; transient iff 4xx
            ├── GreetingRefusedError                   banner was not 220
            ├── HeloRefusedError
            ├── AuthenticationError                    535 permanent, 454 transient
            │   └── AuthenticationRequiredError        530 at MAIL: log in (or STARTTLS) first
            ├── SenderRefusedError                     .sender
            ├── RecipientsRefusedError                 .refused; every recipient refused
            └── DataRefusedError                       DATA or end-of-data not accepted

Model validation raises :class:`pydantic.ValidationError` (a ``ValueError``) with the
offending field named; everything smtpkit raises itself derives from
:class:`SMTPKitError`.  Every exception here survives a pickle round trip, so errors
can cross process boundaries (multiprocessing, Celery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._provider_replies import ReplyExplanation, ReplyReason, explain_reply
from ._reply import SMTPReply

__all__ = [
    "AuthenticationError",
    "AuthenticationRequiredError",
    "ClosedError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "DataRefusedError",
    "GreetingRefusedError",
    "HeloRefusedError",
    "InvalidMessageError",
    "NetworkError",
    "NotSupportedError",
    "PoolTimeoutError",
    "ProtocolError",
    "ReadTimeoutError",
    "RecipientsRefusedError",
    "SMTPKitError",
    "SMTPReplyError",
    "SMTPTimeoutError",
    "SenderRefusedError",
    "ServerDisconnectedError",
    "TLSError",
    "TransportError",
]


def _rebuild(
    cls: type[SMTPKitError], args: tuple[Any, ...], state: dict[str, Any]
) -> Any:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class SMTPKitError(Exception):
    """Base class of every error smtpkit raises; never raised itself."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only context; rebuild from args + __dict__ so that
        # pickling never has to know each constructor's signature.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigurationError(SMTPKitError, ValueError):
    """Settings that cannot work together, found when they meet."""


class InvalidMessageError(SMTPKitError, ValueError):
    """A message or envelope that cannot be sent as given (for example, no recipients)."""


class ClosedError(SMTPKitError, RuntimeError):
    """A Mailer or transport was used after ``close()``."""


class TransportError(SMTPKitError):
    """A delivery attempt failed.

    Attributes:
        command: The SMTP command that failed (``"MAIL"``, ``"DATA"``...), if known.
        delivery_unknown: True when the connection failed after the message data
            was sent but before the server's final reply (RFC 1047): the server may
            have queued the message, so resending risks a duplicate.
        attempts: How many attempts were made before this error was given up on.
        history: The errors of the earlier attempts, oldest first.
        server: The server that failed, as a ``FailoverTransport`` names it; None
            from a transport with a single server.

    Args:
        message: What failed, and where possible what to do about it.
        command: See the attribute.
        delivery_unknown: See the attribute.
        transient: Overrides the class's usual transience for this one error, for
            a failure that cannot heal by itself (a host name that does not
            exist, a TLS mode that does not match the port); None keeps it.
    """

    transient_default: bool = False

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        delivery_unknown: bool = False,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.command = command
        self.delivery_unknown = delivery_unknown
        self.attempts = 1
        self.history: tuple[TransportError, ...] = ()
        self.server: str | None = None
        self._transient = transient

    @property
    def is_transient(self) -> bool:
        """True when the same attempt may succeed later."""
        return self.transient_default if self._transient is None else self._transient


class NetworkError(TransportError, ConnectionError):
    """The TCP connection failed or was lost."""

    transient_default = True


class ConnectError(NetworkError):
    """No connection to the server could be made."""


class ServerDisconnectedError(NetworkError):
    """The server closed the connection during a session."""


class SMTPTimeoutError(TransportError, TimeoutError):
    """The server did not answer within the configured timeout."""

    transient_default = True


class ConnectTimeoutError(SMTPTimeoutError, ConnectError):
    """Connecting, or waiting for the greeting, took longer than the timeout."""


class ReadTimeoutError(SMTPTimeoutError):
    """A reply took longer than the timeout."""


class PoolTimeoutError(TransportError):
    """Every pooled connection stayed busy past the acquire timeout.

    This is local back-pressure, so it is not retried: the caller decides.
    """


class TLSError(TransportError):
    """The TLS handshake or certificate verification failed.

    Also raised when the TLS mode does not match the server's port: TLS bytes
    where a plaintext greeting was expected, a plaintext greeting where a TLS
    handshake was expected, or silence on port 465 without ``tls="implicit"``.
    """


class ProtocolError(TransportError):
    """The server broke the protocol: a malformed, oversize or unexpected reply."""


class NotSupportedError(TransportError):
    """The server lacks an extension this message or configuration needs."""


_HINT_MARK = "; hint: "


def _with_hint(text: str, explanation: ReplyExplanation | None) -> str:
    """End *text* with the provider's hint, once."""
    if explanation is None:
        return text
    tail = f"{_HINT_MARK}{explanation.hint}"
    return text if text.endswith(tail) else f"{text}{tail}"


class SMTPReplyError(TransportError):
    """The server answered a command with an error reply.

    When the reply is one a well-known provider documents (see
    :func:`smtpkit.explain_reply`), ``reason`` and ``hint`` say why and what to
    do, and the message ends with ``; hint: <hint>``.  smtpkit's own advice (a
    ``530`` asking for AUTH or STARTTLS) comes first in the message; the
    provider table has no row for the replies smtpkit already advises on, so
    the two never disagree.

    Attributes:
        reply: The server's reply (code, enhanced status code, decoded text).
        explanation: What the provider means by it, or None for a reply no
            provider documents.
    """

    def __init__(
        self,
        reply: SMTPReply,
        *,
        command: str | None = None,
        message: str | None = None,
        delivery_unknown: bool = False,
    ) -> None:
        explanation = explain_reply(reply)
        text = _with_hint(
            message or f"{command or 'command'} refused: {reply}", explanation
        )
        super().__init__(text, command=command, delivery_unknown=delivery_unknown)
        self.reply = reply
        self.explanation = explanation

    @property
    def reason(self) -> ReplyReason | None:
        """Why the provider refused, or None for a reply no provider documents."""
        return None if self.explanation is None else self.explanation.reason

    @property
    def hint(self) -> str | None:
        """What to do about it (one sentence), or None for an unknown reply."""
        return None if self.explanation is None else self.explanation.hint

    @property
    def code(self) -> int:
        """The reply code."""
        return self.reply.code

    @property
    def is_transient(self) -> bool:
        """True for a 4xx reply."""
        return self.reply.is_transient


class GreetingRefusedError(SMTPReplyError):
    """The server's banner was not 220 (for example 421 or 554)."""


class HeloRefusedError(SMTPReplyError):
    """The server refused both EHLO and HELO."""


class AuthenticationError(SMTPReplyError):
    """The server refused the credentials (535), or could not check them now (454)."""


class AuthenticationRequiredError(AuthenticationError):
    """The server takes mail only after AUTH (or STARTTLS): ``530`` to MAIL FROM.

    RFC 4954 §6 ``530 5.7.0 Authentication required``, and RFC 3207 §4
    ``530 5.7.0 Must issue a STARTTLS command first``.  It is not the sender
    address that was refused, so the message says which setting is missing.

    Attributes:
        sender: The envelope sender of the refused MAIL FROM.
    """

    def __init__(
        self, reply: SMTPReply, *, sender: str, message: str | None = None
    ) -> None:
        text = message or f"sender <{sender}> refused, log in first: {reply}"
        super().__init__(reply, command="MAIL", message=text)
        self.sender = sender


class SenderRefusedError(SMTPReplyError):
    """The server refused MAIL FROM.

    Attributes:
        sender: The envelope sender that was refused.
    """

    def __init__(self, reply: SMTPReply, *, sender: str) -> None:
        super().__init__(
            reply, command="MAIL", message=f"sender <{sender}> refused: {reply}"
        )
        self.sender = sender


class RecipientsRefusedError(SMTPReplyError):
    """The server refused every recipient, so no message data was sent.

    When only some recipients are refused, the send succeeds and the refusals are in
    ``SendResult.refused`` instead.

    ``reason``, ``hint`` and ``explanation`` come from the first refusal a
    provider documents (not merely the first refusal), as smtpkit's own
    retries and adaptation read them; with several recipients the message
    names the one the hint is about: ``; hint (for <b@163.com>): ...``.

    Attributes:
        refused: Each refused recipient with the server's reply to its RCPT TO.
        reply: The first recipient's reply.
    """

    def __init__(self, refused: Mapping[str, SMTPReply]) -> None:
        if not refused:
            msg = "RecipientsRefusedError needs at least one refused recipient"
            raise ValueError(msg)
        listed = ", ".join(f"<{addr}>: {reply}" for addr, reply in refused.items())
        text = f"recipients refused: {listed}"
        explanation = None
        for addr, reply in refused.items():
            explanation = explain_reply(reply)
            if explanation is not None:
                whom = f" (for <{addr}>)" if len(refused) > 1 else ""
                text = f"{text}; hint{whom}: {explanation.hint}"
                break
        # SMTPReplyError would explain the first reply: set the fields here.
        TransportError.__init__(self, text, command="RCPT")
        self.reply = next(iter(refused.values()))
        self.explanation = explanation
        self.refused = dict(refused)

    @property
    def is_transient(self) -> bool:
        """True when at least one recipient got a 4xx, so a retry could deliver."""
        return any(reply.is_transient for reply in self.refused.values())


class DataRefusedError(SMTPReplyError):
    """The server refused DATA, or did not accept the message after its data."""
