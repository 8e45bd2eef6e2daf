"""send_iter: results streamed in input order, and every way of stopping early
accounts for every message read, sends nothing twice and leaks no thread (issue 15.6).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import (
    BulkProgress,
    ClosedError,
    ConfigurationError,
    DataRefusedError,
    Envelope,
    Mailer,
    Message,
    NotSentError,
    RecipientsRefusedError,
    RetryPolicy,
    SendManyAbortedError,
    SendResult,
    SendStream,
    SMTPReply,
)
from smtpkit._bulk import Report
from smtpkit._stream import BulkRun
from smtpkit.testing import FakeTransport

NEVER = RetryPolicy.never()


def message(n: int) -> Message:
    return Message(
        sender="a@example.com",
        to=f"u{n}@example.com",
        subject=f"m{n}",
        text="hi",
        message_id=f"<m{n}@stream>",
    )


def pulling(count: int, pulled: list[int]) -> Iterator[Message]:
    for n in range(count):
        pulled.append(n)
        yield message(n)


class Slow(FakeTransport):
    """Accepts every message after *delay* seconds, so that batches overlap a stop."""

    def __init__(self, delay: float = 0.002) -> None:
        super().__init__()
        self.delay = delay

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        time.sleep(self.delay)
        return super().send(envelope, data)


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smtpkit")]


def sent_ids(fake: FakeTransport) -> list[str]:
    return [str(s.message["Message-ID"]) for s in fake.outbox]


def check_accounting(
    pulled: list[int], yielded: list[SendResult], stream: SendStream, fake
) -> None:
    """Every message read has exactly one result, in input order; the server got
    exactly the delivered ones, once each; no worker thread is left."""
    every = [*yielded, *stream.leftover]
    assert len(every) == len(pulled)
    for n, result in enumerate(every):
        if isinstance(result.error, NotSentError):
            assert result.attempts == 0
        else:
            assert result.message_id == f"<m{n}@stream>"
    delivered = [r.message_id for r in every if r.ok]
    assert sorted(sent_ids(fake)) == sorted(delivered)
    assert len(set(delivered)) == len(delivered)
    assert not [r for r in every if r.error and not isinstance(r.error, NotSentError)]
    assert pool_threads() == []


def consume(
    stream: SendStream,
    into: list[SendResult],
    *,
    fail_at: int = -1,
    error: BaseException | None = None,
) -> None:
    """Iterate *stream* inside its ``with`` block, raising *error* after *fail_at*."""
    with stream:
        for result in stream:
            into.append(result)
            if len(into) == fail_at and error is not None:
                raise error


def test_results_come_in_input_order_like_send_many():
    fake = FakeTransport(refuse={"u3@example.com": "550 5.1.1 no such user"})
    with Mailer(transport=fake, retry=NEVER) as mailer:
        with mailer.send_iter(message(n) for n in range(70)) as stream:
            streamed = list(stream)
        listed = mailer.send_many(message(n) for n in range(70))
    assert [r.message_id for r in streamed] == [f"<m{n}@stream>" for n in range(70)]
    assert [r.ok for r in streamed] == [r.ok for r in listed]
    assert isinstance(streamed[3].error, RecipientsRefusedError)
    assert stream.leftover == []
    assert stream.progress == BulkProgress(done=70, failed=1)
    assert pool_threads() == []


def test_nothing_is_read_or_sent_until_the_first_result_is_asked_for():
    pulled: list[int] = []
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        stream = mailer.send_iter(pulling(10, pulled))
        time.sleep(0.05)
        assert pulled == []
        assert pool_threads() == []
        stream.close()
        assert list(stream) == []
    assert pulled == []
    assert fake.outbox == []
    assert stream.leftover == []


def test_argument_errors_come_from_the_call_not_the_first_result():
    mailer = Mailer(transport=FakeTransport())
    with pytest.raises(ConfigurationError, match=r"send_iter\(concurrency"):
        mailer.send_iter([message(1)], concurrency=0)
    with pytest.raises(TypeError):
        mailer.send_iter(42)  # type: ignore[arg-type]  # not iterable
    mailer.close()
    with pytest.raises(ClosedError):
        mailer.send_iter([message(1)])


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(0, 150),
    stop_after=st.integers(0, 150),
    concurrency=st.integers(1, 4),
)
def test_breaking_out_anywhere_accounts_for_every_message_read(
    count, stop_after, concurrency
):
    pulled: list[int] = []
    fake = Slow()
    yielded: list[SendResult] = []
    with Mailer(transport=fake, retry=NEVER) as mailer:
        with mailer.send_iter(
            pulling(count, pulled), concurrency=concurrency
        ) as stream:
            for result in stream:
                yielded.append(result)
                if len(yielded) >= stop_after:
                    break
        check_accounting(pulled, yielded, stream, fake)
        # Read no further than the window: 2 * concurrency batches of 32.
        assert len(pulled) <= len(yielded) + 1 + 2 * concurrency * 32 + concurrency * 32
        # Nothing starts after the stream is closed, and the mailer still works.
        before = len(fake.outbox)
        time.sleep(0.01)
        assert len(fake.outbox) == before
        assert mailer.send(message(999)).ok


def test_a_batch_that_never_started_is_reported_not_sent():
    pulled: list[int] = []
    fake = Slow(delay=0.01)
    with Mailer(transport=fake, retry=NEVER) as mailer:
        with mailer.send_iter(pulling(200, pulled), concurrency=1) as stream:
            first = next(stream)
    assert first.ok
    leftover = stream.leftover
    # One worker: the batch under way (32 messages) finished; the next did not start.
    assert [r.ok for r in leftover[:31]] == [True] * 31
    assert leftover[31:]
    assert all(
        isinstance(r.error, NotSentError) and r.envelope is None for r in leftover[31:]
    )
    assert len(fake.outbox) == 32
    check_accounting(pulled, [first], stream, fake)
    assert NotSentError("x").is_transient  # safe to send again later


def test_an_exception_in_the_loop_stops_the_stream_and_propagates(caplog):
    caplog.set_level(logging.WARNING, logger="smtpkit")
    pulled: list[int] = []
    fake = Slow()
    yielded: list[SendResult] = []
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter(pulling(300, pulled))
        with pytest.raises(ZeroDivisionError):
            consume(stream, yielded, fail_at=5, error=ZeroDivisionError())
    check_accounting(pulled, yielded, stream, fake)
    [record] = [r for r in caplog.records if "send_iter" in r.getMessage()]
    assert record.getMessage().startswith(
        f"send_iter stopped by ZeroDivisionError: {len(fake.outbox)} message(s) "
        "delivered, 0 failed"
    )
    assert f"{len(stream.leftover)} result(s) not handed over" in record.getMessage()


def test_a_dropped_stream_stops_and_logs_what_it_did(caplog):
    caplog.set_level(logging.WARNING, logger="smtpkit")
    pulled: list[int] = []
    fake = Slow()
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter(pulling(300, pulled))
        first = next(stream)
        del stream
        gc.collect()
        assert pool_threads() == []
        after = len(fake.outbox)
        time.sleep(0.02)
        assert len(fake.outbox) == after  # nothing new started
    assert first.ok
    [record] = [r for r in caplog.records if "send_iter" in r.getMessage()]
    text = record.getMessage()
    assert text.startswith(f"send_iter closed early: {after} message(s) delivered")
    assert f"{len(pulled) - 1} result(s) not handed over" in text


def test_ctrl_c_in_the_loop_is_logged_and_noted(caplog):
    caplog.set_level(logging.WARNING, logger="smtpkit")
    pulled: list[int] = []
    fake = Slow()
    yielded: list[SendResult] = []
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter(pulling(100, pulled))
        with pytest.raises(KeyboardInterrupt) as info:
            consume(stream, yielded, fail_at=1, error=KeyboardInterrupt())
    check_accounting(pulled, yielded, stream, fake)
    [record] = [r for r in caplog.records if "send_iter" in r.getMessage()]
    assert record.getMessage().startswith("send_iter interrupted by KeyboardInterrupt")
    if hasattr(info.value, "__notes__"):
        assert info.value.__notes__ == [record.getMessage()]


def test_ctrl_c_inside_the_input_accounts_for_what_it_had_read():
    fake = FakeTransport()

    def rows() -> Iterator[Message]:
        for n in range(5):
            yield message(n)
        raise KeyboardInterrupt

    with Mailer(transport=fake) as mailer:
        with pytest.raises(KeyboardInterrupt), mailer.send_iter(rows()) as stream:
            list(stream)
    assert len(stream.leftover) == 5
    assert all(isinstance(r.error, NotSentError) for r in stream.leftover)
    assert fake.outbox == []


def test_stopping_early_stops_retries_but_keeps_each_first_outcome():
    calls: list[str] = []

    def greylist(envelope: Envelope, data: bytes) -> SMTPReply:
        calls.append(envelope.recipients[0])
        time.sleep(0.002)
        if envelope.recipients[0] == "u0@example.com":
            return SMTPReply(250, "2.0.0 queued")
        return SMTPReply(451, "4.7.1 greylisted")

    fake = FakeTransport(handler=greylist)
    retry = RetryPolicy(attempts=5, wait_initial=5, wait_jitter=0)
    with Mailer(transport=fake, retry=retry) as mailer:  # the default sleep
        start = time.monotonic()
        with mailer.send_iter([message(n) for n in range(10)], concurrency=1) as stream:
            assert next(stream).ok  # the others' retries: stopped by the close
    assert time.monotonic() - start < 3  # no 5-second backoff waited out
    assert len(calls) == len(set(calls)) == 10  # one attempt each, none resent
    assert len(stream.leftover) == 9
    assert all(r.attempts == 1 for r in stream.leftover)
    assert all(
        isinstance(r.error, DataRefusedError) and r.error.reply.code == 451
        for r in stream.leftover
    )


def test_input_failure_yields_everything_read_then_raises_with_no_results():
    def rows() -> Iterator[Message]:
        for n in range(40):
            if n == 33:
                raise ValueError("row 33 has no email column")
            yield message(n)

    fake = FakeTransport()
    yielded: list[SendResult] = []
    with Mailer(transport=fake) as mailer:
        stream = mailer.send_iter(rows())
        with pytest.raises(SendManyAbortedError) as info:
            consume(stream, yielded)
    assert len(yielded) == 33
    assert all(r.ok for r in yielded)
    assert info.value.results == []
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value).startswith("send_iter stopped after 33 message(s)")
    assert stream.leftover == []


def test_a_raising_progress_callback_stops_reading_like_send_many():
    def progress(p: BulkProgress) -> None:
        if p.done == 2:
            raise RuntimeError("dashboard down")

    pulled: list[int] = []
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        stream = mailer.send_iter(pulling(1000, pulled), on_progress=progress)
        yielded: list[SendResult] = []
        with pytest.raises(SendManyAbortedError) as info:
            consume(stream, yielded)
    assert len(yielded) == len(pulled) == len(fake.outbox) < 1000
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.results == []


def test_send_many_still_returns_everything_when_its_input_fails():
    def rows() -> Iterator[Message]:
        yield from (message(n) for n in range(3))
        raise ValueError("bad row")

    with Mailer(transport=FakeTransport()) as mailer:
        with pytest.raises(SendManyAbortedError) as info:
            mailer.send_many(rows())
    assert [r.message_id for r in info.value.results] == [
        f"<m{n}@stream>" for n in range(3)
    ]


def test_a_second_ctrl_c_while_waiting_leaves_the_outcome_unknown(caplog):
    caplog.set_level(logging.WARNING, logger="smtpkit")
    release = threading.Event()
    started = threading.Event()

    def stuck(envelope: Envelope, data: bytes) -> None:
        if envelope.recipients[0] != "u0@example.com":
            started.set()
            release.wait(5)  # a server that never answers the final dot

    fake = FakeTransport(handler=stuck)
    with Mailer(transport=fake, retry=NEVER) as mailer:
        stream = mailer.send_iter([message(n) for n in range(3)], concurrency=1)
        assert next(stream).ok
        assert started.wait(5)
        # The close waits for message 1's attempt; a second Ctrl-C cuts it short.
        close_under_a_second_ctrl_c(stream, release)
    unknown = [r for r in stream.leftover if r.error is not None]
    assert len(stream.leftover) == 2
    assert unknown
    assert all(r.error.delivery_unknown and r.attempts == 1 for r in unknown)
    [record] = [r for r in caplog.records if "send_iter" in r.getMessage()]
    assert f"{len(unknown)} not finished" in record.getMessage()
    assert wait_until(lambda: pool_threads() == [])


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def close_under_a_second_ctrl_c(stream: SendStream, release: threading.Event) -> None:
    """Close *stream*, pressing Ctrl-C 0.2 s into the close's wait; then *release*.

    The close must end in that KeyboardInterrupt; *release* frees the stuck send.
    """
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            stream.close()
    finally:
        release.set()
        timer.join()


def test_ctrl_c_before_the_input_yields_anything_leaves_nothing_over():
    def rows() -> Iterator[Message]:
        raise KeyboardInterrupt
        yield message(0)  # a generator

    with Mailer(transport=FakeTransport()) as mailer:
        stream = mailer.send_iter(rows())
        with pytest.raises(KeyboardInterrupt):
            consume(stream, [])
    assert stream.leftover == []
    assert pool_threads() == []


def test_a_batch_function_that_raises_still_gives_every_message_a_result():
    # The engine's last guard: a bug below it is a result per message, in
    # order, after the results it did report, never a lost message.
    def send_batch(items: list[int], report: Report) -> None:
        report(0, SendResult(envelope=None, attempts=1))
        raise RuntimeError("a bug")

    run = BulkRun(
        range(3),
        send_batch,
        name="send_iter",
        workers=1,
        batch_size=3,
        on_progress=None,
        interrupted=threading.Event(),
    )
    with SendStream(run) as stream:
        results = list(stream)
    assert results[0].error is None
    assert [r.attempts for r in results] == [1, 0, 0]
    assert all("a bug" in str(r.error) for r in results[1:])
    assert all(r.error is not None and r.error.delivery_unknown for r in results[1:])
