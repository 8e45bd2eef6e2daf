"""The bulk engine's "stop everything" switch: the first error wins, once, and a
halted send_iter reads nothing more and accounts for every message it read."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from smtpkit import (
    Envelope,
    Mailer,
    Message,
    NotSentError,
    QuotaExceededError,
    RetryPolicy,
    SendResult,
    SendStream,
    TransportError,
)
from smtpkit._bulk import Report, _Halted
from smtpkit._stream import BulkRun
from smtpkit.testing import FakeTransport


def test_the_first_error_wins_even_when_another_thread_halts_meanwhile():
    first = QuotaExceededError("first", results=[])
    second = QuotaExceededError("second", results=[])
    halted: _Halted

    def halt(result: SendResult) -> QuotaExceededError:
        # Another thread's result stopped the run while this one was judged.
        halted.error = first
        return second

    halted = _Halted(halt)
    halted.check(SendResult(envelope=None))
    assert halted.error is first
    halted.check(SendResult(envelope=None))  # stopped: not asked again
    assert halted.error is first
    unsent = halted.not_sent()
    assert unsent.attempts == 0
    assert "not sent: send_many stopped (first)" in str(unsent.error)


def _quota_error(result: SendResult) -> QuotaExceededError | None:
    if result.error is not None and "quota" in str(result.error):
        return QuotaExceededError("quota spent", results=[])
    return None


def test_a_halt_mid_stream_reads_nothing_more_and_yields_every_message_read():
    # Two workers, one message per batch: the window holds four batches and
    # the reader keeps one read batch (m5) pending when m4's result halts.
    pulled: list[int] = []
    m4_reported = threading.Event()
    sent: list[int] = []
    lock = threading.Lock()

    def messages() -> Iterator[int]:
        for n in range(50):
            pulled.append(n)
            yield n

    def send_batch(items: list[int], report: Report) -> None:
        for index, n in enumerate(items):
            with lock:
                sent.append(n)
            if n == 4:
                error = TransportError("451 quota spent")
                report(index, SendResult(envelope=None, error=error, attempts=1))
                m4_reported.set()
            else:
                report(index, SendResult(envelope=None, attempts=1))

    run = BulkRun(
        messages(),
        send_batch,
        name="send_iter",
        workers=2,
        batch_size=1,
        on_progress=None,
        interrupted=threading.Event(),
        halt=_quota_error,
    )
    stream = SendStream(run)
    yielded: list[SendResult] = []

    def consume() -> None:
        for result in stream:
            yielded.append(result)
            if len(yielded) == 2:  # m1's result: wait until m4 halted the run
                assert m4_reported.wait(5)

    with stream, pytest.raises(QuotaExceededError) as info:
        consume()
    assert info.value.results == []
    assert stream.leftover == []
    # Nothing read after the halt; every message read has one yielded result.
    assert pulled == [0, 1, 2, 3, 4, 5]
    assert len(yielded) == len(pulled)
    assert [r.error is None for r in yielded[:3]] == [True] * 3
    assert "quota" in str(yielded[4].error)
    # m3 ran beside m4: delivered, or not sent when its worker began after the
    # halt (it checks the halt first).  m5 never reached the transport.
    not_sent = [n for n, r in enumerate(yielded) if isinstance(r.error, NotSentError)]
    assert not_sent in ([5], [3, 5])
    for n in not_sent:
        assert yielded[n].attempts == 0
        assert "not sent: send_iter stopped (quota spent)" in str(yielded[n].error)
    delivered = [n for n, r in enumerate(yielded) if r.error is None]
    assert sorted(sent) == sorted([*delivered, 4])
    assert info.value.unsent == []  # send_iter yielded them instead


def test_unsent_lists_the_not_sent_results_only():
    not_sent = SendResult(envelope=None, error=NotSentError("not sent"), attempts=0)
    refused = SendResult(envelope=None, error=TransportError("bad"), attempts=0)
    error = QuotaExceededError(
        "stopped", results=[SendResult(envelope=None), refused, not_sent]
    )
    assert error.unsent == [not_sent]


def test_after_a_quota_stop_nothing_is_retried_or_waited_for():
    # One batch of three on one connection: m0 spends the quota, m1 was
    # greylisted in the same pipelined write and m2 accepted.  m1 keeps its
    # first attempt's outcome: no retry, no backoff sleep after the quota reply.
    def message(n: int) -> Message:
        return Message(
            sender="a@example.com", to=f"u{n}@example.com", subject="s", text="hi"
        )

    calls: list[str] = []

    def handler(envelope: Envelope, data: bytes) -> str | None:
        calls.append(envelope.recipients[0])
        if envelope.recipients[0] == "u0@example.com":
            return "454 Throttling failure: Daily message quota exceeded"
        if envelope.recipients[0] == "u1@example.com":
            return "451 4.3.0 Try again later"
        return None

    slept: list[float] = []
    mailer = Mailer(
        transport=FakeTransport(handler),
        retry=RetryPolicy(attempts=4),
        sleep=slept.append,
    )
    with mailer, mailer.send_iter([message(n) for n in range(3)], concurrency=1) as s:
        results: list[SendResult] = []
        with pytest.raises(QuotaExceededError):
            results.extend(s)
    assert calls == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert slept == []
    assert [r.attempts for r in results] == [1, 1, 1]
    assert results[1].error is not None
    assert results[1].error.is_transient
    assert results[2].ok
