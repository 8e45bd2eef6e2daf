"""send_iter keeps no result once handed over: its peak memory does not depend on
how many messages go through, while send_many's list grows with them (issue 15.6).

benchmarks/memory.py makes the same point with RSS, a million messages and a real
SMTP sink; this test is the quick guard for the test suite.
"""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import Iterator

from typing_extensions import override

from smtpkit import Envelope, Mailer, SendResult, Transport

ENVELOPE = Envelope(sender="a@example.com", recipients=["b@example.com"])
FEW, MANY = 1_000, 6_000


class Sink(Transport):
    """Accepts everything and, unlike FakeTransport's outbox, keeps nothing."""

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        return SendResult.delivered(envelope)


def raw(count: int) -> Iterator[tuple[bytes, Envelope]]:
    for n in range(count):
        yield b"Message-ID: <%d@mem>\r\nSubject: s\r\n\r\nhi\r\n" % n, ENVELOPE


def peak_streaming(count: int) -> int:
    delivered = 0
    with Mailer(transport=Sink()) as mailer:
        gc.collect()
        tracemalloc.start()
        try:
            with mailer.send_iter(raw(count)) as stream:
                for result in stream:
                    delivered += result.ok
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert delivered == count
    return peak


def peak_listing(count: int) -> int:
    with Mailer(transport=Sink()) as mailer:
        gc.collect()
        tracemalloc.start()
        try:
            results = mailer.send_many(raw(count))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(results) == count
    return peak


def test_streaming_peak_memory_does_not_grow_with_the_message_count(caplog):
    # Without this, a test that left the smtpkit logger at INFO makes pytest's
    # log capture keep one record per message: the growth measured would be its.
    caplog.set_level(logging.WARNING, logger="smtpkit")
    growth = peak_streaming(MANY) - peak_streaming(FEW)
    listed = peak_listing(MANY) - peak_listing(FEW)
    # send_many holds every result, over 400 bytes per message, so the 5,000
    # extra messages add about 2 MB.  The stream's peak is its window of up to 256
    # messages in flight, whatever the count; which of them are in flight at the
    # peak varies by ±100 KB from run to run, so the bound is 80 bytes per extra
    # message: keeping even a fifth of the results would cross it.
    assert listed > 1_500_000, listed
    assert growth < 400_000, (growth, listed)
