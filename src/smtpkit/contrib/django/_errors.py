"""smtpkit errors that are also ``smtplib.SMTPException``, as Django documents.

Django's ``send_mail()`` documentation promises an ``smtplib.SMTPException`` on
failure, and applications catch it.  The backend raises the smtpkit error it got
(``SenderRefusedError``, ``AuthenticationError``...) as an instance of a subclass
that also derives from ``smtplib.SMTPException``: both ``except`` clauses work,
and every attribute (``reply``, ``attempts``, ``history``...) is kept.
"""

from __future__ import annotations

import smtplib
import threading
from typing import Any

from smtpkit import SMTPKitError

__all__ = ["as_django_error"]


_CLASSES: dict[type[SMTPKitError], type[SMTPKitError]] = {}
_CLASSES_LOCK = threading.Lock()


def _compatible(cls: type[SMTPKitError]) -> type[SMTPKitError]:
    """*cls* with ``smtplib.SMTPException`` as a further base (one class per *cls*)."""
    with _CLASSES_LOCK:
        if cls not in _CLASSES:
            _CLASSES[cls] = _subclass(cls)
        return _CLASSES[cls]


def _subclass(cls: type[SMTPKitError]) -> type[SMTPKitError]:
    return type(
        cls.__name__,
        (cls, smtplib.SMTPException),
        {
            "__module__": __name__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "__reduce__": _reduce,
        },
    )


def _reduce(self: SMTPKitError) -> tuple[Any, ...]:
    # The class is made at run time, so pickle names the smtpkit class instead.
    plain = next(c for c in type(self).__mro__[1:] if issubclass(c, SMTPKitError))
    return (_rebuild, (plain, self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[SMTPKitError], args: tuple[Any, ...], state: dict[str, Any]
) -> SMTPKitError:
    compatible = _compatible(cls)
    exc = _allocate(compatible)
    exc.args = args
    exc.__dict__.update(state)
    return exc


def _allocate(cls: type[SMTPKitError]) -> SMTPKitError:
    """A *cls* made without running its ``__init__`` (the caller sets its state).

    ``cls.__new__`` finds the first ``__new__`` of the MRO, ``ValueError``'s for
    ``InvalidMessageError`` mixed with ``SMTPException``; but the instance layout
    is ``OSError``'s (``SMTPException`` derives from it), and CPython refuses
    ``ValueError.__new__(cls)`` as "not safe".  The layout comes down the chain of
    ``__base__`` (CPython's ``tp_base``), so the first class on that chain that
    defines ``__new__`` is the one whose ``__new__`` is safe: ``OSError`` there.
    """
    base: Any = cls  # a class; Any because typeshed types __new__ as type's own
    while "__new__" not in vars(base):
        base = base.__base__  # object, at the end of the chain, defines __new__
    exc: SMTPKitError = base.__new__(cls)
    return exc


def as_django_error(exc: SMTPKitError) -> SMTPKitError:
    """Return *exc* as an instance that is also an ``smtplib.SMTPException``."""
    if isinstance(exc, smtplib.SMTPException):
        return exc
    compatible = _rebuild(type(exc), exc.args, dict(exc.__dict__))
    compatible.__cause__ = exc.__cause__
    compatible.__context__ = exc.__context__
    compatible.__suppress_context__ = exc.__suppress_context__
    return compatible.with_traceback(exc.__traceback__)
