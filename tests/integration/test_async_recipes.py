"""The asyncio recipes of examples/ (FastAPI, aiohttp, fire and forget) really work.

Each recipe module is loaded from examples/ and driven with its framework's own test
client against aiosmtpd on 127.0.0.1; the tests check what the server received.
The fire-and-forget queue is flooded while the server is killed, and every message
must end up either received or reported failed: none may vanish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email
import email.policy
import importlib.util
import inspect
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web as aiohttp_web
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer as AiohttpServer
from fastapi.testclient import TestClient

import smtpkit
from smtpkit import AsyncMailer, Message, RetryPolicy, SendResult, SMTPConfig
from smtpkit.testing import FakeTransport

from .smtpd import RecordingHandler, Server, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide" / "async.md"


def _example(name: str) -> types.ModuleType:
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"smtpkit_example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic and dataclasses look the module up
    spec.loader.exec_module(module)
    return module


fastapi_recipe = _example("async_fastapi")
aiohttp_recipe = _example("async_aiohttp")
background = _example("async_background")


def _subject(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Subject"])


class Factory:
    """Makes the app's mailer and keeps it, so a test can look at it afterwards."""

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self.made: list[AsyncMailer] = []

    def __call__(self) -> AsyncMailer:
        mailer = AsyncMailer(self.config, retry=RetryPolicy.never())
        self.made.append(mailer)
        return mailer


def _assert_closed(mailer: AsyncMailer) -> None:
    message = Message(sender="a@example.com", to="b@example.com", subject="x", text="x")
    with pytest.raises(smtpkit.ClosedError):
        asyncio.run(mailer.send(message))


def _dead_config() -> SMTPConfig:
    """A config for a port nobody listens on (connections are refused)."""
    return SMTPConfig(host="127.0.0.1", port=free_port(), tls="none", timeout=5.0)


# -- the recipes are what the guide shows ----------------------------------------------


@pytest.mark.parametrize(
    "function",
    [
        fastapi_recipe.get_mailer,
        fastapi_recipe.create_app,
        aiohttp_recipe.signup,
        aiohttp_recipe.create_app,
        background.BackgroundSender,
        background.DeliveryUnknownError,
    ],
    ids=lambda f: f"{f.__module__.rsplit('_', 1)[-1]}.{f.__name__}",
)
def test_the_guide_shows_the_tested_recipe(function: Callable[..., object]) -> None:
    assert inspect.getsource(function) in GUIDE.read_text(encoding="utf-8")


# -- FastAPI ----------------------------------------------------------------------------


def test_fastapi_lifespan_mailer_sends_from_an_endpoint(
    start_server, config_for
) -> None:
    server: Server = start_server()
    factory = Factory(config_for(server))
    with TestClient(fastapi_recipe.create_app(factory)) as client:
        assert len(factory.made) == 1  # made at start-up, before any request
        response = client.post("/signup", json={"email": "ada@example.com"})
    assert response.status_code == 200
    [received] = server.messages
    assert received.mail_from == "welcome@example.com"
    assert received.rcpt_tos == ["ada@example.com"]
    assert _subject(received.data) == "Welcome!"
    assert f"Message-ID: {response.json()['message_id']}".encode() in received.data
    _assert_closed(factory.made[0])  # the lifespan's shutdown closed it


def test_fastapi_concurrent_requests_share_one_pool(start_server, config_for) -> None:
    server: Server = start_server(pipelining=True)
    pool = smtpkit.PoolLimits(max_connections=2)
    factory = Factory(config_for(server, pool=pool))
    emails = [f"user{i}@example.com" for i in range(24)]
    with (
        TestClient(fastapi_recipe.create_app(factory)) as client,
        concurrent.futures.ThreadPoolExecutor(8) as requests,
    ):
        responses = list(
            requests.map(lambda a: client.post("/signup", json={"email": a}), emails)
        )
    assert [r.status_code for r in responses] == [200] * len(emails)
    assert len(factory.made) == 1
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(emails)
    assert len({m.session_id for m in server.messages}) <= 2  # never past the pool
    assert server.handler.sessions <= 2


def test_fastapi_endpoint_answers_503_when_the_server_is_down() -> None:
    factory = Factory(_dead_config())
    with TestClient(fastapi_recipe.create_app(factory)) as client:
        response = client.post("/signup", json={"email": "ada@example.com"})
    assert response.status_code == 503
    assert response.json() == {"detail": "mail server unavailable"}


