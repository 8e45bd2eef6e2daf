"""MIME boundaries: stable, unique, never in the parts, and blind to the body.

A boundary is written in a header.  It used to be a digest of the parts, so a
reader of the headers alone (a header log, a webhook) could recover a 6-digit
code from the body by hashing a million guesses.  Now it is a digest of the
Message-ID, the Date and the part's position, which the headers show anyway.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import Attachment, Message, render

DATE = datetime(2024, 2, 29, 12, 30, tzinfo=timezone(timedelta(hours=2)))
BOUNDARY_RE = re.compile(rb'boundary="([^"]+)"')


def code_message(code: str, **fields: object) -> Message:
    values: dict[str, object] = {
        "sender": "no-reply@bank.example",
        "to": "victim@example.com",
        "subject": "Your login code",
        "text": f"Your login code is {code}.",
        "html": f"<p>Your login code is <b>{code}</b>.</p>",
        "message_id": "<code-1@bank.example>",
        "date": DATE,
        **fields,
    }
    return Message.model_validate(values)


def boundaries(data: bytes) -> list[bytes]:
    return BOUNDARY_RE.findall(data)


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


@settings(max_examples=50)
@given(code=st.integers(0, 999_999).map("{:06d}".format))
def test_the_boundary_carries_no_information_about_the_body(code: str) -> None:
    # Same Message-ID and Date, different secret: identical headers, so no
    # guess can be tested against them.
    reference = render(code_message("000000"))
    data = render(code_message(code))
    assert boundaries(data) == boundaries(reference)
    assert header_block(data) == header_block(reference)


def test_the_old_attack_no_longer_recovers_the_code() -> None:
    # The reviewer's attack: the boundary was sha256(parts)[:24].
    data = render(code_message("493027"))
    (boundary,) = boundaries(data)
    body = data.split(b"\r\n\r\n", 1)[1]
    parts = [p[2:-2] for p in body.split(b"--" + boundary)[1:-1]]
    digest = hashlib.sha256(b"\r\n".join(parts)).hexdigest()[:24]
    assert digest.encode() not in boundary


def test_the_boundary_follows_message_id_and_date() -> None:
    first = boundaries(render(code_message("1")))
    assert (
        boundaries(render(code_message("1", message_id="<other@bank.example>")))[0]
        not in first
    )
    later = DATE + timedelta(seconds=1)
    assert boundaries(render(code_message("1", date=later)))[0] not in first
    # A generated Message-ID is random: so is the boundary.
    generated = [
        boundaries(render(code_message("1", message_id=None)))[0] for _ in range(3)
    ]
    assert len(set(generated)) == 3


def test_a_body_holding_the_predicted_boundary_gets_another() -> None:
    (predicted,) = boundaries(render(code_message("1")))
    crafted = code_message(
        "1",
        text=f"--{predicted.decode()}\r\nContent-Type: text/html\r\n\r\nforged",
    )
    data = render(crafted)
    (boundary,) = boundaries(data)
    assert boundary != predicted
    assert boundary not in data.split(b"\r\n\r\n", 1)[1].replace(b"--" + boundary, b"")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    texts = [part.get_content() for part in parsed.iter_parts()]
    assert "forged" in texts[0]
    assert len(texts) == 2
    assert parsed.defects == []
    assert render(crafted) == data  # still deterministic


def test_a_forwarded_copy_of_the_same_message_shares_no_boundary() -> None:
    # Same Message-ID and Date inside and out: the inner copy's boundaries are
    # taken, and each multipart of the outer message gets its own.
    inner = render(code_message("1"))
    for content_type in ("message/rfc822", "text/plain"):
        outer = render(
            code_message(
                "1",
                attachments=[Attachment("fwd.eml", inner, content_type=content_type)],
            )
        )
        found = boundaries(outer)
        assert len(found) == len(set(found)), content_type
        parsed = email.message_from_bytes(outer, policy=email.policy.default)
        kinds = [part.get_content_type() for part in parsed.walk()]
        assert kinds[:4] == [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
        ]
        assert all(not part.defects for part in parsed.walk())


def test_nested_parts_each_get_their_own_boundary() -> None:
    message = code_message(
        "1",
        attachments=[
            Attachment("a.png", b"\x89PNG", content_id="a"),
            Attachment("b.txt", b"b"),
        ],
    )
    found = boundaries(render(message))
    assert len(found) >= 2
    assert len(found) == len(set(found))
