"""Review C: content holding many predicted boundaries costs one scan, not one each.

A body holding the first k candidates in turn made the renderer search the
whole content (and every payload) once per candidate: k x body size.  Now each
multipart's content and each payload is scanned once for every boundary-shaped
string, and the candidates are checked against that set; the boundary chosen
is the same as before (the first candidate the content does not hold).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from smtpkit import Message, _wire_generator, render

MESSAGE_ID = "<order-1234@shop.example>"
DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
SEED = f"smtpkit boundary\0{MESSAGE_ID}\0{format_datetime(DATE)}".encode()


def candidate(position: int, attempt: int) -> str:
    digest = hashlib.sha256(b"%s\0%d\0%d" % (SEED, position, attempt)).hexdigest()
    return "=" * 15 + digest[:24] + "=="


def crafted(text: str) -> Message:
    return Message(
        sender="a@shop.example",
        to=["b@x.example"],
        subject="s",
        text=text,
        html="<p>hi</p>",
        message_id=MESSAGE_ID,
        date=DATE,
    )


class CountingPattern:
    """The candidate pattern, counting the scans and the bytes they cover."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.scans = 0
        self.scanned = 0

    def finditer(self, text: bytes):
        self.scans += 1
        self.scanned += len(text)
        return self.pattern.finditer(text)


def boundary_of(data: bytes) -> str:
    found = re.search(rb'boundary="([^"]+)"', data)
    assert found is not None
    return found[1].decode()


def test_8000_crafted_candidates_are_scanned_once(monkeypatch):
    count = 8000
    text = "\n".join(candidate(0, n) for n in range(count))
    counter = CountingPattern(_wire_generator._CANDIDATE_RE)
    monkeypatch.setattr(_wire_generator, "_CANDIDATE_RE", counter)
    data = render(crafted(text))
    assert boundary_of(data) == candidate(0, count)  # the first one free
    # One scan per payload (text, html) and per multipart: not one per attempt.
    assert counter.scans <= 4
    assert counter.scanned <= 3 * len(data)


@pytest.mark.parametrize("shared", [True, False])
def test_candidates_overlapping_in_their_equals_signs_are_all_taken(shared):
    # "=" * 15 + digest + "==" ends where the next one's 15 "=" may start.
    first, second = candidate(0, 0), candidate(0, 1)
    text = first + second[2:] if shared else first + " " + second
    assert first in text
    assert second in text
    data = render(crafted(text))
    assert boundary_of(data) == candidate(0, 2)
    assert render(crafted(text)) == data  # still deterministic


def test_boundary_shaped_text_that_is_no_candidate_changes_nothing():
    plain = render(crafted("hello"))
    other = "=" * 15 + "0" * 24 + "==" + "\n" + "=" * 16 + "F" * 24 + "=="
    assert boundary_of(render(crafted(other))) == boundary_of(plain) == candidate(0, 0)
