"""The ``signer=`` seam: header fields (DKIM-Signature...) added to the sent bytes.

A mailer with a signer hands it each message's final bytes (rendered, CRLF line
endings, before dot-stuffing: exactly what follows DATA) and puts the header
fields it returns in front of them.  The signer never replaces the message, so a
faulty one cannot lose or alter what the caller wrote; what it returns is checked
to be whole header fields before anything is sent.
"""

from __future__ import annotations

import re
from typing import Final, Protocol, runtime_checkable

from ._exceptions import SMTPKitError

__all__ = [
    "MessageSigner",
    "SigningError",
    "check_signer",
    "interrupted_in_worker",
    "sign",
]

# RFC 5322 §2.2: a field name is printable US-ASCII except the colon; a line
# ends in CRLF, a continuation line starts with white space (§2.2.3); no bare CR
# or LF and no NUL anywhere (RFC 5321 §2.3.8).
_FIELDS_RE: Final = re.compile(
    rb"(?:[\x21-\x39\x3b-\x7e]+[ \t]*:[^\r\n\x00]*\r\n(?:[ \t][^\r\n\x00]*\r\n)*)+"
)
_NAME_RE: Final = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:", re.MULTILINE)
# Fields a signer never adds: RFC 5322 §3.6's once-only originator, destination,
# identification and informational fields and the MIME ones.  A second one would
# change who the message is from or to (a Bcc would even be sent) or how it reads.
_NOT_A_SIGNERS: Final = frozenset(
    {b"date", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc"}
    | {b"message-id", b"in-reply-to", b"references", b"subject"}
    | {b"mime-version", b"content-type", b"content-transfer-encoding"}
)


class SigningError(SMTPKitError):
    """A message signer failed or returned something that is not header fields.

    Raised before anything is sent, so the message was not sent; it is not
    retried (the same bytes would fail the same way).  The text never holds the
    key.
    """


@runtime_checkable
class MessageSigner(Protocol):
    """Signs a message's final bytes; passed to a mailer as ``signer=``.

    ``smtpkit.contrib.dkim.DKIMSigner`` is one.  Implementations must be safe to
    call from several threads at once (``Mailer`` is, and ``AsyncMailer`` signs
    in its worker threads so that the event loop is not blocked).
    """

    def sign(self, message: bytes, /) -> bytes:
        """Return header fields to put in front of *message*.

        Args:
            message: The bytes sent after DATA: CRLF line endings, the last line
                included, before dot-stuffing.

        Returns:
            One or more complete header fields, each line ending in CRLF
            (``b"DKIM-Signature: v=1; ...\\r\\n"``), or ``b""`` to add none.
            Never a field of the message's own (From, To, Cc, Bcc, Subject,
            Date, Message-ID, MIME-Version, Content-Type...): those are refused.
        """
        ...  # pragma: no cover - a Protocol's body is never run


def check_signer(signer: object) -> MessageSigner | None:
    """*signer* checked to have a ``sign`` method (untyped callers pass anything).

    Raises:
        TypeError: It has none; the message says what to pass.
    """
    if signer is None or isinstance(signer, MessageSigner):
        return signer
    msg = (
        f"signer= takes an object with a sign(message: bytes) -> bytes method "
        f"(such as smtpkit.contrib.dkim.DKIMSigner), not {type(signer).__name__}"
    )
    raise TypeError(msg)


def sign(signer: MessageSigner, data: bytes) -> bytes:
    """*data* with the header fields *signer* returns in front of it.

    Raises:
        SigningError: The signer raised an ``Exception`` (chained as the cause),
            or returned something that is not whole header fields.  Other
            ``BaseException`` (``KeyboardInterrupt``) propagates unchanged.
    """
    name = type(signer).__name__
    try:
        fields: object = signer.sign(data)
    except SigningError:
        raise
    except Exception as exc:
        msg = f"{name}.sign() raised {type(exc).__name__}: {exc}"
        raise SigningError(msg) from exc
    if not isinstance(fields, bytes):
        msg = f"{name}.sign() must return bytes, not {type(fields).__name__}"
        raise SigningError(msg)
    if fields and _FIELDS_RE.fullmatch(fields) is None:
        # Not shown: a broken signer's output could hold anything.
        msg = (
            f"{name}.sign() must return whole header fields, each line ending "
            f"in CRLF ({len(fields)} bytes returned were not)"
        )
        raise SigningError(msg)
    for field in _NAME_RE.findall(fields):
        if field.lower() in _NOT_A_SIGNERS:
            msg = (
                f"{name}.sign() returned a {field.decode()} field: a signer adds "
                "signature fields, never the message's own"
            )
            raise SigningError(msg)
    return fields + data


def interrupted_in_worker(signer: MessageSigner, exc: BaseException) -> SigningError:
    """The error of a message whose signer raised *exc* (``KeyboardInterrupt``,
    ``SystemExit``) in a bulk send's worker thread.

    There it cannot stop the caller, who is in another thread; so it fails that
    message alone (chain *exc* as the cause), as a hook's would be logged.
    """
    name = type(signer).__name__
    msg = (
        f"{name}.sign() raised {type(exc).__name__} in a send_many worker thread, "
        "where it cannot stop the caller: this message was not sent"
    )
    return SigningError(msg)
