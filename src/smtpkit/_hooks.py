"""Send hooks: plain callables the mailers call around each message.

``Hooks`` is the value users build; ``HookRunner`` is what ``Mailer`` and
``AsyncMailer`` call: before a message's first attempt (``before``, which may
add header lines or veto), before each retry wait, and once with the outcome
(``finished`` or ``failed``).  A hook that raises is logged and ignored, except
``KeyboardInterrupt`` and ``SystemExit`` in the caller's thread, which
propagate once the other hooks of that kind have run: a send never breaks
because of a hook, but Ctrl-C still stops the program.  In a bulk send's
worker threads those two are logged too: they cannot stop the caller there,
and would lose the outcome of a whole batch.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from email.header import Header
from typing import TYPE_CHECKING, Final, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from ._attempt import Prepared
from ._bulk import NotSentError
from ._exceptions import InvalidMessageError, SMTPKitError, TransportError
from ._retry import RetryDetails, RetryHook
from ._send_event import SendEvent, claim_outcome
from ._transports.base import SendResult

__all__ = [
    "AfterSendHook",
    "BeforeSendHook",
    "FailureHook",
    "HookRunner",
    "Hooks",
    "RetryEventHook",
    "SendVetoedError",
]

logger = logging.getLogger("smtpkit")

# RFC 5322 §2.2: a field name is printable US-ASCII except the colon.
_NAME_RE: Final = re.compile(r"[!-9;-~]+")
# RFC 5322 §3.6: fields a message has at most once; a hook adding one would
# make a second (or smuggle a Bcc onto the wire).  RFC 2045 §3: the MIME
# fields too (a second Content-Type changes how the body is read), and
# Return-Path, which only the delivering MTA adds (RFC 5321 §4.4).
_SINGLE_FIELDS: Final = frozenset(
    {
        "bcc",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "in-reply-to",
        "message-id",
        "mime-version",
        "references",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
    }
)
# Control characters (TAB aside) and every line break str.splitlines() knows:
# RFC 5322 §3.2.5 unstructured text is VCHAR and WSP only.  Lone surrogates
# (a file name decoded with surrogateescape) cannot be encoded at all.
_BAD_VALUE_RE: Final = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
)
_MAX_LINE: Final = 998  # RFC 5322 §2.1.1, without the CRLF


class SendVetoedError(SMTPKitError):
    """A ``before_send`` hook refused the message: nothing was sent.

    Raise it from a ``before_send`` hook to veto a message; ``Mailer.send``
    raises it, and bulk sends report it as that message's ``error``.

    Attributes:
        reason: Why, as the hook said (also the exception's text).
    """

    def __init__(self, reason: str = "vetoed by a before_send hook") -> None:
        super().__init__(reason)
        self.reason = reason


BeforeSendHook: TypeAlias = Callable[[SendEvent], "Mapping[str, str] | None"]
"""Called before the first attempt; returns header lines to add, or None.
Raise ``SendVetoedError`` to veto the message."""
AfterSendHook: TypeAlias = Callable[[SendEvent, SendResult], None]
"""Called with the result of a message some recipient accepted."""
RetryEventHook: TypeAlias = Callable[[SendEvent, RetryDetails], None]
"""Called before each wait between a message's attempts."""
FailureHook: TypeAlias = Callable[[SendEvent, SMTPKitError], None]
"""Called with the error of a message no recipient accepted (vetoes included)."""


class Hooks(BaseModel):
    """The callables a mailer calls around each message it sends.

    Each list runs in order.  Hooks run in the thread that sends the message:
    the caller's for ``Mailer.send``, a worker's for ``send_many`` and
    ``send_iter`` (so they must be thread-safe there), the event loop's for
    ``AsyncMailer``.  A hook that raises is logged at ERROR, with its
    exception type and text but no addresses, and ignored; only
    ``KeyboardInterrupt`` and ``SystemExit`` raised in the caller's thread
    (``send``, the event loop) propagate, once the other hooks of that kind
    have run.  Combine two values with ``+``.

    Args:
        before_send: ``hook(event) -> headers | None``, before the first
            attempt.  The returned mapping's header lines are put on top of
            the message as sent (for a ``Message``, an ``EmailMessage`` and
            raw bytes alike); a name must be a valid field name and not one a
            message has only once (To, Subject, Message-ID, Content-Type,
            MIME-Version...) nor Return-Path, a value must not hold CR, LF,
            NUL or a lone surrogate; non-ASCII values are RFC 2047 encoded.
            Otherwise the message fails with ``InvalidMessageError``, unsent.
            Raising ``SendVetoedError`` vetoes the message.
        after_send: ``hook(event, result)`` once some recipient accepted it.
        on_retry: ``hook(event, details)`` before each wait between attempts.
        on_failure: ``hook(event, error)`` once the message failed for every
            recipient (or was vetoed).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    before_send: tuple[BeforeSendHook, ...] = ()
    after_send: tuple[AfterSendHook, ...] = ()
    on_retry: tuple[RetryEventHook, ...] = ()
    on_failure: tuple[FailureHook, ...] = ()

    if TYPE_CHECKING:  # lists too: validation makes them tuples

        def __init__(
            self,
            *,
            before_send: Sequence[BeforeSendHook] = (),
            after_send: Sequence[AfterSendHook] = (),
            on_retry: Sequence[RetryEventHook] = (),
            on_failure: Sequence[FailureHook] = (),
        ) -> None:
            """Hold the hooks; each list runs in order."""

    @field_validator("before_send", "after_send", "on_retry", "on_failure")
    @classmethod
    def _not_async(
        cls, hooks: tuple[Callable[..., object], ...], info: ValidationInfo
    ) -> tuple[Callable[..., object], ...]:
        # Called and never awaited, an async def hook would silently not run.
        for hook in hooks:
            if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
                getattr(hook, "__call__", None)  # noqa: B004 - an async __call__
            ):
                name = getattr(hook, "__qualname__", type(hook).__qualname__)
                msg = (
                    f"{info.field_name} hook {name} is an async function: hooks "
                    "are called, never awaited, by Mailer and AsyncMailer alike; "
                    "pass a plain function (start a task from it if need be)"
                )
                raise ValueError(msg)
        return hooks

    def __add__(self, other: Hooks) -> Hooks:
        """Both values' hooks, this one's first."""
        if not isinstance(other, Hooks):
            return NotImplemented  # untyped callers
        return Hooks(
            before_send=self.before_send + other.before_send,
            after_send=self.after_send + other.after_send,
            on_retry=self.on_retry + other.on_retry,
            on_failure=self.on_failure + other.on_failure,
        )

    def __bool__(self) -> bool:
        """Whether any hook is set."""
        return bool(
            self.before_send or self.after_send or self.on_retry or self.on_failure
        )


def _call(kind: str, hook: Callable[..., object], *args: object, stops: bool) -> object:
    """Call *hook*; log and swallow what it raises, bar a veto from before_send
    and, when *stops*, ``KeyboardInterrupt`` and ``SystemExit``."""
    try:
        return hook(*args)
    except SendVetoedError:
        if kind != "before_send":
            _log(kind, hook, SendVetoedError("a veto is only for before_send"))
            return None
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        if stops:
            raise
        _log(kind, hook, exc)
        return None
    except BaseException as exc:  # a hook never breaks a send
        _log(kind, hook, exc)
        return None


def _run_all(
    kind: str, hooks: Sequence[Callable[..., object]], *args: object, stops: bool
) -> None:
    """Call every hook (see ``_call``); a ``KeyboardInterrupt`` or ``SystemExit``
    that one raises is raised again once the others have run, so hooks that
    end what ``before_send`` began (a span) still run."""
    stop: BaseException | None = None
    for hook in hooks:
        try:
            _call(kind, hook, *args, stops=stops)
        except BaseException as exc:  # only KeyboardInterrupt and SystemExit
            stop = stop or exc
    if stop is not None:
        raise stop


def _log(kind: str, hook: Callable[..., object], exc: BaseException) -> None:
    name = getattr(hook, "__qualname__", type(hook).__qualname__)
    # The text of the hook's own exception is the hook author's; no envelope.
    logger.error("%s hook %s raised %s: %s", kind, name, type(exc).__name__, exc)


def _checked_lines(headers: object) -> bytes:
    """``_header_lines(headers)``; whatever else goes wrong there (a mapping
    whose ``items()`` raises, a value the encoder refuses) is the message's
    ``InvalidMessageError`` too."""
    try:
        return _header_lines(headers)
    except SMTPKitError:
        raise
    except Exception as exc:
        msg = (
            f"a before_send hook's headers cannot be added: {type(exc).__name__}: {exc}"
        )
        raise InvalidMessageError(msg) from exc


def _header_lines(headers: object) -> bytes:
    """*headers* (what a before_send hook returned) as CRLF-ended header lines."""
    if not isinstance(headers, Mapping):
        msg = (
            "a before_send hook must return a mapping of header names to values "
            f"or None, not {type(headers).__name__}"
        )
        raise InvalidMessageError(msg)
    lines = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            msg = f"a before_send hook returned an invalid header name: {name!r}"
            raise InvalidMessageError(msg)
        if name.lower() in _SINGLE_FIELDS:
            msg = f"a before_send hook may not add a {name} header (at most one)"
            raise InvalidMessageError(msg)
        if not isinstance(value, str) or _BAD_VALUE_RE.search(value):
            msg = (
                f"a before_send hook returned an invalid value for {name}: only "
                "text without control characters, line breaks or lone surrogates "
                "can be added"
            )
            raise InvalidMessageError(msg)
        charset = "us-ascii" if value.isascii() else "utf-8"
        folded = Header(value, charset, header_name=name).encode(linesep="\r\n")
        line = f"{name}: {folded}"
        if any(len(part) > _MAX_LINE for part in line.split("\r\n")):
            msg = f"a before_send hook's {name} header has a line over 998 characters"
            raise InvalidMessageError(msg)
        lines.append(line.encode("ascii") + b"\r\n")
    return b"".join(lines)


class HookRunner:
    """Calls one ``Hooks`` value's callables for the mailers.

    Args:
        hooks: The callables.
        stops: Whether ``KeyboardInterrupt`` and ``SystemExit`` from a hook
            propagate: in the caller's thread they do; in a bulk send's worker
            threads they cannot stop the caller, and would lose the outcome
            of the messages of the batch, so they are logged like the rest.
    """

    __slots__ = ("_hooks", "_stops")

    def __init__(self, hooks: Hooks, *, stops: bool = True) -> None:
        self._hooks = hooks
        self._stops = stops

    def in_workers(self) -> HookRunner:
        """This runner for a bulk send's worker threads (see ``stops``)."""
        return HookRunner(self._hooks, stops=False)

    def before(self, prepared: Prepared) -> Prepared:
        """Run the before_send hooks: *prepared* with its ``SendEvent`` and the
        hooks' header lines on top.

        Raises:
            SendVetoedError: A hook vetoed the message (on_failure was told).
            InvalidMessageError: A hook returned headers that cannot be added
                (on_failure was told).
            KeyboardInterrupt: A hook raised it (or ``SystemExit``), with
                ``stops``; the other hooks ran first, on_failure was told.
        """
        event = SendEvent(prepared.envelope, prepared.message_id, len(prepared.data))
        try:
            added, stop = self._run_before(event)
        except BaseException as exc:  # a veto, bad headers: nothing sent
            self.failed(event, exc, sent=False)
            raise
        if stop is not None:  # Ctrl-C from a hook, raised once the others ran
            self.failed(event, stop, sent=False)
            raise stop
        data = added + prepared.data if added else prepared.data  # no copy if none
        return Prepared(prepared.envelope, data, prepared.message_id, event)

    def _run_before(self, event: SendEvent) -> tuple[bytes, BaseException | None]:
        """The before_send hooks' header lines, and the first ``KeyboardInterrupt``
        or ``SystemExit`` one raised (the hooks after it still run)."""
        added = b""
        stop: BaseException | None = None
        for hook in self._hooks.before_send:
            try:
                headers = _call("before_send", hook, event, stops=self._stops)
                if headers is not None and stop is None:
                    added += _checked_lines(headers)
            except (KeyboardInterrupt, SystemExit) as exc:
                stop = stop or exc
            except SMTPKitError:  # a veto or bad headers end the hooks
                if stop is not None:
                    break  # Ctrl-C came first: it wins
                raise
        return added, stop

    def retry_hook(self, event: SendEvent, also: RetryHook | None) -> RetryHook | None:
        """The retry hook of one message: *also* (the mailer's), then ours."""
        hooks = self._hooks.on_retry
        if not hooks:
            return also
        stops = self._stops

        def on_retry(details: RetryDetails) -> None:
            if also is not None:
                also(details)
            _run_all("on_retry", hooks, event, details, stops=stops)

        return on_retry

    def around(self, event: SendEvent, deliver: Callable[[], SendResult]) -> SendResult:
        """``deliver()``'s result, reported to after_send or on_failure."""
        try:
            result = deliver()
        except BaseException as exc:
            self.failed(event, exc)
            raise
        self.finished(event, result)
        return result

    def finished(self, event: SendEvent, result: SendResult) -> None:
        """Report a message's final *result*: after_send, or on_failure when
        no recipient accepted it (a bulk send's failed result)."""
        if result.error is not None and not result.accepted:
            self.failed(event, result.error)
            return
        if not claim_outcome(event):
            return
        _run_all("after_send", self._hooks.after_send, event, result, stops=self._stops)

    def failed(
        self, event: SendEvent, error: BaseException, *, sent: bool = True
    ) -> None:
        """Report that a message failed for every recipient with *error*.

        Only the first outcome reported for a message reaches the hooks.  An
        *error* that is no ``SMTPKitError`` (Ctrl-C, a cancellation) stopped
        the send: the hooks get a ``NotSentError`` when nothing was *sent*, else
        a ``TransportError`` with ``delivery_unknown`` set; either is caused by
        *error*.
        """
        if not claim_outcome(event):
            return
        if not isinstance(error, SMTPKitError):
            error = _stopped(error, sent=sent)
        _run_all("on_failure", self._hooks.on_failure, event, error, stops=self._stops)


def _stopped(cause: BaseException, *, sent: bool) -> SMTPKitError:
    """The error the on_failure hooks get for a send *cause* stopped."""
    name = type(cause).__name__
    error: TransportError
    if sent:
        text = f"sending was stopped by {name}: the message may or may not be delivered"
        error = TransportError(text, delivery_unknown=True)
    else:
        error = NotSentError(f"not sent: stopped by {name} before its first attempt")
        error.attempts = 0
    error.__cause__ = cause
    return error
