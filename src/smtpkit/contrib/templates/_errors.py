"""The error of a template that cannot be rendered, or of a mail merge's row."""

from __future__ import annotations

from smtpkit import InvalidMessageError

__all__ = ["TemplateRenderError"]


class TemplateRenderError(InvalidMessageError):
    """A template could not be rendered, or a mail merge row made into a message.

    Raised by ``MailTemplate.render`` and ``MailTemplate.message`` (an undefined
    variable, a subject value with a line break, a link with a blocked URL
    scheme, an exception raised inside the template).  ``merge`` yields it in
    place of the row's message, so ``send_many`` and ``send_iter`` report it as
    that row's failed result (``attempts == 0``, nothing sent) and go on.  The
    original exception is the ``__cause__``.

    Attributes:
        index: The row's position in the merge's input, from 0; None outside a merge.
        key: The row's key from ``merge(key=...)``; None without one.
    """

    def __init__(
        self, message: str, *, index: int | None = None, key: str | None = None
    ) -> None:
        super().__init__(message)
        self.index = index
        self.key = key
