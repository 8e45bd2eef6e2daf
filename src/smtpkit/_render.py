"""``smtpkit.render``: a ``Message`` as the exact bytes a send transmits.

For ``.eml`` export, archives, "Sent" copies, previews and signing.  It is the
renderer ``Mailer.send`` uses, so the two cannot drift apart.
"""

from __future__ import annotations

from ._exceptions import InvalidMessageError
from ._mailer_args import id_domain
from ._message import Message
from ._mime import render_with_id

__all__ = ["render"]


def render(message: Message, *, message_id_domain: str | None = None) -> bytes:
    """Return *message* as the bytes a send would transmit after DATA.

    The same bytes ``Mailer.send`` hands the server (before dot-stuffing, which
    is the transport's business): every line ends in CRLF, the Bcc header is
    never written, and nothing of the envelope is in them.  A message without
    ``message_id`` or ``date`` gets them here exactly as a send adds them, so
    the bytes are the same on every call when both are given.

    Args:
        message: The message to render.
        message_id_domain: The domain of a generated Message-ID, as
            ``Mailer(message_id_domain=...)``; by default the sender's.

    Raises:
        InvalidMessageError: The message cannot be rendered (a header that
            cannot be folded, text that is not valid Unicode...).
        ConfigurationError: *message_id_domain* is not a domain name.
        TypeError: *message* is not an ``smtpkit.Message``.
    """
    if not isinstance(message, Message):
        # Reachable from untyped callers.
        msg = (  # type: ignore[unreachable]
            f"render() takes an smtpkit.Message, not {type(message).__name__}; "
            "an email.message.EmailMessage renders with its own as_bytes()"
        )
        raise TypeError(msg)
    domain = None if message_id_domain is None else id_domain(message_id_domain)
    try:
        return render_with_id(message, id_domain=domain)[0]
    except InvalidMessageError:
        raise
    except Exception as exc:  # the email package's own errors, as a send reports them
        msg = f"cannot render the message: {exc}"
        raise InvalidMessageError(msg) from exc
