"""AsyncMailer cancellation against a real server on 127.0.0.1, phase by phase.

A gate holds the server at one phase of the transaction; the caller is
cancelled there; then the gate opens.  What the server received says whether the
message was sent (0 or 1 copies, never 2), ``on_detached`` must have the outcome
of a started transaction, and the next send on the same mailer must work.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

import pytest

from smtpkit import AsyncMailer, PoolLimits, RetryPolicy, SendResult

from .rawserver import RawConn, RawServer
from .scriptsmtp import Script, config, message

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

RETRYING = RetryPolicy(attempts=3, wait_initial=0.01, wait_jitter=0)


class Gate:
    """Where the server waits: ``reached`` is set there, ``opened`` lets it go on."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()
        self.used = False

    def hold(self, *_: object) -> None:
        if self.used:
            return  # only the first session/transaction waits
        self.used = True
        self.reached.set()
        self.opened.wait(10)


class GreetingGate(Script):
    """Holds the first connection before its greeting (before MAIL)."""

    def __init__(self, gate: Gate, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.gate = gate

    def __call__(self, conn: RawConn) -> None:
        self.gate.hold()
        super().__call__(conn)


def held_data(gate: Gate, *, before_reading: bool) -> Callable[[RawConn, int], bool]:
    def handle(conn: RawConn, number: int) -> bool:
        if before_reading:  # the upload blocks once the socket buffers fill
            gate.hold()
        data = conn.read_data()
        if data is None:
            return False
        if not before_reading:  # the final dot was read: the reply is held
            gate.hold()
        conn.received.append(data)  # type: ignore[attr-defined]
        conn.send(f"250 2.0.0 queued as Q{number}\r\n".encode())
        return True

    return handle


class Detached:
    def __init__(self) -> None:
        self.results: list[SendResult] = []
        self.event = asyncio.Event()

    def __call__(self, result: SendResult) -> None:
        self.results.append(result)
        self.event.set()


async def cancel_at(
    gate: Gate,
    task: asyncio.Task[SendResult],
) -> None:
    assert await asyncio.to_thread(gate.reached.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not gate.opened.is_set()  # the caller got CancelledError at once
    gate.opened.set()


def phases() -> dict[str, tuple[Callable[[Gate], Script], int]]:
    """Each phase: the server that holds there, and the message's size."""
    return {
        "before MAIL": (GreetingGate, 0),
        "between RCPT and DATA": (
            lambda g: Script(pipelining=False, after_reply={"RCPT": g.hold}),
            0,
        ),
        "during the upload": (
            lambda g: Script(data=[held_data(g, before_reading=True)]),
            4_000_000,
        ),
        "after the final dot": (
            lambda g: Script(data=[held_data(g, before_reading=False)]),
            0,
        ),
    }


@pytest.mark.parametrize("phase", list(phases()))
async def test_cancelled_after_the_transaction_started(phase: str) -> None:
    make, size = phases()[phase]
    gate = Gate()
    script = make(gate)
    detached = Detached()
    with RawServer(script) as server:
        mailer = AsyncMailer(config(server), retry=RETRYING, on_detached=detached)
        async with mailer:
            task = asyncio.ensure_future(mailer.send(message(1, size=size)))
            await cancel_at(gate, task)
            await asyncio.wait_for(detached.event.wait(), 10)
            [result] = detached.results
            assert result.ok
            assert result.attempts == 1
            assert len(script.received) == 1  # delivered once, never resent
            after = await mailer.send(message(2))
            assert after.ok
        assert len(script.received) == 2
        assert b"body 1" in script.received[0]
        assert b"body 2" in script.received[1]


async def test_cancelled_while_waiting_for_the_pool_sends_nothing() -> None:
    gate = Gate()
    script = Script(data=[held_data(gate, before_reading=False)])
    detached = Detached()
    with RawServer(script) as server:
        cfg = config(server, pool=PoolLimits(max_connections=1))
        async with AsyncMailer(cfg, retry=RETRYING, on_detached=detached) as mailer:
            first = asyncio.ensure_future(mailer.send(message(1)))
            assert await asyncio.to_thread(gate.reached.wait, 5)
            queued = asyncio.ensure_future(mailer.send(message(2)))
            await asyncio.sleep(0.05)  # queued behind the one connection
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            gate.opened.set()
            assert (await first).ok
            assert (await mailer.send(message(3))).ok
        assert [b"body 1" in m for m in script.received] == [True, False]
        assert b"body 3" in script.received[1]
        assert detached.results == []  # nothing of the cancelled one was sent


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
async def test_asyncio_timeout_behaves_like_cancel() -> None:
    gate = Gate()
    script = Script(data=[held_data(gate, before_reading=False)])
    detached = Detached()
    with RawServer(script) as server:
        async with AsyncMailer(
            config(server), retry=RETRYING, on_detached=detached
        ) as mailer:
            threading.Timer(1.0, gate.opened.set).start()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):  # type: ignore[attr-defined]
                    await mailer.send(message(1))
            await asyncio.wait_for(detached.event.wait(), 10)
            assert detached.results[0].ok
            assert (await mailer.send(message(2))).ok
        assert len(script.received) == 2


async def test_wait_for_behaves_like_cancel() -> None:
    gate = Gate()
    script = Script(pipelining=False, after_reply={"RCPT": gate.hold})
    detached = Detached()
    with RawServer(script) as server:
        async with AsyncMailer(
            config(server), retry=RETRYING, on_detached=detached
        ) as mailer:
            threading.Timer(1.0, gate.opened.set).start()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(mailer.send(message(1)), 0.3)
            await asyncio.wait_for(detached.event.wait(), 10)
            assert detached.results[0].ok
        assert len(script.received) == 1


async def test_a_refused_detached_send_is_reported_and_not_retried() -> None:
    gate = Gate()
    script = Script(
        pipelining=False,
        after_reply={"RCPT": gate.hold},
        replies={"RCPT": [b"451 4.3.0 busy\r\n"]},
    )
    detached = Detached()
    with RawServer(script) as server:
        async with AsyncMailer(
            config(server), retry=RETRYING, on_detached=detached
        ) as mailer:
            task = asyncio.ensure_future(mailer.send(message(1)))
            await cancel_at(gate, task)
            await asyncio.wait_for(detached.event.wait(), 10)
            [result] = detached.results
            assert not result.ok
            assert result.attempts == 1  # the 451 was not retried after the cancel
            assert (await mailer.send(message(2))).ok
        assert len(script.received) == 1


async def test_a_raising_on_detached_is_logged_and_the_mailer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    script = Script(data=[held_data(gate, before_reading=False)])
    called = asyncio.Event()

    def explode(result: SendResult) -> None:
        called.set()
        raise RuntimeError("boom")

    with RawServer(script) as server:
        async with AsyncMailer(config(server), on_detached=explode) as mailer:
            task = asyncio.ensure_future(mailer.send(message(1)))
            await cancel_at(gate, task)
            await asyncio.wait_for(called.wait(), 10)
            assert (await mailer.send(message(2))).ok
    assert "on_detached raised" in caplog.text
    assert "a cancelled send finished in the background: delivered" in caplog.text
    assert "u1@example.com" not in caplog.text
