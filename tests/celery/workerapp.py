"""The Celery app the test workers run: ``celery -A tests.celery.workerapp worker``.

Its settings come from the ``SMTPKIT_CELERY_TEST`` environment variable (JSON), so
each test starts workers configured its way; the producer side (the test) builds
the same app with ``build(settings)``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery

from smtpkit import RetryPolicy, SMTPConfig
from smtpkit.contrib.celery import FleetRateLimit, MailQueue


def build(settings: dict[str, Any]) -> tuple[Celery, MailQueue]:
    """Build the app and its queue from *settings* (see ``workers.py``)."""
    app = Celery("smtpkit-test", broker=settings["broker"], set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 6},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_disable_rate_limits=True,
    )
    rate = settings.get("rate")
    queue = MailQueue(
        app,
        redis_url=settings["state"],
        config=SMTPConfig(
            host="127.0.0.1", port=settings["smtp_port"], tls="none", timeout=10.0
        ),
        retry=RetryPolicy(**settings.get("retry", {})),
        rate_limit=None if rate is None else FleetRateLimit(**rate),
        lease=settings.get("lease", 300.0),
        at_least_once=settings.get("at_least_once", False),
        chunk_size=settings.get("chunk_size", 20),
    )
    return app, queue


_settings = os.environ.get("SMTPKIT_CELERY_TEST")
if _settings:  # a worker process; the tests import build() only
    app, queue = build(json.loads(_settings))
