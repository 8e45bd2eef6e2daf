"""Turning what a caller passes to a mailer into envelope, bytes and Message-ID.

``Mailer`` and ``AsyncMailer`` both prepare each message here, so a message is
rendered, checked and addressed the same way whichever face sends it.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.message import Message as MIMEMessage

from ._attempt import Prepared
from ._email_message import envelope_of, raw_message_id, render_email
from ._exceptions import InvalidMessageError
from ._message import Envelope, Message
from ._mime import normalize_line_endings, render_with_id
from ._signing import MessageSigner, sign

__all__ = ["BulkItem", "Sendable", "prepare", "sign_prepared"]

Sendable = Message | EmailMessage | MIMEMessage | bytes
"""What ``Mailer.send`` takes: a ``Message``; a pre-built stdlib message, either an
``EmailMessage`` or a legacy ``email.message.Message`` (what
``email.message_from_bytes`` returns by default, and Django's
``EmailMessage.message()``); or raw bytes with an explicit envelope."""

BulkItem = Sendable | tuple[Sendable, Envelope] | InvalidMessageError
"""What ``Mailer.send_many`` takes: a message, or a message with its envelope; or an
``InvalidMessageError`` standing in for a message its producer could not build (a
mail merge's row that failed to render), reported as that item's failed result
with nothing sent, so one bad row neither vanishes nor stops the run."""


def prepare(
    message: Sendable | InvalidMessageError,
    envelope: Envelope | None,
    *,
    id_domain: str | None,
    signer: MessageSigner | None = None,
) -> Prepared:
    """Render *message* and pair it with its envelope (derived when None).

    Args:
        message: A ``Message``, a stdlib message, or raw bytes.
        envelope: MAIL FROM / RCPT TO; required for raw bytes.
        id_domain: The domain of a generated Message-ID (None: the sender's).
        signer: Signs the rendered bytes (see ``sign_prepared``), or None.

    Raises:
        InvalidMessageError: Raw bytes without an envelope, or something that is
            not a message; *message* itself when it is one (a bulk item standing
            in for a message that could not be built).  Rendering and addressing
            errors propagate as raised.
        SigningError: The signer failed.
    """
    if isinstance(message, InvalidMessageError):
        raise message
    prepared = _prepare(message, envelope, id_domain=id_domain)
    return prepared if signer is None else sign_prepared(prepared, signer)


def sign_prepared(prepared: Prepared, signer: MessageSigner) -> Prepared:
    """*prepared* with its final bytes signed: the signer's header fields first.

    The bytes are what the transport sends after DATA (CRLF line endings,
    before dot-stuffing), so the signature covers exactly what is sent.

    Raises:
        SigningError: The signer failed.
    """
    data = normalize_line_endings(sign(signer, prepared.data))
    return Prepared(prepared.envelope, data, prepared.message_id, prepared.event)


def _prepare(
    message: Sendable, envelope: Envelope | None, *, id_domain: str | None
) -> Prepared:
    if envelope is not None and not isinstance(envelope, Envelope):
        # Reachable from untyped callers.
        msg = f"envelope must be an Envelope, not {type(envelope).__name__}"  # type: ignore[unreachable]
        raise InvalidMessageError(msg)
    if isinstance(message, Message):
        data, message_id = render_with_id(message, id_domain=id_domain)
        if envelope is None:
            envelope = message.to_envelope()  # asks for SMTPUTF8 when needed
        elif message.needs_smtputf8 and not envelope.smtputf8:
            envelope = envelope.model_copy(update={"smtputf8": True})
        return Prepared(envelope, data, message_id)
    if isinstance(message, MIMEMessage):  # EmailMessage or the legacy class
        envelope, data = render_email(message, envelope or envelope_of(message))
        header = message.get("Message-ID")
        return Prepared(envelope, data, None if header is None else str(header))
    if isinstance(message, bytes | bytearray | memoryview):
        if envelope is None:
            msg = "raw bytes need an explicit envelope=Envelope(sender=..., recipients=...)"
            raise InvalidMessageError(msg)
        # The transport contract: CRLF line endings, the last line included.
        data = normalize_line_endings(bytes(message))
        return Prepared(envelope, data, raw_message_id(data))
    # Reachable from untyped callers.
    msg = (  # type: ignore[unreachable]
        f"cannot send {type(message).__name__}; pass an smtpkit.Message, an "
        "email.message.Message (EmailMessage included), or bytes with an envelope"
    )
    raise InvalidMessageError(msg)
