"""A calendar invite sent to a real SMTP server (aiosmtpd), checked as received."""

from __future__ import annotations

import email
import email.policy

from smtpkit import Attachment, Mailer, Message

INVITE = (
    "BEGIN:VCALENDAR\n"
    "VERSION:2.0\n"
    "PRODID:-//smtpkit//tests//EN\n"
    "METHOD:REQUEST\n"
    "BEGIN:VEVENT\n"
    "UID:review-7@example.com\n"
    "DTSTAMP:20250101T090000Z\n"
    "DTSTART:20250102T090000Z\n"
    "SUMMARY:Design review\n"
    "ORGANIZER:mailto:ann@example.com\n"
    "ATTENDEE;RSVP=TRUE:mailto:bob@example.com\n"
    "END:VEVENT\n"
    "END:VCALENDAR\n"
)


def test_the_server_receives_the_calendar_as_the_last_alternative(server, config_for):
    message = Message(
        sender="ann@example.com",
        to="bob@example.com",
        subject="Design review",
        text="You are invited to the design review.",
        html="<p>You are invited to the <b>design review</b>.</p>",
        calendar=INVITE,
        attachments=[
            Attachment(
                filename="invite.ics",
                content=INVITE.encode(),
                content_type="application/ics; x-origin=smtpkit",
            )
        ],
    )
    with Mailer(config_for(server)) as mailer:
        assert mailer.send(message).ok
    [received] = server.messages
    assert received.rcpt_tos == ["bob@example.com"]
    assert b'Content-Type: text/calendar; charset="utf-8"; method=REQUEST\r\n' in (
        received.data
    )
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    alternative, attached = parsed.iter_parts()  # type: ignore[attr-defined]
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    calendar = list(alternative.iter_parts())[-1]
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content() == INVITE.replace("\n", "\r\n")
    assert attached.get_content_type() == "application/ics"
    assert attached.get_param("x-origin") == "smtpkit"
    assert attached.get_content() == INVITE.encode()
