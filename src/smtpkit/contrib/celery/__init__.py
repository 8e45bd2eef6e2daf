"""Send mail from Celery workers: each message at most once, one fleet-wide rate limit.

Install ``pysmtpkit[celery]`` (Celery and the ``redis`` client).  See the guide,
docs/guide/scaling.md::

    from celery import Celery
    from smtpkit import SMTPConfig
    from smtpkit.contrib.celery import MailQueue

    app = Celery("mail", broker="redis://localhost:6379/0")
    mail = MailQueue(app, redis_url="redis://localhost:6379/1",
                     config=SMTPConfig.from_url("smtp://localhost:25"))
    keys = mail.enqueue(messages, campaign="spring")
    mail.report(campaign="spring")   # Counter({'delivered': ..., ...})
"""

from __future__ import annotations

try:
    import celery as _celery  # noqa: F401
    import redis as _redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    msg = (
        "smtpkit.contrib.celery needs Celery and redis: pip install 'pysmtpkit[celery]'"
    )
    raise ImportError(msg) from exc

from ._limiter import FleetRateLimit
from ._payload import dump_message, load_message
from ._queue import QUEUE_RETRY_POLICY, MailQueue
from ._state import Delivery, DeliveryState

__all__ = [
    "QUEUE_RETRY_POLICY",
    "Delivery",
    "DeliveryState",
    "FleetRateLimit",
    "MailQueue",
    "dump_message",
    "load_message",
]
