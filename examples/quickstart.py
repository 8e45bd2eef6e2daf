"""Send a real message with smtpkit to an SMTP server that this script starts itself.

Run it with no configuration:

    python examples/quickstart.py

It starts an aiosmtpd server on 127.0.0.1 (a free port), sends one message through
smtpkit's Mailer over a real SMTP connection, and prints what the server received.
"""

from __future__ import annotations

import socket

from aiosmtpd.controller import Controller

import smtpkit


class PrintingHandler:
    """Keep every message the local server receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.original_content))
        return "250 2.0.0 Ok: queued as QUICKSTART"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    handler = PrintingHandler()
    port = free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    try:
        # A local test server speaks plain SMTP; real providers use TLS, e.g.
        # SMTPConfig.from_url("smtps://me%40qq.com:AUTH_CODE@smtp.qq.com").
        config = smtpkit.SMTPConfig(host="127.0.0.1", port=port, tls="none")
        message = smtpkit.Message(
            sender="Quickstart <quickstart@example.com>",
            to=["Ada Lovelace <ada@example.com>"],
            subject="Hello from smtpkit ✉",
            text="It works: this message went over a real SMTP connection.\n",
            html="<p>It works: this message went over a <b>real</b> SMTP connection.</p>",
        )
        with smtpkit.Mailer(config) as mailer:
            result = mailer.send(message)
    finally:
        server.stop()

    print(f"sent {result.message_id} to {', '.join(result.accepted)}")
    print(f"server replied: {result.reply}")
    mail_from, rcpt_tos, data = handler.received[0]
    print(f"server received MAIL FROM:<{mail_from}> RCPT TO:{rcpt_tos}, {len(data)} bytes:")
    print(data.decode("ascii", "replace"))


if __name__ == "__main__":
    main()
