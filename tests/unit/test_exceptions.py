"""The exception hierarchy: builtin bases, transience, and pickling."""

from __future__ import annotations

import pickle

import pytest

import smtpkit
from smtpkit import (
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
    SendManyAbortedError,
    SendResult,
    ServerDisconnectedError,
    SMTPKitError,
    SMTPReply,
    SMTPReplyError,
    SMTPTimeoutError,
    TLSError,
    TransportError,
)

REPLY_451 = SMTPReply.from_string("451 4.3.0 busy")
REPLY_550 = SMTPReply.from_string("550 5.1.1 no such user")

ERROR_CLASSES = sorted(
    (
        obj
        for name in smtpkit.__all__
        if isinstance(obj := getattr(smtpkit, name), type)
        and issubclass(obj, SMTPKitError)
    ),
    key=lambda cls: cls.__name__,
)


def make_error(cls: type[SMTPKitError]) -> SMTPKitError:
    """Build an instance of *cls* with every piece of context set."""
    if cls is RecipientsRefusedError:
        exc: SMTPKitError = cls(
            {"a@example.com": REPLY_451, "b@example.com": REPLY_550}
        )
    elif issubclass(cls, SendManyAbortedError):
        exc = cls("stopped", results=[SendResult(envelope=None, attempts=0)])
    elif cls in (SenderRefusedError, AuthenticationRequiredError):
        exc = cls(REPLY_550, sender="me@example.com")
    elif issubclass(cls, SMTPReplyError):
        exc = cls(REPLY_451, command="DATA", delivery_unknown=True)
    elif issubclass(cls, TransportError):
        exc = cls("lost", command="DATA", delivery_unknown=True)
    else:
        exc = cls("bad settings")
    if isinstance(exc, TransportError):
        exc.attempts = 3
        exc.history = (ConnectError("first"), ReadTimeoutError("second"))
    return exc


def round_trip(exc: SMTPKitError) -> SMTPKitError:
    return pickle.loads(pickle.dumps(exc))  # noqa: S301 - bytes we just made


def test_every_public_error_is_covered():
    # SendManyAbortedError, QuotaExceededError and NotSentError live beside
    # the bulk engine, TokenFetchError beside CachedTokenProvider.
    names = {cls.__name__ for cls in ERROR_CLASSES}
    assert names == {
        *smtpkit._exceptions.__all__,
        "SendManyAbortedError",
        "NotSentError",
        "QuotaExceededError",
        "TokenFetchError",
        "SigningError",  # beside the signer= seam (_signing.py)
        "SendVetoedError",  # beside the send hooks
    }


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_pickle_round_trip(cls):
    exc = make_error(cls)
    clone = round_trip(exc)
    assert type(clone) is cls
    assert clone.args == exc.args
    assert str(clone) == str(exc)
    for attr in ("reply", "refused", "sender", "command", "delivery_unknown"):
        assert getattr(clone, attr, None) == getattr(exc, attr, None)
    if isinstance(exc, TransportError):
        assert clone.attempts == 3
        assert [str(e) for e in clone.history] == ["first", "second"]
        assert [type(e) for e in clone.history] == [ConnectError, ReadTimeoutError]
        assert clone.is_transient == exc.is_transient


def test_pickled_context_values():
    clone = round_trip(make_error(SenderRefusedError))
    assert clone.sender == "me@example.com"
    assert clone.reply == REPLY_550
    assert clone.command == "MAIL"
    clone = round_trip(make_error(RecipientsRefusedError))
    assert clone.refused == {"a@example.com": REPLY_451, "b@example.com": REPLY_550}
    clone = round_trip(make_error(DataRefusedError))
    assert clone.delivery_unknown is True
    assert clone.command == "DATA"


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (ConfigurationError, (SMTPKitError, ValueError)),
        (InvalidMessageError, (SMTPKitError, ValueError)),
        (ClosedError, (SMTPKitError, RuntimeError)),
        (TransportError, (SMTPKitError,)),
        (NetworkError, (TransportError, ConnectionError)),
        (ConnectError, (NetworkError, ConnectionError)),
        (ServerDisconnectedError, (NetworkError, ConnectionError)),
        (SMTPTimeoutError, (TransportError, TimeoutError)),
        (ConnectTimeoutError, (SMTPTimeoutError, ConnectError, TimeoutError)),
        (ReadTimeoutError, (SMTPTimeoutError, TimeoutError)),
        (PoolTimeoutError, (TransportError,)),
        (TLSError, (TransportError,)),
        (ProtocolError, (TransportError,)),
        (NotSupportedError, (TransportError,)),
        (SMTPReplyError, (TransportError,)),
        (GreetingRefusedError, (SMTPReplyError,)),
        (HeloRefusedError, (SMTPReplyError,)),
        (AuthenticationError, (SMTPReplyError,)),
        (SenderRefusedError, (SMTPReplyError,)),
        (RecipientsRefusedError, (SMTPReplyError,)),
        (DataRefusedError, (SMTPReplyError,)),
    ],
)
def test_bases(cls, bases):
    for base in bases:
        assert issubclass(cls, base)


