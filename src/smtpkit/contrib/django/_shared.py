"""One pooled ``Mailer`` per process per configuration, shared by every backend.

Django builds a new backend object for nearly every ``send_mail()``; a pool per
backend would connect (and log in) for every message.  So backends look their
mailer up here at each send.  Threads share it: a ``Mailer`` is thread-safe.

After ``os.fork()`` (gunicorn/uWSGI prefork, Celery's prefork pool) the child
starts with an empty registry and a new lock: the parent's mailers hold the
parent's sockets and possibly locks that some parent thread held at the fork.
They are abandoned in the child, never closed there (closing would QUIT the
parent's sessions).  At interpreter exit every mailer of the process is closed.

The registry key is made of the settings' values (see ``registry_key``): equal
settings share a mailer.  An unhashable object of the user's own (a token
provider written as a ``@dataclass`` or a pydantic model with ``__call__``)
counts by identity, so the same provider object shares one mailer and two
different ones never do; a key hit is confirmed with ``==`` as well.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple

from pydantic import BaseModel

from smtpkit import Mailer

__all__ = ["close_shared_mailers", "registry_key", "shared_mailer"]


class _Entry(NamedTuple):
    """A shared mailer, and the values its key was made of.

    Holding the values keeps alive every object the key names by ``id()``, so
    that no other object can take that id while the entry exists.
    """

    mailer: Mailer
    values: object


@dataclasses.dataclass(frozen=True)
class _Parts:
    """An unhashable value in a key: its type and the keys of its parts."""

    kind: type
    parts: tuple[Hashable, ...]


@dataclasses.dataclass(frozen=True)
class _Identity:
    """A value that is neither hashable nor made of parts: the object itself."""

    object_id: int


class _Registry:
    """The mailers of one process, by configuration key."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        # Values with one key that do not compare equal get a mailer each.
        self.mailers: dict[Hashable, list[_Entry]] = {}


_registry = _Registry()


def _current() -> _Registry:
    """This process's registry; a new one in a child forked without the hook."""
    global _registry  # noqa: PLW0603 - the per-process singleton, replaced after fork
    if _registry.pid != os.getpid():  # pragma: no cover - register_at_fork did it
        _registry = _Registry()
    return _registry


def _forget_after_fork() -> None:
    global _registry  # noqa: PLW0603 - the per-process singleton, replaced after fork
    _registry = _Registry()


def registry_key(value: object) -> Hashable:
    """A hashable key for *value* that equal values share.

    A hashable value is its own key (compared with ``==``).  smtpkit's own
    unhashable models and dataclasses (an ``SMTPConfig`` or ``XOAuth2Auth``
    holding an unhashable token provider),
    lists, tuples, sets and mappings are keyed by their type and their parts'
    keys, so one unhashable part does not stop the rest from being compared by
    value.  Any other unhashable object, such as a token provider written as a
    pydantic model or a ``@dataclass``, is keyed by its ``id()``: only the same
    object matches, since its declared fields may not be all it holds (a
    ``PrivateAttr`` secret, ``extra="allow"`` fields, attributes set in
    ``__post_init__``).  Never raises, whatever ``__hash__`` does.
    """
    if _hashable(value):
        return value
    parts: tuple[object, ...]
    if isinstance(value, BaseModel) and _is_smtpkits(value):
        parts = tuple(getattr(value, name) for name in type(value).model_fields)
    elif _is_smtpkits(value) and dataclasses.is_dataclass(value):
        parts = tuple(getattr(value, f.name) for f in dataclasses.fields(value))
    elif isinstance(value, set):
        return frozenset(value)  # its members are hashable, and order is not kept
    elif isinstance(value, Mapping):
        items = frozenset((k, registry_key(v)) for k, v in value.items())
        return _Parts(type(value), (items,))
    elif isinstance(value, list | tuple):
        parts = tuple(value)
    else:
        return _Identity(id(value))
    return _Parts(type(value), tuple(registry_key(part) for part in parts))


def _is_smtpkits(value: object) -> bool:
    """True for a value of smtpkit's own classes: every field declared, nothing else."""
    module = type(value).__module__
    return module == "smtpkit" or module.startswith("smtpkit.")


def _same(stored: object, values: object) -> bool:
    """True when *stored* and *values* are equal, however ``__eq__`` behaves.

    The key already names every unhashable user object by identity (and the
    entry keeps it alive, so no other object can take its id); this confirms
    the rest with ``==``, which also sees what a model's declared fields do not.
    """
    try:
        return stored is values or bool(stored == values)
    except Exception:  # a user's __eq__ may raise anything
        return False


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except Exception:  # a user's __hash__ may raise anything
        return False
    return True


def shared_mailer(values: object, factory: Callable[[], Mailer]) -> Mailer:
    """Return this process's mailer for *values*, built with *factory* the first time.

    Raises:
        Exception: Whatever *factory* raises (nothing is stored then).
    """
    key = registry_key(values)
    registry = _current()
    with registry.lock:
        entries = registry.mailers.setdefault(key, [])
        for entry in entries:
            if _same(entry.values, values):
                return entry.mailer
        entry = _Entry(factory(), values)
        entries.append(entry)
        return entry.mailer


def close_shared_mailers() -> None:
    """Close every shared mailer of this process (QUIT their pooled connections).

    Runs at interpreter exit; call it yourself where a worker process ends
    without one (a Celery ``worker_process_shutdown`` handler) or in tests.  A
    backend used afterwards builds a new mailer.
    """
    registry = _current()
    with registry.lock:
        entries = [entry for same in registry.mailers.values() for entry in same]
        registry.mailers.clear()
    for entry in entries:
        entry.mailer.close()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(close_shared_mailers)
