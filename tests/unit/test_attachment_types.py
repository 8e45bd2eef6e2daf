"""Media types and Resent- fields on the Message path (hostile review, issue 8)."""

from __future__ import annotations

import email
import email.policy

import pytest
from pydantic import ValidationError

from smtpkit import Attachment, InvalidMessageError, Message
from smtpkit._mime import render

INNER = b"From: a@x.org\r\nTo: b@x.org\r\nSubject: inner\r\n\r\nbody\r\n"


def with_attachment(content_type: str, content: bytes = INNER) -> Message:
    attachment = Attachment(
        filename="f.eml", content=content, content_type=content_type
    )
    return Message(sender="a@x.org", to="b@x.org", text="x", attachments=[attachment])


@pytest.mark.parametrize("content_type", ["message/RFC822", "Message/Rfc822"])
def test_media_types_are_case_insensitive(content_type):
    # RFC 2045 §5.1: message/RFC822 is message/rfc822, never base64-encoded.
    data = render(with_attachment(content_type))
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    [attached] = [p for p in parsed.walk() if p.get_content_type() == "message/rfc822"]
    assert attached["Content-Transfer-Encoding"] == "7bit"
    assert b"base64" not in data


@pytest.mark.parametrize(
    "content_type",
    ["Multipart/Mixed", "message/delivery-status", "message/global", "message/news"],
)
def test_types_that_cannot_be_attached_from_bytes_are_refused_with_a_reason(
    content_type,
):
    with pytest.raises(InvalidMessageError, match="cannot be attached"):
        render(with_attachment(content_type))


@pytest.mark.parametrize("name", ["Resent-Bcc", "resent-to", "RESENT-DATE"])
def test_resent_fields_cannot_be_set_on_a_message(name):
    # A Resent-Bcc would be transmitted, and the block would claim a resend.
    with pytest.raises(ValidationError, match="resent message"):
        Message(sender="a@x.org", to="b@x.org", headers={name: "c@x.org"})
