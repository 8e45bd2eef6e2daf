"""`LoginGuard`: no second login with credentials the server refused for good.

A wrong or locked password, an account that needs an app password (QQ's 授权码),
or SMTP switched off for the tenant: logging in again cannot succeed, and with
some providers every failed login prolongs the lock-out.  Without a guard a bulk
send logs in once per batch (the pool reconnects for each), one failed AUTH per
few dozen messages.  The guard holds the refusal for a pause instead
(``ProviderAdaptation.hold_auth_refusal``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

from .._adaptation import ProviderAdaptation
from .._exceptions import AuthenticationError, AuthenticationRequiredError
from .._provider_replies import ReplyReason, explain_reply

__all__ = ["LoginGuard", "refuses_for_good"]

_LASTING: Final = frozenset(
    {
        ReplyReason.AUTH_FAILED,
        ReplyReason.AUTH_LOCKED,
        ReplyReason.AUTH_NEEDS_APP_PASSWORD,
        ReplyReason.SMTP_DISABLED,
    }
)


def refuses_for_good(exc: BaseException) -> bool:
    """True when *exc* says the credentials will not work by trying again.

    A 5xx to AUTH, or a reply a provider documents as bad or locked credentials,
    app passwords only or SMTP switched off, even with a 4xx code.  A plain
    ``454`` (the server could not check them now) is not.
    """
    if not isinstance(exc, AuthenticationError) or isinstance(
        exc, AuthenticationRequiredError
    ):
        return False
    if exc.reply.code >= 500:
        return True
    explanation = explain_reply(exc.reply)
    return explanation is not None and explanation.reason in _LASTING


class LoginGuard:
    """Holds a lasting login refusal for a pause, for one transport.

    Thread-safe: every connection of the pool logs in through it.

    Args:
        adapt: ``hold_auth_refusal`` switches the guard on, ``auth_refusal_pause``
            is the pause in seconds.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self, adapt: ProviderAdaptation, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._on = adapt.hold_auth_refusal
        self._pause = adapt.auth_refusal_pause
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._gate = threading.Lock()  # one login at a time until one succeeded
        self._proven = False  # a login with these credentials succeeded
        self._refusal: AuthenticationError | None = None
        self._refused_at = 0.0

    def check(self) -> None:
        """Raise the held refusal while its pause lasts; nothing otherwise.

        Raises:
            AuthenticationError: A new copy of the refusal, whose message says
                the login was not tried again and when it will be.
        """
        with self._lock:
            refusal = self._refusal
            if refusal is None:
                return
            age = self._clock() - self._refused_at
            if age >= self._pause:
                self._refusal = None  # the pause is over: log in again
                return
        msg = (
            f"AUTH refused: {refusal.reply} ({age:.0f} s ago); not tried again, "
            f"the next login is in {self._pause - age:.0f} s "
            f"(SMTPConfig.adapt.auth_refusal_pause)"
        )
        raise AuthenticationError(refusal.reply, command="AUTH", message=msg)

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Run one login: wait for the others first, then hold a lasting refusal.

        Raises:
            AuthenticationError: The refusal held from another login (see
                :meth:`check`), or the one raised by the login itself.
        """
        if not self._on:
            yield
            return
        gate = contextlib.nullcontext() if self._proven else self._gate
        with gate:
            self.check()  # another connection's login may have been refused
            try:
                yield
            except AuthenticationError as exc:
                if refuses_for_good(exc):
                    with self._lock:
                        self._refusal = exc
                        self._refused_at = self._clock()
                        self._proven = False
                raise
            with self._lock:
                self._refusal = None
                self._proven = True
