"""Transports that never touch the network, for users' tests and development.

``FakeTransport`` records what would have been sent and can be scripted to fail;
``FileTransport`` writes ``.eml`` files; ``ConsoleTransport`` prints.
"""

from __future__ import annotations

import collections
import email
import email.policy
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import IO, cast

from typing_extensions import override

from .._exceptions import (
    ClosedError,
    DataRefusedError,
    RecipientsRefusedError,
    TransportError,
)
from .._message import Envelope
from .._reply import SMTPReply
from .._verify_report import VERIFY_STEPS, VerifyReport
from .base import RecipientResult, SendResult, Transport

__all__ = [
    "ConsoleTransport",
    "FakeTransport",
    "FileTransport",
    "Handler",
    "Outcome",
    "SentMessage",
]

Outcome = SendResult | SMTPReply | TransportError | str | None
"""What a fake send does: a result, a reply (``"451 4.3.0 busy"`` as text too),
an exception to raise, or None for "250 OK"."""

Handler = Callable[[Envelope, bytes], Outcome]


def _fake_report() -> VerifyReport:
    """A fresh report of a server that offers everything (one per call)."""
    return VerifyReport(
        host="fake.invalid",
        port=587,
        banner="fake.invalid ESMTP smtpkit FakeTransport",
        extensions={
            "size": "52428800",
            "pipelining": "",
            "8bitmime": "",
            "enhancedstatuscodes": "",
            "smtputf8": "",
            "chunking": "",
            "auth": "PLAIN LOGIN",
        },
        size_limit=52428800,
        pipelining=True,
        chunking=True,
        smtputf8=True,
        starttls_used=True,
        tls_version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        certificate_subject="CN=fake.invalid",
        certificate_expires=None,
        auth_mechanism="PLAIN",
        timings=tuple((step, 0.0) for step in VERIFY_STEPS),
    )


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message as the fake server received it.

    Attributes:
        envelope: MAIL FROM and RCPT TO (of the accepted recipients).
        data: The exact bytes of the message.
        message: ``data`` parsed back with the stdlib ``email`` package.
        result: What the transport returned.
    """

    envelope: Envelope
    data: bytes
    message: EmailMessage
    result: SendResult

    @property
    def subject(self) -> str:
        """The decoded Subject header."""
        return str(self.message.get("Subject", ""))

    @property
    def recipients(self) -> tuple[str, ...]:
        """The envelope recipients that were accepted."""
        return self.result.accepted

    def body(self, subtype: str = "plain") -> str:
        """Return the decoded ``text/plain`` (or ``text/html``) body, or ``""``."""
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None:
            return ""
        content = str(cast(EmailMessage, part).get_content())
        # The line break that ends the data (the transport contract's final CRLF)
        # is the wire's, not the body's: a 7bit body would otherwise gain it.
        return (
            content.removesuffix("\r\n") if not self.message.is_multipart() else content
        )


def _outcome_to_result(outcome: Outcome, envelope: Envelope) -> SendResult:
    if isinstance(outcome, TransportError):
        raise outcome
    if outcome is None:
        return SendResult.delivered(envelope)
    if isinstance(outcome, str):
        outcome = SMTPReply.from_string(outcome)
    if isinstance(outcome, SMTPReply):
        if not 200 <= outcome.code < 300:
            raise DataRefusedError(outcome, command="end of data")
        return SendResult.delivered(envelope, outcome)
    return outcome


class FakeTransport(Transport):
    """An in-memory transport: it records every attempt and accepts by default.

    Thread-safe: one lock guards the outbox and the script.

    Args:
        handler: Decides each attempt from the envelope and bytes; returns an
            :data:`Outcome`.  Without it every message gets "250 OK".
        refuse: Recipients to refuse at RCPT, each with its reply, e.g.
            ``{"nobody@example.com": "550 5.1.1 no such user"}``.

    Example:
        >>> fake = FakeTransport()
        >>> fake.fail_next(2, "451 4.3.0 try again")   # then accept
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        refuse: Mapping[str, SMTPReply | str] | None = None,
    ) -> None:
        self._handler = handler
        self._refuse = {
            addr: SMTPReply.from_string(r) if isinstance(r, str) else r
            for addr, r in (refuse or {}).items()
        }
        self._script: collections.deque[Outcome] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        self.outbox: list[SentMessage] = []
        self.attempts: list[Envelope] = []
        self.verifications = 0

    @classmethod
    def scripted(cls, *outcomes: Outcome) -> FakeTransport:
        """Play *outcomes* back in order, one per attempt, then accept everything."""
        fake = cls()
        fake._script.extend(outcomes)
        return fake

    def fail_next(
        self,
        count: int = 1,
        reply: SMTPReply | str | TransportError = "451 4.3.0 Try again later",
    ) -> None:
        """Make the next *count* attempts fail with *reply* (or raise the error)."""
        with self._lock:
            self._script.extend([reply] * count)

    def clear(self) -> None:
        """Forget the outbox and the recorded attempts."""
        with self._lock:
            self.outbox.clear()
            self.attempts.clear()

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        """Record one attempt and return its scripted or handled outcome."""
        with self._lock:
            if self._closed:
                msg = "the transport is closed"
                raise ClosedError(msg)
            self.attempts.append(envelope)
            has_script = bool(self._script)
            scripted = self._script.popleft() if has_script else None
        refused = {r: self._refuse[r] for r in envelope.recipients if r in self._refuse}
        if len(refused) == len(envelope.recipients):
            raise RecipientsRefusedError(refused)
        if has_script:
            result = _outcome_to_result(scripted, envelope)
        elif self._handler is not None:
            result = _outcome_to_result(self._handler(envelope, data), envelope)
        else:
            result = SendResult.delivered(envelope)
        if refused:
            recipients = dict(result.recipients)
            recipients.update(
                {r: RecipientResult(r, reply) for r, reply in refused.items()}
            )
            result = result.with_updates(recipients=recipients)
        accepted = result.accepted
        if accepted:
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            sent = SentMessage(
                envelope=envelope.with_recipients(accepted),
                data=data,
                message=parsed,
                result=result,
            )
            with self._lock:
                self.outbox.append(sent)
        return result

    @override
    def verify(self) -> VerifyReport:
        """Return a plausible report of a server that offers everything, at once.

        Nothing is contacted, so code that calls ``Mailer.verify()`` at start-up
        runs in tests.  ``verifications`` counts the calls.

        Raises:
            ClosedError: The transport was closed.
        """
        with self._lock:
            if self._closed:
                msg = "the transport is closed"
                raise ClosedError(msg)
            self.verifications += 1
        return _fake_report()

    @override
    def close(self) -> None:
        """Refuse further sends; the outbox stays readable."""
        self._closed = True


