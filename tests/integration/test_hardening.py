"""Hostile and broken servers, and proof that PIPELINING really saves round trips.

The servers here are scripted sockets (``rawserver.RawServer``): they do what no
correct SMTP server does, so the client's defences can be seen working.
"""

from __future__ import annotations

import time

import pytest

from smtpkit import (
    Envelope,
    Message,
    NotSupportedError,
    ProtocolError,
    RecipientsRefusedError,
    RetryPolicy,
    SMTPConfig,
    SMTPReplyError,
    TLSError,
)

from .rawserver import RawConn, RawServer

pytestmark = pytest.mark.integration

#: How long a script waits to see whether the client sent ahead of a reply.
SETTLE = 0.15


def config(server: RawServer, **fields) -> SMTPConfig:
    fields.setdefault("tls", "none")
    fields.setdefault("timeout", 3.0)
    return SMTPConfig(host=server.host, port=server.port, **fields)


def message(n: int = 0) -> Message:
    return Message(sender="a@example.com", to=f"u{n}@example.com", text=f"body {n}")


class MiniSMTP:
    """A tiny scripted SMTP server that notes what the client sent ahead of replies.

    For each command it waits ``SETTLE`` seconds before replying and records
    whether more client bytes were already waiting: a lockstep client never has
    anything waiting, a pipelining one does.
    """

    def __init__(
        self, *, pipelining: bool = True, extensions: tuple[str, ...] = ()
    ) -> None:
        self.pipelining = pipelining
        self.extensions = extensions
        self.sent_ahead: list[tuple[str, bool]] = []
        self.messages: list[bytes] = []
        self.overrides: dict[str, list[bytes]] = {}

    def pop(self, command: str) -> bytes | None:
        queue = self.overrides.get(command)
        return queue.pop(0) if queue else None

    def reply(self, conn: RawConn, command: str, default: bytes) -> None:
        conn.send(self.pop(command) or default)

    def __call__(self, conn: RawConn) -> None:
        conn.send(b"220 mini ESMTP\r\n")
        in_mail = False
        while line := conn.readline():
            verb = line.split()[0].upper().decode() if line.strip() else ""
            if verb == "EHLO":
                ext = ["PIPELINING"] if self.pipelining else []
                ext += list(self.extensions)
                lines = ["mini", *ext]
                text = "".join(
                    f"250{'-' if i < len(lines) - 1 else ' '}{x}\r\n"
                    for i, x in enumerate(lines)
                )
                conn.send(text.encode())
                continue
            if verb == "QUIT":
                conn.send(b"221 bye\r\n")
                return
            if verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                time.sleep(SETTLE)
                self.sent_ahead.append((verb, conn.has_buffered()))
                if verb == "RCPT" and not in_mail:
                    conn.send(b"503 5.5.1 need MAIL first\r\n")
                    continue
                reply = self.pop(verb) or b"250 ok\r\n"
                conn.send(reply)
                in_mail = (verb == "MAIL" and reply.startswith(b"2")) or (
                    in_mail and verb == "RCPT"
                )
                continue
            if verb == "DATA":
                reply = b"354 go\r\n" if in_mail else b"503 5.5.1 need MAIL first\r\n"
                reply = self.pop("DATA") or reply
                conn.send(reply)
                in_mail = False
                if not reply.startswith(b"354"):
                    continue
                body = []
                while (data_line := conn.readline()) not in (b".\r\n", b""):
                    body.append(data_line)
                self.messages.append(b"".join(body))
                time.sleep(SETTLE)
                self.sent_ahead.append((".", conn.has_buffered()))
                self.reply(
                    conn, ".", f"250 queued as M{len(self.messages)}\r\n".encode()
                )
                continue
            conn.send(b"500 what\r\n")


def test_lockstep_client_never_sends_ahead(make_mailer):
    script = MiniSMTP(pipelining=False)
    with RawServer(script) as server, make_mailer(config(server)) as mailer:
        mailer.send_many([message(1), message(2)], concurrency=1)
    assert len(script.messages) == 2
    assert script.sent_ahead
    assert not any(ahead for _, ahead in script.sent_ahead)


