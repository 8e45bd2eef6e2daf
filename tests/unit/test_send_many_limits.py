"""send_many's thread count, odd inputs and interrupts (issue 9 review).

The concurrency a caller asks for is capped at what the transport can serve
(more threads would only queue for a pooled connection and time out), bad values
are the caller's or the transport's ``ConfigurationError``, and a
``KeyboardInterrupt`` stops retries at once and says what was delivered.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from smtpkit import (
    ConfigurationError,
    Envelope,
    Mailer,
    Message,
    RateLimit,
    RecipientResult,
    RecipientsRefusedError,
    RetryPolicy,
    SendResult,
    SMTPKitError,
    SMTPReply,
)
from smtpkit.testing import FakeTransport


def message(n: int) -> Message:
    return Message(sender="a@example.com", to=f"u{n}@example.com", text=f"m{n}")


class Counting(FakeTransport):
    """Records the most sends in flight at once; each send takes a little time."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.busy = 0
        self.peak = 0
        self._count = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        return self.limit

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        with self._count:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        try:
            time.sleep(0.005)
            return super().send(envelope, data)
        finally:
            with self._count:
                self.busy -= 1


def test_asking_for_more_threads_than_the_transport_serves_is_capped():
    transport = Counting(limit=2)
    with Mailer(transport=transport) as mailer:
        results = mailer.send_many([message(n) for n in range(40)], concurrency=8)
    assert all(r.error is None for r in results)
    assert transport.peak <= 2


def test_fewer_threads_than_the_transport_serves_are_honoured():
    transport = Counting(limit=8)
    with Mailer(transport=transport) as mailer:
        mailer.send_many([message(n) for n in range(40)], concurrency=1)
    assert transport.peak == 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_a_bad_concurrency_is_the_callers_error(bad):
    with Mailer(transport=FakeTransport()) as mailer:
        with pytest.raises(
            ConfigurationError, match=r"send_many\(concurrency=\.\.\.\)"
        ):
            mailer.send_many([message(1)], concurrency=bad)


class BrokenLimit(FakeTransport):
    @property
    def max_concurrency(self) -> int:
        raise AttributeError("pool")


def test_a_raising_max_concurrency_is_a_configuration_error():
    with Mailer(transport=BrokenLimit()) as mailer:
        with pytest.raises(
            ConfigurationError, match=r"BrokenLimit.max_concurrency raised"
        ):
            mailer.send_many([message(1)])


class LyingLength(Sequence[Message]):
    def __init__(self, items: list[Message]) -> None:
        self.items = items

    def __len__(self) -> int:
        raise TypeError("no length today")

    def __getitem__(self, index):  # type: ignore[override]
        return self.items[index]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.items)


def test_a_length_that_raises_only_leaves_the_total_unknown():
    seen = []
    with Mailer(transport=FakeTransport()) as mailer:
        results = mailer.send_many(
            LyingLength([message(1), message(2)]), on_progress=seen.append
        )
    assert len(results) == 2
    assert [p.total for p in seen] == [None, None]


