"""Send from many threads at once, to see what a shared Mailer does under contention."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from smtpkit import Mailer, Message

__all__ = ["send_from_threads"]


def send_from_threads(
    mailer: Mailer, messages: Sequence[Message]
) -> list[BaseException]:
    """Send each of *messages* from a thread of its own, all released together.

    Returns what the sends raised (any exception, so none is lost in a thread).
    """
    barrier = threading.Barrier(len(messages))
    failures: list[BaseException] = []

    def send(message: Message) -> None:
        barrier.wait(5)
        try:
            mailer.send(message)
        except BaseException as exc:  # the test collects it
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return failures