class FileTransport(Transport):
    """Write each message to ``DIRECTORY/<time>-<uuid>.eml`` instead of sending it.

    Thread-safe: every message gets a unique file name.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._closed = False

    @override
    def open(self) -> None:
        """Create the directory if needed."""
        self.directory.mkdir(parents=True, exist_ok=True)

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        """Write the message; every recipient counts as accepted."""
        if self._closed:
            msg = "the transport is closed"
            raise ClosedError(msg)
        self.open()
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}.eml"
        (self.directory / name).write_bytes(data)
        return SendResult.delivered(envelope, SMTPReply(250, f"written to {name}"))

    @override
    def close(self) -> None:
        """Refuse further sends."""
        self._closed = True


class ConsoleTransport(Transport):
    """Print each message (envelope first) to a text stream; handy in development.

    Thread-safe: a lock keeps messages from interleaving.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._closed = False

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        """Print the envelope and message; every recipient counts as accepted."""
        if self._closed:
            msg = "the transport is closed"
            raise ClosedError(msg)
        stream = self._stream or sys.stdout
        text = data.decode("utf-8", "replace").replace("\r\n", "\n")
        with self._lock:
            stream.write(
                f"MAIL FROM:<{envelope.sender}> RCPT TO:{', '.join(envelope.recipients)}\n"
            )
            stream.write(text)
            if not text.endswith("\n"):  # raw bytes from a custom caller
                stream.write("\n")
            stream.write("-" * 72 + "\n")
            stream.flush()
        return SendResult.delivered(envelope)

    @override
    def close(self) -> None:
        """Refuse further sends."""
        self._closed = True
