"""``merge``: rows in, messages out, lazily, one failed row never lost nor fatal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from smtpkit import Message

from ._errors import TemplateRenderError

__all__ = ["merge"]

R = TypeVar("R")


def merge(
    rows: Iterable[R],
    build: Callable[[R], Message],
    *,
    key: Callable[[R], str] | None = None,
) -> Iterator[Message | TemplateRenderError]:
    """Build one message per row, lazily, for ``send_many`` or ``send_iter``.

    A generator: a row is read (and its message built) only when the mailer
    asks for the next message, so a campaign of any length streams through
    ``send_iter`` in flat memory.  A row whose *build* raises (a template error,
    a missing field, a bad address) is not skipped and does not stop the run:
    a ``TemplateRenderError`` takes its message's place, which ``send_many`` and
    ``send_iter`` report as that row's failed result (nothing sent) at the
    row's position.  Exceptions that are not ``Exception`` (``KeyboardInterrupt``)
    propagate, and the mailer stops the run as it does for any input that raises.

    Args:
        rows: The rows, read once, in order (a list, a ``csv.DictReader``, a
            database cursor).
        build: Makes a row's message, typically with ``MailTemplate.message``.
        key: Names a row in its error (an id, a customer number), as
            ``TemplateRenderError.key``; it is not called for rows that succeed.

    Yields:
        Per row, in order: its ``Message``, or a ``TemplateRenderError`` with
        the row's ``index`` (from 0) and ``key``, the cause chained.
    """
    for index, row in enumerate(rows):
        try:
            message = build(row)
        except Exception as exc:  # one row's failure is that row's result
            yield _row_error(exc, index, row, key)
        else:
            yield message


def _row_error(
    exc: Exception, index: int, row: R, key: Callable[[R], str] | None
) -> TemplateRenderError:
    name: str | None = None
    if key is not None:
        try:
            name = str(key(row))
        except Exception:  # a row too broken to name stays unnamed
            name = None
    detail = (
        str(exc)
        if isinstance(exc, TemplateRenderError)
        else (f"{type(exc).__name__}: {exc}")
    )
    error = TemplateRenderError(f"row {index}: {detail}", index=index, key=name)
    error.__cause__ = exc
    return error
