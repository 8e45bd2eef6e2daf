"""smtpkit: typed, pooled, retrying SMTP for Python applications.

::

    import smtpkit

    config = smtpkit.SMTPConfig.from_url("smtps://me%40qq.com:AUTHCODE@smtp.qq.com")
    with smtpkit.Mailer(config) as mailer:
        mailer.send(smtpkit.Message(sender="me@qq.com", to="you@example.com",
                                    subject="Hello", text="Hi!"))
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from . import auth
from ._adaptation import ProviderAdaptation
from ._address import Address, AddressLike
from ._async_mailer import AsyncMailer
from ._bulk import NotSentError, QuotaExceededError, SendManyAbortedError
from ._config import (
    DEFAULT_POOL_LIMITS,
    PROVIDERS,
    PoolLimits,
    SMTPConfig,
    SMTPConfigFields,
    TLSMode,
    TLSModeLike,
)
from ._exceptions import (
    AuthenticationError,
    AuthenticationRequiredError,
    ClosedError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    DataRefusedError,
    GreetingRefusedError,
    HeloRefusedError,
    InvalidMessageError,
    NetworkError,
    NotSupportedError,
    PoolTimeoutError,
    ProtocolError,
    ReadTimeoutError,
    RecipientsRefusedError,
    SenderRefusedError,
    ServerDisconnectedError,
    SMTPKitError,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)
from ._hooks import Hooks, SendVetoedError
from ._mailer import BulkItem, BulkProgress, Mailer, Sendable
from ._message import Attachment, Envelope, Message
from ._provider_replies import ReplyExplanation, ReplyReason, explain_reply
from ._ratelimit import RateLimit
from ._render import render
from ._reply import EnhancedStatus, ReplyCode, SMTPReply, parse_reply
from ._retry import DEFAULT_RETRY_POLICY, RetryDetails, RetryHook, RetryPolicy
from ._send_event import SendEvent
from ._signing import MessageSigner, SigningError
from ._socket_factory import SocketFactory
from ._stream import SendStream
from ._token_cache import TokenFetchError
from ._transports._connection import SMTPConnection
from ._transports._failover_config import FailoverConfig
from ._transports._pool import PoolStats
from ._transports.base import RecipientResult, SendResult, Transport
from ._transports.failover import FailoverTransport, RoundRobinTransport, ServerStats
from ._transports.smtp import SMTPTransport
from ._verify_report import VerifyReport

try:
    __version__ = version("pysmtpkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

# Library etiquette: records reach the application's handlers when it configures
# logging, and nowhere (not stderr via logging.lastResort) when it does not.
logging.getLogger("smtpkit").addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_POOL_LIMITS",
    "DEFAULT_RETRY_POLICY",
    "PROVIDERS",
    "Address",
    "AddressLike",
    "AsyncMailer",
    "Attachment",
    "AuthenticationError",
    "AuthenticationRequiredError",
    "BulkItem",
    "BulkProgress",
    "ClosedError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "DataRefusedError",
    "EnhancedStatus",
    "Envelope",
    "FailoverConfig",
    "FailoverTransport",
    "GreetingRefusedError",
    "HeloRefusedError",
    "Hooks",
    "InvalidMessageError",
    "Mailer",
    "Message",
    "MessageSigner",
    "NetworkError",
    "NotSentError",
    "NotSupportedError",
    "PoolLimits",
    "PoolStats",
    "PoolTimeoutError",
    "ProtocolError",
    "ProviderAdaptation",
    "QuotaExceededError",
    "RateLimit",
    "ReadTimeoutError",
    "RecipientResult",
    "RecipientsRefusedError",
    "ReplyCode",
    "ReplyExplanation",
    "ReplyReason",
    "RetryDetails",
    "RetryHook",
    "RetryPolicy",
    "RoundRobinTransport",
    "SMTPConfig",
    "SMTPConfigFields",
    "SMTPConnection",
    "SMTPKitError",
    "SMTPReply",
    "SMTPReplyError",
    "SMTPTimeoutError",
    "SMTPTransport",
    "SendEvent",
    "SendManyAbortedError",
    "SendResult",
    "SendStream",
    "SendVetoedError",
    "Sendable",
    "SenderRefusedError",
    "ServerDisconnectedError",
    "ServerStats",
    "SigningError",
    "SocketFactory",
    "TLSError",
    "TLSMode",
    "TLSModeLike",
    "TokenFetchError",
    "Transport",
    "TransportError",
    "VerifyReport",
    "__version__",
    "auth",
    "explain_reply",
    "parse_reply",
    "render",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("smtpkit._"):
        _obj.__module__ = "smtpkit"
del _name, _obj