class Greylisting(FakeTransport):
    """Accepts message 0 at once; greylists (451) the first attempt of every other
    message, slowly, so that an interrupt lands while the batch is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts_by_rcpt: dict[str, int] = {}

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        rcpt = envelope.recipients[0]
        self.attempts_by_rcpt[rcpt] = self.attempts_by_rcpt.get(rcpt, 0) + 1
        if rcpt == "u0@example.com":
            return super().send(envelope, data)
        time.sleep(0.05)
        raise RecipientsRefusedError({rcpt: SMTPReply(451, "4.7.1 greylisted")})


def test_an_interrupt_stops_retries_and_says_what_was_delivered(caplog):
    transport = Greylisting()

    def interrupt(progress: object) -> None:
        raise KeyboardInterrupt

    retry = RetryPolicy(attempts=5, wait_initial=0, wait_jitter=0)
    caplog.set_level(logging.WARNING, logger="smtpkit")
    with Mailer(transport=transport, retry=retry, sleep=lambda _: None) as mailer:
        with pytest.raises(KeyboardInterrupt) as info:
            mailer.send_many(
                [message(n) for n in range(6)], concurrency=1, on_progress=interrupt
            )
    # The batch's first attempts finished; no message was tried a second time.
    assert set(transport.attempts_by_rcpt.values()) == {1}
    assert len(transport.outbox) == 1
    [record] = [r for r in caplog.records if "interrupted" in r.getMessage()]
    assert record.getMessage().startswith(
        "send_many interrupted by KeyboardInterrupt: 1 message(s) delivered, 5 failed"
    )
    if hasattr(info.value, "__notes__"):
        assert info.value.__notes__ == [record.getMessage()]


def test_results_without_an_interrupt_are_retried_as_usual():
    transport = Greylisting()
    retry = RetryPolicy(attempts=3, wait_initial=0, wait_jitter=0)
    with Mailer(transport=transport, retry=retry, sleep=lambda _: None) as mailer:
        results = mailer.send_many([message(n) for n in range(3)], concurrency=1)
    assert transport.attempts_by_rcpt == {
        "u0@example.com": 1,
        "u1@example.com": 3,
        "u2@example.com": 3,
    }
    assert [r.error is None for r in results] == [True, False, False]
    assert all(isinstance(r.error, SMTPKitError) for r in results[1:])


def test_an_interrupt_sends_nothing_that_was_waiting_for_the_rate_limit():
    fake = FakeTransport()

    def interrupt(progress: object) -> None:
        raise KeyboardInterrupt

    # 5 messages a second: the second worker waits 0.2 s for its token, and the
    # interrupt comes right after the first message.
    with Mailer(transport=fake, rate_limit=RateLimit(5)) as mailer:
        with pytest.raises(KeyboardInterrupt):
            mailer.send_many(
                [message(n) for n in range(10)], concurrency=2, on_progress=interrupt
            )
    assert len(fake.outbox) == 1


def test_an_interrupt_ends_a_backoff_wait_at_once():
    transport = Greylisting()
    retry = RetryPolicy(attempts=5, wait_initial=5, wait_jitter=0)
    # A real SIGINT: _thread.interrupt_main() would not wake a blocked wait.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    with Mailer(transport=transport, retry=retry) as mailer:  # the default sleep
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            mailer.send_many([message(1)])
    assert time.monotonic() - start < 3  # not the 5 s backoff, let alone 75 s
    assert transport.attempts_by_rcpt == {"u1@example.com": 1}


class HalfGreylisting(FakeTransport):
    """Delivers to b@, greylists c@ on every attempt; records when it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[float] = []

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        self.calls.append(time.monotonic())
        if "b@example.com" in envelope.recipients:
            super().send(Envelope("a@example.com", ["b@example.com"]), data)
        return SendResult(
            envelope=envelope,
            recipients={
                rcpt: RecipientResult(
                    rcpt,
                    SMTPReply(250, "ok")
                    if rcpt == "b@example.com"
                    else SMTPReply(451, "4.7.1 later"),
                )
                for rcpt in envelope.recipients
            },
        )


def partly_delivered() -> Message:
    return Message(
        sender="a@example.com", to=["b@example.com", "c@example.com"], text="x"
    )


def sigint_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_a_message_some_recipients_have_counts_as_delivered_when_interrupted(caplog):
    transport = HalfGreylisting()
    retry = RetryPolicy(attempts=5, wait_initial=5, wait_jitter=0)
    caplog.set_level(logging.WARNING, logger="smtpkit")
    with Mailer(transport=transport, retry=retry) as mailer:
        sigint_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            mailer.send_many([partly_delivered()])
    assert len(transport.calls) == 1
    [record] = [r for r in caplog.records if "interrupted" in r.getMessage()]
    assert "1 message(s) delivered, 0 failed" in record.getMessage()


def test_a_retry_waiting_for_the_rate_limit_is_not_sent_after_an_interrupt():
    transport = HalfGreylisting()
    retry = RetryPolicy(attempts=5, wait_initial=0.01, wait_jitter=0)
    start = time.monotonic()
    with Mailer(transport=transport, retry=retry, rate_limit=RateLimit(0.5)) as mailer:
        sigint_after(0.5)  # the retry waits 2 s for its token
        with pytest.raises(KeyboardInterrupt):
            mailer.send_many([partly_delivered()])
    assert len(transport.calls) == 1
    assert time.monotonic() - start < 1.5
