"""One pooled ``Mailer`` per process per configuration, shared by every backend.

Django builds a new backend object for nearly every ``send_mail()``; a pool per
backend would connect (and log in) for every message.  So backends look their
mailer up here at each send.  Threads share it: a ``Mailer`` is thread-safe.

After ``os.fork()`` (gunicorn/uWSGI prefork, Celery's prefork pool) the child
starts with an empty registry and a new lock: the parent's mailers hold the
parent's sockets and possibly locks that some parent thread held at the fork.
They are abandoned in the child, never closed there (closing would QUIT the
parent's sessions).  At interpreter exit every mailer of the process is closed.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Hashable

from smtpkit import Mailer

__all__ = ["close_shared_mailers", "shared_mailer"]


class _Registry:
    """The mailers of one process, by configuration key."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.mailers: dict[Hashable, Mailer] = {}


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


def shared_mailer(key: Hashable, factory: Callable[[], Mailer]) -> Mailer:
    """Return this process's mailer for *key*, built with *factory* the first time."""
    registry = _current()
    with registry.lock:
        mailer = registry.mailers.get(key)
        if mailer is None:
            mailer = registry.mailers[key] = factory()
        return mailer


def close_shared_mailers() -> None:
    """Close every shared mailer of this process (QUIT their pooled connections).

    Runs at interpreter exit; call it yourself where a worker process ends
    without one (a Celery ``worker_process_shutdown`` handler) or in tests.  A
    backend used afterwards builds a new mailer.
    """
    registry = _current()
    with registry.lock:
        mailers = list(registry.mailers.values())
        registry.mailers.clear()
    for mailer in mailers:
        mailer.close()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(close_shared_mailers)