def test_no_builtin_timeout_or_connection_base_where_not_documented():
    assert not issubclass(PoolTimeoutError, TimeoutError)
    assert not issubclass(ReadTimeoutError, ConnectionError)
    assert not issubclass(TLSError, ConnectionError)
    assert not issubclass(SMTPReplyError, (ValueError, ConnectionError))


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (NetworkError("x"), True),
        (ConnectError("x"), True),
        (ServerDisconnectedError("x"), True),
        (SMTPTimeoutError("x"), True),
        (ConnectTimeoutError("x"), True),
        (ReadTimeoutError("x"), True),
        (TransportError("x"), False),
        (PoolTimeoutError("x"), False),
        (TLSError("x"), False),
        (ProtocolError("x"), False),
        (NotSupportedError("x"), False),
        (SMTPReplyError(REPLY_451), True),
        (SMTPReplyError(REPLY_550), False),
        (GreetingRefusedError(SMTPReply(421, "bye")), True),
        (GreetingRefusedError(SMTPReply(554, "go away")), False),
        (DataRefusedError(SMTPReply(452, "full")), True),
    ],
)
def test_is_transient(exc, transient):
    assert exc.is_transient is transient


def test_transport_error_defaults():
    exc = ConnectError("refused")
    assert exc.command is None
    assert exc.delivery_unknown is False
    assert exc.attempts == 1
    assert exc.history == ()
    assert str(exc) == "refused"


def test_reply_error_message_and_code():
    exc = SMTPReplyError(REPLY_550, command="RCPT")
    assert exc.code == 550
    assert str(exc) == "RCPT refused: 550 5.1.1 no such user"
    assert str(SMTPReplyError(REPLY_550)) == "command refused: 550 5.1.1 no such user"
    assert str(SMTPReplyError(REPLY_550, message="custom")) == "custom"


def test_sender_refused():
    exc = SenderRefusedError(REPLY_550, sender="me@example.com")
    assert exc.sender == "me@example.com"
    assert exc.command == "MAIL"
    assert "me@example.com" in str(exc)


def test_authentication_error_454_transient_535_permanent():
    assert AuthenticationError(
        SMTPReply.from_string("454 4.7.0 try later")
    ).is_transient
    refused = AuthenticationError(SMTPReply.from_string("535 5.7.8 bad credentials"))
    assert not refused.is_transient
    assert refused.code == 535


def test_recipients_refused_transient_if_any_4xx():
    mixed = RecipientsRefusedError({"a@x.com": REPLY_550, "b@x.com": REPLY_451})
    assert mixed.is_transient
    assert mixed.reply == REPLY_550  # the first refusal
    assert mixed.command == "RCPT"
    permanent = RecipientsRefusedError({"a@x.com": REPLY_550, "b@x.com": REPLY_550})
    assert not permanent.is_transient
    assert RecipientsRefusedError({"a@x.com": REPLY_451}).is_transient


def test_recipients_refused_message_lists_everyone():
    exc = RecipientsRefusedError({"a@x.com": REPLY_550, "b@x.com": REPLY_451})
    assert "<a@x.com>: 550 5.1.1 no such user" in str(exc)
    assert "<b@x.com>: 451 4.3.0 busy" in str(exc)


def test_recipients_refused_copies_mapping():
    source = {"a@x.com": REPLY_550}
    exc = RecipientsRefusedError(source)
    source["b@x.com"] = REPLY_451
    assert list(exc.refused) == ["a@x.com"]


def test_recipients_refused_needs_someone():
    with pytest.raises(ValueError, match="at least one"):
        RecipientsRefusedError({})
