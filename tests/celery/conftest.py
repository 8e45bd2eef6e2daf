"""Fixtures: a private redis-server (session) and aiosmtpd servers on 127.0.0.1.

Without redis-server the tests skip with the reason, except under CI (``CI`` set),
where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from smtpkit import RetryPolicy, SMTPConfig
from smtpkit.contrib.celery import MailQueue

from ..integration.smtpd import RecordingHandler, Server
from .redisproc import RedisServer, redis_unavailable_reason, skip_or_fail

pytestmark = pytest.mark.celery

FAST = RetryPolicy(attempts=3, wait_initial=1.0, wait_jitter=0.0, timeout=None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests use unique keys or flush it."""
    reason = redis_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker_redis(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A second redis-server, the Celery broker, so that restarting the state's
    Redis tests smtpkit's side (a Redis broker restarted while a worker fetches
    can lose that task, which is kombu's business; see docs/guide/scaling.md)."""
    server = RedisServer(Path(tmp_path_factory.mktemp("broker")))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A flushed database."""
    redis_server.flush()
    return redis_server.db_url(1)


@pytest.fixture
def smtp_server() -> Iterator[Server]:
    """An aiosmtpd server with PIPELINING that records every message."""
    server = Server(RecordingHandler(pipelining=True))
    yield server
    server.stop()


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("smtpkit-test", broker="memory://", backend=None, set_as_current=False)
    app.conf.task_always_eager = True
    yield app
    app.close()


@pytest.fixture
def make_queue(app: Celery, redis_url: str, smtp_server: Server) -> Iterator[object]:
    queues: list[MailQueue] = []

    def make(**kwargs: object) -> MailQueue:
        if "transport" not in kwargs:
            kwargs.setdefault(
                "config",
                SMTPConfig(
                    host=smtp_server.host, port=smtp_server.port, tls="none", timeout=5
                ),
            )
        kwargs.setdefault("retry", FAST)
        queue = MailQueue(app, redis_url=redis_url, **kwargs)  # type: ignore[arg-type]
        queues.append(queue)
        return queue

    yield make
    for queue in queues:
        queue.close()
