"""The fleet rate limit against real Redis, and the JSON payloads (property tests)."""

from __future__ import annotations

import base64
import json
import string
import time
from datetime import datetime, timezone

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from smtpkit import Attachment, Envelope, InvalidMessageError, Message, render
from smtpkit.contrib.celery import FleetRateLimit, dump_message, load_message
from smtpkit.contrib.celery._limiter import Limiter
from smtpkit.contrib.celery._payload import load_item, make_item

pytestmark = pytest.mark.celery


@pytest.fixture
def client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_slots_are_spaced_fleet_wide(client) -> None:
    waits: list[float] = []
    limit = FleetRateLimit(account="acct", per_second=10)
    # Two limiters (two workers) share one account; nobody really sleeps, so the
    # slots are booked ahead: 20 slots at 10/s end 1.9 s after the first.
    one = Limiter(client, limit, sleep=waits.append)
    two = Limiter(client, limit, sleep=waits.append)
    start = time.monotonic()
    slots = [(one if n % 2 else two).acquire() for n in range(20)]
    assert all(s.reserved for s in slots)
    booked = slots[-1].wait + (time.monotonic() - start)
    assert 1.85 <= booked <= 2.0
    assert waits == [s.wait for s in slots if s.wait > 0]


def test_a_far_slot_is_not_reserved(client) -> None:
    limiter = Limiter(client, FleetRateLimit(account="far", per_second=1, max_wait=0.5))
    assert limiter.acquire().reserved
    far = limiter.acquire()
    assert not far.reserved
    assert not far.quota_spent
    assert 0.5 < far.wait <= 1.0


def test_the_daily_quota(client) -> None:
    limit = FleetRateLimit(account="day", per_second=1000, per_day=3)
    limiter = Limiter(client, limit, sleep=lambda _: None)
    assert [limiter.acquire().reserved for _ in range(3)] == [True, True, True]
    spent = limiter.acquire()
    assert spent.quota_spent
    assert not spent.reserved
    assert 0 < spent.wait <= 86400


@pytest.mark.parametrize(
    "fields",
    [{"account": "a b", "per_second": 1}, {"account": "a", "per_second": 0}],
)
def test_limits_are_validated(fields) -> None:
    with pytest.raises(ValidationError):
        FleetRateLimit(**fields)


texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40
)
attachments = st.builds(
    Attachment,
    filename=st.text(string.ascii_letters + "._- é", min_size=1, max_size=20).filter(
        lambda s: s.strip()
    ),
    content=st.binary(max_size=300),
    content_id=st.none() | st.just("img1@example.com"),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject=texts,
    text=st.none() | st.text(max_size=200),
    attached=st.lists(attachments, max_size=3),
    headers=st.dictionaries(
        st.sampled_from(["X-Campaign", "X-Tag"]), texts, max_size=2
    ),
)
def test_message_round_trip(subject, text, attached, headers) -> None:
    try:
        original = Message(
            sender=("Ann Ö", "ann@example.com"),
            to=["b@example.com", ("Bé", "c@example.com")],
            bcc="hidden@example.com",
            subject=subject,
            text=text,
            html="<p>hi</p>",
            attachments=attached,
            headers=headers,
            message_id="<id@example.com>",
            date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        )
    except ValidationError:
        return  # hypothesis made an invalid message: nothing to round-trip
    data = dump_message(original)
    loaded = load_message(json.loads(json.dumps(data)))
    assert loaded == original
    assert render(loaded) == render(original)


def test_raw_items_round_trip() -> None:
    raw = bytes(range(256))
    envelope = Envelope("a@example.com", ["b@example.com"], smtputf8=True)
    item = json.loads(json.dumps(make_item("k", raw, envelope)))
    assert load_item(item) == (raw, envelope)
    message = Message(sender="a@example.com", to="b@example.com")
    assert load_item(make_item("m", message)) == (message, message.to_envelope())


@pytest.mark.parametrize(
    ("item", "text"),
    [
        ({"key": "k", "raw": "not base64!"}, "not a valid message"),
        ({"key": "k", "raw": "aGk="}, "needs an envelope"),
        ({"key": "k", "raw": "aGk=", "envelope": {"sender": "x"}}, "not a valid"),
        ({"key": "k"}, "KeyError"),
        ({"key": "k", "message": {"sender": "a@example.com"}}, "no recipients"),
        (
            {
                "key": "k",
                "message": {
                    "sender": "a@example.com",
                    "attachments": [{"filename": "f", "content": "%%%"}],
                },
            },
            "not a valid message",
        ),
    ],
)
def test_poisoned_payloads_are_typed_errors(item, text) -> None:
    with pytest.raises(InvalidMessageError, match=text):
        load_item(item)


def test_load_message_refuses_garbage() -> None:
    with pytest.raises(InvalidMessageError, match="not a valid message"):
        load_message({"sender": "a@example.com", "to": 5})
    content = base64.b64encode(b"x").decode()
    assert (
        load_message(
            {
                "sender": "a@example.com",
                "attachments": [{"filename": "f.txt", "content": content}],
            }
        )
        .attachments[0]
        .content_type
        == "text/plain"
    )
