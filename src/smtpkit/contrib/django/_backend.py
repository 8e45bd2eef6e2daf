"""``EmailBackend``: Django's ``EMAIL_BACKEND`` interface over a shared smtpkit ``Mailer``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection, Sequence
from typing import Any, Final

from django.core.mail import EmailMessage as DjangoMessage
from django.core.mail.backends.base import BaseEmailBackend
from typing_extensions import override

from smtpkit import Envelope, Mailer, SendResult, SMTPConfig, SMTPKitError

from ._convert import to_smtpkit
from ._errors import as_django_error
from ._settings import KNOWN_OPTIONS, resolve_settings

__all__ = ["SMTPKIT_RESULT", "EmailBackend"]

logger = logging.getLogger("smtpkit.contrib.django")

# Django >= 6.1: BaseEmailBackend takes the MAILERS alias (and reports unknown
# options itself); before, it takes fail_silently and ignores anything else.
_BASE_TAKES_ALIAS: Final = (
    "alias" in inspect.signature(BaseEmailBackend.__init__).parameters
)

SMTPKIT_RESULT: Final = "smtpkit_result"
"""The attribute ``send_messages`` sets on each Django message: its ``SendResult``
(``None`` for a message without recipients, which is not sent)."""


class EmailBackend(BaseEmailBackend):
    """Send Django's mail through a pooled, retrying smtpkit ``Mailer``.

    Set ``EMAIL_BACKEND = "smtpkit.contrib.django.EmailBackend"``.  The server
    comes from Django's ``EMAIL_*`` settings, and from ``SMTPKIT`` (a URL, or a
    dict of ``SMTPConfig`` fields plus ``url``, ``retry``, ``rate_limit``,
    ``message_id_domain`` and ``signer``) for what those cannot express.  Keyword arguments
    override both, with the stock backend's names (``host``, ``port``,
    ``username``, ``password``, ``use_tls``, ``use_ssl``, ``timeout``,
    ``ssl_keyfile``, ``ssl_certfile``) and smtpkit's (``pool``, ``retry``...).

    On Django >= 6.1 it can instead be a ``MAILERS`` backend: Django passes the
    mailer's ``alias`` and ``OPTIONS`` (the same names), and those are all it
    reads (see ``_settings``); bad options raise Django's ``InvalidMailer``.

    Every backend in a process with the same settings sends through one shared
    mailer and its connection pool, from any thread; a forked child gets its
    own.  ``open()`` and ``close()`` therefore never connect or disconnect:
    ``open()`` returns True when this backend was not open (Django's "a new
    connection was opened", which tells the caller to ``close()`` it), and
    ``close()`` only marks it closed; the pool stays open for the other
    backends and threads, and is closed at interpreter exit (or by
    ``close_shared_mailers()``).

    After ``send_messages`` each message has an ``smtpkit_result`` attribute
    with its ``smtpkit.SendResult`` (per-recipient replies, queue id).

    Raises:
        django.core.exceptions.ImproperlyConfigured: At construction, when the
            settings conflict or are invalid (also a ``ValueError``, as the
            stock backend raises for both TLS flags).
    """

    def __init__(  # noqa: PLR0917 - Django's own backend takes them positionally
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        *,
        alias: str | None = None,
        _ignore_unknown_kwargs: Collection[str] | None = None,
        **options: Any,
    ) -> None:
        if _BASE_TAKES_ALIAS:
            # fail_silently is ours: passed on, Django 6.1 deprecates it.
            super().__init__(alias=alias)
        else:
            super().__init__(fail_silently=fail_silently)
            self.alias = alias
        self.fail_silently = fail_silently
        if _ignore_unknown_kwargs:
            # Django's get_connection(**kwargs) over MAILERS: the keyword
            # arguments it adds that the backend does not know are dropped.
            options = {
                name: value
                for name, value in options.items()
                if name not in _ignore_unknown_kwargs or name in KNOWN_OPTIONS
            }
        resolved = resolve_settings(
            {
                "host": host,
                "port": port,
                "username": username,
                "password": password,
                "use_tls": use_tls,
                "use_ssl": use_ssl,
                "timeout": timeout,
                "ssl_keyfile": ssl_keyfile,
                "ssl_certfile": ssl_certfile,
                **options,
            },
            alias=alias,
        )
        self._settings = resolved
        # The stock backend's attributes, for code that reads them.
        values = resolved.django
        self.host: str | None = values["host"]
        self.port: int | None = values["port"]
        self.username: str | None = values["username"]
        self.password: str | None = values["password"]
        self.use_tls: bool = bool(values["use_tls"])
        self.use_ssl: bool = bool(values["use_ssl"])
        self.timeout: float | None = values["timeout"]
        self.ssl_keyfile: str | None = values["ssl_keyfile"]
        self.ssl_certfile: str | None = values["ssl_certfile"]
        self._open = False

    @property
    def config(self) -> SMTPConfig:
        """The server settings this backend sends with."""
        return self._settings.config

    @property
    def mailer(self) -> Mailer:
        """This process's shared mailer for these settings (built on first use)."""
        return self._settings.shared_mailer()

    @override
    def open(self) -> bool:
        """Mark the backend open; return True if it was not (no network I/O).

        The shared pool connects when a message is sent, so a wrong password
        surfaces at the first send (``Mailer.verify()`` checks it up front).
        """
        if self._open:
            return False
        self._open = True
        return True

    @override
    def close(self) -> None:
        """Mark the backend closed; the shared pool stays open for the others."""
        self._open = False

    def send_messages(self, email_messages: Sequence[DjangoMessage]) -> int:
        """Send Django messages; return how many were delivered to anyone.

        Several messages go out with ``Mailer.send_many`` (pipelined on pooled
        connections).  A message some recipients refused counts as sent: the
        refusal is logged at WARNING (without addresses) and is in the
        message's ``smtpkit_result``.  A message nothing was delivered for is
        not counted; unless ``fail_silently``, its error is raised after the
        other messages were sent.  Its ``smtpkit_result`` has no recipients
        (``refused`` is empty): the failure is its ``error``.

        Raises:
            ValueError: An address is invalid (before anything is sent).
            smtpkit.SMTPKitError: A message could not be delivered (the first
                such error), unless ``fail_silently``; also an instance of
                ``smtplib.SMTPException``, as Django documents.
        """
        if not email_messages:
            return 0
        to_send: list[tuple[DjangoMessage, tuple[Any, Envelope]]] = []
        for message in email_messages:
            converted = to_smtpkit(message)
            setattr(message, SMTPKIT_RESULT, None)
            if converted is not None:
                to_send.append((message, converted))
        if not to_send:
            return 0
        try:
            results = self._send(self.mailer, [item for _, item in to_send])
        except SMTPKitError as exc:  # ClosedError, e.g. during interpreter exit
            if self.fail_silently:
                return 0
            raise as_django_error(exc) from exc
        sent = 0
        failure: SMTPKitError | None = None
        for (message, _), result in zip(to_send, results, strict=True):
            setattr(message, SMTPKIT_RESULT, result)
            if result.accepted:
                sent += 1
                if result.refused:
                    _log_refusal(result)
            elif failure is None:
                failure = result.error
        if failure is not None and not self.fail_silently:
            raise as_django_error(failure) from failure
        return sent

    @staticmethod
    def _send(mailer: Mailer, items: list[tuple[Any, Envelope]]) -> list[SendResult]:
        """One result per message, failures included (never raised per message)."""
        if len(items) > 1:
            return mailer.send_many(items)
        message, envelope = items[0]
        try:
            return [mailer.send(message, envelope=envelope)]
        except SMTPKitError as exc:
            return [
                SendResult(
                    envelope=envelope,
                    error=exc,
                    attempts=getattr(exc, "attempts", 0),
                )
            ]


def _log_refusal(result: SendResult) -> None:
    """Log a partial refusal without the addresses (they are in the result)."""
    codes = sorted({str(reply.code) for reply in result.refused.values()})
    logger.warning(
        "%d of %d recipients refused message %s (replies %s); see the "
        "message's smtpkit_result",
        len(result.refused),
        len(result.recipients),
        result.message_id or "(no Message-ID)",
        ", ".join(codes),
    )
