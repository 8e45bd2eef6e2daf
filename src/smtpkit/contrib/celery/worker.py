"""A ready-made Celery app: ``celery -A smtpkit.contrib.celery.worker worker``.

Configured by environment variables only (see ``MailQueue.from_env``); producers
build the same queue with ``MailQueue.from_env()`` and call ``enqueue``.
"""

from __future__ import annotations

from ._queue import MailQueue

queue = MailQueue.from_env()
app = queue.app

__all__ = ["app", "queue"]
