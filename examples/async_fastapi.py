"""A FastAPI app that holds one AsyncMailer for its whole life and sends from an endpoint.

Run it with no configuration:

    pip install -e ".[examples]" fastapi httpx
    python examples/async_fastapi.py

It starts an aiosmtpd server on 127.0.0.1 (a free port), runs the app's lifespan and
one request through FastAPI's TestClient, and prints what the server received. In
production, serve ``create_app(lambda: AsyncMailer(SMTPConfig.from_env()))`` with
uvicorn or any ASGI server.

The mailer is created inside the lifespan, on the server's event loop, and closed
when the app shuts down: ``aclose()`` waits for sends still in flight and QUITs the
pooled connections.  Every request shares its pool, so 1,000 concurrent requests
use at most ``PoolLimits.max_connections`` connections.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from aiosmtpd.controller import Controller
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

import smtpkit


class Signup(BaseModel):
    """The request body of ``POST /signup``."""

    email: str


def get_mailer(request: Request) -> smtpkit.AsyncMailer:
    """The app's one mailer, from the lifespan state (a FastAPI dependency)."""
    mailer: smtpkit.AsyncMailer = request.state.mailer
    return mailer


def create_app(make_mailer: Callable[[], smtpkit.AsyncMailer]) -> FastAPI:
    """Build the app; *make_mailer* is called once, when the app starts."""

    @asynccontextmanager
    async def lifespan(
        app: FastAPI,
    ) -> AsyncGenerator[dict[str, smtpkit.AsyncMailer], None]:
        # Lifespan state: every request sees it as request.state.mailer.
        async with make_mailer() as mailer:
            yield {"mailer": mailer}

    app = FastAPI(lifespan=lifespan)

    @app.post("/signup")
    async def signup(
        body: Signup,
        mailer: Annotated[smtpkit.AsyncMailer, Depends(get_mailer)],
    ) -> dict[str, str | None]:
        try:
            message = smtpkit.Message(
                sender="Shop <welcome@example.com>",
                to=[body.email],
                subject="Welcome!",
                text="Thanks for signing up.\n",
            )
            result = await mailer.send(message)
        except (ValidationError, smtpkit.InvalidMessageError) as exc:
            # Not an address (CR/LF injection included): the client's mistake.
            # The detail does not echo the input.
            raise HTTPException(
                status_code=422, detail="invalid email address"
            ) from exc
        except smtpkit.ClosedError as exc:
            # The app is shutting down: the lifespan closed the mailer.
            raise HTTPException(status_code=503, detail="shutting down") from exc
        except smtpkit.TransportError as exc:
            # Retries already ran out; tell the client to try later (or queue it).
            raise HTTPException(
                status_code=503, detail="mail server unavailable"
            ) from exc
        return {"message_id": result.message_id}

    return app


class PrintingHandler:
    """Keep every message the local server receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 2.0.0 Ok: queued as FASTAPI"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    handler = PrintingHandler()
    server = Controller(handler, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        config = smtpkit.SMTPConfig(host="127.0.0.1", port=server.port, tls="none")
        app = create_app(lambda: smtpkit.AsyncMailer(config))
        with TestClient(app) as client:  # runs the lifespan: startup ... shutdown
            response = client.post("/signup", json={"email": "ada@example.com"})
    finally:
        server.stop()
    print(f"POST /signup -> {response.status_code} {response.json()}")
    for mail_from, rcpt_tos, data in handler.received:
        print(
            f"server received MAIL FROM:<{mail_from}> RCPT TO:{rcpt_tos}, {len(data)} bytes"
        )


if __name__ == "__main__":
    main()
