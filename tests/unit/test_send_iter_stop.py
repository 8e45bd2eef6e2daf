"""send_iter stopped while it runs: close() from on_progress, from another thread
or from a signal handler, and a Ctrl-C at the engine's narrowest points.  Each
message is reported exactly once (yielded or in ``leftover``), nothing escapes
but the caller's own exception, and no thread is left behind (review D)."""

from __future__ import annotations

import concurrent.futures.thread as executor_module
import linecache
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from smtpkit import (
    Envelope,
    Mailer,
    Message,
    NotSentError,
    RetryPolicy,
    SendManyAbortedError,
    SendResult,
    _bulk,
    _stream,
)
from smtpkit.testing import FakeTransport

from .test_send_iter import (
    close_under_a_second_ctrl_c,
    message,
    pool_threads,
    pulling,
    wait_until,
)

NEVER = RetryPolicy.never()


def exactly_once(read: int, yielded: list[SendResult], stream, fake) -> None:
    """One result per message read, in input order; the server got exactly the
    delivered ones; a message without an outcome was never sent."""
    every = [*yielded, *stream.leftover]
    assert len(every) == read
    for n, result in enumerate(every):
        if isinstance(result.error, NotSentError):
            assert result.attempts == 0
        else:
            assert result.message_id == f"<m{n}@stream>"
    delivered = sorted(r.message_id for r in every if r.ok)
    assert sorted(str(s.message["Message-ID"]) for s in fake.outbox) == delivered
    assert wait_until(lambda: pool_threads() == [])


def blocking_at(n: int, started: threading.Event, release: threading.Event):
    """A FakeTransport handler that holds message *n* until *release*."""

    def handler(envelope: Envelope, data: bytes) -> None:
        if envelope.recipients[0] == f"u{n}@example.com":
            started.set()
            assert release.wait(5)

    return handler


def test_close_from_on_progress_ends_after_the_current_result():
    fake = FakeTransport()
    holder: dict[str, Any] = {}

    def on_progress(progress) -> None:
        if progress.done == 3:
            holder["stream"].close()  # returns at once: the stream is mid-step

    pulled: list[int] = []
    yielded: list[SendResult] = []
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = holder["stream"] = mailer.send_iter(
            pulling(200, pulled), concurrency=2, on_progress=on_progress
        )
        with stream:
            yielded.extend(stream)  # no exception, no IndexError
    assert [r.message_id for r in yielded] == [f"<m{n}@stream>" for n in range(3)]
    assert stream.leftover
    exactly_once(len(pulled), yielded, stream, fake)
    assert list(stream) == []


def test_close_from_another_thread_returns_at_once_and_the_consumer_stops():
    started, release = threading.Event(), threading.Event()
    fake = FakeTransport(handler=blocking_at(1, started, release))
    got_first = threading.Event()
    returned_while_m1_held: list[bool] = []
    pulled: list[int] = []
    yielded: list[SendResult] = []
    consumer = threading.get_ident()
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter(pulling(100, pulled), concurrency=1)

        def closer() -> None:
            assert got_first.wait(5)
            assert started.wait(5)
            # The consumer is inside next(), waiting for m1 on the wire.
            assert wait_until(lambda: stream._owner == consumer)
            stream.close()  # must not wait for the consumer
            returned_while_m1_held.append(not release.is_set())
            release.set()

        thread = threading.Thread(target=closer)
        thread.start()
        try:
            for result in stream:
                yielded.append(result)
                got_first.set()
        finally:
            release.set()
            thread.join()
    assert returned_while_m1_held == [True]
    # m1, being fetched when close() came, is still yielded; then it ends.
    assert [r.message_id for r in yielded] == ["<m0@stream>", "<m1@stream>"]
    exactly_once(len(pulled), yielded, stream, fake)


