"""``SessionObserver``: what ``SMTPTransport`` tells an observer about its sessions.

A session is one connection's life: connect, greeting, EHLO, STARTTLS, AUTH,
transactions, QUIT.  ``smtpkit.contrib.otel`` turns it into a span.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from ._connection import SMTPConnection

__all__ = ["SessionObserver", "SessionTracker"]

logger = logging.getLogger("smtpkit")


class SessionObserver(Protocol):
    """Told when each session of a transport starts, is set up and ends.

    Called from the thread that opens or closes the connection; it must be
    thread-safe.  What it raises is logged and ignored, bar ``KeyboardInterrupt``
    and ``SystemExit``, which propagate (from ``close()``, once every
    connection is closed and every other session reported).
    """

    def session_started(self, host: str, port: int) -> object:
        """A connection is about to be made; returns a token for the calls below."""

    def session_ready(self, token: object, conn: SMTPConnection) -> None:
        """The session is set up (greeted, secured, logged in) on *conn*."""

    def session_ended(self, token: object, error: BaseException | None) -> None:
        """The session ended: closed (*error* None) or failed to set up."""


class SessionTracker:
    """Calls an observer for a transport, keeping each open session's token."""

    def __init__(self, observer: SessionObserver) -> None:
        self.observer = observer
        self._open: dict[SMTPConnection, object] = {}
        self._lock = threading.Lock()

    def started(self, host: str, port: int) -> object:
        """The token of a session about to start (None when the observer raised)."""
        try:
            return self.observer.session_started(host, port)
        except _STOPS:
            raise
        except BaseException as exc:  # an observer never breaks a send
            _log("session_started", exc)
            return None

    def ready(self, token: object, conn: SMTPConnection) -> None:
        """*conn*'s session is set up; its end is reported by :meth:`closed`."""
        with self._lock:
            self._open[conn] = token
        try:
            self.observer.session_ready(token, conn)
        except _STOPS:
            raise
        except BaseException as exc:
            _log("session_ready", exc)

    def failed(self, token: object, error: BaseException) -> None:
        """The session that *token* stands for failed before it was set up."""
        self._end(token, error)

    def closed(self, *conns: SMTPConnection) -> None:
        """*conns* closed; each one's session ends if it was set up (reported
        once).  A ``KeyboardInterrupt`` or ``SystemExit`` from the observer is
        raised again once every session is reported."""
        stop: BaseException | None = None
        for conn in conns:
            with self._lock:
                if conn not in self._open:
                    continue
                token = self._open.pop(conn)
            try:
                self._end(token, None)
            except _STOPS as exc:
                stop = stop or exc
        if stop is not None:
            raise stop

    def _end(self, token: object, error: BaseException | None) -> None:
        try:
            self.observer.session_ended(token, error)
        except _STOPS:
            raise
        except BaseException as exc:
            _log("session_ended", exc)


_STOPS = (KeyboardInterrupt, SystemExit)  # propagate, as from any other code


def _log(method: str, exc: BaseException) -> None:
    logger.error("session observer's %s raised %s: %s", method, type(exc).__name__, exc)
