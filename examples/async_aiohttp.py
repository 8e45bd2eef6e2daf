"""An aiohttp app whose cleanup context holds one AsyncMailer, and a handler that sends.

Run it with no configuration:

    pip install -e ".[examples]" aiohttp
    python examples/async_aiohttp.py

It starts an aiosmtpd server on 127.0.0.1 (a free port), runs the app with aiohttp's
test server and client for one request, and prints what the server received.  In
production, ``web.run_app(create_app(lambda: AsyncMailer(SMTPConfig.from_env())))``.

``cleanup_ctx`` runs the code before ``yield`` at start-up and the rest at clean-up,
so ``async with`` opens the mailer once and ``aclose()`` runs on shutdown (it waits
for in-flight sends, then QUITs the pooled connections).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

import smtpkit

MAILER = web.AppKey("mailer", smtpkit.AsyncMailer)


async def signup(request: web.Request) -> web.Response:
    """``POST /signup`` with ``{"email": ...}``: send a welcome message."""
    try:
        body = await request.json()
        message = smtpkit.Message(
            sender="Shop <welcome@example.com>",
            to=[body["email"]],
            subject="Welcome!",
            text="Thanks for signing up.\n",
        )
    except (ValueError, LookupError, TypeError):
        # Not JSON, no "email", or not an address (pydantic's ValidationError is
        # a ValueError; CR/LF injection included): the client's mistake.  The
        # answer does not echo the input.
        return web.json_response({"error": "invalid email address"}, status=400)
    try:
        result = await request.app[MAILER].send(message)
    except smtpkit.InvalidMessageError:
        return web.json_response({"error": "invalid email address"}, status=400)
    except smtpkit.ClosedError:
        # The app is shutting down: its cleanup context closed the mailer.
        return web.json_response({"error": "shutting down"}, status=503)
    except smtpkit.TransportError:
        # Retries already ran out; tell the client to try later (or queue it).
        return web.json_response({"error": "mail server unavailable"}, status=503)
    return web.json_response({"message_id": result.message_id})


def create_app(make_mailer: Callable[[], smtpkit.AsyncMailer]) -> web.Application:
    """Build the app; *make_mailer* is called once, when the app starts."""

    async def mailer_context(app: web.Application) -> AsyncIterator[None]:
        async with make_mailer() as mailer:
            app[MAILER] = mailer
            yield

    app = web.Application()
    app.cleanup_ctx.append(mailer_context)
    app.router.add_post("/signup", signup)
    return app


class PrintingHandler:
    """Keep every message the local server receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 2.0.0 Ok: queued as AIOHTTP"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def post_once(app: web.Application) -> tuple[int, object]:
    """Start the app on a test server, POST once, shut it down (runs cleanup_ctx)."""
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/signup", json={"email": "ada@example.com"})
        return response.status, await response.json()


def main() -> None:
    handler = PrintingHandler()
    server = Controller(handler, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        config = smtpkit.SMTPConfig(host="127.0.0.1", port=server.port, tls="none")
        status, body = asyncio.run(
            post_once(create_app(lambda: smtpkit.AsyncMailer(config)))
        )
    finally:
        server.stop()
    print(f"POST /signup -> {status} {body}")
    for mail_from, rcpt_tos, data in handler.received:
        print(
            f"server received MAIL FROM:<{mail_from}> RCPT TO:{rcpt_tos}, {len(data)} bytes"
        )


if __name__ == "__main__":
    main()