def test_pipelining_groups_mail_rcpt_data(make_mailer):
    script = MiniSMTP()
    with RawServer(script) as server, make_mailer(config(server)) as mailer:
        mailer.send(message())
    # When MAIL's reply is due, RCPT and DATA are already on their way.
    assert script.sent_ahead[0] == ("MAIL", True)
    assert script.messages == [script.messages[0]]


def test_pipelining_starts_the_next_message_with_the_final_dot(make_mailer):
    script = MiniSMTP()
    with RawServer(script) as server, make_mailer(config(server)) as mailer:
        results = mailer.send_many([message(n) for n in range(3)], concurrency=1)
    assert [r.reply.text for r in results] == [
        "queued as M1",
        "queued as M2",
        "queued as M3",
    ]
    dots = [ahead for verb, ahead in script.sent_ahead if verb == "."]
    # After the first two messages the next MAIL arrived with the dot; the last
    # message has nothing behind it.
    assert dots == [True, True, False]


def test_pipelined_batch_recovers_from_refusals_in_the_middle(make_mailer):
    script = MiniSMTP()
    script.overrides = {
        "MAIL": [b"250 ok\r\n", b"550 5.7.1 sender blocked\r\n"],
        ".": [b"250 ok one\r\n", b"451 4.3.0 try later\r\n"],
    }
    with RawServer(script) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            results = mailer.send_many([message(n) for n in range(4)], concurrency=1)
    kinds = [type(r.error).__name__ if r.error else "ok" for r in results]
    assert kinds == ["ok", "SenderRefusedError", "DataRefusedError", "ok"]
    assert results[2].error.reply.code == 451
    assert len(server.connections) == 1  # refusals did not cost the connection
    assert len(script.messages) == 3  # message 2 never got to DATA


def unsolicited_reply(pipelining: bool):
    def script(conn: RawConn) -> None:
        conn.send(b"220 hi\r\n")
        conn.readline()  # EHLO
        conn.send(b"250-hi\r\n250 PIPELINING\r\n" if pipelining else b"250 hi\r\n")
        commands = 3 if pipelining else 1
        for _ in range(commands):
            conn.readline()  # MAIL (and RCPT, DATA when pipelined)
        # Two replies for MAIL: every later reply is shifted by one, so DATA would
        # get RCPT's 250 and the message data would follow a reply that never
        # invited it.
        conn.send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"[: 16 * commands])
        conn.wait_closed()

    return script


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_extra_reply_is_a_protocol_error_not_a_success(make_mailer, pipelining):
    with RawServer(unsolicited_reply(pipelining)) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            with pytest.raises(ProtocolError):
                mailer.send(message())
            assert mailer.transport.stats().open == 0  # connection thrown away


def test_impossible_reply_code_is_a_protocol_error(make_mailer):
    script = MiniSMTP()
    script.overrides = {"DATA": [b"250 sure\r\n"]}  # DATA must get 354 or an error
    with RawServer(script) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            with pytest.raises(ProtocolError, match="out of step"):
                mailer.send(message())
    assert script.messages == []


def starttls_injection(conn: RawConn) -> None:
    conn.send(b"220 hi\r\n")
    conn.readline()
    conn.send(b"250-hi\r\n250 STARTTLS\r\n")
    conn.readline()  # STARTTLS
    # A man in the middle appends a reply that would be read inside TLS.
    conn.send(b"220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n")
    conn.wait_closed()


def test_bytes_after_starttls_reply_are_refused_before_the_handshake(make_mailer):
    with RawServer(starttls_injection) as server:
        cfg = config(server, tls="starttls")
        with make_mailer(cfg, retry=RetryPolicy.never()) as mailer:
            with pytest.raises(ProtocolError, match="before the TLS handshake"):
                mailer.send(message())
    # The client hung up instead of starting a handshake on a tainted stream.
    assert not any(line.startswith(b"\x16") for line in server.connections[0].lines)


