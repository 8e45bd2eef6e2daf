"""AsyncMailer stopped from outside, against aiosmtpd on 127.0.0.1: what the
server received must match what the callers (or ``on_detached``) were told.

A cancelled ``aclose()`` must leave no ``send()`` waiting and send nothing twice;
a cancelled ``send_many`` must hand the result of every message the server got
to ``on_detached``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from smtpkit import (
    AsyncMailer,
    BulkProgress,
    Message,
    NotSentError,
    PoolLimits,
    SendResult,
)

from .smtpd import RecordingHandler

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def message(n: int) -> Message:
    return Message(
        sender="a@example.com",
        to=[f"u{n}@example.com"],
        subject=f"m{n}",
        text=f"body {n}",
        message_id=f"<m{n}@stops>",
    )


def received_ids(handler: RecordingHandler) -> list[bytes]:
    return [
        m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in handler.messages
    ]


class SlowHandler(RecordingHandler):
    """Takes 20 ms to accept each message (after its final dot)."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_cancelled_aclose_leaves_no_send_waiting_and_resends_nothing(
    start_server, config_for
):
    handler = SlowHandler(pipelining=True)
    server = start_server(handler=handler)
    config = config_for(server, pool=PoolLimits(max_connections=1))
    mailer = AsyncMailer(config)
    await mailer.open()
    sends = [asyncio.ensure_future(mailer.send(message(n))) for n in range(80)]
    await until(lambda: len(handler.messages) >= 1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(mailer.aclose(timeout=30), 0.1)
    done, pending = await asyncio.wait(sends, timeout=10)
    assert not pending  # none waits forever
    ok = sorted(t.result().message_id.encode() for t in done if t.exception() is None)
    unsent = [t for t in done if isinstance(t.exception(), NotSentError)]
    assert unsent  # the queue behind the running batch was failed, not sent
    assert all(t.exception().attempts == 0 for t in unsent)  # type: ignore[union-attr]
    await asyncio.sleep(0.3)  # the batch on the wire has ended meanwhile
    ids = received_ids(handler)
    assert len(ids) == len(set(ids))  # nothing twice
    assert sorted(ids) == ok  # what arrived is what the callers were told arrived


async def test_a_cancelled_send_many_hands_every_message_the_server_got_to_on_detached(
    start_server, config_for
):
    handler = SlowHandler(pipelining=True)
    server = start_server(handler=handler)
    config = config_for(server, pool=PoolLimits(max_connections=2))
    detached: list[SendResult] = []
    progress: list[BulkProgress] = []
    mailer = AsyncMailer(config, on_detached=detached.append)
    task = asyncio.ensure_future(
        mailer.send_many([message(n) for n in range(400)], on_progress=progress.append)
    )
    await until(lambda: len(progress) >= 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Idle: no send() or send_many() call running and no batch on the wire (the
    # cancelled send_many's own call ends before its last batches do).
    await until(lambda: mailer._is_idle() and len(detached) == len(handler.messages))
    await asyncio.sleep(0.3)  # nothing more arrives, nothing more is reported
    ids = received_ids(handler)
    assert len(ids) < 400  # the cancel stopped the run
    assert len(ids) == len(set(ids))
    assert sorted(r.message_id.encode() for r in detached) == sorted(ids)
    assert all(r.ok for r in detached)
    async with mailer:  # still usable; then closed
        assert (await mailer.send(message(999))).ok