def test_close_from_a_sigterm_handler_mid_next_is_a_graceful_stop():
    closed = threading.Event()
    stream_box: dict[str, Any] = {}

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stream_box["stream"].close()  # runs in the main thread, inside next()
        closed.set()

    def handler(envelope: Envelope, data: bytes) -> None:
        if envelope.recipients[0] == "u1@example.com":
            os.kill(os.getpid(), signal.SIGTERM)
            # Hold m1 on the wire while the handler runs.  (Should the signal
            # land between two next() calls, close() stops the stream itself
            # and waits for m1: hence no more than a short hold.)
            closed.wait(1)

    fake = FakeTransport(handler=handler)
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    pulled: list[int] = []
    yielded: list[SendResult] = []
    try:
        with Mailer(transport=fake, retry=NEVER) as mailer:
            stream = stream_box["stream"] = mailer.send_iter(
                pulling(100, pulled), concurrency=1
            )
            with stream:
                yielded.extend(stream)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert closed.is_set()
    assert len(yielded) <= 2
    exactly_once(len(pulled), yielded, stream, fake)


def test_close_while_the_consumer_reads_the_input_starts_nothing_more():
    blocked, release = threading.Event(), threading.Event()
    first_started = threading.Event()
    pulled: list[int] = []

    def slow_input() -> Iterator[Message]:
        for n in range(100):
            if n == 40:  # inside the consumer's next(), reading the 2nd chunk
                assert first_started.wait(5)  # the 1st batch is under way
                blocked.set()
                assert release.wait(5)
            pulled.append(n)
            yield message(n)

    def handler(envelope: Envelope, data: bytes) -> None:
        first_started.set()

    fake = FakeTransport(handler=handler)
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter(slow_input(), concurrency=1)

        def closer() -> None:
            assert blocked.wait(5)
            stream.close()
            release.set()

        thread = threading.Thread(target=closer)
        thread.start()
        with stream:
            yielded = list(stream)
        thread.join()
    assert yielded == []
    # The first batch was on its way; the one read while stopping never started.
    assert len(fake.outbox) == 32
    assert [r.ok for r in stream.leftover] == [True] * 32 + [False] * 32
    exactly_once(len(pulled), yielded, stream, fake)


def test_leaving_the_with_block_waits_for_a_stop_under_way_in_another_thread():
    started, release = threading.Event(), threading.Event()
    fake = FakeTransport(handler=blocking_at(1, started, release))
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter([message(n) for n in range(3)], concurrency=1)
        with stream:
            first = next(stream)
            assert started.wait(5)
            # Not iterating now: close() in another thread stops the run
            # itself, waiting for m1 on the wire.
            thread = threading.Thread(target=stream.close)
            thread.start()
            assert wait_until(lambda: stream._owner is not None)
            threading.Timer(0.05, release.set).start()
        # The with block ended only once that stop was complete.
        assert len(stream.leftover) == 2
        thread.join()
    assert first.ok
    exactly_once(3, [first], stream, fake)


def test_ctrl_c_inside_submit_still_accounts_for_the_batch():
    # ThreadPoolExecutor.submit() queues the batch, then starts a thread and
    # waits for it to boot: a Ctrl-C there used to leave the batch sent but
    # never reported.
    fired: list[bool] = []

    def tracer(frame: FrameType, event: str, arg: object):
        code = frame.f_code
        if (
            code.co_name != "_adjust_thread_count"
            or code.co_filename != executor_module.__file__
        ):
            return None

        def local(frame: FrameType, event: str, arg: object):
            thread = frame.f_locals.get("t")
            alive = thread is not None and thread.is_alive()
            if event == "line" and not fired and alive:
                fired.append(True)
                raise KeyboardInterrupt
            return local

        return local

    fake = FakeTransport()
    yielded: list[SendResult] = []
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter([message(n) for n in range(10)], concurrency=2)
        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            with pytest.raises(KeyboardInterrupt), stream:
                yielded.extend(stream)
        finally:
            sys.settrace(previous)  # give coverage its tracer back
    assert fired
    # The batch being submitted went out, or its booted worker saw the stop
    # before it began (a race of the two threads; 1 of about 5 whole-suite
    # runs): either way each message is accounted for exactly once.
    assert len(fake.outbox) in (0, 5)
    exactly_once(10, yielded, stream, fake)