def endless_challenges(conn: RawConn) -> None:
    conn.send(b"220 hi\r\n")
    conn.readline()
    conn.send(b"250-hi\r\n250 AUTH LOGIN\r\n")
    while conn.readline():
        conn.send(b"334 VXNlcm5hbWU6\r\n")


def test_sasl_exchange_is_bounded(make_mailer):
    with RawServer(endless_challenges) as server:
        cfg = config(server, username="u", password="p", allow_insecure_auth=True)
        started = time.monotonic()
        with make_mailer(cfg, retry=RetryPolicy.never()) as mailer:
            with pytest.raises(ProtocolError, match="SASL challenges"):
                mailer.send(message())
        assert time.monotonic() - started < 2.0
        answered = [
            line for line in server.connections[0].lines if not line.startswith(b"EHLO")
        ]
        assert len(answered) <= 10


def trickling_greeting(conn: RawConn) -> None:
    for byte in b"220 slowly greeting you\r\n":
        if not conn.sleep(0.1):
            return
        conn.send(bytes([byte]))


def test_connect_and_greeting_share_one_deadline(make_mailer):
    with RawServer(trickling_greeting) as server:
        cfg = config(server, connect_timeout=0.5)
        started = time.monotonic()
        with make_mailer(cfg, retry=RetryPolicy.never()) as mailer:
            with pytest.raises(TimeoutError):
                mailer.send(message())
        assert time.monotonic() - started < 1.5


def test_tls_error_is_typed_for_a_server_that_does_not_speak_tls(make_mailer):
    def plain(conn: RawConn) -> None:
        conn.send(b"220 not tls\r\n")
        conn.wait_closed()

    with RawServer(plain) as server:
        with make_mailer(
            config(server, tls="implicit"), retry=RetryPolicy.never()
        ) as mailer:
            with pytest.raises(TLSError):
                mailer.send(message())


def conversation(*steps: tuple[bytes | None, bytes]):
    """A script: for each step, read a line (checking its prefix) and send a reply."""

    def script(conn: RawConn) -> None:
        conn.send(b"220 hi\r\n")
        for expected, reply in steps:
            if expected is not None:
                line = conn.readline()
                assert line.upper().startswith(expected), line
            conn.send(reply)
        conn.wait_closed()

    return script