BAD_ADDRESSES = [
    "not-an-address",
    "x@example.com\r\nBcc: victim@example.org",  # header injection
    "x@example.com\nRCPT TO:<victim@example.org>",  # SMTP command injection
    "",
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_fastapi_refuses_an_invalid_address_with_422(
    start_server, config_for, address: str
) -> None:
    server: Server = start_server()
    with TestClient(fastapi_recipe.create_app(Factory(config_for(server)))) as client:
        response = client.post("/signup", json={"email": address})
        assert client.post("/signup", json={"email": "ada@example.com"}).is_success
    assert response.status_code == 422
    assert response.json() == {"detail": "invalid email address"}  # no echo
    assert [m.rcpt_tos for m in server.messages] == [["ada@example.com"]]


def test_fastapi_answers_503_while_shutting_down(start_server, config_for) -> None:
    server: Server = start_server()
    factory = Factory(config_for(server))
    with TestClient(fastapi_recipe.create_app(factory)) as client:
        client.portal.call(factory.made[0].aclose)  # as the lifespan's exit does
        response = client.post("/signup", json={"email": "ada@example.com"})
    assert response.status_code == 503
    assert response.json() == {"detail": "shutting down"}
    assert server.messages == []


# -- aiohttp ----------------------------------------------------------------------------


def test_aiohttp_cleanup_ctx_mailer_sends_from_a_handler(
    start_server, config_for
) -> None:
    server: Server = start_server()
    factory = Factory(config_for(server))
    status, body = asyncio.run(
        aiohttp_recipe.post_once(aiohttp_recipe.create_app(factory))
    )
    assert status == 200
    [received] = server.messages
    assert received.rcpt_tos == ["ada@example.com"]
    assert _subject(received.data) == "Welcome!"
    assert isinstance(body, dict)
    assert f"Message-ID: {body['message_id']}".encode() in received.data
    assert len(factory.made) == 1
    _assert_closed(factory.made[0])  # cleanup_ctx closed it


def test_aiohttp_handler_answers_503_when_the_server_is_down() -> None:
    factory = Factory(_dead_config())
    app = aiohttp_recipe.create_app(factory)
    status, body = asyncio.run(aiohttp_recipe.post_once(app))
    assert (status, body) == (503, {"error": "mail server unavailable"})


async def _post_each(
    app: aiohttp_web.Application,
    bodies: list[object],
    *,
    close_first: bool = False,
) -> list[tuple[int, object]]:
    """Start *app*, POST each body (raw bytes as they are, else as JSON), stop."""
    answers = []
    async with AiohttpClient(AiohttpServer(app)) as client:
        if close_first:
            await app[aiohttp_recipe.MAILER].aclose()  # as cleanup does
        for body in bodies:
            if isinstance(body, bytes):
                response = await client.post("/signup", data=body)
            else:
                response = await client.post("/signup", json=body)
            answers.append((response.status, await response.json()))
    return answers


def test_aiohttp_refuses_bad_input_with_400(start_server, config_for) -> None:
    server: Server = start_server()
    bodies: list[object] = [{"email": a} for a in BAD_ADDRESSES]
    bodies += [b"{not json", {"name": "ada"}, ["ada@example.com"], {"email": 42}]
    bodies.append({"email": "ada@example.com"})
    app = aiohttp_recipe.create_app(Factory(config_for(server)))
    answers = asyncio.run(_post_each(app, bodies))
    refused = (400, {"error": "invalid email address"})  # no echo of the input
    assert answers[:-1] == [refused] * (len(bodies) - 1)
    assert answers[-1][0] == 200
    assert [m.rcpt_tos for m in server.messages] == [["ada@example.com"]]


def test_aiohttp_answers_503_while_shutting_down(start_server, config_for) -> None:
    server: Server = start_server()
    app = aiohttp_recipe.create_app(Factory(config_for(server)))
    answers = asyncio.run(
        _post_each(app, [{"email": "ada@example.com"}], close_first=True)
    )
    assert answers == [(503, {"error": "shutting down"})]
    assert server.messages == []


# -- fire and forget --------------------------------------------------------------------


class Outcomes:
    """Every on_outcome call, by subject."""

    def __init__(self) -> None:
        self.by_subject: dict[str, list[SendResult | BaseException]] = {}

    def __call__(self, message: Message, outcome: SendResult | BaseException) -> None:
        self.by_subject.setdefault(message.subject or "", []).append(outcome)

    def sent(self) -> set[str]:
        return {s for s, o in self.by_subject.items() if isinstance(o[-1], SendResult)}

    def failed(self) -> set[str]:
        return {
            s for s, o in self.by_subject.items() if not isinstance(o[-1], SendResult)
        }


def _messages(count: int) -> list[Message]:
    return [
        Message(
            sender="news@example.com",
            to=[f"reader{i}@example.com"],
            subject=f"m{i}",
            text="Hello!\n",
        )
        for i in range(count)
    ]


class Gate:
    """A FakeTransport handler that holds every send until the gate opens."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, envelope: smtpkit.Envelope, data: bytes) -> None:
        self.entered.release()
        assert self.open.wait(10)


def test_flood_then_kill_the_server_loses_no_message(config_for) -> None:
    server = Server(RecordingHandler(pipelining=True))  # stopped by the test itself
    config = config_for(server, pool=smtpkit.PoolLimits(max_connections=4))
    messages = _messages(600)
    outcomes = Outcomes()
    killed = threading.Event()

    async def kill_when(count: int) -> None:
        try:
            while len(server.messages) < count:
                await asyncio.sleep(0.002)
        finally:
            await asyncio.to_thread(server.stop)
            killed.set()

    async def flood() -> None:
        async with AsyncMailer(config, retry=RetryPolicy.never()) as mailer:
            killer = asyncio.create_task(kill_when(50))
            async with background.BackgroundSender(
                mailer, on_outcome=outcomes, maxsize=20
            ) as sender:
                for message in messages:
                    await sender.submit(message)
            await killer

    try:
        asyncio.run(flood())
    finally:
        if not killed.is_set():
            server.stop()
    subjects = {m.subject for m in messages}
    received = {_subject(m.data) for m in server.messages}
    # Exactly one report per message, each either a result or an error.
    assert set(outcomes.by_subject) == subjects
    assert all(len(o) == 1 for o in outcomes.by_subject.values())
    assert outcomes.sent() <= received  # nothing reported sent that did not arrive
    assert received | outcomes.failed() == subjects  # nothing vanished
    assert 50 <= len(received) < len(subjects)  # the server really died mid-way
    errors = [o[0] for s, o in outcomes.by_subject.items() if s in outcomes.failed()]
    assert all(isinstance(e, smtpkit.TransportError) for e in errors)


def test_shutdown_drains_the_queue(start_server, config_for) -> None:
    server: Server = start_server(pipelining=True)
    messages = _messages(40)
    outcomes = Outcomes()

    async def run() -> None:
        async with AsyncMailer(config_for(server)) as mailer:
            sender = background.BackgroundSender(
                mailer, on_outcome=outcomes, maxsize=100
            )
            sender.start()
            for message in messages:
                sender.submit_nowait(message)
            await sender.aclose()
            # Drained before aclose returned: every message was already reported.
            assert outcomes.sent() == {m.subject for m in messages}

    asyncio.run(run())
    assert sorted(_subject(m.data) for m in server.messages) == sorted(
        m.subject or "" for m in messages
    )


def test_a_full_queue_makes_the_producer_wait_and_never_drops() -> None:
    gate = Gate()
    fake = FakeTransport(gate)
    outcomes = Outcomes()
    first, second, third, fourth = _messages(4)

    async def run() -> None:
        async with AsyncMailer(transport=fake) as mailer:
            async with background.BackgroundSender(
                mailer, on_outcome=outcomes, maxsize=2, senders=1
            ) as sender:
                await sender.submit(first)
                await asyncio.to_thread(gate.entered.acquire)  # first is in flight
                await sender.submit(second)
                sender.submit_nowait(third)  # the queue (2) is now full
                with pytest.raises(asyncio.QueueFull):
                    sender.submit_nowait(fourth)
                waiting = asyncio.create_task(sender.submit(fourth))
                await asyncio.sleep(0.05)
                assert not waiting.done()  # back-pressure: it waits for room
                gate.open.set()
                await waiting
            with pytest.raises(RuntimeError, match="closing"):
                await sender.submit(first)

    asyncio.run(run())
    assert outcomes.sent() == {"m0", "m1", "m2", "m3"}
    assert [s.subject for s in fake.outbox] == ["m0", "m1", "m2", "m3"]


def test_shutdown_timeout_reports_queued_and_in_flight_messages() -> None:
    gate = Gate()
    fake = FakeTransport(gate)
    outcomes = Outcomes()
    detached: list[SendResult] = []
    messages = _messages(5)

    async def run() -> None:
        mailer = AsyncMailer(transport=fake, on_detached=detached.append)
        async with mailer:
            sender = background.BackgroundSender(
                mailer, on_outcome=outcomes, maxsize=10, senders=1
            )
            sender.start()
            for message in messages:
                await sender.submit(message)
            await asyncio.to_thread(gate.entered.acquire)  # m0 is in flight
            started = time.monotonic()
            await sender.aclose(timeout=0.1)
            assert time.monotonic() - started < 5
            assert "m0" not in outcomes.by_subject  # still in flight: no guess
            gate.open.set()  # the started attempt completes; the mailer waits

    asyncio.run(run())
    assert set(outcomes.by_subject) == {m.subject for m in messages}
    # The in-flight send was not cancelled: its real outcome was reported.
    [in_flight] = outcomes.by_subject["m0"]
    assert isinstance(in_flight, SendResult)
    assert in_flight.accepted == ("reader0@example.com",)
    for subject in ("m1", "m2", "m3", "m4"):
        [outcome] = outcomes.by_subject[subject]
        assert isinstance(outcome, smtpkit.NotSentError)
    assert [e.recipients for e in fake.attempts] == [("reader0@example.com",)]
    assert detached == []  # nothing was cancelled


def test_a_failing_callback_does_not_stop_the_senders(caplog) -> None:
    fake = FakeTransport()
    seen: list[str] = []

    def on_outcome(message: Message, outcome: SendResult | BaseException) -> None:
        seen.append(message.subject or "")
        if message.subject == "m0":
            raise ValueError("broken callback")

    async def run() -> None:
        async with AsyncMailer(transport=fake) as mailer:
            async with background.BackgroundSender(
                mailer, on_outcome=on_outcome, senders=1
            ) as sender:
                for message in _messages(3):
                    await sender.submit(message)

    asyncio.run(run())
    assert seen == ["m0", "m1", "m2"]
    assert "on_outcome failed for m0" in caplog.text
