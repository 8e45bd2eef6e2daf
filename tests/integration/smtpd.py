"""aiosmtpd-based SMTP servers for the integration tests.

``RecordingHandler`` records exactly what the server received (envelope, MAIL
parameters, the raw DATA bytes, TLS and AUTH state) and can be scripted to answer
any command with any reply, per call or per recipient.  ``GatedHandler`` also
holds its reply to the final dot until the test releases it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

USERS = {"alice": "wonderland", "用户": "密码-пароль"}
TOKENS = {"alice@example.com": "good-token"}


@dataclass
class Received:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    data: bytes  # the DATA bytes after dot-unstuffing, CRLF line endings
    tls: bool
    login: str | None
    session_id: int


@dataclass
class RecordingHandler:
    """Records messages; ``script`` and ``rcpt_replies`` inject replies.

    ``script["MAIL"|"RCPT"|"DATA"|"EOD"]`` are queues of replies used once each,
    in order ("EOD" is the reply after the final dot).  ``rcpt_replies`` maps an
    address to a reply used for every RCPT of that address (or a list, used in
    turn and then 250).
    """

    pipelining: bool = False
    script: dict[str, collections.deque[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    rcpt_replies: dict[str, Any] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: dict[str, str] = field(default_factory=lambda: dict(TOKENS))
    cram_secret: dict[str, str] = field(default_factory=lambda: dict(USERS))

    def queue(self, command: str, *replies: str) -> None:
        """Answer the next uses of *command* with *replies*."""
        self.script[command].extend(replies)

    def _scripted(self, command: str) -> str | None:
        queue = self.script.get(command)
        return queue.popleft() if queue else None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
            session.smtpkit_id = self.sessions
        self.commands.append("EHLO")
        if self.pipelining:
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        self.commands.append("MAIL")
        reply = self._scripted("MAIL")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.commands.append("RCPT")
        reply = self._scripted("RCPT")
        configured = self.rcpt_replies.get(address)
        if isinstance(configured, list):
            reply = configured.pop(0) if configured else reply
        elif configured is not None:
            reply = configured
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.commands.append("EOD")
        reply = self._scripted("EOD")
        if reply is not None and not reply.startswith("2"):
            return reply
        login = session.auth_data
        if isinstance(login, LoginPassword):
            login = login.login.decode()
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    mail_options=list(envelope.mail_options),
                    data=envelope.original_content,
                    tls=session.ssl is not None,
                    login=login,
                    session_id=getattr(session, "smtpkit_id", 0),
                )
            )
        return reply or f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    # aiosmtpd finds AUTH mechanisms by method name: auth_CRAM__MD5 is CRAM-MD5.
    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        challenge = b"<12345.67890@smtpkit.test>"
        answer = await server.challenge_auth(challenge)
        if not isinstance(answer, bytes):
            return AuthResult(success=False, handled=True)
        user, _, digest = answer.decode().rpartition(" ")
        secret = self.cram_secret.get(user, "").encode()
        expected = hmac.new(secret, challenge, hashlib.md5).hexdigest()
        # handled=False: on failure aiosmtpd sends the 535 (True means "already sent").
        ok = hmac.compare_digest(expected, digest)
        return AuthResult(success=ok, handled=False, auth_data=user)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        raw = (
            base64.b64decode(args[1])
            if len(args) > 1
            else await server.challenge_auth(b"")
        )
        fields = dict(
            part.split("=", 1) for part in raw.decode().split("\x01") if "=" in part
        )
        user, token = fields.get("user", ""), fields.get("auth", "")
        if self.tokens.get(user) and token == f"Bearer {self.tokens[user]}":
            return AuthResult(success=True, auth_data=user)
        # The real protocol: a 334 JSON error, an empty client line, then 535.
        await server.challenge_auth(b'{"status":"401"}')
        return AuthResult(success=False, handled=False)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        raw = base64.b64decode(args[1]) if len(args) > 1 else b""
        gs2, _, rest = raw.decode().partition("\x01")
        user = gs2.split("a=", 1)[1].rstrip(",") if "a=" in gs2 else ""
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        if (
            self.tokens.get(user)
            and fields.get("auth") == f"Bearer {self.tokens[user]}"
        ):
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(b'{"status":"invalid_token"}')
        return AuthResult(success=False, handled=False)


@dataclass
class GatedHandler(RecordingHandler):
    """A RecordingHandler that holds its reply to the final dot until ``release`` is set.

    ``entered`` is set when the first final dot has arrived.
    """

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.entered.set()
        while not self.release.is_set():  # set from the test's thread
            await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


def check_password(server, session, envelope, mechanism, auth_data):
    """aiosmtpd authenticator for PLAIN and LOGIN against ``USERS`` (UTF-8)."""
    if isinstance(auth_data, LoginPassword):
        user = auth_data.login.decode()
        ok = USERS.get(user) == auth_data.password.decode()
        # handled=False: on failure aiosmtpd sends the 535 (True means "already sent").
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
    return AuthResult(success=bool(auth_data), auth_data=auth_data)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running aiosmtpd server on 127.0.0.1."""

    def __init__(self, handler: RecordingHandler, **controller_kwargs: Any) -> None:
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = free_port()
        kwargs = {"ready_timeout": 10.0, **controller_kwargs}
        if "authenticator" in kwargs:
            kwargs.setdefault("auth_require_tls", True)
        self.controller = Controller(
            handler, hostname=self.host, port=self.port, **kwargs
        )
        self.controller.start()

    @property
    def messages(self) -> list[Received]:
        """Messages the server accepted, in order."""
        return self.handler.messages

    def stop(self) -> None:
        """Stop the server and its thread."""
        self.controller.stop()
