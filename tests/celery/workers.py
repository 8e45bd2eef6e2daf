"""Start and stop ``celery worker`` processes for the tests, on loopback only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """One ``celery worker`` (its main process and, under prefork, its children)."""

    def __init__(
        self,
        settings: dict[str, Any],
        *,
        pool: str,
        concurrency: int,
        name: str,
        log: Path,
    ) -> None:
        env = {**os.environ, "SMTPKIT_CELERY_TEST": json.dumps(settings)}
        env.pop("COV_CORE_SOURCE", None)
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery",
                    "-A", "tests.celery.workerapp",
                    "worker",
                    "--pool", pool,
                    "--concurrency", str(concurrency),
                    "--hostname", f"{name}@localhost",
                    "--loglevel", "WARNING",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "-O", "fair",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def children(self) -> list[int]:
        """The pool's child processes (prefork)."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then kill what is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def workers(
    settings: dict[str, Any], log_dir: Path, pools: list[tuple[str, int]]
) -> Iterator[list[Worker]]:
    """Start one worker per ``(pool, concurrency)``; stop them all at the end."""
    started = [
        Worker(
            settings, pool=pool, concurrency=n, name=f"w{i}", log=log_dir / f"w{i}.log"
        )
        for i, (pool, n) in enumerate(pools)
    ]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def wait_until(
    predicate: Any,
    timeout: float,
    what: str,
    every: float = 0.1,
    explain: Any = None,
) -> None:
    """Poll *predicate* every *every* seconds until true; fail after *timeout*.

    *explain*, when given, is called on failure and its answer added to the error.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}{detail}"
            )
        time.sleep(every)
