"""Templates against a real SMTP server (aiosmtpd on 127.0.0.1): what it received.

* Recipient data meant to inject markup or headers arrives escaped, or not at all.
* A 10,000-row merge streams through ``send_iter`` in bounded memory, the bad
  rows reported in place, every good row received exactly once.
"""

from __future__ import annotations

import email
import email.policy
import gc
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from smtpkit import Mailer, SMTPConfig
from smtpkit.contrib.templates import MailTemplate, TemplateRenderError, merge

from ..integration.smtpd import RecordingHandler, Server

pytestmark = pytest.mark.integration

TEMPLATE = MailTemplate(
    "Your order, {{ name }}",
    html="""<html><head><style>.box { padding: 8px }</style></head><body>
<div class="box" title="{{ name }}"><p>Dear {{ name }},</p>
<p><a href="{{ url }}">Track your order</a></p></div></body></html>""",
)
XSS_NAME = (
    """<script>alert("x")</script><img src=x onerror=alert(1)>" onclick="steal()"""
)


@pytest.fixture
def plain_server() -> Iterator[Server]:
    server = Server(RecordingHandler(pipelining=True))
    yield server
    server.stop()


def config(server: Server) -> SMTPConfig:
    return SMTPConfig(host=server.host, port=server.port, tls="none", timeout=10.0)


class Elements(HTMLParser):
    """Elements and attributes of the body, as a mail client's HTML parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        if tag not in {"html", "head", "body"}:
            self.found.append((tag, dict(attrs)))


def html_part(data: bytes) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(preferencelist=("html",))
    assert part is not None
    return part.get_content()


def test_markup_in_recipient_data_arrives_escaped(plain_server):
    rows = [{"email": "ann@example.com", "name": XSS_NAME, "url": "https://x.test/t/1"}]
    with Mailer(config(plain_server)) as mailer:
        (result,) = mailer.send_many(
            merge(
                rows,
                lambda row: TEMPLATE.message(
                    row, sender="shop@example.com", to=row["email"]
                ),
            )
        )
    assert result.ok, result.error
    (received,) = plain_server.messages
    html = html_part(received.data)
    # The server got text, not markup: no script, no img, no event handler...
    parser = Elements()
    parser.feed(html)
    assert parser.found == [
        ("div", {"class": "box", "title": XSS_NAME, "style": "padding: 8px;"}),
        ("p", {}),
        ("p", {}),
        ("a", {"href": "https://x.test/t/1"}),
    ]
    # ...and in the body text the markup is written as character references.
    assert 'Dear &lt;script&gt;alert("x")&lt;/script&gt;&lt;img src=x' in html
    assert "<script" not in html  # in the title attribute too
    assert 'title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img' in html
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Subject"] == f"Your order, {XSS_NAME}"
    text = parsed.get_body(preferencelist=("plain",))
    assert text is not None
    assert "Track your order (https://x.test/t/1)" in text.get_content()


def test_javascript_links_and_header_injection_never_reach_the_server(plain_server):
    rows = [
        {"email": "a@example.com", "name": "A", "url": "javascript:steal()"},
        {"email": "b@example.com", "name": "B\r\nBcc: all@evil.test", "url": "/b"},
        {"email": "c@example.com", "name": "C", "url": " java\tscript:x"},
        {"email": "d@example.com", "name": "D", "url": "https://x.test/d"},
    ]
    with Mailer(config(plain_server)) as mailer:
        results = mailer.send_many(
            merge(
                rows,
                lambda row: TEMPLATE.message(
                    row, sender="shop@example.com", to=row["email"]
                ),
                key=lambda row: row["email"],
            )
        )
    assert [r.ok for r in results] == [False, False, False, True]
    assert [r.error.key for r in results[:3]] == [  # type: ignore[union-attr]
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert all(isinstance(r.error, TemplateRenderError) for r in results[:3])
    (received,) = plain_server.messages
    assert received.rcpt_tos == ["d@example.com"]
    assert b"evil" not in received.data


@dataclass
class CountingHandler(RecordingHandler):
    """Keeps no message (so memory measured is the client's): counts them, sums
    the row numbers of their recipients, and keeps the first one."""

    count: int = 0
    row_sum: int = 0
    first: bytes = b""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        (rcpt,) = envelope.rcpt_tos
        with self.lock:
            self.count += 1
            self.row_sum += int(rcpt.split("@")[0].removeprefix("u"))
            if not self.first:
                self.first = envelope.original_content
        return "250 2.0.0 Ok"


ROWS = 10_000
CHUNK = 1_000
BAD_EVERY = 1_000  # row 999, 1999...: no name, so an UndefinedError
# Bytes, the last RSS sample over the second.  Measured: under 1 MiB.  Keeping
# each row's result (about 1 KB, as send_many does) or message (about 3 KB) would
# add 8 to 24 MiB over those 8,000 rows.
MAX_RSS_GROWTH = 4 * 1024 * 1024


def rows() -> Iterator[dict[str, object]]:
    for n in range(ROWS):
        row: dict[str, object] = {"email": f"u{n}@example.com", "url": f"/t/{n}"}
        if n % BAD_EVERY != BAD_EVERY - 1:
            row["name"] = f"Customer {n}"
        yield row


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(300)
def test_a_10000_row_merge_streams_in_bounded_memory(caplog, capsys):
    caplog.set_level(logging.WARNING, logger="smtpkit")  # no record kept per message
    handler = CountingHandler(pipelining=True)
    server = Server(handler)
    failed: list[int] = []
    rss_samples: list[int] = []
    done = 0
    start = time.perf_counter()
    try:
        with Mailer(config(server)) as mailer:
            messages = merge(
                rows(),
                lambda row: TEMPLATE.message(
                    row, sender="shop@example.com", to=str(row["email"])
                ),
            )
            gc.collect()
            with mailer.send_iter(messages) as stream:
                for result in stream:
                    if not result.ok:
                        assert isinstance(result.error, TemplateRenderError)
                        failed.append(result.error.index or 0)
                    done += 1
                    if done % CHUNK == 0:
                        rss_samples.append(rss())
    finally:
        server.stop()
    elapsed = time.perf_counter() - start
    growth = rss_samples[-1] - rss_samples[1]
    with capsys.disabled():  # the figures are the point: show them without -s
        print(
            f"\ntemplates merge: {ROWS} rows in {elapsed:.1f} s"
            f" ({ROWS / elapsed:.0f} rows/s);"
            f" RSS per 1,000: {[round(r / 2**20, 1) for r in rss_samples]} MiB,"
            f" growth after the 2nd sample {growth / 2**20:.2f} MiB"
        )
    bad = [n for n in range(ROWS) if n % BAD_EVERY == BAD_EVERY - 1]
    assert done == ROWS
    assert failed == bad  # in place, in order, none lost
    assert handler.count == ROWS - len(bad)
    assert handler.row_sum == sum(range(ROWS)) - sum(bad)  # each good row once
    first = email.message_from_bytes(handler.first, policy=email.policy.default)
    assert first["Subject"].startswith("Your order, Customer ")
    assert growth < MAX_RSS_GROWTH, rss_samples
