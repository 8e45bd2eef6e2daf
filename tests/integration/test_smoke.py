"""The shortest end-to-end path: a Message reaches a real server byte for byte."""

from __future__ import annotations

import email
import email.policy

from smtpkit import Mailer, Message


def test_message_reaches_server(server, config_for):
    with Mailer(config_for(server)) as mailer:
        result = mailer.send(
            Message(
                sender="a@example.com",
                to="b@example.com",
                bcc="c@example.com",
                subject="Hi",
                text="line one\n.starts with a dot\n",
            )
        )
    assert result.ok
    assert result.accepted == ("b@example.com", "c@example.com")
    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com", "c@example.com"]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert (
        parsed.get_content().replace("\r\n", "\n") == "line one\n.starts with a dot\n"
    )
    assert b"\r\n.starts with a dot\r\n" in received.data