def _injecting(function: str, module_file: str, at: int, skip_yield: bool):
    """A tracer raising KeyboardInterrupt at the *at*-th line of *function*.

    A ``yield`` line's own event is skipped: a real Ctrl-C cannot land there
    (CPython checks for signals only at calls, backward jumps and resumptions,
    and a resumed generator has already handed its result over).
    """
    seen = [0]

    def tracer(frame: FrameType, event: str, arg: object):
        code = frame.f_code
        if code.co_name != function or code.co_filename != module_file:
            return None

        def local(frame: FrameType, event: str, arg: object):
            if event != "line":
                return local
            text = linecache.getline(module_file, frame.f_lineno).strip()
            if skip_yield and text.startswith("yield"):
                return local
            seen[0] += 1
            if seen[0] == at:
                raise KeyboardInterrupt
            return local

        return local

    return tracer, seen


def _interrupted_at(
    function: str, module_file: str, at: int, *, skip_yield: bool, concurrency: int
) -> None:
    """Stream 8 messages with a Ctrl-C injected at line event *at* of *function*."""
    tracer, _ = _injecting(function, module_file, at, skip_yield=skip_yield)
    fake = FakeTransport()
    pulled: list[int] = []
    yielded: list[SendResult] = []
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter(pulling(8, pulled), concurrency=concurrency)
        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            with stream:
                for result in stream:
                    yielded.append(result)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(previous)  # give coverage its tracer back
    exactly_once(len(pulled), yielded, stream, fake)


@pytest.mark.parametrize("at", range(1, 40))
def test_a_ctrl_c_anywhere_while_handing_over_reports_each_message_once(at):
    _interrupted_at("results", _stream.__file__, at, skip_yield=True, concurrency=2)


@pytest.mark.parametrize("at", range(1, 12))
def test_a_ctrl_c_anywhere_while_splitting_the_input_loses_nothing(at):
    # Whatever the reader took is reported, wherever the split was cut short.
    _interrupted_at("_read", _bulk.__file__, at, skip_yield=False, concurrency=4)


def test_a_second_ctrl_c_leaves_batches_not_started_as_not_sent():
    started, release = threading.Event(), threading.Event()
    fake = FakeTransport(handler=blocking_at(1, started, release))
    with Mailer(transport=fake, retry=NEVER) as mailer:
        # One worker: a batch of 32 (m1 stuck in it) and a batch of 8 queued.
        stream = mailer.send_iter([message(n) for n in range(40)], concurrency=1)
        assert next(stream).ok
        assert started.wait(5)
        close_under_a_second_ctrl_c(stream, release)
    leftover = stream.leftover
    assert len(leftover) == 39
    # The batch under way: unknown, an attempt was on its way.
    assert all(r.error.delivery_unknown and r.attempts == 1 for r in leftover[:31])
    # The queued batch never started: safe to resend.
    assert all(isinstance(r.error, NotSentError) for r in leftover[31:])
    assert all(r.attempts == 0 for r in leftover[31:])
    assert wait_until(lambda: pool_threads() == [])


def test_next_from_on_progress_is_the_callers_error_not_a_hang():
    holder: dict[str, Any] = {}

    def on_progress(progress) -> None:
        next(holder["stream"])  # the stream is mid-step: Python's ValueError

    fake = FakeTransport()
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = holder["stream"] = mailer.send_iter(
            [message(n) for n in range(3)], on_progress=on_progress
        )
        with pytest.raises(SendManyAbortedError) as info, stream:
            list(stream)
    assert isinstance(info.value.__cause__, ValueError)
    assert len(fake.outbox) == 3


def test_a_cancelled_batch_never_runs():
    sent: list[list[int]] = []
    batch = _bulk.Batch([1, 2])
    assert batch.cancel()
    assert not batch.start()
    _bulk.run_batch(lambda items, report: sent.append(items), batch)
    assert sent == []
    assert batch.results == [None, None]
    started = _bulk.Batch([1])
    assert started.start()
    assert not started.cancel()
