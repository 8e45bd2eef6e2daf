"""A private ``redis-server`` on 127.0.0.1 with AOF persistence, for the Celery tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from ..integration.smtpd import free_port


def redis_unavailable_reason() -> str | None:
    """Why redis-server cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (tests/mta/install.sh installs it)"
    return None


class RedisServer:
    """``redis-server --appendonly yes`` in *directory*; restartable, same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def db_url(self, db: int) -> str:
        """The URL of database *db*."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start the server and wait until it answers PING (the AOF loaded)."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--dir", str(self.directory),
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM: the AOF is flushed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self, down: float = 0.5) -> None:
        """Stop, stay down for *down* seconds, start again with the same data."""
        self.stop()
        time.sleep(down)
        self.start()

    def flush(self) -> None:
        """Empty every database."""
        client = redis.Redis(port=self.port)
        client.flushall()
        client.close()


def skip_or_fail(reason: str) -> None:
    """Skip, or fail under CI, where redis-server must be present."""
    import pytest  # noqa: PLC0415 - only when needed

    if os.environ.get("CI"):
        pytest.fail(f"redis-server is required under CI: {reason}", pytrace=False)
    pytest.skip(reason)
