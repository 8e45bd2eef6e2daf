"""merge() through send_many/send_iter: lazy, in order, one bad row is one failure."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import Iterator

import pytest
from typing_extensions import override

from smtpkit import (
    AsyncMailer,
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    SendResult,
    Transport,
)
from smtpkit.contrib.templates import MailTemplate, TemplateRenderError, merge
from smtpkit.testing import FakeTransport

TEMPLATE = MailTemplate(
    "Hello {{ name }}",
    html='<p>Hi {{ name }}, your code is {{ code }}.</p><a href="{{ url }}">go</a>',
)

ROWS = [
    {"email": "ann@example.com", "name": "Ann", "code": 1, "url": "https://x.test/1"},
    {"email": "bob@example.com", "name": "Bob", "url": "https://x.test/2"},  # no code
    {"email": "cy@example.com", "name": "Cy", "code": 3, "url": "javascript:x()"},
    {"email": "not an address", "name": "Di", "code": 4, "url": "/4"},
    {
        "email": "ed@example.com",
        "name": "Ed\r\nBcc: x@evil.test",
        "code": 5,
        "url": "/",
    },
    {"email": "flo@example.com", "name": "Flo", "code": 6, "url": "/6"},
]


def build(row: dict[str, object]) -> Message:
    return TEMPLATE.message(row, sender="news@example.com", to=str(row["email"]))


def by_email(row: dict[str, object]) -> str:
    return str(row["email"])


def test_merge_yields_a_message_or_an_error_per_row_in_order():
    items = list(merge(ROWS, build, key=by_email))
    assert [type(item) for item in items] == [
        Message,
        TemplateRenderError,
        TemplateRenderError,
        TemplateRenderError,
        TemplateRenderError,
        Message,
    ]
    errors = [item for item in items if isinstance(item, TemplateRenderError)]
    assert [(e.index, e.key) for e in errors] == [
        (1, "bob@example.com"),
        (2, "cy@example.com"),
        (3, "not an address"),
        (4, "ed@example.com"),
    ]
    assert (
        str(errors[0])
        == "row 1: cannot render the template: UndefinedError: 'code' is undefined"
    )
    assert "URL scheme 'javascript'" in str(errors[1])
    assert str(errors[2]).startswith("row 3: ValidationError: ")  # Message refused it
    assert "control character U+000D" in str(errors[3])
    assert isinstance(errors[0].__cause__, TemplateRenderError)


def test_merge_is_lazy_generator_in_generator_out():
    read: list[int] = []

    def rows() -> Iterator[dict[str, object]]:
        for n in range(3):
            read.append(n)
            yield {**ROWS[0], "code": n}

    stream = merge(rows(), build)
    assert read == []
    next(stream)
    assert read == [0]


def test_a_key_that_raises_leaves_the_error_unnamed():
    (error,) = merge([{"email": "x"}], build, key=lambda row: row["missing"])
    assert isinstance(error, TemplateRenderError)
    assert (error.index, error.key) == (0, None)


def test_keyboard_interrupt_in_build_propagates():
    def stop(row: object) -> Message:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        next(merge([{}], stop))


def check_results(results, fake: FakeTransport) -> None:
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    for result in results[1:5]:
        assert isinstance(result.error, TemplateRenderError)
        assert result.attempts == 0
        assert result.envelope is None
    assert [r.error.index for r in results[1:5]] == [1, 2, 3, 4]
    assert sorted(sent.envelope.recipients[0] for sent in fake.outbox) == [
        "ann@example.com",
        "flo@example.com",
    ]


def test_send_many_reports_each_bad_row_as_its_failure_and_goes_on():
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        results = mailer.send_many(merge(ROWS, build, key=by_email))
    check_results(results, fake)


def test_send_iter_streams_a_merge():
    fake = FakeTransport()
    with (
        Mailer(transport=fake) as mailer,
        mailer.send_iter(merge(ROWS, build)) as stream,
    ):
        results = list(stream)
    check_results(results, fake)


@pytest.mark.asyncio
async def test_async_send_many_takes_a_merge_too():
    fake = FakeTransport()
    async with AsyncMailer(transport=fake) as mailer:
        results = await mailer.send_many(merge(ROWS, build))
    check_results(results, fake)


def test_an_invalid_message_error_item_is_that_items_failure():
    """The seam under merge: any InvalidMessageError in a bulk input stands for a
    message its producer could not build; nothing is sent for it."""
    fake = FakeTransport()
    stand_in = InvalidMessageError("row 0: no address")
    with Mailer(transport=fake) as mailer:
        first, second = mailer.send_many([stand_in, build(ROWS[0])])
    assert first.error is stand_in
    assert first.attempts == 0
    assert second.ok
    assert len(fake.outbox) == 1


class Sink(Transport):
    """Accepts everything and, unlike FakeTransport's outbox, keeps nothing."""

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        return SendResult.delivered(envelope)


def peak_of_a_merge(rows: int) -> int:
    template = MailTemplate(
        "Hi {{ n }}", html="<style>p{margin:0}</style><p>Row {{ n }}</p>"
    )
    built = merge(
        ({"n": n, "email": f"u{n}@example.com"} for n in range(rows)),
        lambda row: template.message(row, sender="a@example.com", to=row["email"]),
    )
    delivered = 0
    with Mailer(transport=Sink()) as mailer:
        gc.collect()
        tracemalloc.start()
        try:
            with mailer.send_iter(built) as stream:
                delivered = sum(result.ok for result in stream)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert delivered == rows
    return peak


def test_a_streamed_merge_holds_nothing_per_row(caplog):
    """Rendering keeps no per-row state (template caches, inliner): the peak of a
    merge through send_iter does not grow with its row count.  tests/templates/
    test_wire.py makes the point with 10,000 rows into a real server and RSS."""
    caplog.set_level(logging.WARNING, logger="smtpkit")  # no log record per message
    few, many = peak_of_a_merge(300), peak_of_a_merge(1_300)
    # Measured: 0.8 to 1 MB each, 1,300 rows about 110 KB above 300 (both fill
    # send_iter's window of 256 messages in flight; which are in flight at the
    # peak varies).  Keeping each row's message, about 2 KB, would add 2 MB.
    assert many - few < 500_000, (few, many)