def test_starttls_refused_fails_before_credentials_or_mail(make_mailer):
    script = conversation(
        (b"EHLO", b"250-hi\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
        (b"STARTTLS", b"454 4.7.0 TLS not available due to temporary reason\r\n"),
    )
    with RawServer(script) as server:
        cfg = config(server, tls="starttls", username="u", password="secret")
        with make_mailer(cfg, retry=RetryPolicy.never()) as mailer:
            with pytest.raises(SMTPReplyError) as info:
                mailer.send(message())
    assert info.value.command == "STARTTLS"
    assert info.value.is_transient
    sent = b"".join(server.connections[0].lines)
    assert b"AUTH" not in sent
    assert b"MAIL" not in sent
    assert server.errors == []


def helo_only(conn: RawConn) -> None:
    conn.send(b"220 old server\r\n")
    replies = {b"EHLO": b"502 5.5.2 what is EHLO\r\n", b"HELO": b"250 hello\r\n"}
    while line := conn.readline():
        verb = line.split()[0].upper()
        if verb == b"DATA":
            conn.send(b"354 go\r\n")
            while conn.readline() not in (b".\r\n", b""):
                pass
            conn.send(b"250 queued\r\n")
        else:
            conn.send(replies.get(verb, b"250 ok\r\n"))


def test_helo_fallback_when_ehlo_is_not_understood(make_mailer):
    with RawServer(helo_only) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            result = mailer.send(message())
    assert result.reply.text == "queued"
    verbs = [line.split()[0].upper() for line in server.connections[0].lines[:4]]
    assert verbs == [b"EHLO", b"HELO", b"MAIL", b"RCPT"]
    assert server.errors == []


def test_421_at_end_of_data_in_a_batch_moves_the_rest_to_a_new_connection(make_mailer):
    script = MiniSMTP()
    script.overrides = {".": [b"250 one\r\n", b"421 4.3.2 shutting down\r\n"]}
    with RawServer(script) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            results = mailer.send_many([message(n) for n in range(4)], concurrency=1)
    assert results[0].ok
    assert results[1].error.reply.code == 421
    assert results[1].error.is_transient
    assert results[2].ok  # sent on a second connection
    assert results[3].ok
    assert len(server.connections) == 2


def test_no_8bitmime_means_8bit_raw_data_is_refused_before_mail(make_mailer):
    script = MiniSMTP(pipelining=False)
    raw = "Subject: café\r\n\r\nnaïve\r\n".encode()
    envelope = Envelope(sender="a@example.com", recipients=["b@example.com"])
    with RawServer(script) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            with pytest.raises(NotSupportedError, match="8BITMIME"):
                mailer.send(raw, envelope=envelope)
            mailer.send(message())  # the session survived the local refusal
    assert len(server.connections) == 1
    assert len(script.messages) == 1


def test_data_accepted_without_recipients_is_ended_empty_and_reset(make_mailer):
    script = MiniSMTP()
    script.overrides = {
        "RCPT": [b"550 5.1.1 nobody\r\n"],
        "DATA": [b"354 go anyway\r\n"],
    }
    with RawServer(script) as server:
        with make_mailer(config(server), retry=RetryPolicy.never()) as mailer:
            with pytest.raises(RecipientsRefusedError):
                mailer.send(message())
            mailer.send(message(2))
    # RFC 2920 §3.1: the client ends the unwanted DATA with a lone dot, sending no
    # content, then resets; the next message still goes out on the same connection.
    assert script.messages[0] == b""
    assert b"body 0" not in b"".join(script.messages)
    assert len(server.connections) == 1


def test_non_base64_sasl_challenge_is_a_protocol_error(make_mailer):
    script = conversation(
        (b"EHLO", b"250-hi\r\n250 AUTH LOGIN\r\n"),
        (b"AUTH", b"334 this is not base64!\r\n"),
        (b"*", b"501 5.7.0 cancelled\r\n"),
    )
    with RawServer(script) as server:
        cfg = config(server, username="u", password="p", allow_insecure_auth=True)
        with make_mailer(cfg, retry=RetryPolicy.never()) as mailer:
            with pytest.raises(ProtocolError, match="not base64"):
                mailer.send(message())
    assert server.errors == []


def one_message_then_hang_up(conn: RawConn) -> None:
    conn.send(b"220 hi\r\n")
    while line := conn.readline():
        verb = line.split()[0].upper()
        if verb == b"DATA":
            conn.send(b"354 go\r\n")
            while conn.readline() not in (b".\r\n", b""):
                pass
            conn.send(b"250 queued\r\n")
            conn.hang_up()  # right after the reply
            return
        conn.send(b"250 ok\r\n")


def test_a_connection_closed_while_idle_is_never_reused(make_mailer):
    with RawServer(one_message_then_hang_up) as server:
        cfg = config(server, pool={"check_after_idle": 60.0})
        with make_mailer(cfg, retry=RetryPolicy.never()) as mailer:
            mailer.send(message(1))
            time.sleep(0.1)  # let the server's FIN arrive
            result = mailer.send(message(2))
            stats = mailer.transport.stats()
    assert result.ok
    assert result.attempts == 1
    # Found dead by a local check before use: no MAIL was wasted on it.
    assert stats.discarded == 1
    assert len(server.connections) == 2
    assert [line.split()[0].upper() for line in server.connections[1].lines[:2]] == [
        b"EHLO",
        b"MAIL",
    ]
